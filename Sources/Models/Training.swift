// Gradients of a loss w.r.t. the trainable parameters of a transformer, through the recording `Tape`.
// Frozen parameters (PWP) are constants on the tape: they get no gradient buffers, and the parts of the
// backward that only lead to them are skipped. Training computes in f32.

import ModelSpec
import TensorCore

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
    /// Forward, then backward of the loss that `lossGradient` computes from the output.
    ///
    /// `lossGradient` maps the output to (loss, dloss/doutput). `trainable` picks the parameters that get
    /// gradients (state_dict names; default all).
    public func gradients(_ inputs: TransformerInputs, removing extra: Removal = Removal(),
                          trainable: @escaping (String) -> Bool = { _ in true },
                          lossGradient: (Tensor) throws -> (Float, Tensor)) throws -> GradientResult {
        guard weights.compute == .f32 else {
            throw ModelError(source: weights.source, message: "training needs f32 weights and compute", fix: "load the model with compute .f32")
        }
        let tape = Tape(weights: weights, recording: true, trainable: trainable)
        let out: Var
        if let m = self as? SD3Transformer {
            out = try m.forward(inputs, removing: extra, check: InputCheck(), tape: tape)
        } else if let m = self as? FluxTransformer {
            out = try m.forward(inputs, removing: extra, check: InputCheck(), tape: tape)
        } else {
            throw ModelError(source: weights.source, message: "no backward for \(type(of: self))", fix: "use SD3Transformer or FluxTransformer")
        }
        let (loss, seed) = try lossGradient(out.value)
        return GradientResult(loss: loss, output: out.value, gradients: try tape.backward(out, seed: seed))
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
