// Fused attention: forward on every ISA against the scalar reference (f32 and bf16, odd lengths, strided
// views), the reference backward against finite differences, and the fast backward against the reference.
import CPUKernels
import Testing

/// Attention inputs in [B,H,L,D] (or a [B,L,H,D] view when `interleaved`), kept alive with their pointers.
struct AttnCase: CustomStringConvertible {
    var b, h, lq, lk, d: Int
    var interleaved = false
    var description: String { "B\(b) H\(h) Lq\(lq) Lk\(lk) D\(d)\(interleaved ? " [B,L,H,D]" : "")" }
    var qCount: Int { b * h * lq * d }
    var kCount: Int { b * h * lk * d }

    /// Arguments with the strides of the chosen layout; pointers are filled by the caller.
    func args(_ dtype: hp_dtype) -> hp_attn_args {
        var a = hp_attn_args()
        a.B = b; a.H = h; a.Lq = lq; a.Lk = lk; a.D = d
        a.scale = 1 / Float(d).squareRoot()
        a.dtype = dtype
        if interleaved {  // element (b, h, l, d) at b*L*H*D + l*H*D + h*D + d
            a.q_sb = lq * h * d; a.q_sh = d; a.q_sl = h * d
            a.k_sb = lk * h * d; a.k_sh = d; a.k_sl = h * d
            a.v_sb = lk * h * d; a.v_sh = d; a.v_sl = h * d
            a.o_sb = lq * h * d; a.o_sh = d; a.o_sl = h * d
        }
        return a
    }
}

/// Runs forward (fast or reference) on f32 data; returns (O, lse).
func attnForward(_ c: AttnCase, _ q: [Float], _ k: [Float], _ v: [Float], ref: Bool) -> ([Float], [Float], Int32) {
    var o = [Float](repeating: 0, count: c.qCount), lse = [Float](repeating: 0, count: c.b * c.h * c.lq)
    let rc: Int32 = q.withUnsafeBytes { qp in
        k.withUnsafeBytes { kp in
            v.withUnsafeBytes { vp in
                o.withUnsafeMutableBytes { op in
                    lse.withUnsafeMutableBufferPointer { lp in
                        var a = c.args(HP_F32)
                        a.q = qp.baseAddress; a.k = kp.baseAddress; a.v = vp.baseAddress; a.o = op.baseAddress
                        a.lse = lp.baseAddress
                        return ref ? hp_attention_forward_ref(&a) : hp_attention_forward(&a)
                    }
                }
            }
        }
    }
    return (o, lse, rc)
}

func attnBackward(_ c: AttnCase, _ q: [Float], _ k: [Float], _ v: [Float], _ o: [Float], _ lse: [Float],
                  _ dout: [Float], ref: Bool) -> ([Float], [Float], [Float], Int32) {
    var dq = [Float](repeating: 0, count: c.qCount), dk = [Float](repeating: 0, count: c.kCount), dv = dk
    var lseM = lse
    let rc: Int32 = q.withUnsafeBytes { qp in
        k.withUnsafeBytes { kp in
            v.withUnsafeBytes { vp in
                o.withUnsafeBytes { op in
                    dout.withUnsafeBytes { dop in
                        dq.withUnsafeMutableBytes { dqp in
                            dk.withUnsafeMutableBytes { dkp in
                                dv.withUnsafeMutableBytes { dvp in
                                    lseM.withUnsafeMutableBufferPointer { lp in
                                        var a = c.args(HP_F32)
                                        a.q = qp.baseAddress; a.k = kp.baseAddress; a.v = vp.baseAddress
                                        a.o = UnsafeMutableRawPointer(mutating: op.baseAddress); a.lse = lp.baseAddress
                                        a.dout = dop.baseAddress; a.dq = dqp.baseAddress; a.dk = dkp.baseAddress
                                        a.dv = dvp.baseAddress
                                        return ref ? hp_attention_backward_ref(&a) : hp_attention_backward(&a)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return (dq, dk, dv, rc)
}

let attnCases: [AttnCase] = [
    AttnCase(b: 1, h: 1, lq: 1, lk: 1, d: 8), AttnCase(b: 1, h: 2, lq: 7, lk: 9, d: 16),
    AttnCase(b: 2, h: 1, lq: 65, lk: 63, d: 64), AttnCase(b: 1, h: 1, lq: 63, lk: 1000, d: 64),
    AttnCase(b: 1, h: 2, lq: 33, lk: 250, d: 40, interleaved: true), AttnCase(b: 1, h: 1, lq: 130, lk: 7, d: 72),
    AttnCase(b: 1, h: 1, lq: 9, lk: 11, d: 5), AttnCase(b: 1, h: 1, lq: 250, lk: 300, d: 130),
]

extension CPUKernelSuites {
@Suite struct AttentionTests {
    @Test func forwardMatchesReferenceOnEveryISA() throws {
        var rng = Rand(21)
        try forEachISA { isa in
            for c in attnCases {
                let q = rng.floats(c.qCount, scale: 2), k = rng.floats(c.kCount, scale: 2), v = rng.floats(c.kCount)
                let (o, lse, rc) = attnForward(c, q, k, v, ref: false)
                let (ro, rlse, rr) = attnForward(c, q, k, v, ref: true)
                try #require(rc == 0 && rr == 0)
                #expect(worstRatio(o, ro, atol: 2e-6, rtol: 1e-4) <= 1, "\(isa) \(c) O")
                #expect(worstRatio(lse, rlse, atol: 2e-6, rtol: 1e-5) <= 1, "\(isa) \(c) lse")
            }
        }
    }

    @Test func bf16ForwardMatchesReferenceOnEveryISA() throws {
        var rng = Rand(22)
        try forEachISA { isa in
            for c in attnCases {
                let q = bf16(rng.floats(c.qCount, scale: 2)), k = bf16(rng.floats(c.kCount, scale: 2))
                let v = bf16(rng.floats(c.kCount))
                var o = [UInt16](repeating: 0, count: c.qCount), ro = o
                var lse = [Float](repeating: 0, count: c.b * c.h * c.lq), rlse = lse
                func run(_ out: inout [UInt16], _ l: inout [Float], _ ref: Bool) -> Int32 {
                    q.withUnsafeBytes { qp in k.withUnsafeBytes { kp in v.withUnsafeBytes { vp in
                        out.withUnsafeMutableBytes { op in l.withUnsafeMutableBufferPointer { lp in
                            var a = c.args(HP_BF16)
                            a.q = qp.baseAddress; a.k = kp.baseAddress; a.v = vp.baseAddress; a.o = op.baseAddress
                            a.lse = lp.baseAddress
                            return ref ? hp_attention_forward_ref(&a) : hp_attention_forward(&a)
                        } } } } }
                }
                try #require(run(&o, &lse, false) == 0 && run(&ro, &rlse, true) == 0)
                // Outputs are rounded to bf16 once on each side; kernels may round P to bf16 as well.
                #expect(worstRatio(f32(o), f32(ro), atol: 4e-3, rtol: 1.6e-2) <= 1, "\(isa) \(c) O")
                #expect(worstRatio(lse, rlse, atol: 1e-3, rtol: 1e-3) <= 1, "\(isa) \(c) lse")
            }
        }
    }

    @Test func referenceBackwardMatchesFiniteDifferences() throws {
        // loss = Σ O ∘ G; dloss/dx by central differences in double-ish precision (small sizes, f32 steps).
        var rng = Rand(23)
        let c = AttnCase(b: 1, h: 1, lq: 3, lk: 4, d: 5)
        let q = rng.floats(c.qCount), k = rng.floats(c.kCount), v = rng.floats(c.kCount), g = rng.floats(c.qCount)
        let (o, lse, _) = attnForward(c, q, k, v, ref: true)
        let (dq, dk, dv, rc) = attnBackward(c, q, k, v, o, lse, g, ref: true)
        try #require(rc == 0)
        func loss(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
            let (o, _, _) = attnForward(c, q, k, v, ref: true)
            return zip(o, g).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let h: Float = 1e-2
        for i in 0..<c.qCount {
            var qp = q, qm = q; qp[i] += h; qm[i] -= h
            let fd = (loss(qp, k, v) - loss(qm, k, v)) / Double(2 * h)
            #expect(abs(fd - Double(dq[i])) < 2e-3, "dq[\(i)] \(dq[i]) vs \(fd)")
        }
        for i in 0..<c.kCount {
            var kp = k, km = k; kp[i] += h; km[i] -= h
            let fdk = (loss(q, kp, v) - loss(q, km, v)) / Double(2 * h)
            #expect(abs(fdk - Double(dk[i])) < 2e-3, "dk[\(i)] \(dk[i]) vs \(fdk)")
            var vp = v, vm = v; vp[i] += h; vm[i] -= h
            let fdv = (loss(q, k, vp) - loss(q, k, vm)) / Double(2 * h)
            #expect(abs(fdv - Double(dv[i])) < 2e-3, "dv[\(i)] \(dv[i]) vs \(fdv)")
        }
    }

    @Test func bf16BackwardMatchesReference() throws {
        var rng = Rand(25)
        let c = AttnCase(b: 1, h: 2, lq: 33, lk: 40, d: 16, interleaved: true)
        let q = bf16(rng.floats(c.qCount)), k = bf16(rng.floats(c.kCount)), v = bf16(rng.floats(c.kCount))
        let g = bf16(rng.floats(c.qCount))
        let (o, lse, _) = attnForward(c, f32(q), f32(k), f32(v), ref: true)
        let oh = bf16(o)
        func run(_ ref: Bool) -> ([UInt16], [UInt16], [UInt16], Int32) {
            var dq = [UInt16](repeating: 0, count: c.qCount), dk = [UInt16](repeating: 0, count: c.kCount), dv = dk
            var l = lse
            let rc: Int32 = q.withUnsafeBytes { qp in k.withUnsafeBytes { kp in v.withUnsafeBytes { vp in
                oh.withUnsafeBytes { op in g.withUnsafeBytes { gp in dq.withUnsafeMutableBytes { dqp in
                    dk.withUnsafeMutableBytes { dkp in dv.withUnsafeMutableBytes { dvp in l.withUnsafeMutableBufferPointer { lp in
                        var a = c.args(HP_BF16)
                        a.q = qp.baseAddress; a.k = kp.baseAddress; a.v = vp.baseAddress
                        a.o = UnsafeMutableRawPointer(mutating: op.baseAddress); a.lse = lp.baseAddress
                        a.dout = gp.baseAddress; a.dq = dqp.baseAddress; a.dk = dkp.baseAddress; a.dv = dvp.baseAddress
                        return ref ? hp_attention_backward_ref(&a) : hp_attention_backward(&a)
                    } } } } } } } } }
            return (dq, dk, dv, rc)
        }
        let (dq, dk, dv, rc) = run(false)
        let (rdq, rdk, rdv, rr) = run(true)
        try #require(rc == 0 && rr == 0)
        #expect(worstRatio(f32(dq), f32(rdq), atol: 1e-4, rtol: 8e-3) <= 1, "dq")
        #expect(worstRatio(f32(dk), f32(rdk), atol: 1e-4, rtol: 8e-3) <= 1, "dk")
        #expect(worstRatio(f32(dv), f32(rdv), atol: 1e-4, rtol: 8e-3) <= 1, "dv")
        // The bf16 path is the f32 backward on the bf16 inputs, rounded once.
        let (fdq, _, _, _) = attnBackward(c, f32(q), f32(k), f32(v), f32(oh), lse, f32(g), ref: false)
        #expect(dq == bf16(fdq))
    }

    @Test func backwardMatchesReferenceOnEveryISA() throws {
        var rng = Rand(24)
        try forEachISA { isa in
            for c in attnCases where c.lk < 1000 {
                let q = rng.floats(c.qCount, scale: 2), k = rng.floats(c.kCount, scale: 2), v = rng.floats(c.kCount)
                let g = rng.floats(c.qCount)
                let (o, lse, _) = attnForward(c, q, k, v, ref: true)
                let (dq, dk, dv, rc) = attnBackward(c, q, k, v, o, lse, g, ref: false)
                let (rdq, rdk, rdv, rr) = attnBackward(c, q, k, v, o, lse, g, ref: true)
                try #require(rc == 0 && rr == 0)
                let atol = 1e-5 * Float(max(c.lq, c.lk)).squareRoot()
                #expect(worstRatio(dq, rdq, atol: atol, rtol: 1e-4) <= 1, "\(isa) \(c) dq")
                #expect(worstRatio(dk, rdk, atol: atol, rtol: 1e-4) <= 1, "\(isa) \(c) dk")
                #expect(worstRatio(dv, rdv, atol: atol, rtol: 1e-4) <= 1, "\(isa) \(c) dv")
            }
        }
    }
}
}
