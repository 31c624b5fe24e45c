// Diff-Pruning's Taylor importance (`score`'s `method: taylor`): ΔP of a component is Σ over its parameters of
// |w·∂L/∂w|, L the flow-matching MSE against v = noise − x₀ at x_t on the path from x₀ (clean latents, else the
// unpruned model's sample) to the noise, accumulated over noise levels σ = 1, 1 − 1/T, … and stopped after the
// first level whose loss is below `threshold` × the largest loss so far. The model must keep dense weights
// (not prepared for inference): the gradients are taken w.r.t. them.

import ModelSpec
import Models
import TensorCore

public struct TaylorScorer {
    /// T: levels σ_k = 1 − k/T, k = 0…T−1, visited from σ = 1 down.
    public var levels: Int
    /// Diff-Pruning's stopping rule (a fraction of the largest loss).
    public var threshold: Double

    public init(levels: Int, threshold: Double) {
        self.levels = levels
        self.threshold = threshold
    }

    /// Importance of each address (Σ over its loaded tensors) and the number of levels visited.
    public func scores(_ data: ScoringData, _ addresses: [ComponentAddress]) throws -> (scores: [ComponentAddress: Double], levels: Int) {
        let t = data.model, be = t.backend
        let names = Dictionary(uniqueKeysWithValues: try addresses.map { ($0, try t.structure.tensorNames(of: $0).filter { t.weights.contains($0) }) })
        let wanted = Set(names.values.flatMap { $0 })
        var importance: [String: Double] = [:]
        var maxLoss = 0.0
        var used = 0
        for k in 0..<levels {
            try Task.checkCancellation()
            let sigma = Float(1 - Double(k) / Double(levels))
            var loss = 0.0
            for bi in 0..<data.batches.count {
                let b = try data.batches.batch(bi)
                let x0 = try data.cleanLatents(b)
                let inputs = try t.inputs(atSigma: sigma, noise: b.noise, clean: x0, cond: b.cond, imgIds: data.imgIds)
                let target = try FlowMatchPath.velocityTarget(noise: b.noise, clean: x0, backend: be)
                data.passes.add(1)
                let g = try t.mseGradients(inputs, target: target, trainable: { wanted.contains($0) })
                loss += Double(g.loss) * Double(b.count)
                for (n, grad) in g.gradients where wanted.contains(n) {
                    let w = try be.floats(try t.weights(n)), d = try be.floats(grad)
                    var acc = 0.0
                    for i in 0..<min(w.count, d.count) { acc += abs(Double(w[i]) * Double(d[i])) }
                    importance[n, default: 0] += acc
                }
            }
            loss /= Double(max(1, data.batches.sampleCount))
            used += 1
            maxLoss = max(maxLoss, loss)
            if loss < threshold * maxLoss { break }
        }
        var out: [ComponentAddress: Double] = [:]
        for a in addresses { out[a] = names[a]?.reduce(0) { $0 + (importance[$1] ?? 0) } ?? 0 }
        return (out, used)
    }
}
