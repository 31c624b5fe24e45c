// The `score` stage kind: HierarchicalPrune's sensitivity ΔP(i, c) of every block i and requested sub-component c,
// measured by removing it and comparing the model's outputs on a calibration dataset (fixed per-sample noise) with
// the unpruned model's, or taken from an external scorer's JSON. Resumable: each component's ΔP is kept in the
// store as soon as it is computed, so an interrupted score recomputes only what is missing. The scorers
// themselves (remove, cosine, Taylor, additive) are in Compression; this file holds the schema, the inputs and
// the store I/O.

import ArtifactStore
import Compression
import Foundation
import ModelSpec
import Models
import Scheduler
import StageGraph
import TensorCore
import YAMLSupport

public struct ScoreStage: ShardableStageKind, TypedStageKind {
    /// Test hook: after this many freshly computed components the stage throws `CancellationError`, as an
    /// interrupted run would (the registered kind has nil).
    var interruptAfter: Int?

    public init() {}
    /// Test hook: a `score` kind that stops (as if interrupted) after `interruptAfter` freshly computed components.
    public init(interruptAfter: Int?) { self.interruptAfter = interruptAfter }

    public let name = "score"
    public let version = 1
    public let summary = "Sensitivity ΔP of every block and sub-component: remove it, sample, compare with the model (HierarchicalPrune)."

    /// The stage's parameters, decoded once with the schema's defaults.
    public struct Params: Decodable {
        public var model: String
        public var data: String?
        public var samples: Int?
        public var batch: Int
        public var method: ScoreMethod
        public var components: [SubComponent]
        public var metric: ScoreMetric
        public var external: String?
        public var scorer: Scorer?
        public var `import`: Import?
        public var sampling: SamplingSettings
        public var velocity: Velocity
        public var taylor: Taylor
        public var latentSize: LatentSize?
        public var positionWeight: PositionWeight

        public struct Scorer: Decodable {
            public var run: [String]
            public var env: [String: String]?
            public var deps: [String]?
            public var timeout: Double?
        }
        public struct Import: Decodable {
            public var path: String
            public var format: ScoreFileFormat?
            public var baseline: Double?
        }
        public struct Velocity: Decodable {
            public var sigmas: [Float]
        }
        public struct Taylor: Decodable {
            public var timesteps: Int
            public var threshold: Double
        }

        /// The metric the outputs are compared by: `additive` is LAPTOP's one-shot output loss, the velocity MSE;
        /// the other methods use `metric` (`cosine` and `taylor` only for x₀ and the noise levels).
        public var comparedMetric: ScoreMetric {
            switch method {
            case .additive: return .velocityMSE
            case .remove, .cosine, .taylor: return metric
            }
        }

        /// The `metric` the Sensitivity artifact records.
        public var sensitivityMetric: String {
            switch method {
            case .remove: return metric.rawValue
            case .cosine: return "cosine-similarity"
            case .taylor, .additive: return method.rawValue
            }
        }

        /// Files whose content is part of the cache key: the scorer's `deps` and the imported scores file.
        public var fileDependencies: [String] {
            [scorer?.deps, self.import.map { [$0.path] }].compactMap { $0 }.flatMap { $0 }
        }
    }

    public let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "The model to score (usually the teacher)."),
        Field("data", .reference(.dataset),
              doc: "Calibration dataset (prompt embeddings, see Docs/method.md 'Datasets'). Required unless `metric: external`."),
        Field("samples", .integer(min: 1), doc: "Use only the first N samples of the dataset. Default: all."),
        Field("batch", .integer(min: 1), default: .int(4), doc: "Samples per forward pass."),
        Field("method", .choice(of: ScoreMethod.self), default: .string("remove"),
              doc: "`remove` (HierarchicalPrune: remove each component, re-measure `metric`); `cosine` (KOALA-style: ΔP = 1 − cos(block input, block output) over the calibration data at the `velocity.sigmas`, whole blocks only; higher similarity = less important; block 0 has no input feature and is left unscored, i.e. never pruned); `taylor` (Diff-Pruning: ΔP = Σ|w·∂L/∂w| over the component's parameters, L the flow-matching loss on the dataset's `latents` (else the model's own samples), accumulated over `taylor.timesteps` noise levels from σ=1 down, stopping once L < `taylor.threshold`·max L); `additive` (LAPTOP-Diff one-shot: ΔP = the output loss of removing the component alone, MSE of the velocities at `velocity.sigmas` — LAPTOP's criterion, whose sum approximates the loss of removing several; uses `metric: velocity-mse`)."),
        Field("components", .list(.choice(of: SubComponent.self), minCount: 1), default: .list([.string("block")]),
              doc: "Which units to score: `block` (the whole block) and/or sub-components (`attn`, `ff`, `ff_context`, `norm1`, `norm1_context`, `w_norm1`, `w_norm1_context`; FLUX single blocks `norm`, `w_norm`, `proj_mlp_out`). Each is scored in every block that has it; a name no block has is an error."),
        Field("metric", .choice(of: ScoreMetric.self), default: .string("sample-mse"),
              doc: "How P is compared with the unpruned model, on final latents of `sampling` with fixed noise: `sample-mse` (ΔP = mean squared difference), `psnr` (ΔP = 100 dB − PSNR, peak = the reference sample's range), `cosine` (ΔP = 1 − cosine similarity); `velocity-mse` (one forward per sigma of `velocity.sigmas` at x_t = σ·noise + (1−σ)·x₀, x₀ = the dataset's `latents` or else the unpruned model's sample; ΔP = MSE of the velocities); `external` (P from a quality scorer: `scorer`, a program hprune runs on each variant's samples; or precomputed, `external` / `import`); ΔP = P_baseline − P. Averages over samples; all but `external` give ΔP ≥ 0. The built-in metrics measure distance to the unpruned model's samples, not image quality."),
        Field("external", .reference(.files),
              doc: "With `metric: external`: the output of a `command` stage holding one JSON file `{\"baseline\": P_orig, \"scores\": {\"blocks.3\": P, \"blocks.3.ff\": P, …}}` (higher P is better, ΔP = baseline − P) or `{\"delta_p\": {\"blocks.3\": ΔP, …}}`. Reference a single file as `stage.scores.json`."),
        Field("scorer", .object(Schema([
            Field("run", .list(.string, minCount: 1), required: true,
                  doc: "The scorer program and its arguments (no shell), e.g. `[python3, Examples/scorers/hpsv2_score.py, --vae, \"${env.SD35_LARGE_TURBO}/vae\"]`. Looked up like a `command` stage's `run`; runs in the recipe's folder."),
            Field("env", .dictionary(.string), doc: "Extra environment variables for the scorer."),
            Field("deps", .list(.string), doc: "Files (relative to the recipe) whose content is part of the cache key, e.g. the scorer script."),
            Field("timeout", .number(min: 0, exclusive: true), doc: "Seconds one scorer call may take."),
        ])),
              doc: "With `metric: external`: hprune drives the removals — for the unpruned model (the baseline) and each component removed it samples the calibration set with `sampling` and the fixed per-sample noise, writes the final latents to `$HPRUNE_SAMPLES` (safetensors `latents`, pipeline-scaled: SD3 [N, C, H, W], FLUX packed [N, h·w, C]; metadata `variant`, `layout`, `prompts`), runs this program, and reads P (higher = better) from `$HPRUNE_OUT/score.json` (a number or {\"score\": P}); ΔP = P_baseline − P. Each P is kept as soon as it is known, so an interrupted run resumes. Examples/scorers/ has HPSv2 and GenEval-style scorers."),
        Field("import", .object(Schema([
            Field("path", .string, required: true, doc: "The scores JSON, relative to the recipe (its content is part of the cache key)."),
            Field("format", .choice(of: ScoreFileFormat.self),
                  doc: "`hierarchicalprune`: the official code's precomputed contribution JSON (assets/precomputed_metrics/hpsv2/*.json: {\"31<tab>ff\": P, …}, P = HPSv2 with that component removed; `all` = the whole block; needs `baseline`); `hprune`: as `external`. Default: by content."),
            Field("baseline", .number(), doc: "P of the unpruned model (the official files do not hold it; the paper reports HPSv2 30.29 for SD3.5 Large Turbo)."),
        ])),
              doc: "With `metric: external`: ΔP from a scores file instead of a command stage or a scorer."),
        SamplingSettings.field(doc: "Sampling settings for the sample metrics (and x₀ of `velocity-mse` without dataset latents).",
                               guidanceDoc: "SD3: classifier-free guidance scale g, on when g > 1 (v = v_u + g·(v_c − v_u), as diffusers' StableDiffusion3Pipeline; v_u from the dataset's `negative_encoder_hidden_states` / `negative_pooled_projections`, which Examples/embed_prompts.py writes for the empty prompt — a located error when they are missing); 0 or 1 = no CFG (Turbo models use 0). FLUX models with a guidance embedding: the guidance value fed to the model; other FLUX models ignore it."),
        Field("velocity", .object(Schema([
            Field("sigmas", .list(.number(min: 0, max: 1, exclusive: true), minCount: 1), default: .list([.double(0.25), .double(0.5), .double(0.75)]),
                  doc: "Noise levels σ of the single forward passes."),
        ])), default: .map([("sigmas", .list([.double(0.25), .double(0.5), .double(0.75)]))]),
              doc: "Settings of `metric: velocity-mse` and `method: cosine`."),
        Field("taylor", .object(Schema([
            Field("timesteps", .integer(min: 1, max: 1000), default: .int(10), doc: "Noise levels σ_k = 1 − k/T (k = 0…T−1) visited from σ = 1 down."),
            Field("threshold", .number(min: 0, max: 1), default: .double(0.05), doc: "Diff-Pruning's stopping rule: stop after the first level whose loss is below threshold × the largest loss so far."),
        ])), default: .map([("timesteps", .int(10)), ("threshold", .double(0.05))]),
              doc: "Settings of `method: taylor`."),
        LatentSize.field(doc: "[height, width] of the sampled latents (SD3: latent pixels; FLUX: token grid). Default: the dataset's metadata or latents, else the model's `sample_size`."),
        Field("position_weight", .object(Schema([
            Field("form", .choice(of: PositionWeight.Form.self), default: .string("exponential"),
                  doc: "`exponential`: W_pos(i) = exp(rate·(i − |B|)/|B|) (METHOD.md §5); `none`: W_pos = 1 (with `prune`'s `ranking: signed`, the official code's rule)."),
            Field("rate", .number(), default: .double(PositionWeight.defaultRate),
                  doc: "Rate of the exponential. −1 (default): W_pos decays with depth, so at equal |ΔP| later blocks are removed first, as Hierarchical Position Pruning intends; +1 is the formula as the paper's notes write it (early blocks go first)."),
        ])), default: .map([("form", .string("exponential")), ("rate", .double(PositionWeight.defaultRate))]),
              doc: "Position weight recorded beside ΔP; `prune` ranks by |ΔP|·W_pos."),
    ])

    public func outputs(params: ParamValue) -> [PortSpec] {
        [PortSpec("scores", .sensitivity, doc: "ΔP per block / sub-component with W_pos and eligibility (Sensitivity JSON)")]
    }
    public func defaultOutput(params: ParamValue) -> String { "scores" }

    public func fileDependencies(params: ParamValue) -> [String] {
        guard let p = try? decodeParams(params) else { return [] }   // unchecked params: the check reports them
        return p.fileDependencies
    }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        guard let p = try? decodeParams(params) else { return }   // only runs on schema-clean params
        let metric = p.metric
        let sources = [("external", p.external != nil), ("scorer", p.scorer != nil), ("import", p.import != nil)].filter(\.1).map(\.0)
        if metric == .external && sources.isEmpty {
            checker.error("'metric: external' needs 'scorer' (a program hprune runs per variant), 'external' (a command stage's JSON output) or 'import' (a scores file)",
                          node["metric"]?.mark ?? node.mark, hint: "add `scorer: { run: [python3, Examples/scorers/hpsv2_score.py] }`")
        }
        if metric == .external && sources.count > 1 {
            checker.error("give one of 'scorer', 'external', 'import', not \(sources.map { "'\($0)'" }.joined(separator: " and "))",
                          node[sources[1]]?.mark ?? node.mark)
        }
        for k in sources where metric != .external {
            checker.error("'\(k)' is only used with 'metric: external'", node[k]?.mark ?? node.mark, hint: "add `metric: external`")
        }
        if (metric != .external || p.scorer != nil) && p.data == nil {
            checker.error("missing 'data' (the calibration dataset\(metric == .external ? " the scorer's samples are drawn for" : ""))", node.mark, hint: "add `data: <dataset>`")
        }
        if p.scorer != nil, p.method != .remove {
            checker.error("'scorer' scores removals; 'method: \(p.method.rawValue)' has its own criterion", node["method"]?.mark ?? node.mark, hint: "remove 'method'")
        }
        if let imp = p.import, imp.format == .hierarchicalprune, imp.baseline == nil {
            checker.error("'import.format: hierarchicalprune' needs 'import.baseline' (P of the unpruned model; the official files do not hold it)",
                          node["import"]?.mark ?? node.mark, hint: "e.g. `baseline: 30.29` (the paper's HPSv2 of SD3.5 Large Turbo)")
        }
        let ownCriterion: String?
        switch p.method {
        case .taylor: ownCriterion = "Σ|w·∇w|"
        case .additive: ownCriterion = "velocity-mse"
        case .remove, .cosine: ownCriterion = nil
        }
        if let criterion = ownCriterion, metric != .sampleMSE && metric != .velocityMSE {
            checker.error("'method: \(p.method.rawValue)' has its own criterion; 'metric: \(metric.rawValue)' does not apply", node["metric"]?.mark ?? node.mark,
                          hint: "remove 'metric' (method \(p.method.rawValue) uses \(criterion))")
        }
        if p.method == .cosine {
            if p.components != [.block] {
                checker.error("'method: cosine' scores whole blocks only", node["components"]?.mark ?? node.mark, hint: "use `components: [block]`")
            }
            if metric == .external { checker.error("'method: cosine' does not take 'metric: external'", node["metric"]?.mark ?? node.mark) }
        }
        LatentSize.check(params, node: node, checker: &checker)
    }

    // MARK: Run

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let p = try params(ctx)
        let pw = p.positionWeight
        let m = try ctx.loadModel("model")
        let addresses = try Self.addresses(p, model: m, ctx: ctx)

        var deltas: [ComponentAddress: Double] = [:]
        var baseline: Double?
        switch (p.comparedMetric.distance, p.scorer) {
        case (let distance?, _):
            let be = try ctx.makeBackend()
            let model = try ctx.openModel("model", backend: be)
            switch p.method {
            case .taylor: break   // needs ∂L/∂w of the dense weights
            case .remove, .cosine, .additive: try model.transformer.weights.prepareForInference()
            }
            let data = try ctx.openDataset("data", limit: p.samples)
            do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
            let run = try ScoreRun(ctx: ctx, params: p, model: model, data: data, metric: p.comparedMetric, method: p.method)
            deltas = try await run.scoreAll(addresses, distance: distance, interruptAfter: interruptAfter)
        case (nil, let scorerParams?):
            let scorer = try ScorerCommand(scorerParams, ctx: ctx)
            let be = try ctx.makeBackend()
            let model = try ctx.openModel("model", backend: be)
            try model.transformer.weights.prepareForInference()
            let data = try ctx.openDataset("data", limit: p.samples)
            do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
            let run = try ScoreRun(ctx: ctx, params: p, model: model, data: data, metric: .external, method: .remove)
            let r = try await run.scoreExternally(addresses, scorer: scorer, interruptAfter: interruptAfter)
            (deltas, baseline) = (r.0, r.1)
        case (nil, nil):
            (deltas, baseline) = try Self.external(ctx, p, structure: m.structure, wanted: Set(addresses))
        }
        let sens: Sensitivity
        do {
            sens = try Sensitivity(deltas: deltas, structure: m.structure, positionWeight: pw, metric: p.sensitivityMetric, baseline: baseline)
        } catch { throw ctx.failure("\(error)") }
        var log = "ΔP (\(sens.metric)), W_pos \(pw.form.rawValue) rate \(pw.rate):\n"
        for e in sens.entries where e.deltaP != nil {
            log += "  \(e.address)  ΔP \(String(format: "%.6g", e.deltaP ?? .nan))  W_pos \(String(format: "%.4f", e.wPos))\n"
        }
        ctx.recorder.log(log)
        ctx.recorder.metric("components_scored", Double(deltas.count))
        return ["scores": try ctx.store.put(sens.encoded())]
    }

    /// Shard `index` of `count`: the reference outputs and every `count`-th address from `index` on, each kept in
    /// the store exactly as `run` keeps it, so `run` afterwards reuses them and yields the same Sensitivity.
    /// Only `remove` and `additive` with a built-in metric keep per-component values; for the others a shard
    /// does nothing and `run` does all.
    public func runShard(_ ctx: StageContext, index: Int, count: Int) async throws {
        let p = try params(ctx)
        let keepsParts: Bool
        switch p.method {
        case .remove, .additive: keepsParts = true
        case .cosine, .taylor: keepsParts = false
        }
        guard keepsParts, let distance = p.comparedMetric.distance else {
            ctx.progress.log("shard \(index + 1)/\(count): method '\(p.method.rawValue)' has no per-component parts; the merge computes it")
            return
        }
        let m = try ctx.loadModel("model")
        let all = try Self.addresses(p, model: m, ctx: ctx)
        let mine = all.enumerated().filter { $0.offset % count == index }.map(\.element)
        let be = try ctx.makeBackend()
        let model = try ctx.openModel("model", backend: be)
        try model.transformer.weights.prepareForInference()
        let data = try ctx.openDataset("data", limit: p.samples)
        do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
        let run = try ScoreRun(ctx: ctx, params: p, model: model, data: data, metric: p.comparedMetric, method: p.method)
        ctx.progress.log("shard \(index + 1)/\(count): \(mine.count) of \(all.count) components")
        _ = try await run.scoreAll(mine, distance: distance, interruptAfter: nil)
    }

    /// Every address to score: each requested component in each block that has it and where the model still has it.
    static func addresses(_ p: Params, model m: LoadedModel, ctx: StageContext) throws -> [ComponentAddress] {
        var out: [ComponentAddress] = []
        for c in p.components {
            let having = m.structure.blocks.filter { $0.components.contains(c) }
            guard !having.isEmpty else {
                let known = Set(m.structure.blocks.flatMap(\.components)).sorted().map(\.rawValue)
                throw ctx.failure("'components': '\(c.rawValue)' matches no block of this \(m.structure.config.architecture.rawValue) model",
                                  log: "fix: use components this model has: \(known.joined(separator: ", "))")
            }
            for b in having {
                let a = ComponentAddress(block: b.index, component: c)
                var r = m.removal
                if m.removal.isRemoved(block: b.index, c) || (try? r.insert(a, in: m.structure)) == nil { continue }
                if !out.contains(a) { out.append(a) }
            }
        }
        return out.sorted()
    }

    /// ΔP from a scores JSON: a `command` stage's output (`external`) or a file (`import`).
    static func external(_ ctx: StageContext, _ p: Params, structure: ModelStructure,
                         wanted: Set<ComponentAddress>) throws -> ([ComponentAddress: Double], Double?) {
        let data: Data, source: String
        if let imp = p.import {
            let path = imp.path
            let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : ctx.recipeDirectory.appendingPathComponent(path)
            guard let d = try? Data(contentsOf: url) else {
                throw ctx.failure("'import.path': cannot read '\(path)' (\(url.path))", log: "fix: point `import.path` at the scores JSON, relative to the recipe")
            }
            (data, source) = (d, "import '\(path)'")
        } else {
            guard let ref = ctx.input("external") else { throw ctx.failure("'external' is not bound") }
            let tree: Tree
            do { tree = try ctx.store.readTree(ref.digest) } catch { throw ctx.failure("'external': cannot read the command's output: \(error)") }
            let jsons = tree.entries.filter { $0.path.hasSuffix(".json") }
            guard jsons.count == 1, let entry = jsons.first else {
                throw ctx.failure("'external': expected exactly one .json file, found \(jsons.map(\.path))",
                                  log: "fix: reference one file as `stage.scores.json`")
            }
            (data, source) = (try ctx.store.data(entry.digest), "external '\(entry.path)'")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ctx.failure("\(source): not a JSON object", log: "fix: write {\"baseline\": P, \"scores\": {\"blocks.3\": P, …}}")
        }
        let format = p.import?.format ?? ScoreFileFormat(guessing: obj)   // absent: by content
        var result: ([ComponentAddress: Double], Double?)
        do {
            switch format {
            case .hierarchicalprune:
                let base = p.import?.baseline
                let (o, skipped) = try ImportedScores.official(obj, baseline: base, structure: structure)
                result = (o, base)
                if !skipped.isEmpty {
                    ctx.recorder.log("\(source): skipped \(skipped.count) entr\(skipped.count == 1 ? "y" : "ies") this model does not have: \(skipped.prefix(8).joined(separator: ", "))\n")
                }
            case .hprune:
                result = try ImportedScores.hprune(obj, structure: structure)
            }
        } catch let e as ImportedScores.Problem {
            throw ctx.failure("\(source): \(e.message)\(e.fix.map { "; \($0)" } ?? "")", log: e.fix.map { "fix: \($0)" })
        }
        let missing = wanted.subtracting(result.0.keys)
        if !missing.isEmpty {
            ctx.recorder.log("external scores lack \(missing.count) requested address(es), left unscored: \(missing.sorted().prefix(8).map(\.description).joined(separator: ", "))\n")
        }
        return result
    }
}

/// One `score` execution: reference outputs of the unpruned model, then each component's ΔP, each kept in the
/// store's partials (namespace: a digest of model, data, settings and numerics; name: the address) so that an
/// interrupted run resumes. The numbers come from Compression's scorers on `scoring`.
struct ScoreRun {
    let ctx: StageContext
    let params: ScoreStage.Params
    let model: RunnableModel
    let data: PromptDataset
    /// The compared metric (`Params.comparedMetric`, or `external` for a scorer program).
    let metric: ScoreMetric
    let method: ScoreMethod
    /// The model, calibration batches (fixed per-sample noise), sampler and noise levels the scorers run on.
    let scoring: ScoringData
    let sampleShape: [Int]
    /// CFG scale (SD3) or embedded guidance (FLUX) of the sampling.
    let guide: SamplingGuidance
    /// FLUX: the token grid (h, w) of the samples (for external scorers to unpack them).
    let latentGrid: (height: Int, width: Int)
    let baseKey: String

    /// Forward passes this execution ran (reported as the metric `forward_passes`).
    var passes: ForwardCounter { scoring.passes }

    /// Removal scoring of `metric`'s outputs: final samples, or velocities at `velocity.sigmas`.
    var removal: RemovalScorer {
        RemovalScorer(data: scoring, readout: metric.comparesSamples && method == .remove ? .samples : .velocities)
    }

    init(ctx: StageContext, params p: ScoreStage.Params, model: RunnableModel, data: PromptDataset, metric: ScoreMetric,
         method: ScoreMethod) throws {
        self.ctx = ctx
        self.params = p
        self.model = model
        self.data = data
        self.metric = metric
        self.method = method
        let guidance = Float(p.sampling.guidance)
        let override = p.latentSize.map { (height: $0.height, width: $0.width) }
        let config = model.structure.config
        do {
            sampleShape = Array(try data.latentShape(for: config, batch: 1, override: override).dropFirst())
        } catch let e as DatasetError { throw ctx.failure("\(e)") }
        let imgIds = data.imageIds(for: config, override: override)
        latentGrid = data.fluxGrid(override: override)
        guide = try SamplingGuidance(guidance, config: config, data: data, ctx: ctx)
        let readsLatents = !(metric.comparesSamples && method == .remove)   // x₀ of the single-pass criteria
        scoring = ScoringData(model: model.transformer,
                              batches: guide.batches(data, size: p.batch, sampleShape: sampleShape, seed: ctx.noiseSeed,
                                                     backend: model.backend, latents: readsLatents),
                              sampler: guide.sampler(steps: p.sampling.steps, shift: p.sampling.shift), sigmas: p.velocity.sigmas,
                              imgIds: imgIds)
        let settings = "hprune.score/1|model=\(model.digest.hex)|data=\(ctx.input("data")?.digest.hex ?? "")|n=\(data.count)|batch=\(p.batch)"
            + "|method=\(method.rawValue)|metric=\(metric.rawValue)|steps=\(p.sampling.steps)|guidance=\(guidance)|shift=\(p.sampling.shift)"
            + "|sigmas=\(p.velocity.sigmas)|shape=\(sampleShape)|seed=\(ctx.seed)|backend=\(ctx.backend)|numerics=\(ctx.numericsLine)"
        baseKey = Digest.of(Data(settings.utf8)).hex
    }

    /// The store's partial-results namespace of these settings' kept values (`what`: an address or `reference`).
    var partNamespace: String { "score-" + baseKey }

    /// Reads a kept value (a small JSON object) or nil.
    func kept(_ what: String) -> Data? { ctx.store.partialData(namespace: partNamespace, name: ArtifactStore.partialName(what)) }

    func keep(_ what: String, _ data: Data) throws {
        try ctx.store.putPartial(data, namespace: partNamespace, name: ArtifactStore.partialName(what), owner: ctx.actionKey,
                                 stage: ctx.stage.name)
    }

    /// Scores every address; values already kept are reused. `distance` compares a removal's outputs with the
    /// reference (`remove`, `additive`).
    func scoreAll(_ addresses: [ComponentAddress], distance: OutputDistance, interruptAfter: Int?) async throws -> [ComponentAddress: Double] {
        let t0 = Date()
        let bar = ctx.progress.bar(total: addresses.count, unit: "components")
        var out: [ComponentAddress: Double] = [:]
        var fresh = 0, reused = 0
        switch method {
        case .cosine:
            let all = try BlockCosineScorer.scores(scoring)
            for a in addresses { out[a] = all[a.block] }
            bar.advance(by: addresses.count)
        case .taylor:
            let r = try TaylorScorer(levels: params.taylor.timesteps, threshold: params.taylor.threshold).scores(scoring, addresses)
            ctx.recorder.metric("taylor_timesteps", Double(r.levels))
            out = r.scores
            bar.advance(by: addresses.count)
        case .remove, .additive:
            let scorer = removal
            let reference = try referenceOutputs()
            for a in addresses {
                try Task.checkCancellation()
                if let d = kept(a.description), let v = Self.decodeValue(d) {
                    out[a] = v
                    reused += 1
                    bar.advance(message: "\(a) ΔP \(String(format: "%.4g", v)) (kept)")
                    continue
                }
                if let limit = interruptAfter, fresh >= limit { throw CancellationError() }
                let v = distance.mean(try scorer.outputs(removing: try Removal([a], in: model.structure)), reference: reference)
                try keep(a.description, Self.encodeValue(v))
                out[a] = v
                fresh += 1
                bar.advance(message: "\(a) ΔP \(String(format: "%.4g", v))")
            }
        }
        ctx.recorder.metric("forward_passes", Double(passes.value))
        ctx.recorder.metric("components_computed", Double(fresh))
        ctx.recorder.metric("components_resumed", Double(reused))
        ctx.recorder.metric("score_seconds", Date().timeIntervalSince(t0), unit: "s")
        return out
    }

    /// `{"delta_p": 0.0123, "bits": "3f893…"}`: the value for people, its exact bit pattern for resuming
    /// (Foundation's JSON number parsing is not exact on every platform).
    static func encodeValue(_ v: Double) -> Data {
        Data("{\"delta_p\": \(v.isFinite ? String(v) : "null"), \"bits\": \"\(String(v.bitPattern, radix: 16))\"}".utf8)
    }
    static func decodeValue(_ d: Data) -> Double? {
        guard let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any],
              let bits = (o["bits"] as? String).flatMap({ UInt64($0, radix: 16) }) else { return nil }
        return Double(bitPattern: bits)
    }

    /// The unpruned model's outputs, per sample (kept in the store, so a resumed run does not recompute them).
    func referenceOutputs() throws -> [[Float]] {
        let scorer = removal
        let per = scorer.valuesPerSample(latent: sampleShape.reduce(1, *))
        if let d = kept("reference"), d.count == per * data.count * 4 {
            let f: [Float] = d.withUnsafeBytes { p in (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
            return (0..<data.count).map { Array(f[($0 * per)..<(($0 + 1) * per)]) }
        }
        let r = try scorer.outputs(removing: Removal())
        var bytes = Data(capacity: per * data.count * 4)
        for s in r { for x in s { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } } }
        try keep("reference", bytes)
        return r
    }
}
