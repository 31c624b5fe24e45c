// The adaLN-modulated MLP block of the TensorCore overview, forward and backward, written only with Backend ops:
// checked against finite differences (reference) and run on the CPU backend against the reference.
import CPUBackend
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
