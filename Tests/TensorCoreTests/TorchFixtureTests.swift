// PyTorch fixtures (Tests/Fixtures/ops, float64 torch results): the reference and CPU backends against an
// implementation written by someone else — GELU-tanh, SiLU, LayerNorm, RMSNorm, softmax, SDPA (+ backward),
// AdamW and clip_grad_norm_.
import CPUBackend
import Foundation
import Testing
import TensorCore

/// The decoded fixture file.
struct TorchFixture {
    let cases: [String: [String: Any]]

    static func load() throws -> TorchFixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/ops/ops.json").standardizedFileURL
        let root = try JSONSerialization.jsonObject(with: try Data(contentsOf: url)) as? [String: Any]
        return TorchFixture(cases: root?["cases"] as? [String: [String: Any]] ?? [:])
    }

    func floats(_ c: String, _ key: String) -> [Float] {
        ((cases[c]?[key] as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.floatValue }
    }
    func ints(_ c: String, _ key: String) -> [Int] {
        ((cases[c]?[key] as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.intValue }
    }
    func number(_ c: String, _ key: String) -> Float { (cases[c]?[key] as? NSNumber)?.floatValue ?? .nan }
}

/// Expects `got` ≈ `want` elementwise.
func expectClose(_ got: [Float], _ want: [Float], rtol: Float = 1e-5, atol: Float = 1e-5, _ what: String) {
    #expect(got.count == want.count && !want.isEmpty, "\(what): \(got.count) values, expected \(want.count)")
    for i in 0..<min(got.count, want.count) where !(abs(got[i] - want[i]) <= atol + rtol * abs(want[i])) {
        Issue.record("\(what)[\(i)]: got \(got[i]), torch \(want[i])")
        return
    }
}

@Suite("PyTorch fixtures")
struct TorchFixtureTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend()]

    @Test("activations, norms, softmax", arguments: backends.indices)
    func rowOps(_ i: Int) throws {
        let be = Self.backends[i], fx = try TorchFixture.load()
        let x = try be.tensor(fx.floats("gelu", "x"), shape: fx.ints("gelu", "shape"))
        expectClose(try be.floats(try be.gelu(x)), fx.floats("gelu", "y"), "\(be.name) gelu")
        expectClose(try be.floats(try be.silu(x)), fx.floats("silu", "y"), "\(be.name) silu")

        let lx = try be.tensor(fx.floats("layer_norm", "x"), shape: fx.ints("layer_norm", "shape"))
        let ln = try be.layerNorm(lx, eps: 1e-6)
        expectClose(try be.floats(ln.y), fx.floats("layer_norm", "y"), "\(be.name) layer_norm")
        let ldy = try be.tensor(fx.floats("layer_norm", "dy"), shape: lx.shape)
        expectClose(try be.floats(try be.layerNormBackward(ldy, lx, mean: ln.mean, rstd: ln.rstd)),
                    fx.floats("layer_norm", "dx"), rtol: 1e-4, atol: 1e-4, "\(be.name) layer_norm dx")

        let rx = try be.tensor(fx.floats("rms_norm", "x"), shape: fx.ints("rms_norm", "shape"))
        let rw = try be.tensor(fx.floats("rms_norm", "w"), shape: [rx.lastDim])
        let rn = try be.rmsNorm(rx, weight: rw, eps: 1e-6)
        expectClose(try be.floats(rn.y), fx.floats("rms_norm", "y"), "\(be.name) rms_norm")
        let rg = try be.rmsNormBackward(try be.tensor(fx.floats("rms_norm", "dy"), shape: rx.shape), rx, weight: rw, rstd: rn.rstd)
        expectClose(try be.floats(rg.dx), fx.floats("rms_norm", "dx"), rtol: 1e-4, atol: 1e-4, "\(be.name) rms_norm dx")
        expectClose(try be.floats(rg.dweight!), fx.floats("rms_norm", "dw"), rtol: 1e-4, atol: 1e-4, "\(be.name) rms_norm dw")

        let sx = try be.tensor(fx.floats("softmax", "x"), shape: fx.ints("softmax", "shape"))
        expectClose(try be.floats(try be.softmax(sx)), fx.floats("softmax", "y"), "\(be.name) softmax")
    }

    @Test("scaled dot-product attention forward and backward", arguments: backends.indices)
    func attention(_ i: Int) throws {
        let be = Self.backends[i], fx = try TorchFixture.load(), c = "attention"
        let q = try be.tensor(fx.floats(c, "q"), shape: fx.ints(c, "q_shape"))
        let k = try be.tensor(fx.floats(c, "k"), shape: fx.ints(c, "kv_shape"))
        let v = try be.tensor(fx.floats(c, "v"), shape: fx.ints(c, "kv_shape"))
        let scale = fx.number(c, "scale")
        let f = try be.attention(q, k, v, scale: scale)
        expectClose(try be.floats(f.out), fx.floats(c, "o"), "\(be.name) attention out")
        expectClose(try be.floats(f.lse), fx.floats(c, "lse"), "\(be.name) attention lse")
        let g = try be.attentionBackward(try be.tensor(fx.floats(c, "do"), shape: q.shape), q, k, v, out: f.out,
                                         lse: f.lse, scale: scale)
        expectClose(try be.floats(g.dq), fx.floats(c, "dq"), rtol: 1e-4, atol: 1e-4, "\(be.name) dq")
        expectClose(try be.floats(g.dk), fx.floats(c, "dk"), rtol: 1e-4, atol: 1e-4, "\(be.name) dk")
        expectClose(try be.floats(g.dv), fx.floats(c, "dv"), rtol: 1e-4, atol: 1e-4, "\(be.name) dv")
    }

    @Test("AdamW three steps and clip_grad_norm_ match torch.optim", arguments: backends.indices)
    func optimizer(_ i: Int) throws {
        let be = Self.backends[i], fx = try TorchFixture.load(), c = "adamw"
        let shape = fx.ints(c, "shape")
        let p = try be.tensor(fx.floats(c, "p0"), shape: shape)
        let m = try be.zeros(shape, dtype: .f32), v = try be.zeros(shape, dtype: .f32)
        let cfg = AdamWConfig(learningRate: fx.number(c, "lr"), weightDecay: fx.number(c, "wd"))
        let grads = (fx.cases[c]?["grads"] as? [[NSNumber]] ?? []).map { $0.map(\.floatValue) }
        #expect(grads.count == 3)
        for (step, g) in grads.enumerated() {
            try be.adamw(param: p, grad: try be.tensor(g, shape: shape), m: m, v: v, step: step + 1, config: cfg)
        }
        expectClose(try be.floats(p), fx.floats(c, "p"), rtol: 1e-5, atol: 1e-6, "\(be.name) adamw p")
        expectClose(try be.floats(m), fx.floats(c, "m"), rtol: 1e-5, atol: 1e-7, "\(be.name) adamw m")
        expectClose(try be.floats(v), fx.floats(c, "v"), rtol: 1e-5, atol: 1e-8, "\(be.name) adamw v")

        let a = try be.tensor(fx.floats("clip", "a"), shape: [4, 9]), b = try be.tensor(fx.floats("clip", "b"), shape: [11])
        let norm = try be.clipGradNorm([a, b], maxNorm: fx.number("clip", "max_norm"))
        #expect(abs(norm - fx.number("clip", "norm")) < 1e-4)
        expectClose(try be.floats(a), fx.floats("clip", "a_clipped"), "\(be.name) clipped a")
        expectClose(try be.floats(b), fx.floats("clip", "b_clipped"), "\(be.name) clipped b")
    }
}
