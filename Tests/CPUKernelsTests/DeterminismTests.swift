// Determinism: every kernel gives bit-identical results with 1 and 2 (and 3) threads, on every ISA path,
// for problems big enough to be split across the pool.
import CPUKernels
import Testing

extension CPUKernelSuites {
@Suite struct DeterminismTests {
    /// Runs `body` with 1, 2 and 3 threads and checks the outputs are bit-identical.
    func sameForAnyThreadCount(_ what: String, _ body: () -> [Float]) {
        let one = withThreads(1) { body() }
        for n: Int32 in [2, 3] {
            let many = withThreads(n) { body() }
            #expect(bitsEqual(one, many), "\(what): 1 vs \(n) threads differ")
        }
    }

    @Test func gemmIsDeterministic() {
        var rng = Rand(31)
        let (m, n, k) = (301, 257, 700)
        let a = rng.floats(m * k), b = rng.floats(k * n), bias = rng.floats(n)
        let ah = bf16(a), bh = bf16(b)
        forEachISA { isa in
            sameForAnyThreadCount("gemm f32 \(isa)") {
                var c = [Float](repeating: 0, count: m * n)
                _ = hp_gemm_f32(0, 1, m, n, k, 1, a, k, b, k, 0, &c, n, bias, HP_ACT_GELU_TANH)
                return c
            }
            sameForAnyThreadCount("gemm bf16 \(isa)") {
                var c = [UInt16](repeating: 0, count: m * n)
                _ = hp_gemm_bf16(1, 0, m, n, k, 1, ah, m, bh, n, 0, &c, HP_BF16, n, nil, HP_ACT_SILU)
                return f32(c)
            }
        }
    }

    @Test func w4a16IsDeterministic() {
        var rng = Rand(32)
        let (n, k) = (384, 512)
        let q = Q4(rng.floats(n * k), n: n, k: k, block: 64, code: hp_code_table(HP_CODE_NF4))
        forEachISA { isa in
            for m in [1, 5, 200] {
                let x = rng.floats(m * k)
                sameForAnyThreadCount("w4a16 M\(m) \(isa)") {
                    var y = [Float](repeating: 0, count: m * n)
                    q.with { w in _ = hp_gemm_w4a16(m, x, HP_F32, k, w, nil, HP_ACT_NONE, &y, HP_F32, n) }
                    return y
                }
                let xb = bf16(x)
                sameForAnyThreadCount("w4a16 bf16 X M\(m) \(isa)") {
                    var y = [Float](repeating: 0, count: m * n)
                    q.with { w in _ = hp_gemm_w4a16(m, xb, HP_BF16, k, w, nil, HP_ACT_NONE, &y, HP_F32, n) }
                    return y
                }
            }
        }
    }

    @Test func attentionIsDeterministic() {
        var rng = Rand(33)
        let c = AttnCase(b: 1, h: 3, lq: 300, lk: 290, d: 64)
        let q = rng.floats(c.qCount), k = rng.floats(c.kCount), v = rng.floats(c.kCount), g = rng.floats(c.qCount)
        forEachISA { isa in
            sameForAnyThreadCount("attention forward \(isa)") {
                let (o, lse, _) = attnForward(c, q, k, v, ref: false)
                return o + lse
            }
            let (o, lse, _) = attnForward(c, q, k, v, ref: false)
            sameForAnyThreadCount("attention backward \(isa)") {
                let (dq, dk, dv, _) = attnBackward(c, q, k, v, o, lse, g, ref: false)
                return dq + dk + dv
            }
        }
    }
}
}
