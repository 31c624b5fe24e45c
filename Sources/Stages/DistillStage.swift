// The `distill` stage kind: trains a pruned (and usually PWP-frozen) student to match its teacher — output KD,
// feature KD on the outputs of the trainable unpruned blocks, optional task loss (forms hierarchicalprune,
// bk-sdm, laptop) — with SGDistill update multipliers (per block, or per scored sub-component), AdamW, checkpoints
// and resume (TrainingLoop).

import ArtifactStore
import Compression
import Foundation
import ModelSpec
import ModelStore
import Models
import Scheduler
import StageGraph
import Training
import YAMLSupport

public struct DistillStage: TypedStageKind {
    public init() {}
    public let name = "distill"
    /// 2: SGDistill per sub-component when the scores have component entries (block-only scores: same outputs as 1).
    public let version = 2
    public let summary = "Distil a pruned student from its teacher (output + feature KD, SGDistill scaling), resumable."

    public let schema = Schema([
        Field("student", .reference(.model), required: true, doc: "The model to train (typically a `freeze` stage's output: PWP-frozen blocks never change)."),
        Field("teacher", .reference(.model), required: true, doc: "The model to imitate (same architecture and config; usually the unpruned original)."),
        Field("scores", .reference(.sensitivity), doc: "Sensitivity from a `score` stage; needed for `sensitivity.form: inverse`."),
        Field("data", .reference(.dataset), required: true,
              doc: "Prompt embeddings and (for real distillation) `latents`, the x0 of the noisy inputs: VAE latents of real images, as `Examples/encode_dataset.py` writes them. See `x0`."),
        Field("x0", .choice(of: X0Source.self),
              doc: "What the noisy inputs x_t = σ·noise + (1−σ)·x0 start from. `latents`: the dataset's `latents` (real images, as the official code distils; the run fails, naming `Examples/encode_dataset.py`, when the dataset has none — the paper recipes set this). `noise`: fixed per-sample Gaussian noise as x0 even when the dataset has latents (inputs that never occur at inference; for quick checks only). Default (`auto`): the latents when the dataset has them, else noise."),
        Field("loss", .object(Schema([
            Field("form", .choice(of: DistillationForm.self), default: .string(DistillationForm.hierarchicalprune.rawValue),
                  doc: "`hierarchicalprune`: λ_out·MSE(v_s,v_t) + λ_feat·Σ_i MSE(f_s,i, f_t,i) + λ_task·MSE(v_s, noise−x0). `bk-sdm`: the same terms, default weights all 1. `laptop`: each feature term divided by mean(f_t,i²) (the teacher feature's squared norm)."),
            Field("output", .number(min: 0), doc: "λ_out (default 1 for every form)."),
            Field("feature", .number(min: 0), doc: "λ_feat (default 1e-4 for hierarchicalprune, 1 for bk-sdm and laptop)."),
            Field("task", .number(min: 0), doc: "λ_task, the flow-matching loss against noise − x0 (default 0; 1 for bk-sdm). Needs dataset `latents`."),
        ])), doc: "Distillation loss. Feature terms use the image (x) and context (c) outputs of every unpruned block with trainable parameters (teacher block i ↔ student block i); the last SD3 block contributes its image output only."),
        Field("sensitivity", .object(Schema([
            Field("form", .choice(of: SGDistillScaling.Form.self),
                  doc: "`inverse`: multiplier ∝ 1/max(ΔP, ε·max ΔP) normalised to mean 1 over the trainable units, capped at `cap` (needs `scores`); the units are the scored sub-components of a block where `scores` has them (its other parameters use the block's value), else the block. `binary`: 0 before the first removed block, 1 from it on (the official code). Default: inverse with `scores`, binary without."),
            Field("threshold", .number(min: 0, max: 1), default: .double(0.25),
                  doc: "r_thres: SGDistill applies only when the removed parameter fraction is above this; otherwise every trainable block uses multiplier 1."),
            Field("epsilon", .number(min: 0, max: 1, exclusive: true), default: .double(0.01),
                  doc: "inverse: ΔP floor relative to the largest positive ΔP, so no block gets more than 1/ε times another's raw multiplier. A ΔP below the floor — near zero or negative (removing the block improves the score) — counts as the floor: the least sensitive blocks get the largest multiplier."),
            Field("cap", .number(min: 0, exclusive: true), default: .double(SGDistillScaling.defaultCap),
                  doc: "inverse: the largest multiplier after normalisation to mean 1 (m_i = min(m_i, cap))."),
        ])), doc: "SGDistill: the AdamW update (step and weight decay) of every parameter of block i (or of its scored sub-component) is multiplied by m_i, i.e. it trains at lr·m_i; the multipliers are recorded in `structure.sgdistill` and as metrics `sgdistill.blocks.N[.component]`. Gradients are not scaled (Adam would cancel it); clipping sees the unscaled gradients. m_i = 0 leaves the block unchanged."),
    ] + TrainingFields.common)

    /// Where the noisy inputs' x0 comes from (`x0`).
    public enum X0Source: String, CaseIterable, Sendable, Decodable {
        /// The dataset's latents when it has them, else noise.
        case auto
        case latents
        case noise

        /// Whether x0 is the dataset's latents (else fixed per-sample noise).
        func usesLatents(datasetHasLatents: Bool) -> Bool {
            switch self {
            case .auto: datasetHasLatents
            case .latents: true
            case .noise: false
            }
        }
    }

    public struct Params: Decodable {
        var student: String
        var teacher: String
        var scores: String?
        var data: String
        /// Absent: `auto` (the field has no schema default, so recipes that do not write it keep their action keys).
        var x0: X0Source?
        var loss: Loss
        var sensitivity: SGDistill
        var training: TrainingSettings

        struct Loss: Decodable {
            var form: DistillationForm
            /// Absent weights take the form's defaults (`DistillationForm.defaultWeights`).
            var output: Double?
            var feature: Double?
            var task: Double?

            var value: DistillationLoss { DistillationLoss(form: form, output: output, feature: feature, task: task) }
        }

        struct SGDistill: Decodable {
            /// Absent: `inverse` with `scores`, `binary` without (`scalingForm`).
            var form: SGDistillScaling.Form?
            var threshold: Double
            var epsilon: Double
            var cap: Double
        }

        var x0Source: X0Source { x0 ?? .auto }

        /// The SGDistill form: as written, else inverse when scores are given, binary when not.
        var scalingForm: SGDistillScaling.Form {
            if let f = sensitivity.form { return f }
            return scores != nil ? .inverse : .binary
        }

        var scaling: SGDistillScaling {
            SGDistillScaling(form: scalingForm, threshold: sensitivity.threshold, epsilon: sensitivity.epsilon, cap: sensitivity.cap)
        }

        enum CodingKeys: String, CodingKey {
            case student, teacher, scores, data, x0, loss, sensitivity
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            student = try c.decode(String.self, forKey: .student)
            teacher = try c.decode(String.self, forKey: .teacher)
            scores = try c.decodeIfPresent(String.self, forKey: .scores)
            data = try c.decode(String.self, forKey: .data)
            x0 = try c.decodeIfPresent(X0Source.self, forKey: .x0)
            loss = try c.decode(Loss.self, forKey: .loss)
            sensitivity = try c.decode(SGDistill.self, forKey: .sensitivity)
            training = try TrainingSettings(from: decoder)
        }
    }

    public func outputs(params: ParamValue) -> [PortSpec] {
        [PortSpec("model", .model, doc: "the distilled student (new objects only for trained tensors; `structure.sgdistill` recorded)")]
    }
    public func defaultOutput(params: ParamValue) -> String { "model" }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        TrainingFields.check(params, node: node, checker: &checker)
        guard let p = try? decodeParams(params) else { return }
        if p.sensitivity.form == .inverse, p.scores == nil {
            checker.error("'sensitivity.form: inverse' needs 'scores' (a Sensitivity from a score stage)",
                          node["sensitivity"]?.mark ?? node.mark, hint: "add `scores: <score stage>`, or use `form: binary`")
        }
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        if let outputs = try await DataParallel.launchIfNeeded(ctx) { return outputs }   // `ranks: N`: N processes
        let p = try params(ctx)
        let be = try ctx.makeBackend()
        let student = try ctx.openModel("student", backend: be)
        let teacher = try ctx.openModel("teacher", backend: be)
        try teacher.transformer.weights.prepareForInference()   // the teacher only runs forward
        guard student.manifest.architecture == teacher.manifest.architecture, student.structure.config == teacher.structure.config else {
            throw ctx.failure("the teacher (\(teacher.manifest.architecture), \(teacher.structure.blocks.count) blocks) and the student (\(student.manifest.architecture), \(student.structure.blocks.count) blocks) have different architectures or configs",
                              log: "fix: distil a student pruned from this teacher")
        }
        guard !student.manifest.isQuantised else {
            throw ctx.failure("the student is quantised; quantised weights cannot be trained", log: "fix: distil before the quantise stage")
        }
        let data = try ctx.openDataset("data")
        do { try data.check(against: student.structure.config) } catch { throw ctx.failure("\(error)") }
        let useLatents = p.x0Source.usesLatents(datasetHasLatents: data.latents != nil)
        if p.x0Source == .latents, data.latents == nil {
            throw ctx.failure("'x0: latents' but the dataset \(data.source) has no 'latents' (VAE latents of real images, the distillation inputs); "
                              + "write them with `python Examples/encode_dataset.py --model <pipeline folder> --captions <captions.jsonl> --out <file>` "
                              + "(Docs/method.md, 'Datasets') and point the dataset at that file, or set `x0: noise` to distil on Gaussian noise (not the method)")
        }

        // Loss.
        let loss = p.loss.value
        if loss.task != 0, !useLatents {
            throw ctx.failure("'loss.task' is \(loss.task) but the dataset has no 'latents' (training targets)",
                              log: "fix: add `latents` to the dataset, or set `loss.task: 0`")
        }

        // SGDistill multipliers.
        let scaling = p.scaling
        let s = student.structure
        let ratio: Double
        let multipliers: [Double]?
        let componentMultipliers: [ComponentAddress: Double]
        do {
            ratio = 1 - Double(try s.parameterCount(after: student.loaded.removal)) / Double(max(1, s.parameterCount))
            let sens = try ctx.input("scores").map { try Sensitivity.decode(try ctx.store.data($0.digest), source: "scores", structure: s) }
            let units = try scaling.unitMultipliers(structure: s, removal: student.loaded.removal, frozen: Set(student.frozen.blocks),
                                                    frozenPrefixes: student.frozen.prefixes, compressionRatio: ratio, sensitivity: sens)
            multipliers = units?.blocks
            componentMultipliers = units?.components ?? [:]
        } catch let e as CompressionError {
            throw ctx.failure("'sensitivity': \(e.message)", log: "fix: \(e.fix)")
        } catch let e as StageFailure {
            throw e
        } catch {
            throw ctx.failure("\(error)")
        }
        let trainable = TrainableParameters(structure: s, loaded: Set(student.transformer.weights.names),
                                            frozenBlocks: Set(student.frozen.blocks), frozenPrefixes: student.frozen.prefixes,
                                            blockMultipliers: multipliers, componentMultipliers: componentMultipliers)
        guard !trainable.multipliers.isEmpty else {
            throw ctx.failure("nothing to train: every parameter is frozen or has SGDistill multiplier 0", log: "fix: freeze fewer blocks")
        }

        let t = p.training
        let trainer: Trainer
        do {
            trainer = try Trainer(model: student.transformer, objective: .distillation(teacher: teacher.transformer, loss: loss),
                                  trainable: trainable, settings: t.optimizerSettings,
                                  random: t.random(seed: ctx.noiseSeed), totalSteps: t.steps)
        } catch { throw ctx.failure("\(error)") }
        ctx.recorder.log(String(format: "removed %.2f %% of the parameters; SGDistill %@ (threshold %.2f): %@\n", ratio * 100, scaling.form.rawValue,
                                scaling.threshold, multipliers.map { $0.map { String(format: "%.3g", $0) }.joined(separator: " ") } ?? "off (ratio not above threshold)"))
        if !componentMultipliers.isEmpty {
            ctx.recorder.log("SGDistill per component: " + componentMultipliers.sorted { $0.key < $1.key }
                .map { "\($0.key) \(String(format: "%.3g", $0.value))" }.joined(separator: ", ") + "\n")
        }
        // The multipliers in the ledger: sgdistill.blocks.N (a block's, or its unscored parameters'), sgdistill.blocks.N.c.
        for (i, m) in (multipliers ?? []).enumerated() where m > 0 { ctx.recorder.metric("sgdistill.blocks.\(i)", m) }
        for (a, m) in componentMultipliers.sorted(by: { $0.key < $1.key }) { ctx.recorder.metric("sgdistill.\(a)", m) }
        ctx.recorder.log("feature blocks: \(trainer.features.indices.sorted().map(String.init).joined(separator: ",")); trainable parameters: \(trainable.elementCount(s))\n")
        ctx.recorder.metric("trainable_params", Double(trainable.elementCount(s)))

        let loop = TrainingLoop(ctx: ctx, trainer: trainer,
                                data: TrainingData(dataset: data, config: s.config, batchSize: t.batch, backend: be,
                                                   syntheticSeed: ctx.noiseSeed ^ 0x5EED_DA7A, guidance: Float(t.guidance),
                                                   useLatents: useLatents),
                                steps: t.steps, checkpointEvery: t.checkpointEvery)
        _ = try await loop.run()
        guard DataParallel.isRoot else { return [:] }   // ranks 1… trained the same weights; rank 0 stores them

        var manifest = try TrainingLoop.storeTrained(trainable.names, weights: student.transformer.weights,
                                                     into: student.manifest, store: ctx.store)
        manifest.structure.sgdistill = SGDistillRecord(form: scaling.form.rawValue, threshold: scaling.threshold,
                                                       compressionRatio: ratio, multipliers: multipliers,
                                                       components: componentMultipliers.isEmpty ? nil
                                                           : Dictionary(uniqueKeysWithValues: componentMultipliers.map { ($0.key.description, $0.value) }))
        return ["model": try ctx.putModel(manifest)]
    }
}
