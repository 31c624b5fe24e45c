// Gradients of a loss w.r.t. the trainable parameters of a transformer, through the recording `Tape`, with
// optional block outputs (features for distillation losses). Frozen parameters (PWP) are constants on the
// tape: they get no gradient buffers, and the parts of the backward that only lead to them are skipped.
// Training computes in f32.

import ModelSpec
import TensorCore

/// The two streams a block outputs: context c (B,Lt,D) and image x (B,Li,D). For SD3's last
/// (context_pre_only) block the context is its unchanged input. FLUX single blocks: the joint sequence split.
public struct BlockOutputs: @unchecked Sendable {
    public var context: Tensor
    public var image: Tensor
}

/// A forward pass's output and the outputs of the requested blocks.
public struct ForwardTrace: @unchecked Sendable {
    public var output: Tensor
    /// Global block index → outputs (removed blocks are absent).
    public var blocks: [Int: BlockOutputs]
}

/// A loss value and its gradients w.r.t. the output and any block outputs (nil: no contribution).
public struct LossGradients: @unchecked Sendable {
    public var loss: Float
    public var output: Tensor?
    public var blocks: [Int: (context: Tensor?, image: Tensor?)]

    public init(loss: Float, output: Tensor?, blocks: [Int: (context: Tensor?, image: Tensor?)] = [:]) {
        self.loss = loss
        self.output = output
        self.blocks = blocks
    }
}

/// The result of one forward + backward pass.
public struct GradientResult: @unchecked Sendable {
    /// The loss value.
    public var loss: Float
    /// The model output (shaped like the inputs' hidden states).
    public var output: Tensor
    /// Parameter name → gradient (f32, the parameter's shape), for trainable parameters only.
    public var gradients: [String: Tensor]
}

extension DiffusionTransformer {
    /// Runs the forward pass on `tape`.
    func run(_ inputs: TransformerInputs, removing extra: Removal, tape: Tape) throws -> Var {
        if let m = self as? SD3Transformer { return try m.forward(inputs, removing: extra, check: InputCheck(), tape: tape) }
        if let m = self as? FluxTransformer { return try m.forward(inputs, removing: extra, check: InputCheck(), tape: tape) }
        throw ModelError(source: weights.source, message: "no tape forward for \(type(of: self))", fix: "use SD3Transformer or FluxTransformer")
    }

    /// Forward pass keeping the outputs of blocks `capture` (global indices); no gradients (a teacher's features).
    public func forwardTrace(_ inputs: TransformerInputs, removing extra: Removal = Removal(), capture: Set<Int>) throws -> ForwardTrace {
        let tape = Tape(weights: weights)
        tape.captureBlocks = capture
        let out = try run(inputs, removing: extra, tape: tape)
        return ForwardTrace(output: out.value, blocks: tape.captured.mapValues { BlockOutputs(context: $0.context.value, image: $0.image.value) })
    }

    /// Forward keeping blocks `capture`, then backward of the loss `loss` computes from the trace.
    ///
    /// `trainable` picks the parameters that get gradients (state_dict names; default all). Call
    /// `weights.requireFinite()` once before training: NaN/Inf weights are an error there, not here.
    public func gradients(_ inputs: TransformerInputs, removing extra: Removal = Removal(),
                          trainable: @escaping (String) -> Bool = { _ in true }, capture: Set<Int>,
                          loss: (ForwardTrace) throws -> LossGradients) throws -> GradientResult {
        guard weights.compute == .f32 else {
            throw ModelError(source: weights.source, message: "training needs f32 weights and compute", fix: "load the model with compute .f32")
        }
        let tape = Tape(weights: weights, recording: true, trainable: trainable)
        tape.captureBlocks = capture
        let out = try run(inputs, removing: extra, tape: tape)
        let trace = ForwardTrace(output: out.value, blocks: tape.captured.mapValues { BlockOutputs(context: $0.context.value, image: $0.image.value) })
        let l = try loss(trace)
        var seeds: [(Var, Tensor)] = []
        if let g = l.output { seeds.append((out, g)) }
        for (i, gs) in l.blocks {
            guard let v = tape.captured[i] else { continue }
            if let gc = gs.context { seeds.append((v.context, gc)) }
            if let gx = gs.image { seeds.append((v.image, gx)) }
        }
        return GradientResult(loss: l.loss, output: out.value, gradients: try tape.backward(seeds))
    }

    /// Forward, then backward of the loss that `lossGradient` computes from the output: (loss, dloss/doutput).
    public func gradients(_ inputs: TransformerInputs, removing extra: Removal = Removal(),
                          trainable: @escaping (String) -> Bool = { _ in true },
                          lossGradient: (Tensor) throws -> (Float, Tensor)) throws -> GradientResult {
        try gradients(inputs, removing: extra, trainable: trainable, capture: []) { trace in
            let (l, g) = try lossGradient(trace.output)
            return LossGradients(loss: l, output: g)
        }
    }

    /// Gradients of mean((output − target)²) (torch `mse_loss`).
    public func mseGradients(_ inputs: TransformerInputs, target: Tensor, removing extra: Removal = Removal(),
                             trainable: @escaping (String) -> Bool = { _ in true }) throws -> GradientResult {
        let be = backend
        return try gradients(inputs, removing: extra, trainable: trainable) { out in
            let loss = try be.floats(try be.mse(out, target))[0]
            return (loss, try be.mseBackward(out, target, dloss: 1))
        }
    }
}
