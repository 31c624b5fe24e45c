// The `score` stage kind: HierarchicalPrune's sensitivity ΔP(i, c) of every block i and requested sub-component c,
// measured by removing it and comparing the model's outputs on a calibration dataset (fixed per-sample noise) with
// the unpruned model's, or taken from an external scorer's JSON. Resumable: each component's ΔP is kept in the
// store as soon as it is computed, so an interrupted score recomputes only what is missing.

import ArtifactStore
import Compression
import Foundation
import ModelSpec
import Models
import Scheduler
import StageGraph
import TensorCore
import YAMLSupport

public struct ScoreStage: ShardableStageKind {
    /// Test hook: after this many freshly computed components the stage throws `CancellationError`, as an
    /// interrupted run would (the registered kind has nil).
    var interruptAfter: Int?

    public init() {}
    /// Test hook: a `score` kind that stops (as if interrupted) after `interruptAfter` freshly computed components.
    public init(interruptAfter: Int?) { self.interruptAfter = interruptAfter }

    public let name = "score"
    public let version = 1
    public let summary = "Sensitivity ΔP of every block and sub-component: remove it, sample, compare with the model (HierarchicalPrune)."

    static let metrics = ["sample-mse", "psnr", "cosine", "velocity-mse", "external"]
    static let methods = ["remove", "cosine", "taylor", "additive"]
    /// PSNR above this counts as identical (`psnr` metric: ΔP = cap − min(cap, PSNR)).
    static let psnrCapDB = 100.0

    public let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "The model to score (usually the teacher)."),
        Field("data", .reference(.dataset),
              doc: "Calibration dataset (prompt embeddings, see Docs/method.md 'Datasets'). Required unless `metric: external`."),
        Field("samples", .integer(min: 1), doc: "Use only the first N samples of the dataset. Default: all."),
        Field("batch", .integer(min: 1), default: .int(4), doc: "Samples per forward pass."),
        Field("method", .choice(methods), default: .string("remove"),
              doc: "`remove` (HierarchicalPrune: remove each component, re-measure `metric`); `cosine` (KOALA-style: ΔP = 1 − cos(block input, block output) over the calibration data at the `velocity.sigmas`, whole blocks only; higher similarity = less important; block 0 has no input feature and is left unscored, i.e. never pruned); `taylor` (Diff-Pruning: ΔP = Σ|w·∂L/∂w| over the component's parameters, L the flow-matching loss on the dataset's `latents` (else the model's own samples), accumulated over `taylor.timesteps` noise levels from σ=1 down, stopping once L < `taylor.threshold`·max L); `additive` (LAPTOP-Diff one-shot: ΔP = the output loss of removing the component alone, MSE of the velocities at `velocity.sigmas` — LAPTOP's criterion, whose sum approximates the loss of removing several; uses `metric: velocity-mse`)."),
        Field("components", .list(.choice(SubComponent.allCases.map(\.rawValue)), minCount: 1), default: .list([.string("block")]),
              doc: "Which units to score: `block` (the whole block) and/or sub-components (`attn`, `ff`, `ff_context`, `norm1`, `norm1_context`, `w_norm1`, `w_norm1_context`; FLUX single blocks `norm`, `w_norm`, `proj_mlp_out`). Each is scored in every block that has it; a name no block has is an error."),
        Field("metric", .choice(metrics), default: .string("sample-mse"),
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
            Field("format", .choice(["hprune", "hierarchicalprune"]),
                  doc: "`hierarchicalprune`: the official code's precomputed contribution JSON (assets/precomputed_metrics/hpsv2/*.json: {\"31<tab>ff\": P, …}, P = HPSv2 with that component removed; `all` = the whole block; needs `baseline`); `hprune`: as `external`. Default: by content."),
            Field("baseline", .number(), doc: "P of the unpruned model (the official files do not hold it; the paper reports HPSv2 30.29 for SD3.5 Large Turbo)."),
        ])),
              doc: "With `metric: external`: ΔP from a scores file instead of a command stage or a scorer."),
        Field("sampling", .object(Schema([
            Field("steps", .integer(min: 1, max: 1000), default: .int(4), doc: "Euler steps."),
            Field("guidance", .number(min: 0), default: .double(0),
                  doc: "SD3: classifier-free guidance scale g, on when g > 1 (v = v_u + g·(v_c − v_u), as diffusers' StableDiffusion3Pipeline; v_u from the dataset's `negative_encoder_hidden_states` / `negative_pooled_projections`, which Examples/embed_prompts.py writes for the empty prompt — a located error when they are missing); 0 or 1 = no CFG (Turbo models use 0). FLUX models with a guidance embedding: the guidance value fed to the model; other FLUX models ignore it."),
            Field("shift", .number(min: 0, exclusive: true), default: .double(3.0), doc: "Scheduler sigma shift s: σ' = s·σ / (1 + (s−1)·σ) (SD3.5 Large Turbo: 3.0)."),
        ])), default: .map([("steps", .int(4)), ("guidance", .double(0)), ("shift", .double(3.0))]),
              doc: "Sampling settings for the sample metrics (and x₀ of `velocity-mse` without dataset latents)."),
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
        Field("latent_size", .list(.integer(min: 1), minCount: 2),
              doc: "[height, width] of the sampled latents (SD3: latent pixels; FLUX: token grid). Default: the dataset's metadata or latents, else the model's `sample_size`."),
        Field("position_weight", .object(Schema([
            Field("form", .choice(PositionWeight.Form.allCases.map(\.rawValue)), default: .string("exponential"),
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
        (params["scorer"]?["deps"]?.list ?? []).compactMap(\.string) + (params["import"]?["path"]?.string.map { [$0] } ?? [])
    }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        let metric = params["metric"]?.string ?? "sample-mse"
        let sources = ["external", "scorer", "import"].filter { params[$0] != nil }
        if metric == "external" && sources.isEmpty {
            checker.error("'metric: external' needs 'scorer' (a program hprune runs per variant), 'external' (a command stage's JSON output) or 'import' (a scores file)",
                          node["metric"]?.mark ?? node.mark, hint: "add `scorer: { run: [python3, Examples/scorers/hpsv2_score.py] }`")
        }
        if metric == "external" && sources.count > 1 {
            checker.error("give one of 'scorer', 'external', 'import', not \(sources.map { "'\($0)'" }.joined(separator: " and "))",
                          node[sources[1]]?.mark ?? node.mark)
        }
        for k in sources where metric != "external" {
            checker.error("'\(k)' is only used with 'metric: external'", node[k]?.mark ?? node.mark, hint: "add `metric: external`")
        }
        if (metric != "external" || params["scorer"] != nil) && params["data"] == nil {
            checker.error("missing 'data' (the calibration dataset\(metric == "external" ? " the scorer's samples are drawn for" : ""))", node.mark, hint: "add `data: <dataset>`")
        }
        if params["scorer"] != nil, let m = params["method"]?.string, m != "remove" {
            checker.error("'scorer' scores removals; 'method: \(m)' has its own criterion", node["method"]?.mark ?? node.mark, hint: "remove 'method'")
        }
        if params["import"]?["format"]?.string == "hierarchicalprune", params["import"]?["baseline"] == nil {
            checker.error("'import.format: hierarchicalprune' needs 'import.baseline' (P of the unpruned model; the official files do not hold it)",
                          node["import"]?.mark ?? node.mark, hint: "e.g. `baseline: 30.29` (the paper's HPSv2 of SD3.5 Large Turbo)")
        }
        if let m = params["method"]?.string, m == "taylor" || m == "additive", metric != "sample-mse" && metric != "velocity-mse" {
            checker.error("'method: \(m)' has its own criterion; 'metric: \(metric)' does not apply", node["metric"]?.mark ?? node.mark,
                          hint: "remove 'metric' (method \(m) uses \(m == "taylor" ? "Σ|w·∇w|" : "velocity-mse"))")
        }
        if params["method"]?.string == "cosine" {
            if let comps = params["components"]?.list?.compactMap(\.string), comps != ["block"] {
                checker.error("'method: cosine' scores whole blocks only", node["components"]?.mark ?? node.mark, hint: "use `components: [block]`")
            }
            if metric == "external" { checker.error("'method: cosine' does not take 'metric: external'", node["metric"]?.mark ?? node.mark) }
        }
        if let s = params["latent_size"]?.list, s.count != 2 {
            checker.error("'latent_size' needs exactly [height, width]", node["latent_size"]?.mark ?? node.mark)
        }
    }

    // MARK: Run

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let p = ctx.params
        let metric = p["metric"]?.string ?? "sample-mse"
        let method = p["method"]?.string ?? "remove"
        let pw = PositionWeight(form: PositionWeight.Form(rawValue: p["position_weight"]?["form"]?.string ?? "exponential") ?? .exponential,
                                rate: p["position_weight"]?["rate"]?.double ?? PositionWeight.defaultRate)
        let m = try ctx.loadModel("model")
        let addresses = try Self.addresses(p, model: m, ctx: ctx)

        var deltas: [ComponentAddress: Double] = [:]
        var baseline: Double?
        if metric == "external", p["scorer"] != nil {
            let scorer = try ScorerCommand(p, ctx: ctx)
            let be = try ctx.makeBackend()
            let model = try ctx.openModel("model", backend: be)
            try model.transformer.weights.prepareForInference()
            let data = try ctx.openDataset("data", limit: p["samples"]?.int)
            do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
            let run = try ScoreRun(ctx: ctx, model: model, data: data, metric: metric, method: "remove")
            let r = try await run.scoreExternally(addresses, scorer: scorer, interruptAfter: interruptAfter)
            (deltas, baseline) = (r.0, r.1)
        } else if metric == "external" {
            (deltas, baseline) = try Self.external(ctx, structure: m.structure, wanted: Set(addresses))
        } else {
            let be = try ctx.makeBackend()
            let model = try ctx.openModel("model", backend: be)
            if method != "taylor" { try model.transformer.weights.prepareForInference() }   // taylor needs ∂L/∂w
            let data = try ctx.openDataset("data", limit: p["samples"]?.int)
            do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
            let run = try ScoreRun(ctx: ctx, model: model, data: data, metric: method == "additive" ? "velocity-mse" : metric, method: method)
            deltas = try await run.scoreAll(addresses, interruptAfter: interruptAfter)
        }
        let sens: Sensitivity
        do {
            sens = try Sensitivity(deltas: deltas, structure: m.structure, positionWeight: pw,
                                   metric: method == "remove" ? metric : (method == "cosine" ? "cosine-similarity" : method), baseline: baseline)
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
    /// Only the `remove` method keeps per-component values; for the others a shard does nothing and `run` does all.
    public func runShard(_ ctx: StageContext, index: Int, count: Int) async throws {
        let p = ctx.params
        let metric = p["metric"]?.string ?? "sample-mse"
        let method = p["method"]?.string ?? "remove"
        guard method == "remove" || method == "additive", metric != "external" else {
            ctx.progress.log("shard \(index + 1)/\(count): method '\(method)' has no per-component parts; the merge computes it")
            return
        }
        let m = try ctx.loadModel("model")
        let all = try Self.addresses(p, model: m, ctx: ctx)
        let mine = all.enumerated().filter { $0.offset % count == index }.map(\.element)
        let be = try ctx.makeBackend()
        let model = try ctx.openModel("model", backend: be)
        try model.transformer.weights.prepareForInference()
        let data = try ctx.openDataset("data", limit: p["samples"]?.int)
        do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
        let run = try ScoreRun(ctx: ctx, model: model, data: data, metric: method == "additive" ? "velocity-mse" : metric, method: method)
        ctx.progress.log("shard \(index + 1)/\(count): \(mine.count) of \(all.count) components")
        _ = try await run.scoreAll(mine, interruptAfter: nil)
    }

    /// Every address to score: each requested component in each block that has it and where the model still has it.
    static func addresses(_ p: ParamValue, model m: LoadedModel, ctx: StageContext) throws -> [ComponentAddress] {
        let names = (p["components"]?.list ?? [.string("block")]).compactMap(\.string)
        var out: [ComponentAddress] = []
        for n in names {
            guard let c = SubComponent(rawValue: n) else { throw ctx.failure("'components': unknown component '\(n)'") }
            let having = m.structure.blocks.filter { $0.components.contains(c) }
            guard !having.isEmpty else {
                let known = Set(m.structure.blocks.flatMap(\.components)).sorted().map(\.rawValue)
                throw ctx.failure("'components': '\(n)' matches no block of this \(m.structure.config.architecture.rawValue) model",
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
    static func external(_ ctx: StageContext, structure: ModelStructure, wanted: Set<ComponentAddress>) throws -> ([ComponentAddress: Double], Double?) {
        let p = ctx.params
        let data: Data, source: String
        if let imp = p["import"], let path = imp["path"]?.string {
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
        let format = p["import"]?["format"]?.string ?? (obj["scores"] == nil && obj["delta_p"] == nil ? "hierarchicalprune" : "hprune")
        var result: ([ComponentAddress: Double], Double?)
        do {
            if format == "hierarchicalprune" {
                let base = p["import"]?["baseline"]?.double
                let (o, skipped) = try ImportedScores.official(obj, baseline: base, structure: structure)
                result = (o, base)
                if !skipped.isEmpty {
                    ctx.recorder.log("\(source): skipped \(skipped.count) entr\(skipped.count == 1 ? "y" : "ies") this model does not have: \(skipped.prefix(8).joined(separator: ", "))\n")
                }
            } else {
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
/// interrupted run resumes.
struct ScoreRun {
    let ctx: StageContext
    let model: RunnableModel
    let data: PromptDataset
    let metric: String
    let method: String
    let steps: Int, guidance: Float, shift: Double
    let sigmas: [Float]
    let batches: [Range<Int>]
    let sampleShape: [Int]
    let imgIds: [Float]?
    /// CFG scale (SD3) or embedded guidance (FLUX) of the sampling.
    let guide: SamplingGuidance
    /// FLUX: the token grid (h, w) of the samples (for external scorers to unpack them).
    let latentGrid: (height: Int, width: Int)
    let baseKey: String
    /// Forward passes this execution ran (reported as the metric `forward_passes`).
    let passes = Counter()

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func add(_ k: Int) { lock.withLock { n += k } }
        var value: Int { lock.withLock { n } }
    }

    init(ctx: StageContext, model: RunnableModel, data: PromptDataset, metric: String, method: String) throws {
        let p = ctx.params
        self.ctx = ctx
        self.model = model
        self.data = data
        self.metric = metric
        self.method = method
        steps = p["sampling"]?["steps"]?.int ?? 4
        guidance = Float(p["sampling"]?["guidance"]?.double ?? 0)
        shift = p["sampling"]?["shift"]?.double ?? 3
        sigmas = (p["velocity"]?["sigmas"]?.list ?? [.double(0.25), .double(0.5), .double(0.75)]).compactMap { $0.double.map(Float.init) }
        batches = data.batches(size: p["batch"]?.int ?? 4)
        let size = p["latent_size"]?.list?.compactMap(\.int)
        let override = size.flatMap { $0.count == 2 ? (height: $0[0], width: $0[1]) : nil }
        let config = model.structure.config
        do {
            sampleShape = Array(try data.latentShape(for: config, batch: 1, override: override).dropFirst())
        } catch let e as DatasetError { throw ctx.failure("\(e)") }
        imgIds = data.imageIds(for: config, override: override)
        latentGrid = override ?? data.latentSize ?? (16, 16)
        guide = try SamplingGuidance(guidance, config: config, data: data, ctx: ctx)
        let settings = "hprune.score/1|model=\(model.digest.hex)|data=\(ctx.input("data")?.digest.hex ?? "")|n=\(data.count)|batch=\(p["batch"]?.int ?? 4)"
            + "|method=\(method)|metric=\(metric)|steps=\(steps)|guidance=\(guidance)|shift=\(shift)|sigmas=\(sigmas)|shape=\(sampleShape)"
            + "|seed=\(ctx.seed)|backend=\(ctx.backend)|numerics=\(ctx.numericsLine)"
        baseKey = Digest.of(Data(settings.utf8)).hex
    }

    var isSampling: Bool { metric != "velocity-mse" && method == "remove" }

    /// The store's partial-results namespace of these settings' kept values (`what`: an address or `reference`).
    var partNamespace: String { "score-" + baseKey }

    /// Reads a kept value (a small JSON object) or nil.
    func kept(_ what: String) -> Data? { ctx.store.partialData(namespace: partNamespace, name: ArtifactStore.partialName(what)) }

    func keep(_ what: String, _ data: Data) throws {
        try ctx.store.putPartial(data, namespace: partNamespace, name: ArtifactStore.partialName(what), owner: ctx.actionKey,
                                 stage: ctx.stage.name)
    }

    /// Scores every address; values already kept are reused.
    func scoreAll(_ addresses: [ComponentAddress], interruptAfter: Int?) async throws -> [ComponentAddress: Double] {
        let be = model.backend
        let t0 = Date()
        let bar = ctx.progress.bar(total: addresses.count, unit: "components")
        var out: [ComponentAddress: Double] = [:]
        var fresh = 0, reused = 0
        if method == "cosine" {
            let all = try cosineScores(be)
            for a in addresses { out[a] = all[a.block] }
            bar.advance(by: addresses.count)
        } else if method == "taylor" {
            out = try taylorScores(be, addresses)
            bar.advance(by: addresses.count)
        } else {
            let reference = try referenceOutputs(be)
            for a in addresses {
                try Task.checkCancellation()
                if let d = kept(a.description), let v = Self.decodeValue(d) {
                    out[a] = v
                    reused += 1
                    bar.advance(message: "\(a) ΔP \(String(format: "%.4g", v)) (kept)")
                    continue
                }
                if let limit = interruptAfter, fresh >= limit { throw CancellationError() }
                let outputs = try runModel(be, removing: try Removal([a], in: model.structure))
                let v = deltaP(outputs, reference)
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
    func referenceOutputs(_ be: any Backend) throws -> [[Float]] {
        let per = sampleShape.reduce(1, *) * (isSampling ? 1 : sigmas.count)
        if let d = kept("reference"), d.count == per * data.count * 4 {
            let f: [Float] = d.withUnsafeBytes { p in (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
            return (0..<data.count).map { Array(f[($0 * per)..<(($0 + 1) * per)]) }
        }
        let r = try runModel(be, removing: Removal())
        var bytes = Data(capacity: per * data.count * 4)
        for s in r { for x in s { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } } }
        try keep("reference", bytes)
        return r
    }

    /// x₀ of the velocity metric / cosine method for samples `range`: the dataset's latents, else the unpruned sample.
    func cleanLatents(_ be: any Backend, _ range: Range<Int>, _ noise: Tensor, _ cond: Conditioning) throws -> Tensor {
        if data.latents != nil { return try data.latents(range, backend: be) }
        passes.add(steps * (guide.usesCFG ? 2 : 1))
        return try sampler.sample(model.transformer, from: noise, cond: cond, uncond: guide.usesCFG ? try data.negativeConditioning(range, backend: be) : nil,
                                  imgIds: imgIds)
    }

    var sampler: FlowMatchEulerSampler { guide.sampler(steps: steps, shift: shift) }

    var fluxGuidance: Float? { guide.fluxGuidance }

    /// Per-sample flattened outputs with `removing` extra removal: final latents, or velocities at every sigma.
    func runModel(_ be: any Backend, removing extra: Removal) throws -> [[Float]] {
        var out: [[Float]] = []
        for range in batches {
            try Task.checkCancellation()
            let noise = try PromptDataset.noise(range, sampleShape: sampleShape, seed: ctx.noiseSeed, backend: be)
            let (cond, uncond) = try guide.conditioning(data, range, backend: be)
            var parts: [[Float]] = []
            if isSampling {
                passes.add(steps * (uncond == nil ? 1 : 2))
                parts.append(try be.floats(try sampler.sample(model.transformer, from: noise, cond: cond, uncond: uncond, imgIds: imgIds, removing: extra)))
            } else {
                let x0 = try cleanLatents(be, range, noise, cond)
                for s in sigmas {
                    let xt = try be.add(try be.scale(noise, s), try be.scale(x0, 1 - s))
                    let inputs = TransformerInputs(hiddenStates: xt, encoderHiddenStates: cond.encoderHiddenStates, pooledProjections: cond.pooledProjections,
                                                   timestep: Array(repeating: model.transformer.timestep(sigma: s), count: range.count),
                                                   guidance: cond.guidance, imgIds: imgIds, txtIds: nil)
                    passes.add(1)
                    parts.append(try be.floats(try model.transformer.forward(inputs, removing: extra)))
                }
            }
            let per = sampleShape.reduce(1, *)
            for i in 0..<range.count {
                out.append(parts.flatMap { $0[(i * per)..<((i + 1) * per)] })
            }
        }
        return out
    }

    /// ΔP of one removal from per-sample outputs vs the reference, averaged over samples.
    func deltaP(_ outs: [[Float]], _ ref: [[Float]]) -> Double {
        var total = 0.0
        for (o, r) in zip(outs, ref) {
            let d = FidelityMetrics(o, r)
            switch metric {
            case "psnr": total += ScoreStage.psnrCapDB - min(ScoreStage.psnrCapDB, d.psnr)
            case "cosine": total += 1 - d.cosine
            default: total += d.mse
            }
        }
        return total / Double(max(1, outs.count))
    }

    /// Diff-Pruning's Taylor importance: Σ over the component's tensors of Σ|w·∂L/∂w|, L = flow-matching MSE
    /// against v = noise − x₀, summed over noise levels σ = 1, 1 − 1/T, … until L < threshold · max L.
    func taylorScores(_ be: any Backend, _ addresses: [ComponentAddress]) throws -> [ComponentAddress: Double] {
        let p = ctx.params
        let levels = p["taylor"]?["timesteps"]?.int ?? 10
        let threshold = p["taylor"]?["threshold"]?.double ?? 0.05
        let t = model.transformer
        let names = Dictionary(uniqueKeysWithValues: try addresses.map { ($0, try model.structure.tensorNames(of: $0).filter { t.weights.contains($0) }) })
        let wanted = Set(names.values.flatMap { $0 })
        var importance: [String: Double] = [:]
        var maxLoss = 0.0
        var used = 0
        for k in 0..<levels {
            try Task.checkCancellation()
            let sigma = Float(1 - Double(k) / Double(levels))
            var loss = 0.0
            for range in batches {
                let noise = try PromptDataset.noise(range, sampleShape: sampleShape, seed: ctx.noiseSeed, backend: be)
                let cond = try data.conditioning(range, backend: be, guidance: fluxGuidance)
                let x0 = try cleanLatents(be, range, noise, cond)
                let xt = try be.add(try be.scale(noise, sigma), try be.scale(x0, 1 - sigma))
                let target = try be.add(noise, try be.scale(x0, -1))
                let inputs = TransformerInputs(hiddenStates: xt, encoderHiddenStates: cond.encoderHiddenStates, pooledProjections: cond.pooledProjections,
                                               timestep: Array(repeating: t.timestep(sigma: sigma), count: range.count),
                                               guidance: cond.guidance, imgIds: imgIds, txtIds: nil)
                passes.add(1)
                let g = try t.mseGradients(inputs, target: target, trainable: { wanted.contains($0) })
                loss += Double(g.loss) * Double(range.count)
                for (n, grad) in g.gradients where wanted.contains(n) {
                    let w = try be.floats(try t.weights(n)), d = try be.floats(grad)
                    var acc = 0.0
                    for i in 0..<min(w.count, d.count) { acc += abs(Double(w[i]) * Double(d[i])) }
                    importance[n, default: 0] += acc
                }
            }
            loss /= Double(max(1, data.count))
            used += 1
            maxLoss = max(maxLoss, loss)
            if loss < threshold * maxLoss { break }
        }
        ctx.recorder.metric("taylor_timesteps", Double(used))
        var out: [ComponentAddress: Double] = [:]
        for a in addresses { out[a] = names[a]?.reduce(0) { $0 + (importance[$1] ?? 0) } ?? 0 }
        return out
    }

    /// KOALA-style: per block, mean over samples and sigmas of 1 − cos(block input, block output), both streams
    /// flattened together; the input of block i is the output of the nearest earlier present block.
    func cosineScores(_ be: any Backend) throws -> [Int: Double] {
        let present = model.structure.blocks.map(\.index).filter { !model.loaded.removal.isBlockRemoved($0) }
        var sums: [Int: Double] = [:], counts: [Int: Int] = [:]
        for range in batches {
            try Task.checkCancellation()
            let noise = try PromptDataset.noise(range, sampleShape: sampleShape, seed: ctx.noiseSeed, backend: be)
            let cond = try data.conditioning(range, backend: be, guidance: fluxGuidance)
            let x0 = try cleanLatents(be, range, noise, cond)
            for s in sigmas {
                let xt = try be.add(try be.scale(noise, s), try be.scale(x0, 1 - s))
                let inputs = TransformerInputs(hiddenStates: xt, encoderHiddenStates: cond.encoderHiddenStates, pooledProjections: cond.pooledProjections,
                                               timestep: Array(repeating: model.transformer.timestep(sigma: s), count: range.count),
                                               guidance: cond.guidance, imgIds: imgIds, txtIds: nil)
                passes.add(1)
                let trace = try model.transformer.forwardTrace(inputs, capture: Set(present))
                var feats: [Int: [[Float]]] = [:]
                for i in present {
                    guard let b = trace.blocks[i] else { continue }
                    let x = try be.floats(b.image), c = try be.floats(b.context)
                    let px = x.count / range.count, pc = c.count / range.count
                    feats[i] = (0..<range.count).map { Array(x[($0 * px)..<(($0 + 1) * px)]) + Array(c[($0 * pc)..<(($0 + 1) * pc)]) }
                }
                for (k, i) in present.enumerated() where k > 0 {
                    guard let fin = feats[present[k - 1]], let fout = feats[i] else { continue }
                    for (a, b) in zip(fin, fout) {
                        sums[i, default: 0] += 1 - FidelityMetrics(b, a).cosine
                        counts[i, default: 0] += 1
                    }
                }
            }
        }
        return sums.mapValues { $0 }.reduce(into: [:]) { $0[$1.key] = $1.value / Double(max(1, counts[$1.key] ?? 1)) }
    }
}

/// MSE, PSNR and cosine similarity of one output against a reference (both flattened, same length).
struct FidelityMetrics {
    var mse: Double
    /// 10·log10(peak² / mse), peak = max − min of the reference; +∞ when identical.
    var psnr: Double
    var cosine: Double

    init(_ x: [Float], _ ref: [Float]) {
        var se = 0.0, dot = 0.0, nx = 0.0, nr = 0.0
        var lo = Double.infinity, hi = -Double.infinity
        for (a, b) in zip(x, ref) {
            let da = Double(a), db = Double(b)
            se += (da - db) * (da - db)
            dot += da * db
            nx += da * da
            nr += db * db
            lo = min(lo, db)
            hi = max(hi, db)
        }
        let n = Double(max(1, min(x.count, ref.count)))
        mse = se / n
        let peak = hi > lo ? hi - lo : 1
        psnr = mse == 0 ? .infinity : 10 * log10(peak * peak / mse)
        cosine = (nx == 0 && nr == 0) ? 1 : (nx == 0 || nr == 0 ? 0 : dot / (nx.squareRoot() * nr.squareRoot()))
    }
}
