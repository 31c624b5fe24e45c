// KOALA-style block importance (`score`'s `method: cosine`): a block that barely changes its input matters little.
// Per block, ΔP = the mean over samples and noise levels of 1 − cos(block input, block output), both streams
// (image and context) of one sample flattened together; one forward pass per batch and σ at x_t on the path from
// x₀ to the noise. Whole blocks only.

import ModelSpec
import Models
import TensorCore

public enum BlockCosineScorer {
    /// ΔP by global block index for every block still present; the input of block i is the output of the nearest
    /// earlier present block, so the first present block (which has no input feature) is left out.
    public static func scores(_ data: ScoringData) throws -> [Int: Double] {
        let model = data.model, be = model.backend
        let present = model.structure.blocks.map(\.index).filter { !model.removal.isBlockRemoved($0) }
        var sums: [Int: Double] = [:], counts: [Int: Int] = [:]
        for bi in 0..<data.batches.count {
            try Task.checkCancellation()
            let b = try data.batches.batch(bi)
            let x0 = try data.cleanLatents(b)
            for s in data.sigmas {
                data.passes.add(1)
                let inputs = try model.inputs(atSigma: s, noise: b.noise, clean: x0, cond: b.cond, imgIds: data.imgIds)
                let trace = try model.forwardTrace(inputs, capture: Set(present))
                var feats: [Int: [[Float]]] = [:]
                for i in present {
                    guard let t = trace.blocks[i] else { continue }
                    // (B,Li,D) and (B,Lt,D): per sample, the image tokens then the context tokens.
                    let x = SampleBatches.perSample(try be.floats(t.image), count: b.count)
                    let c = SampleBatches.perSample(try be.floats(t.context), count: b.count)
                    feats[i] = zip(x, c).map { $0 + $1 }
                }
                for (k, i) in present.enumerated() where k > 0 {
                    guard let fin = feats[present[k - 1]], let fout = feats[i] else { continue }
                    for (a, o) in zip(fin, fout) {
                        sums[i, default: 0] += 1 - FidelityMetrics(o, a).cosine
                        counts[i, default: 0] += 1
                    }
                }
            }
        }
        return sums.reduce(into: [:]) { $0[$1.key] = $1.value / Double(max(1, counts[$1.key] ?? 1)) }
    }
}
