// A small reverse-mode tape over the backend's forward/backward op pairs. The model code runs every op through
// a `Tape`; when it is not recording (inference) ops are plain backend calls with fused epilogues, when it is,
// each op keeps what its backward needs and `backward` walks the ops in reverse. Frozen parameters are
// constants: no gradient buffers, and ops whose inputs are all constants are not recorded at all.
//
// Dimension legend: as in Layers.swift.

import TensorCore

/// A value on the tape: a tensor and, when it depends on a trainable parameter, its node.
public struct Var: @unchecked Sendable {
    public let value: Tensor
    let node: Int?

    public var shape: [Int] { value.shape }
    public var rank: Int { value.rank }
}

/// Records ops for reverse-mode differentiation (or just runs them when `recording` is false).
public final class Tape: @unchecked Sendable {
    public let backend: any Backend
    public let weights: WeightStore
    public let recording: Bool
    /// Whether a parameter gets a gradient (PWP freezes the rest).
    let trainable: (String) -> Bool

    private struct Node {
        var inputs: [Int?]
        /// Gradients of the inputs from the output gradient (nil where not needed).
        var backward: ((Tensor) throws -> [Tensor?])?
        var parameter: String?
    }
    private var nodes: [Node] = []
    private var leaves: [String: Var] = [:]
    /// Blocks whose outputs are kept (global index), and the kept outputs: (context, image) streams.
    var captureBlocks: Set<Int> = []
    var captured: [Int: (context: Var, image: Var)] = [:]
    /// Gradient checkpointing: blocks run without keeping activations and are recomputed in the backward.
    var checkpointBlocks = false

    /// An inference tape (nothing recorded).
    public convenience init(weights: WeightStore) {
        self.init(weights: weights, recording: false, trainable: { _ in false })
    }

    public init(weights: WeightStore, recording: Bool, trainable: @escaping (String) -> Bool) {
        self.backend = weights.backend
        self.weights = weights
        self.recording = recording
        self.trainable = trainable
    }

    var be: any Backend { backend }
    var compute: ComputeDType { weights.compute }

    // ── leaves ──────────────────────────────────────────────────────────────────────────────────

    /// A constant (input, buffer, frozen parameter).
    public func constant(_ t: Tensor) -> Var { Var(value: t, node: nil) }

    /// The parameter `name` from the weight store: a leaf when recording and trainable, else a constant.
    public func param(_ name: String) throws -> Var {
        if let v = leaves[name] { return v }
        if recording, trainable(name), weights.isPacked(name) { throw Self.packedBackwardError(name, source: weights.source) }
        let t = try weights(name)
        guard recording, trainable(name) else { return constant(t) }
        nodes.append(Node(inputs: [], backward: nil, parameter: name))
        let v = Var(value: t, node: nodes.count - 1)
        leaves[name] = v
        return v
    }

    /// Optional parameter (a bias that may be absent).
    func optionalParam(_ name: String) throws -> Var? { weights.contains(name) ? try param(name) : nil }

    /// Records `value` computed from `inputs`; `back` maps the output gradient to the inputs' gradients.
    func record(_ value: Tensor, _ inputs: [Var?], _ back: @escaping (Tensor) throws -> [Tensor?]) -> Var {
        guard recording, inputs.contains(where: { $0?.node != nil }) else { return Var(value: value, node: nil) }
        nodes.append(Node(inputs: inputs.map { $0?.node }, backward: back, parameter: nil))
        return Var(value: value, node: nodes.count - 1)
    }

    // ── backward ────────────────────────────────────────────────────────────────────────────────

    /// Back-propagates `seed` (the gradient of the loss w.r.t. `output`); returns parameter name → gradient.
    public func backward(_ output: Var, seed: Tensor) throws -> [String: Tensor] {
        try backward([(output, seed)])
    }

    /// Back-propagates several seeds at once (an output loss plus feature losses); seeds of constants are ignored.
    public func backward(_ seeds: [(Var, Tensor)]) throws -> [String: Tensor] {
        var grads: [Int: Tensor] = [:]
        for (v, s) in seeds {
            guard let n = v.node else { continue }
            grads[n] = try grads[n].map { try be.add($0, s) } ?? s
        }
        guard let top = grads.keys.max() else { return [:] }
        var result: [String: Tensor] = [:]
        for id in stride(from: top, through: 0, by: -1) {
            guard let g = grads.removeValue(forKey: id) else { continue }
            let n = nodes[id]
            if let p = n.parameter { result[p] = g; continue }
            guard let back = n.backward else { continue }
            let gs = try back(g)
            for (input, gi) in zip(n.inputs, gs) {
                guard let input, let gi else { continue }
                grads[input] = try grads[input].map { try be.add($0, gi) } ?? gi
            }
            nodes[id].backward = nil   // free the saved activations
        }
        return result
    }

    // ── gradient checkpointing ──────────────────────────────────────────────────────────────────

    /// Runs `body` (a block) without keeping its activations; the backward recomputes it on a recording
    /// sub-tape. `inputs` are the block's inputs, `parameterPrefix` names its parameters (`transformer_blocks.3.`).
    func checkpointed(_ inputs: [Var], parameterPrefix: String, _ body: @escaping (Tape, [Var]) throws -> [Var]) throws -> [Var] {
        let outputs = try body(Tape(weights: weights), inputs.map { constant($0.value) }).map(\.value)
        guard recording else { return outputs.map(constant) }
        let params = try weights.names.filter { $0.hasPrefix(parameterPrefix) && trainable($0) }.map { try param($0) }
        let ins = inputs + params
        guard ins.contains(where: { $0.node != nil }) else { return outputs.map(constant) }
        final class Box { var grads: [Tensor?] = [] }
        let box = Box()
        box.grads = Array(repeating: nil, count: outputs.count)
        let token = try be.zeros([1], dtype: .f32)
        let inputValues = inputs.map(\.value), store = self.weights, isTrainable = self.trainable
        let paramNames = params.map { nodes[$0.node!].parameter! }
        // The anchor: its backward recomputes the block and returns the gradients of inputs and parameters.
        let anchor = record(token, ins) { _ in
            let sub = Tape(weights: store, recording: true, trainable: isTrainable)
            let leaves = inputValues.enumerated().map { sub.inputLeaf($0.element, index: $0.offset) }
            let outs = try body(sub, leaves)
            let seeds = zip(outs, box.grads).compactMap { o, g in g.map { (o, $0) } }
            let g = try sub.backward(seeds)
            return inputValues.indices.map { g[Tape.inputLeafName($0)] } + paramNames.map { g[$0] }
        }
        return outputs.enumerated().map { k, value in
            record(value, [anchor]) { dy in
                box.grads[k] = dy
                return [token]
            }
        }
    }

    static func inputLeafName(_ i: Int) -> String { "\u{0}input.\(i)" }

    /// A leaf standing for a checkpointed block's input (its gradient is returned under `inputLeafName`).
    func inputLeaf(_ t: Tensor, index: Int) -> Var {
        nodes.append(Node(inputs: [], backward: nil, parameter: Tape.inputLeafName(index)))
        return Var(value: t, node: nodes.count - 1)
    }

    // ── ops (forward with their backward) ───────────────────────────────────────────────────────

    /// y = x·Wᵀ + b, then the activation. x (…,K), weight (N,K), bias (N) → (…,N).
    /// In bf16 compute x is cast to the weight's dtype (inference only; the backward is f32).
    func linear(_ x: Var, _ w: Var, _ b: Var?, activation: Activation = .none) throws -> Var {
        let xin = x.value.dtype == w.value.dtype ? x.value : try be.cast(x.value, to: w.value.dtype)
        guard recording, x.node != nil || w.node != nil || b?.node != nil else {
            return constant(try be.linear(xin, weight: w.value, bias: b?.value, activation: activation))
        }
        let pre = try be.linear(xin, weight: w.value, bias: b?.value)
        let lin = record(pre, [x, w, b]) { [be] dy in
            let r = try be.linearBackward(dy, x.value, weight: w.value, hasBias: b != nil)
            return [x.node != nil ? r.dx : nil, r.dweight, r.dbias]
        }
        switch activation {
        case .none: return lin
        case .geluTanh: return try gelu(lin)
        case .silu: return try silu(lin)
        }
    }

    /// y = x·Wᵀ + b, then the activation, with a 4-bit weight (W4A16): x (…,K), w (N,K) packed, bias (N) → (…,N).
    /// `Backend.matmulW4A16` dequantises the weight inside the kernel. In bf16 compute x is cast to bf16 first.
    /// Inference only: a packed weight cannot be trained, and gradients do not flow through it (both throw).
    func linear(_ x: Var, packed w: Packed4BitWeight, name: String, _ b: Var?, activation: Activation = .none) throws -> Var {
        if recording, trainable(name) {
            throw Self.packedBackwardError(name, source: weights.source)
        }
        let xin = compute == .bf16 && x.value.dtype == .f32 ? try be.cast(x.value, to: .bf16) : x.value
        let y = try be.matmulW4A16(xin, w, bias: b?.value, activation: activation)
        guard recording, x.node != nil || b?.node != nil else { return constant(y) }
        let source = weights.source
        return record(y, [x, b]) { _ in throw Self.packedBackwardError(name, source: source) }
    }

    /// y = x·Wᵀ + b, then the activation, with a weight prepared in the backend's GEMM layout (inference only):
    /// x (…,K), w (N,K), bias (N) → (…,N). Gradients cannot flow through it (throws when one is needed).
    /// `output` bf16 (for a result that only feeds another bf16 Linear) gives the bits a cast of the f32 result would.
    func linear(_ x: Var, prepared w: PreparedLinearWeight, name: String, _ b: Var?, activation: Activation = .none,
                output: DType = .f32) throws -> Var {
        if recording, trainable(name) || x.node != nil || b?.node != nil {
            throw ModelError(source: weights.source, subject: name,
                             message: "cannot back-propagate through a weight prepared for inference",
                             fix: "do not call prepareForInference() on a model that is trained or differentiated")
        }
        return constant(try be.linear(x.value, prepared: w, bias: b?.value, activation: activation, output: output))
    }

    /// The error for a backward (or training) through a 4-bit packed weight.
    static func packedBackwardError(_ name: String, source: String) -> ModelError {
        ModelError(source: source, subject: name,
                   message: "cannot back-propagate through a 4-bit quantised weight (W4A16 is inference only)",
                   fix: "train or distill the model before the quantise stage, then quantise the result")
    }

    func gelu(_ x: Var) throws -> Var {
        record(try be.gelu(x.value), [x]) { [be] dy in [try be.geluBackward(dy, x.value)] }
    }

    func silu(_ x: Var) throws -> Var {
        record(try be.silu(x.value), [x]) { [be] dy in [try be.siluBackward(dy, x.value)] }
    }

    /// a + b with b's shape a suffix of a's.
    func add(_ a: Var, _ b: Var) throws -> Var {
        record(try be.add(a.value, b.value), [a, b]) { [be] dy in
            let lead = a.rank - b.rank
            return [dy, lead == 0 ? dy : try be.sum(dy, axes: Array(0..<lead)).reshaped(b.shape)]
        }
    }

    func scale(_ x: Var, _ s: Float) throws -> Var {
        record(try be.scale(x.value, s), [x]) { [be] dy in [try be.scale(dy, s)] }
    }

    /// LayerNorm eps 1e-6, no affine, over the last axis.
    func layerNorm(_ x: Var) throws -> Var {
        let r = try be.layerNorm(x.value, eps: 1e-6)
        return record(r.y, [x]) { [be] dy in [try be.layerNormBackward(dy, x.value, mean: r.mean, rstd: r.rstd)] }
    }

    /// RMSNorm eps 1e-6 with a scale over the last axis.
    func rmsNorm(_ x: Var, weight: Var) throws -> Var {
        let r = try be.rmsNorm(x.value, weight: weight.value, eps: 1e-6)
        return record(r.y, [x, weight]) { [be] dy in
            let g = try be.rmsNormBackward(dy, x.value, weight: weight.value, rstd: r.rstd)
            return [g.dx, g.dweight]
        }
    }

    /// x (B,L,D)·(1+scale)+shift with shift, scale (B,D).
    func modulate(_ x: Var, shift: Var, scale: Var) throws -> Var {
        record(try be.modulate(x.value, shift: shift.value, scale: scale.value), [x, shift, scale]) { [be] dy in
            let g = try be.modulateBackward(dy, x.value, scale: scale.value)
            return [g.dx, g.dshift, g.dscale]
        }
    }

    /// residual (B,L,D) + gate (B,D)·y (B,L,D).
    func gateResidual(_ r: Var, gate: Var, _ y: Var) throws -> Var {
        record(try be.gateResidual(r.value, gate: gate.value, y.value), [r, gate, y]) { [be] dy in
            let g = try be.gateResidualBackward(dy, gate: gate.value, y.value)
            return [dy, g.dgate, g.dy]
        }
    }

    func reshape(_ x: Var, _ shape: [Int]) -> Var {
        let old = x.shape
        return record(x.value.reshaped(shape), [x]) { dy in [dy.reshaped(old)] }
    }

    func transpose(_ x: Var, _ perm: [Int]) throws -> Var {
        var inv = perm
        for (i, p) in perm.enumerated() { inv[p] = i }
        return record(try be.transpose(x.value, perm), [x]) { [be] dy in [try be.transpose(dy, inv)] }
    }

    func concat(_ xs: [Var], axis: Int) throws -> Var {
        let sizes = xs.map { $0.shape[axis] }
        return record(try be.concat(xs.map(\.value), axis: axis), xs) { [be] dy in try be.split(dy, axis: axis, sizes: sizes) }
    }

    func slice(_ x: Var, axis: Int, start: Int, length: Int) throws -> Var {
        let shape = x.shape
        return record(try be.slice(x.value, axis: axis, start: start, length: length), [x]) { [be] dy in
            var parts: [Tensor] = []
            var s = shape
            if start > 0 { s[axis] = start; parts.append(try be.zeros(s, dtype: .f32)) }
            parts.append(dy)
            let after = shape[axis] - start - length
            if after > 0 { s[axis] = after; parts.append(try be.zeros(s, dtype: .f32)) }
            return [parts.count == 1 ? dy : try be.concat(parts, axis: axis)]
        }
    }

    func chunk(_ x: Var, _ count: Int, axis: Int) throws -> [Var] {
        let n = x.shape[axis] / count
        return try (0..<count).map { try slice(x, axis: axis, start: $0 * n, length: n) }
    }

    func rope(_ x: Var, _ t: RopeTables) throws -> Var {
        record(try be.rope(x.value, cos: t.cos, sin: t.sin), [x]) { [be] dy in [try be.ropeBackward(dy, cos: t.cos, sin: t.sin)] }
    }

    func patchify(_ x: Var, patch: Int) throws -> Var {
        let s = x.shape
        return record(try be.patchify(x.value, patch: patch, order: .channelFirst), [x]) { [be] dy in
            [try be.unpatchify(dy, patch: patch, channels: s[1], height: s[2] / patch, width: s[3] / patch, order: .channelFirst)]
        }
    }

    func unpatchify(_ x: Var, patch: Int, channels: Int, height: Int, width: Int) throws -> Var {
        record(try be.unpatchify(x.value, patch: patch, channels: channels, height: height, width: width, order: .channelLast), [x]) { [be] dy in
            [try be.patchify(dy, patch: patch, order: .channelLast)]
        }
    }

    /// Softmax(q·kᵀ/√Dh)·v with heads merged: q, k, v (B,H,L,Dh) → (B,L,D).
    func attention(_ q: Var, _ k: Var, _ v: Var) throws -> Var {
        let b = q.shape[0], h = q.shape[1], l = q.shape[2], dh = q.shape[3]
        let scale = 1 / Float(dh).squareRoot()
        let o: Var
        if compute == .bf16 && !recording {
            let r = try be.attention(try be.cast(q.value, to: .bf16), try be.cast(k.value, to: .bf16), try be.cast(v.value, to: .bf16), scale: scale)
            o = constant(try be.cast(r.out, to: .f32))
        } else {
            let r = try be.attention(q.value, k.value, v.value, scale: scale)                // (B,H,L,Dh)
            o = record(r.out, [q, k, v]) { [be] dy in
                let g = try be.attentionBackward(dy, q.value, k.value, v.value, out: r.out, lse: r.lse, scale: scale)
                return [g.dq, g.dk, g.dv]
            }
        }
        return reshape(try transpose(o, [0, 2, 1, 3]), [b, l, h * dh])
    }
}
