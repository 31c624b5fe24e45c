// Bit-exact conversions between f32 and the 16-bit float formats, shared by every host backend and the tests.
// bf16 and f16 are rounded to nearest, ties to even; NaN stays NaN (quiet); overflow goes to ±inf.

/// Conversions between f32 and 16-bit float bit patterns.
public enum FloatBits {
    /// f32 → bf16 bits, round-to-nearest-even; NaN → quiet NaN with the same sign.
    @inline(__always)
    public static func bf16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if f.isNaN { return UInt16(truncatingIfNeeded: (u >> 16) | 0x0040) }
        let rounding = UInt32(0x7FFF) + ((u >> 16) & 1)
        return UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
    }

    /// bf16 bits → f32 (exact).
    @inline(__always)
    public static func float(bf16 h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// f32 → IEEE binary16 bits, round-to-nearest-even, subnormals kept, overflow → ±inf.
    public static func f16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        let sign = UInt16(truncatingIfNeeded: (u >> 16) & 0x8000)
        let absU = u & 0x7FFF_FFFF
        if absU >= 0x7F80_0000 {                                   // inf or NaN
            return sign | 0x7C00 | (absU > 0x7F80_0000 ? 0x0200 : 0)
        }
        if absU >= 0x4780_0000 { return sign | 0x7C00 }             // ≥ 65536 → inf
        if absU < 0x3880_0000 {                                     // below the smallest normal half (2^-14)
            if absU < 0x3300_0000 { return sign }                   // < 2^-25 rounds to 0
            let exp = Int(absU >> 23)                               // 102 ... 112
            let mant = (absU & 0x7F_FFFF) | 0x80_0000
            let shift = UInt32(126 - exp)                           // 14 ... 24
            var h = mant >> shift
            let rem = mant & ((1 << shift) - 1)
            let half = UInt32(1) << (shift - 1)
            if rem > half || (rem == half && (h & 1) == 1) { h += 1 }
            return sign | UInt16(truncatingIfNeeded: h)
        }
        // Normal: rebias exponent 127 → 15 and round the 13 dropped mantissa bits.
        var h = (absU - 0x3800_0000) >> 13
        let rem = absU & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) { h += 1 }
        return sign | UInt16(truncatingIfNeeded: h)                  // a carry into the exponent is correct rounding
    }

    /// IEEE binary16 bits → f32 (exact).
    public static func float(f16 h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        let mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            let v = Float(mant) * 0x1p-24                            // subnormal: exact in f32
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
    }
}
