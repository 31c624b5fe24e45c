// The numeric measurements of `evaluate` (Stages/EvaluateStage.swift), on plain models and sample batches:
// sampling latency (median of timed runs after untimed warm-ups), fidelity of final latents against a reference
// model's (`FidelityMetrics.mean`), and the flow-matching task loss on a dataset's clean latents.

import Foundation
import Models
import TensorCore

public enum SampleEvaluation {
    /// Median wall time of sampling one batch, per denoising step and per sample.
    public struct Latency: Sendable, Hashable {
        /// Milliseconds of each timed run, in order.
        public var runs: [Double]
        public var median: Double
        public var perStep: Double
        public var perSample: Double
    }

    /// Samples `batch` `warmup` times untimed, then `repeats` times timed (each result read back to the host, so
    /// the time includes waiting for the backend). `afterRun` runs after every run, timed or not, outside the timing.
    public static func latency(_ sampler: FlowMatchEulerSampler, _ model: any DiffusionTransformer, batch: SampleBatch,
                               imgIds: [Float]?, warmup: Int, repeats: Int, afterRun: () -> Void = {}) throws -> Latency {
        var times: [Double] = []
        for i in 0..<(warmup + repeats) {
            try Task.checkCancellation()
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try model.backend.floats(try sampler.sample(model, from: batch.noise, cond: batch.cond, uncond: batch.uncond, imgIds: imgIds))
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            if i >= warmup { times.append(dt) }
            afterRun()
        }
        let med = median(times)
        return Latency(runs: times, median: med, perStep: med / Double(sampler.steps), perSample: med / Double(batch.count))
    }

    /// The median (mean of the middle two for an even count); NaN when empty.
    public static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The flow-matching loss MSE(v(x_t, σ), noise − x₀) averaged over every sample and σ of `sigmas`, x_t on the
    /// path from the batches' clean latents (required) to their noise.
    public static func flowMatchLoss(_ model: any DiffusionTransformer, _ batches: SampleBatches, sigmas: [Float],
                                     imgIds: [Float]?) throws -> Double {
        let be = model.backend
        var total = 0.0, count = 0
        for i in 0..<batches.count {
            try Task.checkCancellation()
            let b = try batches.batch(i)
            guard let x0 = b.latents else {
                throw CompressionError("flow-matching loss", "batch \(i) has no clean latents", fix: "evaluate the task loss on a dataset with 'latents'")
            }
            let target = try FlowMatchPath.velocityTarget(noise: b.noise, clean: x0, backend: be)
            for s in sigmas {
                let v = try model.velocity(atSigma: s, noise: b.noise, clean: x0, cond: b.cond, imgIds: imgIds)
                total += Double(try be.floats(try be.mse(v, target))[0]) * Double(b.count)
                count += b.count
            }
        }
        return total / Double(max(1, count))
    }
}

/// What `evaluate` measures (its `metrics`).
public enum EvaluationMetric: String, Sendable, Hashable, CaseIterable, Decodable {
    /// Stored weight bytes by format, parameters, resident-memory growth.
    case memory
    /// `SampleEvaluation.latency`.
    case latency
    /// `FidelityMetrics.mean` of final latents against the reference model's.
    case fidelity
    /// `SampleEvaluation.flowMatchLoss` (and the classifier's task metrics).
    case task

    /// Whether it needs a dataset of prompt embeddings.
    public var needsData: Bool {
        switch self {
        case .memory: return false
        case .latency, .fidelity, .task: return true
        }
    }
}
