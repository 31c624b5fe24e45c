// Gradient checks: every backward op (and the ops whose backward is another op) against central finite
// differences of L = Σ r·f(x) on the reference backend, plus exact adjoint checks for the layout pairs.
import Foundation
import Testing
import TensorCore

/// Compares analytic gradients with central differences of L(inputs) = Σ_o Σ r_o · f_o(inputs).
///
/// `forward` maps inputs to outputs; `backward` maps (inputs, output gradients r) to one gradient per input.
func checkGradients(_ name: String, inputs: [[Float]], shapes: [[Int]], h: Float = 2e-3,
                    forward: ([Tensor]) throws -> [Tensor],
                    backward: ([Tensor], [Tensor]) throws -> [Tensor]) throws {
    let ref = ReferenceBackend()
    let xs = try zip(inputs, shapes).map { try ref.tensor($0, shape: $1) }
    let outs = try forward(xs)
    var r = Inputs(99)
    let rs = try outs.map { try ref.tensor(r.uniform($0.count), shape: $0.shape) }
    let rv = try rs.map { try ref.floats($0) }
    func loss(_ xs: [Tensor]) throws -> Double {
        try zip(try forward(xs), rv).reduce(0.0) { acc, pair in
            try zip(try ref.floats(pair.0), pair.1).reduce(acc) { $0 + Double($1.0) * Double($1.1) }
        }
    }
    let grads = try backward(xs, rs).map { try ref.floats($0) }
    #expect(grads.count == inputs.count, "\(name): one gradient per input")
    for (i, input) in inputs.enumerated() {
        for j in input.indices {
            var plus = inputs, minus = inputs
            plus[i][j] += h
            minus[i][j] -= h
            let lp = try loss(try zip(plus, shapes).map { try ref.tensor($0, shape: $1) })
            let lm = try loss(try zip(minus, shapes).map { try ref.tensor($0, shape: $1) })
            let numeric = (lp - lm) / Double(2 * h)
            let analytic = Double(grads[i][j])
            #expect(abs(numeric - analytic) <= 2e-3 + 1e-2 * abs(numeric),
                    "\(name): d input\(i)[\(j)] analytic \(analytic) vs numeric \(numeric)")
        }
    }
}

@Suite("Gradients vs finite differences (reference backend)")
struct GradientTests {
    let ref = ReferenceBackend()

    @Test("the checker itself catches a wrong gradient")
    func checkerCatchesErrors() throws {
        var r = Inputs(15)
        withKnownIssue {
            try checkGradients("gelu×1.1", inputs: [r.uniform(4, 0.5, 2)], shapes: [[4]],
                               forward: { [try ref.gelu($0[0])] },
                               backward: { [try ref.scale(try ref.geluBackward($1[0], $0[0]), 1.1)] })
        }
    }

    @Test func gelu() throws {
        var r = Inputs(1)
        try checkGradients("gelu", inputs: [r.uniform(12, -3, 3)], shapes: [[3, 4]],
                           forward: { [try ref.gelu($0[0])] }, backward: { [try ref.geluBackward($1[0], $0[0])] })
    }

    @Test func silu() throws {
        var r = Inputs(2)
        try checkGradients("silu", inputs: [r.uniform(12, -3, 3)], shapes: [[3, 4]],
                           forward: { [try ref.silu($0[0])] }, backward: { [try ref.siluBackward($1[0], $0[0])] })
    }

    @Test func modulate() throws {
        var r = Inputs(3)
        try checkGradients("modulate", inputs: [r.uniform(24), r.uniform(8), r.uniform(8)], shapes: [[2, 3, 4], [2, 4], [2, 4]],
                           forward: { [try ref.modulate($0[0], shift: $0[1], scale: $0[2])] },
                           backward: { x, dy in
                               let g = try ref.modulateBackward(dy[0], x[0], scale: x[2])
                               return [g.dx, g.dshift, g.dscale]
                           })
    }

    @Test func gateResidual() throws {
        var r = Inputs(4)
        try checkGradients("gateResidual", inputs: [r.uniform(24), r.uniform(8), r.uniform(24)],
                           shapes: [[2, 3, 4], [2, 4], [2, 3, 4]],
                           forward: { [try ref.gateResidual($0[0], gate: $0[1], $0[2])] },
                           backward: { x, dy in
                               let g = try ref.gateResidualBackward(dy[0], gate: x[1], x[2])
                               return [dy[0], g.dgate, g.dy]
                           })
    }

    @Test func rope() throws {
        var r = Inputs(5)
        let ang = r.uniform(6, -3, 3)
        let c = try ref.tensor(ang.map { Float(cos(Double($0))) }, shape: [3, 2])
        let s = try ref.tensor(ang.map { Float(sin(Double($0))) }, shape: [3, 2])
        try checkGradients("rope", inputs: [r.uniform(24)], shapes: [[2, 3, 4]],
                           forward: { [try ref.rope($0[0], cos: c, sin: s)] },
                           backward: { [try ref.ropeBackward($1[0], cos: c, sin: s)] })
    }

    @Test func layerNorm() throws {
        var r = Inputs(6)
        try checkGradients("layerNorm", inputs: [r.uniform(15, -2, 2)], shapes: [[3, 5]],
                           forward: { [try ref.layerNorm($0[0], eps: 1e-5).y] },
                           backward: { x, dy in
                               let f = try ref.layerNorm(x[0], eps: 1e-5)
                               return [try ref.layerNormBackward(dy[0], x[0], mean: f.mean, rstd: f.rstd)]
                           })
    }

    @Test func rmsNorm() throws {
        var r = Inputs(7)
        try checkGradients("rmsNorm", inputs: [r.uniform(15, -2, 2), r.uniform(5)], shapes: [[3, 5], [5]],
                           forward: { [try ref.rmsNorm($0[0], weight: $0[1], eps: 1e-5).y] },
                           backward: { x, dy in
                               let f = try ref.rmsNorm(x[0], weight: x[1], eps: 1e-5)
                               let g = try ref.rmsNormBackward(dy[0], x[0], weight: x[1], rstd: f.rstd)
                               return [g.dx, g.dweight!]
                           })
    }

    @Test func softmax() throws {
        var r = Inputs(8)
        try checkGradients("softmax", inputs: [r.uniform(15, -2, 2)], shapes: [[3, 5]],
                           forward: { [try ref.softmax($0[0])] },
                           backward: { x, dy in [try ref.softmaxBackward(dy[0], try ref.softmax(x[0]))] })
    }

    @Test func mse() throws {
        var r = Inputs(9)
        try checkGradients("mse", inputs: [r.uniform(10), r.uniform(10)], shapes: [[2, 5], [2, 5]],
                           forward: { [try ref.mse($0[0], $0[1])] },
                           backward: { x, dy in
                               let d = try ref.floats(dy[0])[0]
                               let da = try ref.mseBackward(x[0], x[1], dloss: d)
                               return [da, try ref.scale(da, -1)]
                           })
    }

    @Test func attention() throws {
        var r = Inputs(10)
        let shapes = [[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 4]]
        try checkGradients("attention", inputs: [r.uniform(24), r.uniform(40), r.uniform(40)], shapes: shapes,
                           forward: { [try ref.attention($0[0], $0[1], $0[2], scale: 0.5).out] },
                           backward: { x, dy in
                               let f = try ref.attention(x[0], x[1], x[2], scale: 0.5)
                               let g = try ref.attentionBackward(dy[0], x[0], x[1], x[2], out: f.out, lse: f.lse, scale: 0.5)
                               return [g.dq, g.dk, g.dv]
                           })
    }

    @Test func linear() throws {
        var r = Inputs(11)
        try checkGradients("linear", inputs: [r.uniform(12), r.uniform(10), r.uniform(5)], shapes: [[2, 3, 2], [5, 2], [5]],
                           forward: { [try ref.linear($0[0], weight: $0[1], bias: $0[2])] },
                           backward: { x, dy in
                               let g = try ref.linearBackward(dy[0], x[0], weight: x[1], hasBias: true)
                               return [g.dx, g.dweight, g.dbias!]
                           })
    }

    @Test("add with broadcast: the gradient of b is a sum over leading axes")
    func addBroadcast() throws {
        var r = Inputs(12)
        try checkGradients("add", inputs: [r.uniform(12), r.uniform(4)], shapes: [[3, 4], [4]],
                           forward: { [try ref.add($0[0], $0[1])] },
                           backward: { [$1[0], try ref.sum($1[0], axes: [0])] })
    }

    @Test("mul with broadcast and scale")
    func mulScale() throws {
        var r = Inputs(13)
        try checkGradients("mul", inputs: [r.uniform(12), r.uniform(4)], shapes: [[3, 4], [4]],
                           forward: { [try ref.scale(try ref.mul($0[0], $0[1]), 1.5)] },
                           backward: { x, dy in
                               let g = try ref.scale(dy[0], 1.5)
                               return [try ref.mul(g, x[1]), try ref.sum(try ref.mul(g, x[0]), axes: [0])]
                           })
    }

    @Test("layout pairs are adjoint: <f(x), y> = <x, f*(y)>")
    func layoutAdjoints() throws {
        var r = Inputs(14)
        func dot(_ a: Tensor, _ b: Tensor) throws -> Double {
            try zip(try ref.floats(a), try ref.floats(b)).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        let x = try ref.tensor(r.uniform(2 * 3 * 4 * 6), shape: [2, 3, 4, 6])
        for order in PatchOrder.allCases {
            let y = try ref.tensor(r.uniform(2 * 6 * 12), shape: [2, 6, 12])
            let px = try ref.patchify(x, patch: 2, order: order)
            let uy = try ref.unpatchify(y, patch: 2, channels: 3, height: 2, width: 3, order: order)
            #expect(abs(try dot(px, y) - dot(x, uy)) < 1e-9)
            #expect(try ref.floats(try ref.unpatchify(px, patch: 2, channels: 3, height: 2, width: 3, order: order)) == ref.floats(x))
        }
        let perm = [2, 0, 3, 1]
        let inverse = perm.indices.map { perm.firstIndex(of: $0)! }
        #expect(try ref.floats(try ref.transpose(try ref.transpose(x, perm), inverse)) == ref.floats(x))
        let parts = try ref.split(x, axis: 2, sizes: [1, 3])
        #expect(try ref.floats(try ref.concat(parts, axis: 2)) == ref.floats(x))
    }
}
