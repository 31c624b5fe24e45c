// The `evaluate` stage kind: compares models side by side — weight memory by dtype (from manifests), runtime
// memory, latency per denoising step and per sample (median of repeats, on the run's backend), fidelity of final
// latents against the first (reference) model with fixed noise, and a task metric where the dataset has targets.
// Metrics go to the ledger (`hprune diff` shows them) and to a `Report` JSON artifact; with `images`, a sample
// grid PNG per model goes to a `samples` tree.

import ArtifactStore
import Classifier
import Compression
import Foundation
import ModelSpec
import ModelStore
import Models
import PNGSupport
import Scheduler
import StageGraph
import TensorCore
import YAMLSupport

public struct EvaluateStage: TypedStageKind {
    public init() {}
    public let name = "evaluate"
    public let version = 1
    public let summary = "Memory, latency, fidelity vs a reference model and task metrics, side by side (Report + ledger metrics)."

    /// The stage's parameters, decoded once with the schema's defaults.
    public struct Params: Decodable {
        /// Name → model reference, in recipe order (the first is the reference).
        public var models: NamedReferences
        public var data: String?
        public var metrics: [EvaluationMetric]
        public var samples: Int?
        public var batch: Int
        public var repeats: Int
        public var warmup: Int
        public var sampling: SamplingSettings
        public var taskSigmas: [Float]
        public var classifier: Classifier?
        public var degradation: [TaskMetric]
        public var images: Images?
        public var latentSize: LatentSize?
        public var latents: Bool?

        public struct Classifier: Decodable {
            public var data: String
            public var hidden: Int
            public var epochs: Int
            public var seed: Int
        }
        public struct Images: Decodable {
            public var columns: Int
            public var rows: Int
            public var scale: Int
        }

        public func wants(_ m: EvaluationMetric) -> Bool { metrics.contains(m) }
        /// `latents: true`: write every model's final latents.
        public var savesLatents: Bool { latents == true }
        /// Whether any part draws samples or reads the dataset.
        public var needsData: Bool { metrics.contains(where: \.needsData) || images != nil || savesLatents }
    }

    public let schema = Schema([
        Field("models", .dictionary(.reference(.model)), required: true,
              doc: "Name → model, e.g. `{original: teacher, compressed: quantise}`. The FIRST is the reference for `fidelity`. Metrics are named `<name>.<metric>`."),
        Field("data", .reference(.dataset),
              doc: "Calibration / evaluation dataset (prompt embeddings; see Docs/method.md 'Datasets'). Required for `latency`, `fidelity` and `task`."),
        Field("metrics", .list(.choice(of: EvaluationMetric.self), minCount: 1), default: .list([.string("memory"), .string("latency"), .string("fidelity")]),
              doc: "`memory`: stored weight bytes in total and by dtype/format (from the manifest), parameters, and the process's resident-memory growth while the model is loaded and sampling. `latency`: median of `repeats` timed sampling runs of one batch — per denoising step and per sample (ms), on the run's backend. `fidelity`: final latents of every dataset sample (fixed per-sample noise from the recipe seed) against the reference model's: latent MSE, PSNR (dB, peak = the reference sample's range, identical = 100 dB) and cosine. `task`: flow-matching loss (velocity MSE against noise − latents) on the dataset's `latents` at `task_sigmas` — needs `latents` in the dataset; other task metrics (GenEval, HPSv2) plug in through a `command` stage (Docs/method.md)."),
        Field("samples", .integer(min: 1), doc: "Use only the first N dataset samples. Default: all."),
        Field("batch", .integer(min: 1), default: .int(1), doc: "Samples per forward pass (also the latency batch)."),
        Field("repeats", .integer(min: 1, max: 1000), default: .int(3), doc: "Timed latency runs per model (the median is reported)."),
        Field("warmup", .integer(min: 0, max: 100), default: .int(1), doc: "Untimed runs before the timed ones."),
        SamplingSettings.field(doc: "Sampling settings for latency and fidelity.",
                               guidanceDoc: "SD3: classifier-free guidance scale, on when > 1 (needs the dataset's negative embedding, see `score`'s `sampling.guidance`); FLUX models with a guidance embedding: the guidance value."),
        Field("task_sigmas", .list(.number(min: 0, max: 1, exclusive: true), minCount: 1), default: .list([.double(0.25), .double(0.5), .double(0.75)]),
              doc: "Noise levels of the `task` loss."),
        Field("classifier", .object(Schema([
            Field("data", .reference(.dataset), required: true,
                  doc: "Training images (`latents`) and `labels` of the classifier, e.g. the training split; the stage's own `data` (with `latents` and `labels`) is the held-out set."),
            Field("hidden", .integer(min: 1), default: .int(64), doc: "Hidden units (the feature dimension of the Fréchet distance)."),
            Field("epochs", .integer(min: 1, max: 1000), default: .int(40), doc: "Training epochs (Adam, lr 3e-3, batch 32)."),
            Field("seed", .integer(min: 0), default: .int(0), doc: "Seed of the classifier's weights and shuffles."),
        ])),
              doc: "With `task`: a 2-layer MLP classifier trained here on `classifier.data` gives, per model, `prompt_accuracy` (share of samples classified as their prompt's label), `frechet` (Fréchet distance of the classifier's hidden features, samples vs the real `latents` of `data`) and `degradation` (% mean relative drop of the `degradation` metrics vs the first model; default prompt accuracy alone); plus `classifier.heldout_accuracy` on `data`. Samples use `sampling` and the fixed per-sample noise of `fidelity`."),
        Field("degradation", .list(.choice(of: TaskMetric.self), minCount: 1), default: .list([.string("prompt_accuracy")]),
              doc: "With `classifier`: the task metrics whose relative drops against the first model are averaged into `degradation` (%), as the paper computes it from GenEval and HPSv2: (ref − m)/ref for `prompt_accuracy`, (m − ref)/ref for `frechet` (lower is better)."),
        EvaluateStage.groupsField,   // EvaluateGroups.swift
        Field("images", .object(Schema([
            Field("columns", .integer(min: 1, max: 64), default: .int(8),
                  doc: "Samples per row: for class-labelled data the first `columns` samples of each class, in dataset order."),
            Field("rows", .integer(min: 1, max: 256), default: .int(10),
                  doc: "At most this many rows: classes in ascending label order (labelled data), else runs of `columns` consecutive samples."),
            Field("scale", .integer(min: 1, max: 16), default: .int(2), doc: "Each latent pixel becomes a scale × scale block (nearest neighbour)."),
        ])),
              doc: "Writes, per model, a grid of the samples already drawn for `fidelity` / `classifier` (no extra sampling; the same noise) as `<model>.png` in the output `samples` (a folder; `hprune report --images` copies them out). Latents are mapped from [-1, 1] to 0…255 (clamped), tiles separated by 1-pixel grey gaps. Pixel-space models only: 1 latent channel (greyscale) or 3 (RGB)."),
        LatentSize.field(doc: "[height, width] of the sampled latents. Default: the dataset's metadata or latents, else the model's `sample_size`."),
        Field("latents", .bool,
              doc: "`true`: also write every model's final latents (the samples `fidelity` draws: the fixed per-sample noise and `sampling`) as `<model>.safetensors` in the output `latents` (a folder), in the samples format of external scorers (Docs/method.md §1a: `latents` f32 in the pipeline's scaled space, metadata `layout`, `prompts`), so a `command` stage can score them with Examples/scorers/ (HPSv2, GenEval-style)."),
    ])

    public func outputs(params: ParamValue) -> [PortSpec] {
        var ports = [PortSpec("report", .report, doc: "JSON: per model its digest and metrics, the backend, the settings")]
        if params["images"] != nil {   // only then, so recipes without `images` keep their ports (and keys)
            ports.append(PortSpec("samples", .files, doc: "with `images`: a folder of `<model>.png` sample grids"))
        }
        if params["latents"]?.bool == true {
            ports.append(PortSpec("latents", .files, doc: "with `latents: true`: a folder of `<model>.safetensors` final latents for external scorers"))
        }
        return ports
    }
    public func defaultOutput(params: ParamValue) -> String { "report" }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        guard let p = try? decodeParams(params) else { return }   // only runs on schema-clean params
        if p.models.entries.isEmpty {
            checker.error("'models' needs at least one model", node["models"]?.mark ?? node.mark, hint: "e.g. `models: {original: teacher, compressed: quantise}`")
        }
        if p.data == nil, let m = p.metrics.first(where: \.needsData) {
            checker.error("metric '\(m.rawValue)' needs 'data' (a dataset of prompt embeddings)", node["metrics"]?.mark ?? node.mark, hint: "add `data: <dataset>`")
        }
        if p.images != nil, p.data == nil {
            checker.error("'images' shows samples, which need 'data' (a dataset of prompt embeddings)", node["images"]?.mark ?? node.mark, hint: "add `data: <dataset>`")
        }
        if p.savesLatents, p.data == nil {
            checker.error("'latents' writes samples, which need 'data' (a dataset of prompt embeddings)", node["latents"]?.mark ?? node.mark, hint: "add `data: <dataset>`")
        }
        if p.classifier != nil, !p.wants(.task) {
            checker.error("'classifier' gives task metrics; add 'task' to 'metrics'", node["classifier"]?.mark ?? node.mark)
        }
        LatentSize.check(params, node: node, checker: &checker)
        Self.checkGroups(params: params, node: node, checker: &checker)
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let p = try params(ctx)
        let names = p.models.names
        let steps = p.sampling.steps, shift = p.sampling.shift
        let guidance = Float(p.sampling.guidance)
        let override = p.latentSize.map { (height: $0.height, width: $0.width) }

        let grid = p.images
        let samplesDir = ctx.workDirectory.appendingPathComponent("samples")
        if grid != nil { try FileManager.default.createDirectory(at: samplesDir, withIntermediateDirectories: true) }
        let latentsDir = ctx.workDirectory.appendingPathComponent("latents")
        if p.savesLatents { try FileManager.default.createDirectory(at: latentsDir, withIntermediateDirectories: true) }
        let data = p.needsData ? try ctx.openDataset("data", limit: p.samples) : nil
        if p.wants(.task), data?.latents == nil {
            throw ctx.failure("metric 'task' needs 'latents' (targets in latent space) in the dataset",
                              log: "fix: add 'latents' to the dataset file, or drop 'task' from 'metrics'")
        }
        let classifier = try p.classifier.flatMap { p.wants(.task) ? try trainClassifier(ctx, $0, heldOut: data) : nil }
        let be = p.needsData ? try ctx.makeBackend() : nil

        var report: [String: Any] = [:]
        var reference: [[Float]]?
        var referenceTask: [TaskMetric: Double]?
        let groups = Self.labelGroups(ctx.params)   // recipe order of the groups, so read from the params as written
        var referenceGroups: [String: [TaskMetric: Double]]?
        var architecture: String?
        let bar = ctx.progress.bar(total: names.count, unit: "models")
        for name in names {
            try Task.checkCancellation()
            let path = "models.\(name)"
            var metrics: [(String, Double, String)] = []
            let m = try ctx.loadModel(path)
            if p.wants(.fidelity), let a = architecture, a != m.manifest.architecture {
                throw ctx.failure("model '\(name)' is a \(m.manifest.architecture), the reference is a \(a)", log: "fix: compare models of one architecture")
            }
            architecture = m.manifest.architecture
            if p.wants(.memory) {
                metrics.append(("weight_bytes", Double(m.manifest.weightBytes), "B"))
                for (k, v) in Self.bytesByFormat(m.manifest).sorted(by: { $0.key < $1.key }) { metrics.append(("weight_bytes.\(k)", Double(v), "B")) }
                metrics.append(("params", Double((try? m.structure.parameterCount(after: m.removal)) ?? 0), ""))
            }
            if let be, let data {
                do { try data.check(against: m.structure.config) } catch let e as DatasetError { throw ctx.failure("\(e)") }
                let guide = try SamplingGuidance(guidance, config: m.structure.config, data: data, ctx: ctx)
                let sampler = guide.sampler(steps: steps, shift: shift)
                HostBufferPool.shared.drain()   // buffers kept from the previous model would hide this one's memory
                let rssBefore = Self.residentBytes()
                let model = try ctx.openModel(path, backend: be)
                try model.transformer.weights.prepareForInference(eagerly: true)   // sampling only: pack Linear weights once, before any timing
                let t = model.transformer
                let shape: [Int]
                do { shape = Array(try data.latentShape(for: m.structure.config, batch: 1, override: override).dropFirst()) } catch let e as DatasetError { throw ctx.failure("\(e)") }
                let ids = data.imageIds(for: m.structure.config, override: override)
                var peakRSS = rssBefore
                let batches = guide.batches(data, size: p.batch, sampleShape: shape, seed: ctx.noiseSeed, backend: be, latents: false)

                if p.wants(.latency) {
                    let l = try SampleEvaluation.latency(sampler, t, batch: try batches.batch(0), imgIds: ids, warmup: p.warmup, repeats: p.repeats) {
                        peakRSS = max(peakRSS, Self.residentBytes())
                    }
                    metrics.append(("latency_step", l.perStep, "ms"))
                    metrics.append(("latency_sample", l.perSample, "ms"))
                }
                if grid != nil, shape.count != 3 || (shape[0] != 1 && shape[0] != 3) {
                    throw ctx.failure("'images' needs a pixel-space model (1 or 3 latent channels), but model '\(name)' samples latents of shape \(shape) (channels first)",
                                      log: "fix: remove 'images' from stage '\(ctx.stage.name)' (\(ctx.stage.mark)), or evaluate only models whose latents are pixels (in_channels 1 or 3)")
                }
                if p.wants(.fidelity) || classifier != nil || grid != nil || p.savesLatents {
                    let outs = try sampler.sampleAll(t, batches, imgIds: ids) { _ in peakRSS = max(peakRSS, Self.residentBytes()) }
                    if p.savesLatents {
                        let latentGrid = data.fluxGrid(override: override)
                        try ScorerCommand.writeSamples(outs, shape: shape, variant: name, data: data, config: m.structure.config,
                                                       latentGrid: latentGrid, to: latentsDir.appendingPathComponent("\(name).safetensors"))
                    }
                    if let grid {
                        let file = samplesDir.appendingPathComponent("\(name).png")
                        do {
                            try Self.sampleGrid(outs, labels: data.labels, shape: shape, columns: grid.columns, rows: grid.rows,
                                                scale: grid.scale).write(to: file)
                        } catch let e as PNGError { throw ctx.failure("sample grid of model '\(name)': \(e)") }
                    }
                    if let classifier, let labels = data.labels {
                        let (features, predictions) = try classifierMetrics(ctx, classifier.model, outs.flatMap { $0 })
                        let acc = Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(1, labels.count))
                        metrics.append(("prompt_accuracy", acc, ""))
                        let fd: Double
                        do { fd = try frechetDistance(features, classifier.realFeatures, dim: classifier.model.hidden) } catch {
                            throw ctx.failure("Fréchet distance: \(error)")
                        }
                        metrics.append(("frechet", fd, ""))
                        let task: [TaskMetric: Double] = [.promptAccuracy: acc, .frechet: fd]
                        let ref = referenceTask ?? task   // the first model is the reference
                        referenceTask = ref
                        metrics.append(("degradation", Degradation.percent(reference: ref, model: task, metrics: p.degradation) ?? 0, "%"))
                        metrics += try groupMetrics(ctx, groups, classifier: classifier, labels: labels, predictions: predictions,
                                                    features: features, reference: &referenceGroups, degradationOf: p.degradation)
                    }
                    if !p.wants(.fidelity) {
                    } else if let ref = reference {
                        let f = FidelityMetrics.mean(outs, reference: ref)
                        metrics += [("latent_mse", f.mse, ""), ("psnr", f.psnr, "dB"), ("cosine", f.cosine, "")]
                    } else {
                        reference = outs
                    }
                }
                if p.wants(.task) {
                    // Noise of seed + 1: independent of the sampling noise above.
                    let taskBatches = guide.batches(data, size: p.batch, sampleShape: shape, seed: ctx.noiseSeed &+ 1, backend: be, latents: true)
                    let loss: Double
                    do { loss = try SampleEvaluation.flowMatchLoss(t, taskBatches, sigmas: p.taskSigmas, imgIds: ids) } catch let e as CompressionError {
                        throw ctx.failure("metric 'task': \(e)")
                    }
                    metrics.append(("task_flow_loss", loss, ""))
                    // Hook: class-conditional datasets (`labels`) get accuracy metrics from the real-data demo's
                    // classifier, which is not part of this stage; `labels` are read and counted only.
                    if let labels = data.labels { metrics.append(("task_labels", Double(Set(labels).count), "")) }
                }
                if p.wants(.memory) {
                    peakRSS = max(peakRSS, Self.residentBytes())
                    metrics.append(("runtime_bytes", Double(max(0, peakRSS - rssBefore)), "B"))
                }
                _ = model
            }
            var entry: [String: Any] = ["digest": m.digest.hex, "architecture": m.manifest.architecture,
                                        "removed": m.manifest.structure.removed,
                                        "quantisation": m.manifest.quantisation?.format.rawValue ?? "none"]
            var mm: [String: Any] = [:]
            for (k, v, u) in metrics {
                ctx.recorder.metric("\(name).\(k)", v, unit: u)
                mm[k] = ["value": v.isFinite ? v : 0, "unit": u]
            }
            entry["metrics"] = mm
            report[name] = entry
            bar.advance(message: name)
        }
        if let classifier { ctx.recorder.metric("classifier.heldout_accuracy", classifier.heldOutAccuracy, unit: "") }
        let doc: [String: Any] = [
            "schema": 1, "kind": "hprune.report", "stage": ctx.stage.name, "backend": ctx.backend,
            "reference": names.first ?? "", "order": names, "models": report,
            "classifier": classifier.map { ["heldout_accuracy": $0.heldOutAccuracy, "hidden": $0.model.hidden] as [String: Any] } ?? [:],
            "settings": ["steps": steps, "guidance": Double(guidance), "shift": shift, "batch": p.batch, "repeats": p.repeats,
                         "warmup": p.warmup, "samples": data?.count ?? 0, "seed": ctx.seed, "metrics": Set(p.metrics.map(\.rawValue)).sorted()],
        ]
        let json = try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .prettyPrinted])
        var log = "backend \(ctx.backend)\n"
        for n in names {
            if let mm = (report[n] as? [String: Any])?["metrics"] as? [String: [String: Any]] {
                log += "  \(n): " + mm.keys.sorted().map { k in "\(k)=\(mm[k]?["value"] ?? "")\((mm[k]?["unit"] as? String).map { $0.isEmpty ? "" : " " + $0 } ?? "")" }.joined(separator: ", ") + "\n"
            }
        }
        ctx.recorder.log(log)
        var result = ["report": try ctx.store.put(json)]
        if grid != nil { result["samples"] = try ctx.store.putTree(samplesDir) }
        if p.savesLatents { result["latents"] = try ctx.store.putTree(latentsDir) }
        return result
    }

    /// The sample sheet of one model: a row per class (ascending label; the first `columns` samples of that
    /// class) for labelled data, else rows of `columns` consecutive samples; at most `rows` rows.
    /// `samples` are [C, H, W] each, `shape` = [C, H, W] with C 1 or 3.
    static func sampleGrid(_ samples: [[Float]], labels: [Int]?, shape: [Int], columns: Int, rows: Int, scale: Int) throws -> PNGImage {
        var grid: [[[Float]?]] = []
        if let labels {
            for label in Set(labels).sorted().prefix(rows) {
                let picked = zip(samples, labels).filter { $0.1 == label }.prefix(columns).map { Optional($0.0) }
                grid.append(Array(picked))
            }
        } else {
            for start in stride(from: 0, to: min(samples.count, rows * columns), by: columns) {
                grid.append(samples[start..<min(samples.count, start + columns)].map { Optional($0) })
            }
        }
        if grid.isEmpty { grid = [[]] }
        return try ImageGrid.image(rows: grid, channels: shape[0], height: shape[1], width: shape[2], columns: columns, scale: scale)
    }

    /// The task classifier, trained on `classifier.data`, with its held-out accuracy and the real features.
    struct TrainedClassifier {
        let model: MLPClassifier
        let heldOutAccuracy: Double
        /// Hidden features of the held-out real latents [N·hidden].
        let realFeatures: [Float]
    }

    /// Trains the classifier on `classifier.data` and measures it on the held-out dataset (`data`).
    func trainClassifier(_ ctx: StageContext, _ p: Params.Classifier, heldOut: PromptDataset?) throws -> TrainedClassifier {
        let train = try ctx.openDataset("classifier.data")
        guard let heldOut, let testLatents = heldOut.latents, let testLabels = heldOut.labels else {
            throw ctx.failure("'classifier' needs 'latents' and 'labels' in the stage's dataset (the held-out real images)",
                              log: "fix: point 'data' at a class-labelled dataset with latents (e.g. Examples/digits/digits-test.safetensors)")
        }
        guard let latents = train.latents, let labels = train.labels else {
            throw ctx.failure("'classifier.data' needs 'latents' and 'labels' (training images and their classes)",
                              log: "fix: point 'classifier.data' at a class-labelled dataset with latents")
        }
        let inputs = latents.shape.dropFirst().reduce(1, *)
        guard testLatents.shape.dropFirst().reduce(1, *) == inputs else {
            throw ctx.failure("the classifier's training latents have \(inputs) values per sample, the held-out ones \(testLatents.shape.dropFirst().reduce(1, *))",
                              log: "fix: use datasets of one latent size for 'data' and 'classifier.data'")
        }
        let classes = max(labels.max() ?? 0, testLabels.max() ?? 0) + 1
        let settings = MLPClassifier.Settings(hidden: p.hidden, epochs: p.epochs, seed: UInt64(p.seed))
        do {
            let host = ReferenceBackend()
            let model = try MLPClassifier.train(images: try host.floats(latents), labels: labels, inputs: inputs,
                                                classes: max(2, classes), settings: settings)
            let (features, preds) = try model.evaluate(try host.floats(testLatents))
            let acc = Double(zip(preds, testLabels).filter { $0 == $1 }.count) / Double(max(1, testLabels.count))
            ctx.recorder.log("classifier: \(inputs) → \(settings.hidden) → \(classes), \(labels.count) training images, held-out accuracy \(acc) on \(testLabels.count)\n")
            return TrainedClassifier(model: model, heldOutAccuracy: acc, realFeatures: features)
        } catch let e as ClassifierError {
            throw ctx.failure("classifier: \(e)")
        }
    }

    /// Hidden features and predicted classes of generated samples (flattened [N·D]).
    func classifierMetrics(_ ctx: StageContext, _ model: MLPClassifier, _ samples: [Float]) throws -> ([Float], [Int]) {
        guard samples.count % model.inputs == 0 else {
            throw ctx.failure("the samples have \(samples.count) values, not a whole number of the classifier's \(model.inputs)-value inputs",
                              log: "fix: sample at the classifier's latent size (see 'latent_size')")
        }
        do { return try model.evaluate(samples) } catch { throw ctx.failure("classifier: \(error)") }
    }

    /// Stored bytes by format: a quantised weight (codes and companions) under its format (`nf4`), others by dtype.
    static func bytesByFormat(_ m: ModelManifest) -> [String: Int] {
        var out: [String: Int] = [:]
        for t in m.tensors.values {
            let key = t.quantisation?.format.rawValue ?? t.object.dtype.rawValue.lowercased()
            out[key, default: 0] += t.objects.reduce(0) { $0 + $1.bytes }
        }
        return out
    }

    /// Resident set size of this process in bytes (Linux /proc/self/statm; 0 elsewhere).
    static func residentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
