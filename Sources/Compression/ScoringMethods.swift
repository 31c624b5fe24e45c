// The criteria of HierarchicalPrune's sensitivity scoring and its baselines, named as recipes name them
// (`score`'s `method` and `metric`), and what every built-in scorer runs on: a model, the calibration batches,
// the sampler and the noise levels of the single-pass criteria. The scorers themselves: RemovalScorer.swift
// (remove, additive), BlockCosineScorer.swift (KOALA cosine), TaylorScorer.swift (Diff-Pruning Taylor).

import Foundation
import ModelSpec
import Models
import TensorCore

/// How ΔP of a component is found (`score`'s `method`).
public enum ScoreMethod: String, Sendable, Hashable, CaseIterable, Decodable {
    /// HierarchicalPrune: remove the component, re-measure the `ScoreMetric` against the unpruned model.
    case remove
    /// KOALA: 1 − cos(block input, block output); whole blocks only.
    case cosine
    /// Diff-Pruning: Σ|w·∂L/∂w| over the component's parameters, L the flow-matching loss.
    case taylor
    /// LAPTOP-Diff one-shot: the velocity MSE of removing the component alone.
    case additive
}

/// What `remove` compares with the unpruned model (`score`'s `metric`).
public enum ScoreMetric: String, Sendable, Hashable, CaseIterable, Decodable {
    /// MSE of final sampled latents.
    case sampleMSE = "sample-mse"
    /// 100 dB − PSNR of final sampled latents.
    case psnr
    /// 1 − cosine similarity of final sampled latents.
    case cosine
    /// MSE of the velocities of one forward pass per noise level.
    case velocityMSE = "velocity-mse"
    /// P from an outside quality scorer (higher is better); ΔP = P_baseline − P.
    case external

    /// The distance of the outputs from the unpruned model's; nil for `external` (a program gives P).
    public var distance: OutputDistance? {
        switch self {
        case .sampleMSE, .velocityMSE: return .mse
        case .psnr: return .psnr
        case .cosine: return .cosine
        case .external: return nil
        }
    }

    /// Whether the compared outputs are final samples (all but `velocity-mse`; `external` scores samples).
    public var comparesSamples: Bool {
        switch self {
        case .sampleMSE, .psnr, .cosine, .external: return true
        case .velocityMSE: return false
        }
    }
}

/// Forward passes run (each classifier-free-guidance half counts), shared by the copies of a scorer.
public final class ForwardCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    public init() {}
    public func add(_ k: Int) { lock.withLock { n += k } }
    public var value: Int { lock.withLock { n } }
}

/// What a built-in scorer runs on.
public struct ScoringData {
    public var model: any DiffusionTransformer
    public var batches: SampleBatches
    /// The sampler of the sample metrics, and of x₀ for batches without clean latents.
    public var sampler: FlowMatchEulerSampler
    /// Noise levels σ of the single-pass criteria (velocity metric, block cosine).
    public var sigmas: [Float]
    /// FLUX image position ids (Li·3); nil for SD3.
    public var imgIds: [Float]?
    public let passes: ForwardCounter

    public init(model: any DiffusionTransformer, batches: SampleBatches, sampler: FlowMatchEulerSampler, sigmas: [Float],
                imgIds: [Float]?, passes: ForwardCounter = ForwardCounter()) {
        self.model = model
        self.batches = batches
        self.sampler = sampler
        self.sigmas = sigmas
        self.imgIds = imgIds
        self.passes = passes
    }

    /// x₀ of a batch for the single-pass criteria: its clean latents, else the unpruned model's sample from its noise.
    public func cleanLatents(_ b: SampleBatch) throws -> Tensor {
        if let x = b.latents { return x }
        passes.add(sampler.forwardPasses(uncond: b.uncond))
        return try sampler.sample(model, from: b.noise, cond: b.cond, uncond: b.uncond, imgIds: imgIds)
    }
}
