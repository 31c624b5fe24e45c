// Learning-rate schedules and the optimiser settings of the training loops (`distill`, `train`):
// AdamW hyper-parameters, gradient clipping, and a warmup + decay factor applied to the base rate each step.

import Foundation
import TensorCore

/// How the learning rate changes over the run: a linear warmup, then constant, cosine or linear decay.
public struct LearningRateSchedule: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable, Decodable {
        /// lr after warmup.
        case constant
        /// lr · ½(1 + cos(π·p)) after warmup, p the fraction of the post-warmup steps done (reaches 0 at the end).
        case cosine
        /// lr · (1 − p) after warmup (reaches 0 at the end).
        case linear
    }

    public var kind: Kind
    /// Steps of linear warmup: step s (0-based) < warmup uses lr · (s+1)/warmup.
    public var warmupSteps: Int

    public init(_ kind: Kind = .constant, warmupSteps: Int = 0) {
        self.kind = kind
        self.warmupSteps = max(0, warmupSteps)
    }

    /// The factor on the base learning rate at 0-based `step` of `totalSteps`.
    public func factor(step: Int, totalSteps: Int) -> Double {
        if step < warmupSteps { return Double(step + 1) / Double(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let p = min(1, Double(step - warmupSteps) / Double(span))
        switch kind {
        case .constant: return 1
        case .cosine: return 0.5 * (1 + cos(Double.pi * p))
        case .linear: return 1 - p
        }
    }
}

/// Optimiser settings shared by every training loop. Defaults: the official HierarchicalPrune code
/// (AdamW β 0.9/0.999, weight decay 1e-4, eps 1e-8, lr 1e-4 constant, gradient clipping at global norm 1.0).
public struct OptimizerSettings: Sendable, Hashable {
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var weightDecay: Double
    public var eps: Double
    /// Global L2 norm the gradients are clipped to before the update; nil: no clipping.
    public var gradClip: Double?
    public var schedule: LearningRateSchedule

    public init(learningRate: Double = 1e-4, beta1: Double = 0.9, beta2: Double = 0.999, weightDecay: Double = 1e-4,
                eps: Double = 1e-8, gradClip: Double? = 1.0, schedule: LearningRateSchedule = LearningRateSchedule()) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.weightDecay = weightDecay
        self.eps = eps
        self.gradClip = gradClip
        self.schedule = schedule
    }

    /// The backend's AdamW config for one parameter at a step: base lr × schedule factor × `multiplier`.
    func adamw(step: Int, totalSteps: Int, multiplier: Double) -> AdamWConfig {
        AdamWConfig(learningRate: Float(learningRate * schedule.factor(step: step, totalSteps: totalSteps) * multiplier),
                    beta1: Float(beta1), beta2: Float(beta2), eps: Float(eps), weightDecay: Float(weightDecay))
    }
}
