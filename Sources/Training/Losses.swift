// The training objectives: flow matching (x_t = σ·noise + (1−σ)·x0, target v = noise − x0, MSE) and
// distillation (output KD + feature KD on block outputs + optional task loss), in three forms:
//   hierarchicalprune  L = λ_out·MSE(v_s, v_t) + λ_feat·Σ_i [MSE(x_s,i, x_t,i) + MSE(c_s,i, c_t,i)] + λ_task·MSE(v_s, v)
//   bk-sdm             the same sum; its paper's weights are all 1 (the defaults for this form)
//   laptop             each feature term divided by the teacher feature's mean square, MSE(f_s, f_t) / mean(f_t²)
//                      (= ‖f_s − f_t‖² / ‖f_t‖²), so every block weighs the same whatever its scale
// MSE is torch's mean over all elements (batch included).

import ModelSpec
import Models
import TensorCore

/// Which distillation loss.
public enum DistillationForm: String, Sendable, Hashable, CaseIterable, Decodable {
    case hierarchicalprune
    case bkSDM = "bk-sdm"
    case laptop

    /// Default (output, feature, task) weights of the form: the official HierarchicalPrune code
    /// (1, 1e-4, 0); BK-SDM (1, 1, 1); LAPTOP-Diff (1, 1, 0) with normalised feature terms.
    public var defaultWeights: (output: Double, feature: Double, task: Double) {
        switch self {
        case .hierarchicalprune: return (1, 1e-4, 0)
        case .bkSDM: return (1, 1, 1)
        case .laptop: return (1, 1, 0)
        }
    }
}

/// The distillation loss weights and form.
public struct DistillationLoss: Sendable, Hashable {
    public var output: Double
    public var feature: Double
    public var task: Double
    public var form: DistillationForm

    /// Weights not given take the form's defaults.
    public init(form: DistillationForm = .hierarchicalprune, output: Double? = nil, feature: Double? = nil, task: Double? = nil) {
        let d = form.defaultWeights
        self.form = form
        self.output = output ?? d.output
        self.feature = feature ?? d.feature
        self.task = task ?? d.task
    }
}

/// A loss value and its parts (unweighted parts, for logging).
public struct LossBreakdown: Sendable, Hashable {
    /// The weighted total that is minimised.
    public var total: Double
    /// MSE(v_s, v_t) (distillation) or MSE(v, target) (flow matching).
    public var output: Double
    /// Σ over blocks and streams of the (possibly normalised) feature MSEs.
    public var feature: Double
    /// MSE(v_s, noise − x0), when a task loss is used.
    public var task: Double

    public init(total: Double, output: Double, feature: Double = 0, task: Double = 0) {
        self.total = total
        self.output = output
        self.feature = feature
        self.task = task
    }
}

/// The blocks whose outputs enter the feature loss: not removed, and trainable (at least one parameter of the
/// block is trained). The last SD3 block (context_pre_only) contributes its image stream only: its context
/// output is its unchanged input.
public struct FeatureBlocks: Sendable, Hashable {
    /// Global block index → whether its context stream counts.
    public var blocks: [Int: Bool]

    public init(structure: ModelStructure, removal: Removal, trainable: TrainableParameters) {
        var out: [Int: Bool] = [:]
        for b in structure.blocks where !removal.isBlockRemoved(b.index) {
            let p = b.prefix + "."
            guard trainable.multipliers.keys.contains(where: { $0.hasPrefix(p) }) else { continue }
            out[b.index] = !b.contextPreOnly
        }
        blocks = out
    }

    public var indices: Set<Int> { Set(blocks.keys) }
}

enum LossMath {
    /// mean((a − b)²) and its gradient w.r.t. a scaled by `weight` (nil when weight is 0).
    static func mse(_ be: any Backend, _ a: Tensor, _ b: Tensor, weight: Double) throws -> (Double, Tensor?) {
        let l = Double(try be.floats(try be.mse(a, b))[0])
        guard weight != 0 else { return (l, nil) }
        return (l, try be.mseBackward(a, b, dloss: Float(weight)))
    }

    /// mean(x²).
    static func meanSquare(_ be: any Backend, _ x: Tensor) throws -> Double {
        Double(try be.floats(try be.mse(x, try be.zeros(x.shape, dtype: .f32)))[0])
    }
}

extension DistillationLoss {
    /// The loss of a student trace against the teacher's, and its gradients w.r.t. the student's output and
    /// block outputs. `target` (noise − x0) is needed when `task` ≠ 0.
    public func evaluate(student: ForwardTrace, teacher: ForwardTrace, target: Tensor?, features: FeatureBlocks,
                         backend be: any Backend) throws -> (LossBreakdown, LossGradients) {
        var total = 0.0
        let (lOut, gOut) = try LossMath.mse(be, student.output, teacher.output, weight: output)
        total += output * lOut
        var gradOut = gOut
        var lTask = 0.0
        if task != 0 {
            guard let target else { throw TrainingError.missingTarget }
            let (l, g) = try LossMath.mse(be, student.output, target, weight: task)
            lTask = l
            total += task * l
            if let g { gradOut = try gradOut.map { try be.add($0, g) } ?? g }
        }
        var lFeat = 0.0
        var blockGrads: [Int: (context: Tensor?, image: Tensor?)] = [:]
        for (i, withContext) in features.blocks.sorted(by: { $0.key < $1.key }) {
            guard let s = student.blocks[i], let t = teacher.blocks[i] else { continue }
            func term(_ fs: Tensor, _ ft: Tensor) throws -> Tensor? {
                var w = feature
                var norm = 1.0
                if form == .laptop { norm = max(try LossMath.meanSquare(be, ft), 1e-12); w /= norm }
                let (l, g) = try LossMath.mse(be, fs, ft, weight: w)
                lFeat += l / norm
                return g
            }
            let gx = try term(s.image, t.image)
            let gc = withContext ? try term(s.context, t.context) : nil
            if feature != 0 { blockGrads[i] = (gc, gx) }
        }
        total += feature * lFeat
        return (LossBreakdown(total: total, output: lOut, feature: lFeat, task: lTask),
                LossGradients(loss: Float(total), output: gradOut, blocks: blockGrads))
    }
}

/// Errors of the training loops; the stages add the stage name and recipe location.
public enum TrainingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The loss (or the gradient norm) became NaN or ±Inf at 0-based `step`; no update of that step was applied.
    case nonFinite(step: Int, what: String, value: Double)
    /// A task loss needs targets (dataset latents).
    case missingTarget
    /// Teacher and student do not match.
    case mismatch(String)

    public var description: String {
        switch self {
        case .nonFinite(let step, let what, let value):
            return "the \(what) is \(value) at step \(step + 1); training stopped before applying that step"
        case .missingTarget:
            return "the task loss needs training targets (dataset `latents`)"
        case .mismatch(let m):
            return m
        }
    }
}
