// Philox 4x32-10 counter-based random numbers and the exact (seed, index) → standard-normal mapping that every
// backend reproduces bit for bit. The C kernel (hp_randn_f32 in CPUKernels) and a CUDA kernel follow this file.

/// Standard-normal noise defined as a pure function of (seed, index), identical on every backend and thread count.
///
/// The mapping, exactly:
/// 1. key = (lo32(seed), hi32(seed)); element index n (UInt64) = offset + i; block b = n / 4; lane j = n % 4.
/// 2. (r0, r1, r2, r3) = Philox4x32-10(counter: (lo32(b), hi32(b), 0, 0), key) — Salmon et al. 2011, as Random123
///    and cuRAND: multipliers 0xD2511F53, 0xCD9E8D57, Weyl key increments 0x9E3779B9, 0xBB67AE85, ten rounds.
/// 3. Lanes 0,1 use the pair (a, c) = (r0, r1); lanes 2,3 use (r2, r3).
///    u1 = (a + 0.5)·2⁻³², u2 = (c + 0.5)·2⁻³² (f64, exact, in (0, 1)).
/// 4. ρ = sqrt(−2·detLog(u1)); even lanes give ρ·cos(2π·u2), odd lanes ρ·sin(2π·u2), via `detSinCos2Pi`;
///    all in f64 with IEEE add/mul/div/sqrt only (no fused multiply-add: CUDA code must use __dadd_rn/__dmul_rn
///    or -fmad=false), then rounded to f32 (nearest even).
/// `detLog` and `detSinCos2Pi` are written out below so that no libm difference can change a bit.
public enum Philox {
    public static let m0: UInt32 = 0xD251_1F53
    public static let m1: UInt32 = 0xCD9E_8D57
    public static let w0: UInt32 = 0x9E37_79B9
    public static let w1: UInt32 = 0xBB67_AE85

    /// Philox4x32 with 10 rounds.
    public static func block(_ c: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = c
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 { k0 &+= w0; k1 &+= w1 }
            let p0 = UInt64(m0) * UInt64(c0)
            let p1 = UInt64(m1) * UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        }
        return (c0, c1, c2, c3)
    }

    /// The four raw 32-bit words of block `b` for `seed`.
    public static func words(seed: UInt64, block b: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        block((UInt32(truncatingIfNeeded: b), UInt32(truncatingIfNeeded: b >> 32), 0, 0),
              key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    /// The standard-normal value number `index` of the stream `seed`.
    public static func normal(seed: UInt64, index n: UInt64) -> Float {
        let r = words(seed: seed, block: n / 4)
        let lane = Int(n % 4)
        let (a, c) = lane < 2 ? (r.0, r.1) : (r.2, r.3)
        let u1 = (Double(a) + 0.5) * 0x1p-32
        let u2 = (Double(c) + 0.5) * 0x1p-32
        let rho = (-2.0 * detLog(u1)).squareRoot()
        let (cs, sn) = detSinCos2Pi(u2)
        return Float(lane % 2 == 0 ? rho * cs : rho * sn)
    }

    /// Natural log for u in (0, 1] (normal f64), from IEEE add/mul/div only; |error| < 1e-15.
    public static func detLog(_ u: Double) -> Double {
        let bits = u.bitPattern
        var e = Int((bits >> 52) & 0x7FF) - 1023
        var m = Double(bitPattern: (bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000)   // [1, 2)
        if m > 1.4142135623730951 { m = m * 0.5; e += 1 }
        let f = m - 1.0
        let s = f / (2.0 + f)
        let s2 = s * s
        var p = 1.0 / 21.0
        for k in stride(from: 19, through: 1, by: -2) { p = p * s2 + 1.0 / Double(k) }
        return Double(e) * 0.6931471805599453 + 2.0 * s * p
    }

    /// (2i+1)! and (2i)! for i = 0...8.
    static let sinFactorials: [Double] = [1, 6, 120, 5040, 362_880, 39_916_800, 6_227_020_800, 1_307_674_368_000,
                                          355_687_428_096_000]
    static let cosFactorials: [Double] = [1, 2, 24, 720, 40320, 3_628_800, 479_001_600, 87_178_291_200,
                                          20_922_789_888_000]

    /// (cos 2πt, sin 2πt) for t in [0, 1], from IEEE add/mul/div only; |error| < 1e-15.
    public static func detSinCos2Pi(_ t: Double) -> (Double, Double) {
        let k = Int((t * 4.0 + 0.5).rounded(.down))         // quadrant 0...4
        let r = t - Double(k) * 0.25                         // [-1/8, 1/8], exact
        let x = r * 6.283185307179586
        let y = x * x
        // Taylor series, Horner in y = x²: sin x = x·Σ (−y)^i/(2i+1)!, cos x = Σ (−y)^i/(2i)!, i = 0...8.
        // The factorials are exact in f64, so 1/n! is the correctly rounded quotient on every platform.
        var sp = 1.0 / sinFactorials[8], cp = 1.0 / cosFactorials[8]
        for i in stride(from: 7, through: 0, by: -1) {
            sp = 1.0 / sinFactorials[i] - y * sp
            cp = 1.0 / cosFactorials[i] - y * cp
        }
        let sn = x * sp, cs = cp
        switch k & 3 {
        case 0: return (cs, sn)
        case 1: return (-sn, cs)
        case 2: return (-cs, -sn)
        default: return (sn, -cs)
        }
    }
}
