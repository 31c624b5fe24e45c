// `score` with `metric: external` and a `scorer`: hprune drives HierarchicalPrune's per-component loop — for the
// unpruned model (the baseline) and each component removed it samples the calibration set with the stage's
// `sampling`, writes the final latents to a safetensors file, runs the scorer program on it (argument array, no
// shell) and reads back P; ΔP = P_baseline − P. Each P is kept in the store as soon as it is known (resumable).

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import Models
import Scheduler
import StageGraph
import TensorCore

/// The scorer program of a `score` stage and how one variant's samples are handed to it.
///
/// Per variant it gets, in its environment: `HPRUNE_SAMPLES` (the samples file), `HPRUNE_VARIANT` (`baseline` or an
/// address like `blocks.12.ff`), `HPRUNE_OUT` (a fresh folder: the program writes `score.json` there, a JSON number
/// or `{"score": P}`, higher = better), `HPRUNE_DATASET` (the calibration file, for captions or task metadata),
/// `HPRUNE_STAGE`, `HPRUNE_SEED`, and the recipe's `scorer.env`.
///
/// The samples file holds `latents` [N, C, H, W] (SD3) or [N, h·w, C] (FLUX, packed 2×2 as diffusers) in f32 —
/// the transformer's final latents in the pipeline's scaled space, so `vae.decode(z / scaling + shift)` gives the
/// images — and metadata `variant`, `architecture`, `layout` (`sd3-nchw` | `flux-packed-2x2`), `latent_height`,
/// `latent_width` and, when the dataset has them, `prompts` (one per line).
struct ScorerCommand {
    let argv: [String]
    let env: [String: String]
    let timeout: Double?
    /// Digest of argv, env and the `deps` files' contents: part of every kept value's key.
    let identity: String

    init(_ s: ScoreStage.Params.Scorer, ctx: StageContext) throws {
        argv = s.run
        guard !argv.isEmpty else { throw ctx.failure("'scorer.run' is empty", log: "fix: give the program and its arguments, e.g. [python3, Examples/scorers/hpsv2_score.py]") }
        let e = s.env ?? [:]
        env = e
        timeout = s.timeout
        var id = "argv=\(argv)|env=\(e.sorted { $0.key < $1.key })"
        for dep in s.deps ?? [] {
            let url = dep.hasPrefix("/") ? URL(fileURLWithPath: dep) : ctx.recipeDirectory.appendingPathComponent(dep)
            guard let d = try? Data(contentsOf: url) else {
                throw ctx.failure("'scorer.deps': cannot read '\(dep)' (\(url.path))", log: "fix: list files that exist, relative to the recipe")
            }
            id += "|\(dep)=\(Digest.of(d).hex)"
        }
        identity = Digest.of(Data(id.utf8)).hex
    }

    /// Writes `samples` (per-sample flattened latents of `shape`) for `variant` and runs the scorer on them; returns P.
    func score(_ samples: [[Float]], shape: [Int], variant: String, data: PromptDataset, config: ModelConfig,
               latentGrid: (height: Int, width: Int)?, datasetPath: String?, ctx: StageContext) async throws -> Double {
        let fm = FileManager.default
        let safe = variant.replacingOccurrences(of: ".", with: "_")
        let dir = ctx.workDirectory.appendingPathComponent("scorer/\(safe)")
        try? fm.removeItem(at: dir)
        let out = dir.appendingPathComponent("out")
        try fm.createDirectory(at: out, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("samples.safetensors")
        try Self.writeSamples(samples, shape: shape, variant: variant, data: data, config: config, latentGrid: latentGrid, to: file)

        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        environment["HPRUNE_SAMPLES"] = file.path
        environment["HPRUNE_VARIANT"] = variant
        environment["HPRUNE_OUT"] = out.path
        environment["HPRUNE_STAGE"] = ctx.stage.name
        environment["HPRUNE_SEED"] = String(ctx.seed)
        if let datasetPath { environment["HPRUNE_DATASET"] = datasetPath }
        guard let program = CommandStage.resolveProgram(argv[0], in: ctx.recipeDirectory, path: environment["PATH"] ?? "/usr/bin:/bin") else {
            throw ctx.failure("'scorer.run': program '\(argv[0])' not found (looked in PATH and relative to \(ctx.recipeDirectory.path))",
                              log: "fix: check `scorer.run`")
        }
        let (status, signalled, _, err) = try await CommandStage.runProcess(program, arguments: Array(argv.dropFirst()), environment: environment,
                                                                directory: ctx.recipeDirectory, logDirectory: dir, timeout: timeout)
        if Task.isCancelled { throw CancellationError() }
        let command = argv.joined(separator: " ")
        if signalled {
            throw ctx.failure("scorer `\(command)` on variant \(variant) \(timeout.map { "timed out after \($0)s or " } ?? "")was killed by signal \(status)"
                              + CommandStage.tailSuffix(err), log: CommandStage.tail(err))
        }
        if status != 0 {
            throw ctx.failure("scorer `\(command)` on variant \(variant) exited with status \(status)" + CommandStage.tailSuffix(err), log: CommandStage.tail(err))
        }
        let scoreFile = out.appendingPathComponent("score.json")
        guard let d = try? Data(contentsOf: scoreFile) else {
            throw ctx.failure("scorer `\(command)` on variant \(variant) wrote no score.json into $HPRUNE_OUT" + CommandStage.tailSuffix(err),
                              log: "fix: the scorer writes its score P (higher = better) as a JSON number or {\"score\": P} to $HPRUNE_OUT/score.json")
        }
        let value = try? JSONSerialization.jsonObject(with: d, options: [.fragmentsAllowed])
        let p = (value as? NSNumber)?.doubleValue ?? ((value as? [String: Any])?["score"] as? NSNumber)?.doubleValue
        guard let p, p.isFinite else {
            let text = String(decoding: d.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ctx.failure("scorer `\(command)` on variant \(variant): score.json holds '\(text)', not a finite number or {\"score\": P}",
                              log: "fix: write a JSON number or {\"score\": P} to $HPRUNE_OUT/score.json")
        }
        ctx.recorder.log("scorer \(variant): P = \(p)\n")
        return p
    }

    /// Writes per-sample flattened latents of `shape` as a samples file (the layout above; atomic).
    /// `latentGrid`: FLUX token grid (h, w) of the packed latents.
    static func writeSamples(_ samples: [[Float]], shape: [Int], variant: String, data: PromptDataset, config: ModelConfig,
                             latentGrid: (height: Int, width: Int)?, to file: URL) throws {
        var meta = ["variant": variant, "architecture": config.architecture.rawValue]
        switch config {
        case .sd3: meta["layout"] = "sd3-nchw"; meta["latent_height"] = String(shape[1]); meta["latent_width"] = String(shape[2])
        case .flux:
            meta["layout"] = "flux-packed-2x2"
            if let s = latentGrid { meta["latent_height"] = String(s.height); meta["latent_width"] = String(s.width) }
        }
        if let prompts = data.prompts { meta["prompts"] = prompts.joined(separator: "\n") }
        try SafetensorsWriter.write([TensorPayload(name: "latents", shape: [samples.count] + shape, floats: samples.flatMap { $0 })],
                                    metadata: meta, to: file.path)
    }
}

extension ScoreRun {
    /// ΔP = P_baseline − P of every address, P from the scorer on each variant's samples; P_baseline and every
    /// ΔP kept as they are known. Returns (ΔP by address, P_baseline).
    func scoreExternally(_ addresses: [ComponentAddress], scorer: ScorerCommand, interruptAfter: Int?)
        async throws -> ([ComponentAddress: Double], Double) {
        let t0 = Date()
        let bar = ctx.progress.bar(total: addresses.count + 1, unit: "variants")
        let datasetPath = ctx.input("data").map { $0.sourcePath?.path ?? ctx.store.path(of: $0.digest).path }
        let config = model.structure.config
        func key(_ what: String) -> String { "scorer:\(scorer.identity):\(what)" }
        var fresh = 0, reused = 0
        let baseline: Double
        if let d = kept(key("baseline")), let v = Self.decodeValue(d) {
            baseline = v
            bar.advance(message: "baseline P \(String(format: "%.5g", v)) (kept)")
        } else {
            baseline = try await scorer.score(try referenceOutputs(), shape: sampleShape, variant: "baseline", data: data, config: config,
                                              latentGrid: latentGrid, datasetPath: datasetPath, ctx: ctx)
            try keep(key("baseline"), Self.encodeValue(baseline))
            bar.advance(message: "baseline P \(String(format: "%.5g", baseline))")
        }
        var out: [ComponentAddress: Double] = [:]
        for a in addresses {
            try Task.checkCancellation()
            if let d = kept(key(a.description)), let v = Self.decodeValue(d) {
                out[a] = v
                reused += 1
                bar.advance(message: "\(a) ΔP \(String(format: "%.4g", v)) (kept)")
                continue
            }
            if let limit = interruptAfter, fresh >= limit { throw CancellationError() }
            let samples = try removal.outputs(removing: try Removal([a], in: model.structure))
            let p = try await scorer.score(samples, shape: sampleShape, variant: a.description, data: data, config: config,
                                           latentGrid: latentGrid, datasetPath: datasetPath, ctx: ctx)
            let v = baseline - p
            try keep(key(a.description), Self.encodeValue(v))
            out[a] = v
            fresh += 1
            bar.advance(message: "\(a) P \(String(format: "%.5g", p)) ΔP \(String(format: "%.4g", v))")
        }
        ctx.recorder.metric("baseline_score", baseline)
        ctx.recorder.metric("forward_passes", Double(passes.value))
        ctx.recorder.metric("components_computed", Double(fresh))
        ctx.recorder.metric("components_resumed", Double(reused))
        ctx.recorder.metric("score_seconds", Date().timeIntervalSince(t0), unit: "s")
        return (out, baseline)
    }
}
