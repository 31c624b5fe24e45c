// Prepacked Linear weights (hp_pack_weight / hp_gemm_packed / hp_unpack_weight) on every ISA: the same bits as
// the per-call GEMM with trans_b, within tolerance of the scalar reference, an exact unpack, and a clear refusal
// when used under another ISA. Also the parallel f32 ↔ bf16 conversions against the scalar helpers.
import CPUKernels
import Testing

extension CPUKernelSuites {
@Suite struct PackedWeightTests {
    /// Packs W[n,k] under the current ISA into 64-byte aligned panels kept alive by the returned array.
    func pack(_ dtype: hp_dtype, _ w: UnsafeRawPointer, n: Int, k: Int) throws -> (hp_packed_weight, UnsafeMutableRawPointer) {
        let bytes = hp_packed_weight_bytes(dtype, n, k)
        try #require(bytes > 0)
        let panels = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        var pw = hp_packed_weight()
        try #require(hp_pack_weight(dtype, w, n, k, panels, &pw) == 0)
        return (pw, panels)
    }

    @Test func f32PackedEqualsPerCallGEMMOnEveryISA() throws {
        var rng = Rand(11)
        try forEachISA { isa in
            for (m, n, k) in [(1, 1, 1), (7, 33, 65), (130, 70, 257), (29, 1000, 63)] {
                let x = rng.floats(m * k), w = rng.floats(n * k), bias = rng.floats(n)
                let (pw, panels) = try pack(HP_F32, w, n: n, k: k)
                defer { panels.deallocate() }
                var pwv = pw
                for act in [HP_ACT_NONE, HP_ACT_GELU_TANH, HP_ACT_SILU] {
                    var got = [Float](repeating: .nan, count: m * n), same = got, want = got
                    #expect(hp_gemm_packed(m, x, k, &pwv, &got, HP_F32, n, bias, act) == 0)
                    #expect(hp_gemm_f32(0, 1, m, n, k, 1, x, k, w, k, 0, &same, n, bias, act) == 0)
                    #expect(hp_gemm_f32_ref(0, 1, m, n, k, 1, x, k, w, k, 0, &want, n, bias, act) == 0)
                    #expect(bitsEqual(got, same), "\(isa) M\(m) N\(n) K\(k) act \(act.rawValue): packed ≠ per-call GEMM")
                    let worst = worstRatio(got, want, atol: 2e-6 * Float(k) + 1e-5, rtol: 1e-5)
                    #expect(worst <= 1, "\(isa) M\(m) N\(n) K\(k): worst error ratio \(worst)")
                }
                var back = [Float](repeating: 0, count: n * k)
                #expect(hp_unpack_weight(&pwv, &back) == 0)
                #expect(bitsEqual(back, w), "\(isa): unpacking is not exact")
            }
        }
    }

    @Test func bf16PackedEqualsPerCallGEMMOnEveryISA() throws {
        var rng = Rand(12)
        try forEachISA { isa in
            for (m, n, k) in [(1, 1, 1), (7, 33, 65), (130, 70, 257)] {
                let x = bf16(rng.floats(m * k)), w = bf16(rng.floats(n * k)), bias = rng.floats(n)
                let (pw, panels) = try pack(HP_BF16, w, n: n, k: k)
                defer { panels.deallocate() }
                var pwv = pw
                var got = [Float](repeating: .nan, count: m * n), same = got
                #expect(hp_gemm_packed(m, x, k, &pwv, &got, HP_F32, n, bias, HP_ACT_SILU) == 0)
                #expect(hp_gemm_bf16(0, 1, m, n, k, 1, x, k, w, k, 0, &same, HP_F32, n, bias, HP_ACT_SILU) == 0)
                #expect(bitsEqual(got, same), "\(isa) M\(m) N\(n) K\(k): packed ≠ per-call GEMM")
                // bf16 output: the f32 result rounded once (same bits as casting the f32 output).
                var got16 = [UInt16](repeating: 0, count: m * n)
                #expect(hp_gemm_packed(m, x, k, &pwv, &got16, HP_BF16, n, bias, HP_ACT_SILU) == 0)
                #expect(got16 == bf16(same), "\(isa) M\(m) N\(n) K\(k): bf16 output ≠ rounded f32 output")
                var back = [UInt16](repeating: 0, count: n * k)
                #expect(hp_unpack_weight(&pwv, &back) == 0)
                #expect(back == w, "\(isa): unpacking is not exact")
            }
        }
    }

    @Test func anotherISAIsRefusedAndBadArgumentsRejected() throws {
        let isas = availableISAs()
        var rng = Rand(13)
        let w = rng.floats(40 * 9), x = rng.floats(3 * 9)
        var c = [Float](repeating: 0, count: 3 * 40)
        if isas.count >= 2 {
            defer { _ = hp_set_isa_override(HP_ISA_AUTO) }
            #expect(hp_set_isa_override(isas[0]) == 0)
            let (pw, panels) = try pack(HP_F32, w, n: 40, k: 9)
            defer { panels.deallocate() }
            var pwv = pw
            #expect(hp_set_isa_override(isas[isas.count - 1]) == 0)
            #expect(Int(hp_gemm_packed(3, x, 9, &pwv, &c, HP_F32, 40, nil, HP_ACT_NONE)) == HP_EUNSUPPORTED)
            #expect(Int(hp_gemm_packed(3, x, 8, &pwv, &c, HP_F32, 40, nil, HP_ACT_NONE)) == HP_EINVAL)   // lda < K
        }
        var pw = hp_packed_weight()
        #expect(Int(hp_pack_weight(HP_F32, w, 0, 9, nil, &pw)) == HP_EINVAL)
        #expect(hp_packed_weight_bytes(HP_F32, -1, 9) == 0)
    }

    @Test func parallelConversionsMatchTheScalarHelpers() {
        var rng = Rand(14)
        var xs = rng.floats(300_001, scale: 1000)
        xs[5] = .nan; xs[6] = .infinity; xs[7] = -.infinity; xs[8] = Float(bitPattern: 0x3F80_8000)   // a tie
        xs[9] = Float(bitPattern: 0x7F80_0001)                                                        // signalling NaN
        var got = [UInt16](repeating: 0, count: xs.count)
        hp_convert_f32_to_bf16(xs, &got, Int64(xs.count))
        var want = [UInt16](repeating: 0, count: xs.count)
        hp_f32_to_bf16_array(xs, &want, xs.count)
        #expect(got == want)
        var back = [Float](repeating: 0, count: xs.count), backWant = back
        hp_convert_bf16_to_f32(got, &back, Int64(got.count))
        hp_bf16_to_f32_array(got, &backWant, got.count)
        #expect(bitsEqual(back, backWant))
    }
}
}
