// W4A16 GEMM: the bitsandbytes packing convention, and every ISA path against the scalar reference for NF4,
// FP4 and int4 (with zero points), f32/bf16 activations and outputs, aligned and row-straddling blocks.
import CPUKernels
import Testing

/// A quantised weight with its storage kept alive.
struct Q4 {
    var data: [UInt8], scale: [Float], zero: [Float]?
    let code: UnsafePointer<Float>!
    let n: Int, k: Int, block: Int

    init(_ w: [Float], n: Int, k: Int, block: Int, code: UnsafePointer<Float>!) {
        let count = n * k
        data = [UInt8](repeating: 0, count: (count + 1) / 2)
        scale = [Float](repeating: 0, count: (count + block - 1) / block)
        self.code = code
        self.n = n; self.k = k; self.block = block
        #expect(hp_quantize_4bit(w, count, block, code, &data, &scale) == 0)
    }

    func with<T>(_ body: (UnsafePointer<hp_q4_weight>) -> T) -> T {
        data.withUnsafeBufferPointer { d in
            scale.withUnsafeBufferPointer { s in
                func run(_ z: UnsafePointer<Float>?) -> T {
                    var w = hp_q4_weight(data: d.baseAddress, scale: s.baseAddress, zero: z, code: code,
                                         n: n, k: k, block: block)
                    return withUnsafePointer(to: &w) { body($0) }
                }
                if let zero { return zero.withUnsafeBufferPointer { run($0.baseAddress) } }
                return run(nil)
            }
        }
    }
}

extension CPUKernelSuites {
@Suite struct W4A16Tests {
    @Test func packingIsBitsandbytesLayout() {
        // Two elements per byte, first in the high nibble; NF4 index 15 is +1.0, index 0 is -1.0, 7 is 0.
        let w: [Float] = [1, -1, 0, 0.5]
        let q = Q4(w, n: 1, k: 4, block: 4, code: hp_code_table(HP_CODE_NF4))
        #expect(q.data == [0xF0, 0x7C])  // 0 → index 7; 0.5 → nearest NF4 code 0.4407 (index 12)
        #expect(q.scale == [1])
        var out = [Float](repeating: 0, count: 4)
        q.with { #expect(hp_dequantize_4bit_rows($0, 0, 1, &out) == 0) }
        #expect(out == [1, -1, 0, 0.44070982933044434])
    }

    @Test func paddedLeadingDimensions() throws {
        var rng = Rand(12)
        let (n, k, ldx, ldy) = (40, 128, 131, 45)
        let q = Q4(rng.floats(n * k), n: n, k: k, block: 64, code: hp_code_table(HP_CODE_NF4))
        forEachISA { isa in
            for m in [2, 30] {  // small-M kernel and dequantising GEMM
                let x = rng.floats(m * ldx)
                var got = [Float](repeating: -7, count: m * ldy), want = got
                q.with { w in
                    #expect(hp_gemm_w4a16(m, x, HP_F32, ldx, w, nil, HP_ACT_NONE, &got, HP_F32, ldy) == 0)
                    #expect(hp_gemm_w4a16_ref(m, x, HP_F32, ldx, w, nil, HP_ACT_NONE, &want, HP_F32, ldy) == 0)
                }
                #expect(worstRatio(got, want, atol: 1e-4, rtol: 1e-5) <= 1, "\(isa) M\(m)")
                // Padding columns are left alone.
                #expect((0..<m).allSatisfy { r in (n..<ldy).allSatisfy { got[r * ldy + $0] == -7 } })
            }
        }
    }

    @Test func matchesReferenceOnEveryISA() throws {
        var rng = Rand(11)
        // (M, N, K, block): aligned rows (fast paths), blocks straddling rows, odd K, partial last block.
        let shapes: [(Int, Int, Int, Int)] = [(1, 65, 128, 64), (7, 63, 192, 64), (16, 33, 64, 32), (17, 65, 128, 64),
                                              (63, 40, 256, 64), (3, 9, 100, 64), (5, 7, 63, 64), (65, 31, 70, 32),
                                              (1, 1000, 64, 64), (2, 7, 1000, 64), (3, 33, 256, 64), (4, 17, 256, 128)]
        let codes: [(String, UnsafePointer<Float>?)] = [("nf4", hp_code_table(HP_CODE_NF4)), ("fp4", hp_code_table(HP_CODE_FP4)),
                                                       ("int4", hp_code_table(HP_CODE_INT4)), ("uint4+zero", hp_code_table(HP_CODE_UINT4))]
        try forEachISA { isa in
            for (si, s) in shapes.enumerated() {
              for (codeName, code) in codes {  // every code table on every path (small-M, GEMM, generic)
                let (m, n, k, block) = s
                var q = Q4(rng.floats(n * k), n: n, k: k, block: block, code: code)
                if codeName == "uint4+zero" { q.zero = rng.floats(q.scale.count, scale: 0.1) }
                let x = rng.floats(m * k), bias = rng.floats(n)
                let act = [HP_ACT_NONE, HP_ACT_GELU_TANH, HP_ACT_SILU][si % 3]
                for xdt in [HP_F32, HP_BF16] {
                    for ydt in [HP_F32, HP_BF16] {
                        let xb = bf16(x)
                        var got = [Float](repeating: 0, count: m * n), want = got
                        var gotH = [UInt16](repeating: 0, count: m * n), wantH = gotH
                        let useBias = si % 2 == 0 ? bias : nil
                        let (rc, rr): (Int32, Int32) = q.with { w in
                            func call(_ f: (Int, UnsafeRawPointer?, hp_dtype, Int, UnsafePointer<hp_q4_weight>?,
                                            UnsafePointer<Float>?, hp_act, UnsafeMutableRawPointer?, hp_dtype, Int) -> Int32,
                                      _ y: UnsafeMutableRawPointer) -> Int32 {
                                xdt == HP_F32
                                    ? x.withUnsafeBytes { f(m, $0.baseAddress, xdt, k, w, useBias, act, y, ydt, n) }
                                    : xb.withUnsafeBytes { f(m, $0.baseAddress, xdt, k, w, useBias, act, y, ydt, n) }
                            }
                            if ydt == HP_F32 {
                                return (got.withUnsafeMutableBytes { call(hp_gemm_w4a16, $0.baseAddress!) },
                                        want.withUnsafeMutableBytes { call(hp_gemm_w4a16_ref, $0.baseAddress!) })
                            }
                            return (gotH.withUnsafeMutableBytes { call(hp_gemm_w4a16, $0.baseAddress!) },
                                    wantH.withUnsafeMutableBytes { call(hp_gemm_w4a16_ref, $0.baseAddress!) })
                        }
                        try #require(rc == 0 && rr == 0)
                        if ydt == HP_BF16 { got = f32(gotH); want = f32(wantH) }
                        // bf16 kernels round the dequantised weight (and f32 X) to bf16: 2^-8 relative per term.
                        let weightRounding: Float = isa == "avx512_bf16" || xdt == HP_BF16 ? 4e-3 : 2e-6
                        let scaleMax = q.scale.map(abs).max() ?? 1
                        let atol = weightRounding * scaleMax * Float(k).squareRoot() + 2e-6 * Float(k) + 1e-5
                        let worst = worstRatio(got, want, atol: atol, rtol: ydt == HP_BF16 ? 8e-3 : 1e-5)
                        #expect(worst <= 1, "\(isa) \(codeName) M\(m) N\(n) K\(k) block \(block) x\(xdt.rawValue) y\(ydt.rawValue): \(worst)")
                    }
                }
              }
            }
        }
    }
}
}
