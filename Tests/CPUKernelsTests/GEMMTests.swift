// GEMM f32 and bf16: every ISA path against the scalar reference, on odd sizes, transposes, leading dims,
// epilogues and batches.
import CPUKernels
import Testing

/// One GEMM problem; A and B stored according to the transposes with padded leading dimensions.
struct GemmCase: CustomStringConvertible {
    var m, n, k: Int
    var ta = false, tb = false
    var alpha: Float = 1, beta: Float = 0
    var bias = false
    var act = HP_ACT_NONE
    var pad = 0
    var description: String { "M\(m) N\(n) K\(k) ta\(ta) tb\(tb) a\(alpha) b\(beta) bias\(bias) act\(act.rawValue)" }
    var lda: Int { (ta ? m : k) + pad }
    var ldb: Int { (tb ? k : n) + pad }
    var ldc: Int { n + pad }
    var aCount: Int { (ta ? k : m) * lda }
    var bCount: Int { (tb ? n : k) * ldb }
}

func gemmCases() -> [GemmCase] {
    var cases: [GemmCase] = []
    let sizes: [(Int, Int, Int)] = [(1, 1, 1), (7, 7, 7), (63, 65, 63), (65, 63, 65), (1000, 7, 65), (7, 1000, 63),
                                    (15, 33, 1000), (29, 47, 300), (130, 70, 257)]
    for (i, s) in sizes.enumerated() {
        for ta in [false, true] {
            for tb in [false, true] {
                var c = GemmCase(m: s.0, n: s.1, k: s.2, ta: ta, tb: tb)
                c.alpha = i % 2 == 0 ? 1 : 0.5
                c.beta = [0, 1, -0.75][(i + (ta ? 1 : 0)) % 3]
                c.bias = (i + (tb ? 1 : 0)) % 2 == 0
                c.act = [HP_ACT_NONE, HP_ACT_GELU_TANH, HP_ACT_SILU][(i + (ta ? 1 : 0) + (tb ? 2 : 0)) % 3]
                c.pad = i % 3
                cases.append(c)
            }
        }
    }
    return cases
}

extension CPUKernelSuites {
@Suite struct GEMMTests {
    @Test func f32MatchesReferenceOnEveryISA() throws {
        var rng = Rand(1)
        try forEachISA { isa in
            for c in gemmCases() {
                let a = rng.floats(c.aCount), b = rng.floats(c.bCount), c0 = rng.floats(c.m * c.ldc)
                let bias = rng.floats(c.n)
                var got = c0, want = c0
                let rc = hp_gemm_f32(c.ta ? 1 : 0, c.tb ? 1 : 0, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb, c.beta,
                                     &got, c.ldc, c.bias ? bias : nil, c.act)
                let rr = hp_gemm_f32_ref(c.ta ? 1 : 0, c.tb ? 1 : 0, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb, c.beta,
                                         &want, c.ldc, c.bias ? bias : nil, c.act)
                try #require(rc == 0 && rr == 0)
                let tol = 2e-6 * Float(c.k) + 1e-5
                let worst = worstRatio(got, want, atol: tol, rtol: 1e-5)
                #expect(worst <= 1, "\(isa) \(c): worst error ratio \(worst)")
            }
        }
    }

    @Test func bf16MatchesReferenceOnEveryISA() throws {
        var rng = Rand(2)
        try forEachISA { isa in
            for (i, c) in gemmCases().enumerated() {
                let a = bf16(rng.floats(c.aCount)), b = bf16(rng.floats(c.bCount))
                let bias = rng.floats(c.n)
                let outBF16 = i % 2 == 1
                if outBF16 {
                    let c0 = bf16(rng.floats(c.m * c.ldc))
                    var got = c0, want = c0
                    let rc = hp_gemm_bf16(c.ta ? 1 : 0, c.tb ? 1 : 0, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb, c.beta,
                                          &got, HP_BF16, c.ldc, c.bias ? bias : nil, c.act)
                    let rr = hp_gemm_bf16_ref(c.ta ? 1 : 0, c.tb ? 1 : 0, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb,
                                              c.beta, &want, HP_BF16, c.ldc, c.bias ? bias : nil, c.act)
                    try #require(rc == 0 && rr == 0)
                    // One bf16 rounding of each side (at most 2^-8 relative apart) plus f32 accumulation noise.
                    let worst = worstRatio(f32(got), f32(want), atol: 2e-6 * Float(c.k) + 1e-5, rtol: 8e-3)
                    #expect(worst <= 1, "\(isa) bf16-out \(c): worst error ratio \(worst)")
                } else {
                    let c0 = rng.floats(c.m * c.ldc)
                    var got = c0, want = c0
                    let rc = hp_gemm_bf16(c.ta ? 1 : 0, c.tb ? 1 : 0, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb, c.beta,
                                          &got, HP_F32, c.ldc, c.bias ? bias : nil, c.act)
                    let rr = hp_gemm_bf16_ref(c.ta ? 1 : 0, c.tb ? 1 : 0, c.m, c.n, c.k, c.alpha, a, c.lda, b, c.ldb,
                                              c.beta, &want, HP_F32, c.ldc, c.bias ? bias : nil, c.act)
                    try #require(rc == 0 && rr == 0)
                    let worst = worstRatio(got, want, atol: 2e-6 * Float(c.k) + 1e-5, rtol: 1e-5)
                    #expect(worst <= 1, "\(isa) f32-out \(c): worst error ratio \(worst)")
                }
            }
        }
    }

    @Test func batchedMatchesPerMatrixCalls() throws {
        var rng = Rand(3)
        let (m, n, k, batch) = (9, 17, 13, 3)
        let a = rng.floats(batch * m * k), b = rng.floats(k * n)  // B broadcast (stride 0)
        var got = [Float](repeating: 0, count: batch * m * n), want = got
        #expect(hp_gemm_f32_batched(0, 0, m, n, k, 1, a, k, m * k, b, n, 0, 0, &got, n, m * n, nil, HP_ACT_NONE, batch) == 0)
        for i in 0..<batch {
            let ai = Array(a[(i * m * k)..<((i + 1) * m * k)])
            var ci = [Float](repeating: 0, count: m * n)
            #expect(hp_gemm_f32(0, 0, m, n, k, 1, ai, k, b, n, 0, &ci, n, nil, HP_ACT_NONE) == 0)
            want.replaceSubrange((i * m * n)..<((i + 1) * m * n), with: ci)
        }
        #expect(bitsEqual(got, want))
    }

    @Test func invalidArgumentsAreRejected() {
        var c = [Float](repeating: 0, count: 4)
        let a = [Float](repeating: 1, count: 4)
        #expect(Int(hp_gemm_f32(0, 0, 2, 2, 2, 1, a, 1, a, 2, 0, &c, 2, nil, HP_ACT_NONE)) == HP_EINVAL)  // lda < K
        #expect(Int(hp_gemm_f32(0, 0, -1, 2, 2, 1, a, 2, a, 2, 0, &c, 2, nil, HP_ACT_NONE)) == HP_EINVAL)
        // K == 0: C = act(beta*C + bias)
        var d: [Float] = [1, 2, 3, 4]
        #expect(hp_gemm_f32(0, 0, 2, 2, 0, 1, nil, 0, nil, 0, 2, &d, 2, nil, HP_ACT_NONE) == 0)
        #expect(d == [2, 4, 6, 8])
    }

    @Test func bf16RoundingIsNearestEven() {
        #expect(hp_f32_to_bf16(1.0) == 0x3F80)
        #expect(hp_f32_to_bf16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie → even
        #expect(hp_f32_to_bf16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie → even (up)
        #expect(hp_f32_to_bf16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(hp_bf16_to_f32(hp_f32_to_bf16(.nan)).isNaN)
    }
}
}
