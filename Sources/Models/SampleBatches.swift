// A fixed set of samples to draw or score, batch by batch: each batch's initial noise (fixed per sample), its text
// conditioning (and the unconditional one for classifier-free guidance) and, when the dataset has them, its clean
// latents x₀. The stages build one from a dataset file (Stages/Datasets.swift); scoring and evaluation
// (Compression) read it. Batches are made on demand, so only one batch's tensors need be alive at a time, and
// making a batch again gives the same tensors (the noise comes from a seed).

import ModelSpec
import TensorCore

/// One batch of B samples.
public struct SampleBatch: @unchecked Sendable {
    /// (B,…) initial noise in the model's latent layout (SD3 (B,C,H,W), FLUX packed (B,Li,C)).
    public var noise: Tensor
    public var cond: Conditioning
    /// The unconditional (negative-prompt) conditioning; nil without classifier-free guidance.
    public var uncond: Conditioning?
    /// (B,…) clean latents x₀ shaped like `noise`; nil when the dataset has none (or they were not asked for).
    public var latents: Tensor?

    public init(noise: Tensor, cond: Conditioning, uncond: Conditioning? = nil, latents: Tensor? = nil) {
        self.noise = noise
        self.cond = cond
        self.uncond = uncond
        self.latents = latents
    }

    public var count: Int { noise.shape[0] }
    /// Values per sample of a latent (C·H·W, or Li·C).
    public var valuesPerSample: Int { noise.shape.dropFirst().reduce(1, *) }
}

/// The batches of a sample set, in order.
public struct SampleBatches {
    /// Samples per batch.
    public let sizes: [Int]
    private let make: (Int) throws -> SampleBatch

    /// `make(i)` builds batch i (of `sizes[i]` samples), the same every time it is called.
    public init(sizes: [Int], make: @escaping (Int) throws -> SampleBatch) {
        self.sizes = sizes
        self.make = make
    }

    /// Batches already in memory.
    public init(_ batches: [SampleBatch]) {
        self.init(sizes: batches.map(\.count)) { batches[$0] }
    }

    public var count: Int { sizes.count }
    public var sampleCount: Int { sizes.reduce(0, +) }

    public func batch(_ i: Int) throws -> SampleBatch { try make(i) }

    /// Splits a batch's flattened outputs (B·per values, sample-major) into one array per sample.
    public static func perSample(_ values: [Float], count: Int) -> [[Float]] {
        let per = values.count / max(1, count)
        return (0..<count).map { Array(values[($0 * per)..<(($0 + 1) * per)]) }
    }
}

extension FlowMatchEulerSampler {
    /// Forward passes one `sample` call runs: `steps`, twice each with classifier-free guidance.
    public func forwardPasses(uncond: Conditioning?) -> Int {
        steps * (guidanceScale > 1 && uncond != nil ? 2 : 1)
    }

    /// Final latents of every sample of `batches` (each from its batch's noise and conditioning), flattened per
    /// sample, in order. `extra` removes further components for these passes only; `afterBatch` runs after each
    /// batch is sampled (e.g. to count passes or probe memory).
    public func sampleAll(_ model: any DiffusionTransformer, _ batches: SampleBatches, imgIds: [Float]?,
                          removing extra: Removal = Removal(), afterBatch: (SampleBatch) -> Void = { _ in }) throws -> [[Float]] {
        var out: [[Float]] = []
        for i in 0..<batches.count {
            try Task.checkCancellation()
            let b = try batches.batch(i)
            let x = try model.backend.floats(try sample(model, from: b.noise, cond: b.cond, uncond: b.uncond, imgIds: imgIds, removing: extra))
            out += SampleBatches.perSample(x, count: b.count)
            afterBatch(b)
        }
        return out
    }
}
