// The `train` stage kind: trains a model on a dataset's latents with the flow-matching loss — continuing a
// stored model, or from random weights for a config (small teachers such as the quickstart's) — with the same
// optimiser, checkpoint/resume and NaN handling as `distill` (TrainingLoop).

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import ModelStore
import Models
import Scheduler
import StageGraph
import Training
import YAMLSupport

public struct TrainStage: TypedStageKind {
    public init() {}
    public let name = "train"
    public let version = 1
    public let summary = "Train a model with the flow-matching loss (from a model, or random init for a config), resumable."

    public let schema = Schema([
        Field("model", .reference(.model), doc: "The model to continue training (frozen blocks stay unchanged). Exclusive with `init`."),
        Field("init", .object(Schema([
            Field("config", .string, required: true, doc: "A diffusers config.json (SD3 or FLUX), relative to the recipe."),
            Field("seed", .integer(min: 0), default: .int(0), doc: "Seed of the random weights (matrices N(0, 1/fan_in), vectors N(0, 0.01), q/k norm scales 1 + N(0, 0.01))."),
        ])), doc: "Start from random weights for this config instead of a model."),
        Field("data", .reference(.dataset), required: true,
              doc: "Prompt embeddings and `latents` (x0, required): the model learns v = noise − x0 at x_t = σ·noise + (1−σ)·x0."),
    ] + TrainingFields.common)

    public struct Params: Decodable {
        /// Exclusive with `initial` (`check`).
        var model: String?
        var initial: Init?
        var data: String
        var training: TrainingSettings

        struct Init: Decodable {
            var config: String
            var seed: Int
        }

        enum CodingKeys: String, CodingKey {
            case model, data
            case initial = "init"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            model = try c.decodeIfPresent(String.self, forKey: .model)
            initial = try c.decodeIfPresent(Init.self, forKey: .initial)
            data = try c.decode(String.self, forKey: .data)
            training = try TrainingSettings(from: decoder)
        }
    }

    public func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("model", .model, doc: "the trained model")] }
    public func defaultOutput(params: ParamValue) -> String { "model" }

    public func fileDependencies(params: ParamValue) -> [String] {
        params["init"]?["config"]?.string.map { [$0] } ?? []
    }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        TrainingFields.check(params, node: node, checker: &checker)
        let hasModel = params["model"] != nil, hasInit = params["init"] != nil
        if hasModel == hasInit {
            checker.error(hasModel ? "give either 'model' or 'init', not both" : "missing 'model' or 'init'", node.mark,
                          hint: "continue a model with `model: <name>`, or start fresh with `init: {config: path/config.json, seed: 0}`")
        }
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        if let outputs = try await DataParallel.launchIfNeeded(ctx) { return outputs }   // `ranks: N`: N processes
        let p = try params(ctx)
        let be = try ctx.makeBackend()
        let model: any DiffusionTransformer
        var manifest: ModelManifest
        var frozenBlocks: Set<Int> = [], frozenPrefixes: [String] = []
        if p.model != nil {
            let m = try ctx.openModel("model", backend: be)
            guard !m.manifest.isQuantised else {
                throw ctx.failure("the model is quantised; quantised weights cannot be trained", log: "fix: train before the quantise stage")
            }
            model = m.transformer
            manifest = m.manifest
            frozenBlocks = Set(m.frozen.blocks)
            frozenPrefixes = m.frozen.prefixes
        } else {
            guard let initial = p.initial else { throw ctx.failure("missing 'model' or 'init'") }
            let path = initial.config
            let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : ctx.recipeDirectory.appendingPathComponent(path)
            let json: [String: JSONValue]
            do {
                let data = try Data(contentsOf: url)
                guard case .success(let v) = JSONValue.parse(data), case .object(let o) = v else {
                    throw ModelStoreError("\(url.path) is not a JSON object", fix: "point `init.config` at a diffusers config.json")
                }
                json = o
            } catch let e as ModelStoreError {
                throw ctx.failure("'init.config': \(e.message)", log: "fix: \(e.fix)")
            } catch {
                throw ctx.failure("'init.config': cannot read \(url.path) (\(PlainError.describe(error)))", log: "fix: the path is relative to the recipe's folder")
            }
            let config: ModelConfig
            do { config = try ModelConfig.parse(json, file: url.path) } catch { throw ctx.failure("'init.config': \(error)") }
            do {
                model = try randomTransformer(config, backend: be, compute: .f32, seed: UInt64(initial.seed))
            } catch { throw ctx.failure("cannot build the model: \(error)") }
            var cfg = json
            cfg.removeValue(forKey: removedComponentsConfigKey)
            cfg.removeValue(forKey: "quantization_config")
            manifest = ModelManifest(architecture: config.architecture.rawValue, config: cfg, tensors: [:])
        }
        let data = try ctx.openDataset("data")
        do { try data.check(against: model.structure.config) } catch { throw ctx.failure("\(error)") }
        guard data.latents != nil else {
            throw ctx.failure("the dataset \(data.source) has no 'latents' (training targets x0); write them with `python Examples/encode_dataset.py` (Docs/method.md, 'Datasets')",
                              log: "fix: store `latents` [N, C, H, W] (SD3) or [N, h·w, C] (FLUX, packed) in the dataset file")
        }
        let trainable = TrainableParameters(structure: model.structure, loaded: Set(model.weights.names),
                                            frozenBlocks: frozenBlocks, frozenPrefixes: frozenPrefixes)
        let t = p.training
        let trainer: Trainer
        do {
            trainer = try Trainer(model: model, objective: .flowMatching, trainable: trainable, settings: t.optimizerSettings,
                                  random: t.random(seed: ctx.noiseSeed), totalSteps: t.steps)
        } catch { throw ctx.failure("\(error)") }
        ctx.recorder.metric("trainable_params", Double(trainable.elementCount(model.structure)))
        let loop = TrainingLoop(ctx: ctx, trainer: trainer,
                                data: TrainingData(dataset: data, config: model.structure.config, batchSize: t.batch,
                                                   backend: be, syntheticSeed: nil, guidance: Float(t.guidance)),
                                steps: t.steps, checkpointEvery: t.checkpointEvery)
        _ = try await loop.run()
        guard DataParallel.isRoot else { return [:] }   // ranks 1… trained the same weights; rank 0 stores them

        // Every loaded tensor: trained ones get new objects; buffers and frozen ones keep theirs (or are stored
        // once for a new model).
        let names = p.model != nil ? trainable.names : model.weights.names
        manifest = try TrainingLoop.storeTrained(names, weights: model.weights, into: manifest, store: ctx.store)
        return ["model": try ctx.putModel(manifest)]
    }
}
