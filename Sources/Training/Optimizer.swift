// AdamW over the trainable parameters of a model, with per-parameter learning-rate multipliers (SGDistill),
// global-norm clipping, and state that can be saved and restored exactly (checkpoints). Moments exist only
// for trainable parameters; everything else costs no optimiser memory.

import Models
import TensorCore

/// AdamW (torch.optim.AdamW semantics, via the backend's `adamw`) whose state can be exported and restored.
public final class ScaledAdamW: @unchecked Sendable {
    public let weights: WeightStore
    public let settings: OptimizerSettings
    public let trainable: TrainableParameters
    /// Updates applied so far (the AdamW bias-correction step count).
    public private(set) var stepCount = 0
    private var moments: [String: (m: Tensor, v: Tensor)] = [:]

    public init(weights: WeightStore, settings: OptimizerSettings, trainable: TrainableParameters) {
        self.weights = weights
        self.settings = settings
        self.trainable = trainable
    }

    /// The gradients' global L2 norm (no change to them).
    public func gradientNorm(_ gradients: [String: Tensor]) throws -> Double {
        var s = 0.0
        for g in gradients.values { for x in try weights.backend.floats(g) { s += Double(x) * Double(x) } }
        return s.squareRoot()
    }

    /// Clips `gradients` (global norm `gradClip`) and applies one update at 0-based schedule `step` of `totalSteps`.
    /// Gradients of names that are not trainable are ignored. Returns the norm before clipping.
    /// - Throws: `TrainingError.nonFinite` (nothing updated) when the gradient norm is NaN or ±Inf.
    @discardableResult
    public func step(_ gradients: [String: Tensor], step: Int, totalSteps: Int) throws -> Double {
        let be = weights.backend
        let names = gradients.keys.filter { trainable.contains($0) }.sorted()
        let norm: Double
        if let clip = settings.gradClip {
            norm = Double(try be.clipGradNorm(names.compactMap { gradients[$0] }, maxNorm: Float(clip)))
        } else {
            norm = try gradientNorm(gradients.filter { trainable.contains($0.key) })
        }
        guard norm.isFinite else { throw TrainingError.nonFinite(step: step, what: "gradient norm", value: norm) }
        stepCount += 1
        for n in names {
            guard let g = gradients[n], let mult = trainable.multipliers[n] else { continue }
            var p = try weights(n)
            if p.storage.isReadOnly || p.dtype != .f32 {
                p = try be.cast(p, to: .f32)                 // a writable f32 copy (mapped weights are read-only)
                weights.set(n, p)
            }
            let state = try moments[n] ?? (try be.zeros(p.shape, dtype: .f32), try be.zeros(p.shape, dtype: .f32))
            moments[n] = state
            try be.adamw(param: p, grad: g, m: state.m, v: state.v, step: stepCount,
                         config: settings.adamw(step: step, totalSteps: totalSteps, multiplier: mult))
        }
        return norm
    }

    /// Names with optimiser state, sorted.
    public var stateNames: [String] { moments.keys.sorted() }

    /// (m, v) of `name` as f32 values, if it has state.
    public func moments(of name: String) throws -> (m: [Float], v: [Float])? {
        guard let s = moments[name] else { return nil }
        return (try weights.backend.floats(s.m), try weights.backend.floats(s.v))
    }

    /// Restores the step count and moments (shapes are the parameters').
    public func restore(stepCount: Int, moments saved: [String: (m: [Float], v: [Float])]) throws {
        let be = weights.backend
        self.stepCount = stepCount
        moments = [:]
        for (n, s) in saved {
            let shape = try weights(n).shape
            moments[n] = (try be.tensor(s.m, shape: shape), try be.tensor(s.v, shape: shape))
        }
    }
}
