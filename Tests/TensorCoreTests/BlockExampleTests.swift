// Blocks written only with Backend ops, as the models will write them: the overview's adaLN MLP block (forward and
// backward, finite-difference checked) and SD3/FLUX-style joint attention; CPU against the reference.
import CPUBackend
import Foundation
import Testing
import TensorCore

/// x (B,L,D), ada (B,3D) → y (B,L,D); and the backward returning dx, dada, dw1.
struct MLPBlock {
    let w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor     // (4D,D), (4D), (D,4D), (D)

    func forward(_ be: any Backend, _ x: Tensor, _ ada: Tensor) throws -> Tensor {
        let (shift, scale, gate) = try chunks(be, ada)
        let n = try be.layerNorm(x, eps: 1e-6).y
        let a = try be.gelu(try be.linear(try be.modulate(n, shift: shift, scale: scale), weight: w1, bias: b1))
        return try be.gateResidual(x, gate: gate, try be.linear(a, weight: w2, bias: b2))
    }

    func chunks(_ be: any Backend, _ ada: Tensor) throws -> (Tensor, Tensor, Tensor) {
        let c = try be.chunk(ada, 3, axis: -1)
        return (c[0], c[1], c[2])
    }

    func backward(_ be: any Backend, _ x: Tensor, _ ada: Tensor, _ dy: Tensor) throws -> (dx: Tensor, dada: Tensor, dw1: Tensor) {
        let (shift, scale, gate) = try chunks(be, ada)
        let (n, mean, rstd) = try be.layerNorm(x, eps: 1e-6)
        let m = try be.modulate(n, shift: shift, scale: scale)
        let h = try be.linear(m, weight: w1, bias: b1)
        let a = try be.gelu(h)
        let f = try be.linear(a, weight: w2, bias: b2)
        let (df, dgate) = try be.gateResidualBackward(dy, gate: gate, f)
        let g2 = try be.linearBackward(df, a, weight: w2, hasBias: true)
        let dh = try be.geluBackward(g2.dx, h)
        let g1 = try be.linearBackward(dh, m, weight: w1, hasBias: true)
        let (dn, dshift, dscale) = try be.modulateBackward(g1.dx, n, scale: scale)
        let dx = try be.add(dy, try be.layerNormBackward(dn, x, mean: mean, rstd: rstd))
        return (dx, try be.concat([dshift, dscale, dgate], axis: -1), g1.dweight)
    }
}

@Suite("Overview example: an adaLN MLP block")
struct BlockExampleTests {
    static let (b, l, d) = (2, 3, 4)

    static func block(_ be: any Backend) throws -> MLPBlock {
        var r = Inputs(40)
        return MLPBlock(w1: try be.tensor(r.uniform(4 * d * d), shape: [4 * d, d]), b1: try be.tensor(r.uniform(4 * d), shape: [4 * d]),
                        w2: try be.tensor(r.uniform(4 * d * d), shape: [d, 4 * d]), b2: try be.tensor(r.uniform(d), shape: [d]))
    }

    @Test("gradients of x, the modulation vector and w1 match finite differences")
    func gradients() throws {
        let ref = ReferenceBackend()
        let blk = try Self.block(ref)
        var r = Inputs(41)
        let (b, l, d) = (Self.b, Self.l, Self.d)
        try checkGradients("mlp block", inputs: [r.uniform(b * l * d, -2, 2), r.uniform(b * 3 * d), try ref.floats(blk.w1)],
                           shapes: [[b, l, d], [b, 3 * d], [4 * d, d]],
                           forward: { xs in
                               let m = MLPBlock(w1: xs[2], b1: blk.b1, w2: blk.w2, b2: blk.b2)
                               return [try m.forward(ref, xs[0], xs[1])]
                           },
                           backward: { xs, dy in
                               let m = MLPBlock(w1: xs[2], b1: blk.b1, w2: blk.w2, b2: blk.b2)
                               let g = try m.backward(ref, xs[0], xs[1], dy[0])
                               return [g.dx, g.dada, g.dw1]
                           })
    }

    @Test("the CPU backend runs the same block like the reference")
    func cpuMatches() throws {
        let ref = ReferenceBackend(), cpu = CPUBackend()
        let blk = try Self.block(ref)
        var r = Inputs(42)
        let (b, l, d) = (Self.b, Self.l, Self.d)
        let x = try ref.tensor(r.uniform(b * l * d, -2, 2), shape: [b, l, d]), ada = try ref.tensor(r.uniform(b * 3 * d), shape: [b, 3 * d])
        let dy = try ref.tensor(r.uniform(b * l * d), shape: [b, l, d])
        let want = try ref.backward(x, ada, dy, blk), got = try cpu.backward(x, ada, dy, blk)
        for (name, g, w) in zip3(["dx", "dada", "dw1"], got, want) {
            #expect(mismatch(["v": try cpu.floats(g)], ["v": try ref.floats(w)], .contraction) == nil, "\(name)")
        }
        #expect(mismatch(["y": try cpu.floats(try blk.forward(cpu, x, ada))], ["y": try ref.floats(try blk.forward(ref, x, ada))],
                         .contraction) == nil)
    }
}

extension Backend {
    fileprivate func backward(_ x: Tensor, _ ada: Tensor, _ dy: Tensor, _ blk: MLPBlock) throws -> [Tensor] {
        let g = try blk.backward(self, x, ada, dy)
        return [g.dx, g.dada, g.dw1]
    }
}

private func zip3<A, B, C>(_ a: [A], _ b: [B], _ c: [C]) -> [(A, B, C)] {
    (0..<min(a.count, b.count, c.count)).map { (a[$0], b[$0], c[$0]) }
}

/// Joint attention as in SD3/FLUX blocks: per-stream q/k/v projections, heads split, RMSNorm on q and k over the
/// head dim, RoPE, the streams concatenated along the sequence, fused attention, split back, heads merged.
/// x (B,Lx,D), c (B,Lc,D) → (out_x (B,Lx,D), out_c (B,Lc,D)).
struct JointAttention {
    let heads: Int
    let wq: Tensor, wk: Tensor, wv: Tensor, cq: Tensor, ck: Tensor, cv: Tensor   // (D,D) each
    let normQ: Tensor, normK: Tensor                                               // (Dh)

    func heads(_ be: any Backend, _ t: Tensor) throws -> Tensor {                  // (B,L,D) → (B,H,L,Dh)
        try be.transpose(t.reshaped([t.shape[0], t.shape[1], heads, -1]), [0, 2, 1, 3])
    }

    func forward(_ be: any Backend, _ x: Tensor, _ c: Tensor, cos: Tensor, sin: Tensor) throws -> [Tensor] {
        let (b, lx, lc, d) = (x.shape[0], x.shape[1], c.shape[1], x.shape[2])
        func qk(_ t: Tensor, _ w: Tensor, _ norm: Tensor) throws -> Tensor {
            try be.rmsNorm(try heads(be, try be.linear(t, weight: w, bias: nil)), weight: norm, eps: 1e-6).y
        }
        let q = try be.rope(try be.concat([qk(x, wq, normQ), qk(c, cq, normQ)], axis: 2), cos: cos, sin: sin)
        let k = try be.rope(try be.concat([qk(x, wk, normK), qk(c, ck, normK)], axis: 2), cos: cos, sin: sin)
        let v = try be.concat([heads(be, try be.linear(x, weight: wv, bias: nil)),
                               heads(be, try be.linear(c, weight: cv, bias: nil))], axis: 2)
        let o = try be.attention(q, k, v, scale: 1 / Float(d / heads).squareRoot()).out      // (B,H,Lx+Lc,Dh)
        let merged = try be.transpose(o, [0, 2, 1, 3]).reshaped([b, lx + lc, d])
        return try be.split(merged, axis: 1, sizes: [lx, lc])
    }
}

@Suite("Joint attention from Backend ops")
struct JointAttentionTests {
    @Test("CPU matches the reference on a 2-head joint attention with qk-norm and RoPE")
    func cpuMatches() throws {
        let ref = ReferenceBackend(), cpu = CPUBackend()
        var r = Inputs(50)
        let (b, lx, lc, d, h) = (2, 5, 3, 8, 2)
        let w = try (0..<6).map { _ in try ref.tensor(r.uniform(d * d), shape: [d, d]) }
        let att = JointAttention(heads: h, wq: w[0], wk: w[1], wv: w[2], cq: w[3], ck: w[4], cv: w[5],
                                 normQ: try ref.tensor(r.uniform(d / h, 0.5, 1.5), shape: [d / h]),
                                 normK: try ref.tensor(r.uniform(d / h, 0.5, 1.5), shape: [d / h]))
        let ang = r.uniform((lx + lc) * d / h / 2, -3, 3)
        let cos = try ref.tensor(ang.map { Foundation.cos($0) }, shape: [lx + lc, d / h / 2])
        let sin = try ref.tensor(ang.map { Foundation.sin($0) }, shape: [lx + lc, d / h / 2])
        let x = try ref.tensor(r.uniform(b * lx * d), shape: [b, lx, d]), c = try ref.tensor(r.uniform(b * lc * d), shape: [b, lc, d])
        let want = try att.forward(ref, x, c, cos: cos, sin: sin), got = try att.forward(cpu, x, c, cos: cos, sin: sin)
        #expect(want.map(\.shape) == [[b, lx, d], [b, lc, d]])
        for i in 0..<2 {
            #expect(mismatch(["o": try cpu.floats(got[i])], ["o": try ref.floats(want[i])], .contraction) == nil)
        }
    }
}
