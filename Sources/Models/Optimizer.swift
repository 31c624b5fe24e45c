// AdamW over a model's weight store with global-norm gradient clipping. Moments exist only for parameters
// that actually receive gradients (frozen parameters cost no optimizer memory); memory-mapped weights are
// copied into writable storage the first time they are updated.

import TensorCore

/// AdamW (torch.optim.AdamW semantics, via the backend's `adamw`) on the parameters of a `WeightStore`.
///
///     let opt = AdamWOptimizer(weights: model.weights, config: AdamWConfig(learningRate: 1e-4, weightDecay: 1e-4))
///     let r = try model.mseGradients(inputs, target: target, trainable: { !frozen.contains($0) })
///     let norm = try opt.step(r.gradients, maxGradNorm: 1.0)
public final class AdamWOptimizer: @unchecked Sendable {
    public let weights: WeightStore
    public var config: AdamWConfig
    /// Number of steps taken.
    public private(set) var stepCount = 0
    private var moments: [String: (m: Tensor, v: Tensor)] = [:]

    public init(weights: WeightStore, config: AdamWConfig) {
        self.weights = weights
        self.config = config
    }

    /// Names of parameters with optimizer state.
    public var stateNames: [String] { moments.keys.sorted() }

    /// Clips the gradients in place to `maxGradNorm` (global L2, when given), then updates every parameter that has one.
    /// Returns the gradient norm before clipping (0 when not clipping).
    @discardableResult
    public func step(_ gradients: [String: Tensor], maxGradNorm: Float? = nil) throws -> Float {
        let be = weights.backend
        let names = gradients.keys.sorted()
        var norm: Float = 0
        if let maxGradNorm {
            norm = try be.clipGradNorm(names.map { gradients[$0]! }, maxNorm: maxGradNorm)
        }
        stepCount += 1
        for n in names {
            var p = try weights(n)
            if p.storage.isReadOnly || p.dtype != .f32 {
                p = try be.cast(p, to: .f32)                 // a writable f32 copy (mapped weights are read-only)
                weights.set(n, p)
            }
            let state = try moments[n] ?? (try be.zeros(p.shape, dtype: .f32), try be.zeros(p.shape, dtype: .f32))
            moments[n] = state
            try be.adamw(param: p, grad: gradients[n]!, m: state.m, v: state.v, step: stepCount, config: config)
        }
        return norm
    }
}
