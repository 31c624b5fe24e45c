// AMX family: the emulated TDPBF16PS against a direct Swift model of the SDM pseudo-code (exact, denormals and
// partial tiles included), the AMX GEMM against a model of its summation order (exact) and against the scalar
// reference (tolerance), on the shapes; 1 vs 2 threads; real tiles against the emulation where present.
import CPUKernels
import Testing

/// Flush-to-zero of a subnormal f32 (sign kept), as TDPBF16PS does for its results and f32 inputs.
private func ftz(_ x: Float) -> Float { x.isSubnormal ? (x.sign == .minus ? -0.0 : 0.0) : x }
/// bf16 → f32 with denormals treated as zero.
private func daz(_ h: UInt16) -> Float { ftz(Float(bitPattern: UInt32(h) << 16)) }

/// TDPBF16PS as the Intel SDM writes it: C[rows][np] f32, A[rows][2kp] bf16, B[kp][2np] bf16 (pairs along k).
private func tdpbf16psModel(rows: Int, kp: Int, np: Int, c: inout [Float], a: [UInt16], b: [UInt16]) {
    for m in 0..<rows {
        var t = [Float](repeating: 0, count: 2 * np)
        for k in 0..<kp {
            for n in 0..<np {
                t[2 * n] = ftz(t[2 * n].addingProduct(daz(a[m * 2 * kp + 2 * k]), daz(b[k * 2 * np + 2 * n])))
                t[2 * n + 1] = ftz(t[2 * n + 1].addingProduct(daz(a[m * 2 * kp + 2 * k + 1]), daz(b[k * 2 * np + 2 * n + 1])))
            }
        }
        for n in 0..<np { c[m * np + n] = ftz(ftz(c[m * np + n]) + ftz(t[2 * n] + t[2 * n + 1])) }
    }
}

/// Random bf16 with some zeros, signed zeros, denormals and large/small exponents mixed in.
private func edgyBF16(_ rng: inout Rand, _ n: Int) -> [UInt16] {
    (0..<n).map { _ in
        switch rng.next() % 16 {
        case 0: return 0x0000
        case 1: return 0x8000
        case 2: return UInt16(rng.next() % 0x7f) | (rng.next() % 2 == 0 ? 0 : 0x8000)   // bf16 denormal
        case 3: return 0x0080 | UInt16(rng.next() % 0x7f)                                  // smallest normals
        default: return hp_f32_to_bf16(rng.float() * 4)
        }
    }
}

/// The AMX GEMM's order for one output (alpha 1, beta 0, no epilogue): K zero-padded to 32; per k block of `kc`
/// a tile accumulator starts at 0 and takes one TDPBF16PS per 32 k; blocks are added into C in order.
private func amxGemmModel(m: Int, n: Int, k: Int, kc: Int, a: [UInt16], b: [UInt16]) -> [Float] {
    let kp = (k + 31) / 32 * 32
    var out = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var c: Float = 0
            for k0 in stride(from: 0, to: kp, by: kc) {
                var acc: Float = 0
                for s in stride(from: k0, to: min(k0 + kc, kp), by: 32) {
                    var te: Float = 0, to: Float = 0
                    for p in 0..<16 {
                        let k0e = s + 2 * p, k0o = s + 2 * p + 1
                        let ae = k0e < k ? a[i * k + k0e] : 0, ao = k0o < k ? a[i * k + k0o] : 0
                        let be = k0e < k ? b[k0e * n + j] : 0, bo = k0o < k ? b[k0o * n + j] : 0
                        te = ftz(te.addingProduct(daz(ae), daz(be)))
                        to = ftz(to.addingProduct(daz(ao), daz(bo)))
                    }
                    acc = ftz(ftz(acc) + ftz(te + to))
                }
                c = k0 == 0 ? acc : c + acc
            }
            out[i * n + j] = c
        }
    }
    return out
}

/// The shapes; 1000 appears in one dimension at a time to keep the emulated runs short.
private let amxShapes: [(Int, Int, Int)] = {
    let s = [1, 7, 15, 16, 17, 31, 33, 63, 65]
    var out: [(Int, Int, Int)] = []
    for (i, m) in s.enumerated() { out.append((m, s[(i + 3) % s.count], s[(i + 5) % s.count])) }
    out += [(1000, 17, 33), (16, 1000, 31), (7, 33, 1000), (65, 63, 1000), (33, 65, 63)]
    return out
}()

extension CPUKernelSuites {
@Suite struct AMXTests {
    @Test func emulatedTileInstructionMatchesTheSDMModelExactly() throws {
        _ = amxRunNote
        var rng = Rand(71)
        let real = hp_isa_supported(HP_ISA_AMX) != 0
        for trial in 0..<60 {
            let rows = [1, 16, 7, 15, 2][trial % 5], kp = [16, 1, 9, 16, 3][(trial / 5) % 5], np = [16, 5, 1, 16][trial % 4]
            let a = edgyBF16(&rng, rows * 2 * kp), b = edgyBF16(&rng, kp * 2 * np)
            var c0 = rng.floats(rows * np, scale: 3)
            if trial % 7 == 0 { c0[0] = Float(bitPattern: 0x0000_0042) }   // a denormal C input is treated as 0
            var want = c0
            tdpbf16psModel(rows: rows, kp: kp, np: np, c: &want, a: a, b: b)
            var got = c0
            #expect(hp_amx_tdpbf16ps_probe(0, Int32(rows), Int32(kp), Int32(np), &got, np, a, 2 * kp, b, 2 * np) == 0)
            #expect(bitsEqual(got, want), "emulated tdpbf16ps rows \(rows) k-pairs \(kp) n-pairs \(np) differs from the SDM model")
            if real {
                var hw = c0
                #expect(hp_amx_tdpbf16ps_probe(1, Int32(rows), Int32(kp), Int32(np), &hw, np, a, 2 * kp, b, 2 * np) == 0)
                #expect(bitsEqual(hw, got), "real tdpbf16ps rows \(rows) k-pairs \(kp) n-pairs \(np) differs from the emulation")
            }
        }
        #expect(hp_amx_selfcheck() == (real ? 1 : -1), "real AMX start-up probe vs emulation")
        if !real {
            var c: [Float] = [0]
            #expect(Int(hp_amx_tdpbf16ps_probe(1, 1, 1, 1, &c, 1, [0, 0], 2, [0, 0], 2)) == HP_EUNSUPPORTED)
        }
        #expect(Int(hp_amx_tdpbf16ps_probe(0, 17, 1, 1, nil, 1, nil, 2, nil, 2)) == HP_EINVAL)   // rows > 16
    }

    @Test func amxGemmFollowsItsModelExactlyAndTheReferenceClosely() throws {
        let kc = hp_gemm_kblock(HP_ISA_AMX_EMU, HP_BF16)
        try #require(kc > 0 && kc % 32 == 0)
        var rng = Rand(72)
        for isa in [HP_ISA_AMX_EMU, HP_ISA_AMX] where hp_isa_supported(isa) != 0 {
            #expect(hp_set_isa_override(isa) == 0)
            defer { _ = hp_set_isa_override(HP_ISA_AUTO) }
            let name = String(cString: hp_isa_name(isa))
            for (m, n, k) in amxShapes {
                let a = bf16(rng.floats(m * k)), b = bf16(rng.floats(k * n))
                var got = [Float](repeating: .nan, count: m * n), want = got
                #expect(hp_gemm_bf16(0, 0, m, n, k, 1, a, k, b, n, 0, &got, HP_F32, n, nil, HP_ACT_NONE) == 0)
                #expect(bitsEqual(got, amxGemmModel(m: m, n: n, k: k, kc: kc, a: a, b: b)),
                        "\(name) M\(m) N\(n) K\(k): not the AMX summation order")
                #expect(hp_gemm_bf16_ref(0, 0, m, n, k, 1, a, k, b, n, 0, &want, HP_F32, n, nil, HP_ACT_NONE) == 0)
                let worst = worstRatio(got, want, atol: 2e-6 * Float(k) + 1e-5, rtol: 1e-5)
                #expect(worst <= 1, "\(name) M\(m) N\(n) K\(k) vs the f64-accumulating reference: ratio \(worst)")
                // the same through the prepared-Linear path (W = Bᵀ packed once), bf16 output with an epilogue
                var w = [UInt16](repeating: 0, count: n * k)
                for kk in 0..<k { for j in 0..<n { w[j * k + kk] = b[kk * n + j] } }
                let bytes = hp_packed_weight_bytes(HP_BF16, n, k)
                let panels = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                defer { panels.deallocate() }
                var pw = hp_packed_weight()
                #expect(hp_pack_weight(HP_BF16, w, n, k, panels, &pw) == 0)
                let bias = rng.floats(n)
                var y = [UInt16](repeating: 0, count: m * n), yr = y
                #expect(hp_gemm_packed(m, a, k, &pw, &y, HP_BF16, n, bias, HP_ACT_GELU_TANH) == 0)
                #expect(hp_gemm_bf16_ref(0, 1, m, n, k, 1, a, k, w, k, 0, &yr, HP_BF16, n, bias, HP_ACT_GELU_TANH) == 0)
                let wb = worstRatio(f32(y), f32(yr), atol: 2e-6 * Float(k) + 1e-5, rtol: 8e-3)
                #expect(wb <= 1, "\(name) packed M\(m) N\(n) K\(k) bf16-out: ratio \(wb)")
                var back = [UInt16](repeating: 0, count: n * k)
                #expect(hp_unpack_weight(&pw, &back) == 0)
                #expect(back == w, "\(name) N\(n) K\(k): unpacking AMX panels is not exact")
            }
        }
    }

    @Test func amxFamilyIsBitIdenticalAcrossThreadCounts() {
        var rng = Rand(73)
        for isa in [HP_ISA_AMX_EMU, HP_ISA_AMX] where hp_isa_supported(isa) != 0 {
            #expect(hp_set_isa_override(isa) == 0)
            defer { _ = hp_set_isa_override(HP_ISA_AUTO) }
            for (m, n, k) in amxShapes where m * n * k >= 20_000 {
                let a = bf16(rng.floats(m * k)), b = bf16(rng.floats(n * k))
                func run() -> [Float] {
                    var c = [UInt16](repeating: 0, count: m * n)
                    _ = hp_gemm_bf16(0, 1, m, n, k, 1, a, k, b, k, 0, &c, HP_BF16, n, nil, HP_ACT_SILU)
                    return f32(c)
                }
                let one = withThreads(1) { run() }, two = withThreads(2) { run() }
                #expect(bitsEqual(one, two), "\(String(cString: hp_isa_name(isa))) M\(m) N\(n) K\(k): 1 vs 2 threads differ")
            }
        }
    }

    @Test func l2SizedBlockingDoesNotChangeResults() throws {
        var rng = Rand(74)
        let (m, n, k) = (700, 300, 900)
        let a = rng.floats(m * k), b = rng.floats(k * n), ah = bf16(a), bh = bf16(b)
        for isa in testedISAs() where isa != HP_ISA_AMX_EMU {   // (the emulated family is covered by its model test)
            #expect(hp_set_isa_override(isa) == 0)
            defer { _ = hp_set_isa_override(HP_ISA_AUTO); _ = hp_set_l2_blocking(isa, 0) }
            func run() -> [Float] {
                var c = [Float](repeating: 0, count: m * n), cb = c
                _ = hp_gemm_f32(0, 0, m, n, k, 1, a, k, b, n, 0, &c, n, nil, HP_ACT_NONE)
                _ = hp_gemm_bf16(0, 0, m, n, k, 1, ah, k, bh, n, 0, &cb, HP_F32, n, nil, HP_ACT_NONE)
                return c + cb
            }
            let base = run()
            for l2 in [2 << 20, 256 << 10, 32 << 20] {   // Sapphire Rapids' 2 MiB, a small and a huge L2
                #expect(hp_set_l2_blocking(isa, l2) == 0)
                #expect(bitsEqual(run(), base), "\(String(cString: hp_isa_name(isa))): L2 \(l2) blocking changed the result")
            }
        }
    }

    @Test func dispatchReportsAndScores() {
        #expect(hp_isa_supported(HP_ISA_AMX_EMU) != 0)
        #expect(hp_isa_auto_eligible(HP_ISA_AMX) == 0 && hp_isa_auto_eligible(HP_ISA_AMX_EMU) == 0)
        #expect(hp_selected_isa_id() != HP_ISA_AMX_EMU && hp_selected_isa_id() != HP_ISA_AMX)
        #expect(hp_isa_score(HP_ISA_AVX512_BF16) > hp_isa_score(HP_ISA_AVX512) || hp_isa_supported(HP_ISA_AVX512_BF16) == 0)
        let fam = String(cString: hp_kernel_op_family(HP_ISA_AMX_EMU, HP_KOP_GEMM_BF16))
        #expect(fam.hasPrefix("amx_emu") && fam.contains("emulated"))
        #expect(String(cString: hp_kernel_op_family(HP_ISA_AMX_EMU, HP_KOP_ATTN_BF16)).contains("tdpbf16ps"))
        if hp_isa_supported(HP_ISA_AMX) == 0 { #expect(hp_kernel_op_family(HP_ISA_AMX, HP_KOP_GEMM_BF16) == nil) }
        let info = hp_cpu_info_get()!.pointee
        #expect(info.l2 >= 0 && info.l1d >= 0)
    }
}
}
