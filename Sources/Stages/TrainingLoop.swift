// The loop `distill` and `train` share: batches from a Dataset, a Trainer step per iteration with a progress bar
// (loss, ETA), checkpoints every N steps kept in the store's partials under the stage's action key (so a killed run
// resumes from its last checkpoint on the next `hprune run`), NaN/Inf stops naming the step, and the output Model
// (new objects only for the trained tensors; every other tensor keeps its input's object).

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import ModelStore
import Models
import Scheduler
import StageGraph
import TensorCore
import Training
import YAMLSupport

/// Observes the training loops (tests: count steps, interrupt after k steps). Called after each completed step
/// and its checkpoint, with the store root, the stage name and the number of completed steps.
public enum TrainingObserver {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var observers: [UUID: @Sendable (URL, String, Int) -> Void] = [:]

    /// Adds an observer; returns a token for `remove`.
    public static func add(_ f: @escaping @Sendable (_ store: URL, _ stage: String, _ completedSteps: Int) -> Void) -> UUID {
        let id = UUID()
        lock.withLock { observers[id] = f }
        return id
    }

    public static func remove(_ id: UUID) { _ = lock.withLock { observers.removeValue(forKey: id) } }

    static func notify(_ store: URL, _ stage: String, _ step: Int) {
        let fs = lock.withLock { Array(observers.values) }
        for f in fs { f(store, stage, step) }
    }
}

/// The common recipe keys of the training kinds.
enum TrainingFields {
    static let common: [Field] = [
        Field("optimizer", .object(Schema([
            Field("adamw", .object(Schema([
                Field("lr", .number(min: 0, exclusive: true), default: .double(1e-4), doc: "Base learning rate."),
                Field("betas", .list(.number(min: 0, max: 1), minCount: 2), default: .list([.double(0.9), .double(0.999)]), doc: "β1, β2."),
                Field("weight_decay", .number(min: 0), default: .double(1e-4), doc: "Decoupled weight decay (torch AdamW)."),
                Field("eps", .number(min: 0, exclusive: true), default: .double(1e-8), doc: "Adam ε."),
            ])), doc: "AdamW settings (defaults: the official HierarchicalPrune code)."),
        ])), doc: "The optimiser; only `adamw` exists."),
        Field("schedule", .choice(of: LearningRateSchedule.Kind.self), default: .string(LearningRateSchedule.Kind.constant.rawValue),
              doc: "Learning rate after warmup: `constant`, `cosine` (to 0 at the last step) or `linear` (to 0)."),
        Field("warmup_steps", .integer(min: 0), default: .int(0), doc: "Linear warmup from lr/warmup_steps to lr over this many steps."),
        Field("grad_clip", .number(min: 0), default: .double(1.0), doc: "Clip the gradients' global L2 norm to this; 0 disables."),
        Field("steps", .integer(min: 1), default: .int(1000), doc: "Optimiser steps."),
        Field("batch", .integer(min: 1), default: .int(4), doc: "Samples per step; the dataset is cycled in order."),
        Field("micro_batch", .integer(min: 1),
              doc: "Cut each step's batch into micro-batches of this many samples (the last holds the rest), each drawing the noise and σ its rows of the whole batch draw; their gradients are computed apart and summed in micro-batch order. The unit `ranks` share out; less memory in one process too. Changes the last bits of the result (another summation order), so it is part of the cache key. Default: the whole batch at once."),
        Field("ranks", .integer(min: 1), keyed: false,
              doc: "Data-parallel processes over MPI (needs `micro_batch`; at most one rank per micro-batch): hprune starts them with `mpirun` (or `srun` in a Slurm job). Weights are bit-identical for any number of ranks at the same `batch` and `micro_batch`, so `ranks` is not part of the cache key (Docs/scale-out.md). Default 1."),
        Field("checkpoint_every", .integer(min: 1), default: .int(100),
              doc: "Save trainable tensors + optimiser state + step every N steps; an interrupted run resumes from the last one."),
        Field("guidance", .number(min: 0), default: .double(1.0),
              doc: "FLUX models with a guidance embedding (dev) train at this guidance value; ignored otherwise."),
        Field("timesteps", .object(Schema([
            Field("density", .choice(of: TimestepDensity.Kind.self), default: .string(TimestepDensity.Kind.logitNormal.rawValue),
                  doc: "How σ is drawn (diffusers' `weighting_scheme`)."),
            Field("mean", .number(), default: .double(0), doc: "logit-normal mean."),
            Field("std", .number(min: 0, exclusive: true), default: .double(1), doc: "logit-normal standard deviation."),
            Field("mode_scale", .number(), default: .double(1.29), doc: "`mode` density scale."),
            Field("shift", .number(min: 0, exclusive: true), default: .double(3.0),
                  doc: "Scheduler shift of the training sigmas (SD3/SD3.5 scheduler configs use 3.0; 1 = no shift)."),
        ])), doc: "Training timestep sampling (default: logit-normal(0, 1), as the official code)."),
    ]

    static func check(_ params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        if let b = params["optimizer"]?["adamw"]?["betas"]?.list, b.count != 2 {
            checker.error("'optimizer.adamw.betas' needs exactly two values [β1, β2]", node["optimizer"]?.mark ?? node.mark)
        }
        if let w = params["warmup_steps"]?.int, let s = params["steps"]?.int, w > s {
            checker.error("'warmup_steps' (\(w)) is more than 'steps' (\(s))", node["warmup_steps"]?.mark ?? node.mark)
        }
        let batch = params["batch"]?.int ?? 4
        if let m = params["micro_batch"]?.int, m > batch {
            checker.error("'micro_batch' (\(m)) is more than 'batch' (\(batch))", node["micro_batch"]?.mark ?? node.mark,
                          hint: "a micro-batch is a part of the batch; drop `micro_batch` to train the batch whole")
        }
        if let r = params["ranks"]?.int, r > 1 {
            if let m = params["micro_batch"]?.int {
                let count = (batch + m - 1) / m
                if r > count {
                    checker.error("'ranks: \(r)' but 'batch: \(batch)' in micro-batches of \(m) is only \(count) micro-batch\(count == 1 ? "" : "es"): a rank would have nothing to do",
                                  node["ranks"]?.mark ?? node.mark, hint: "use at most \(count) ranks, or a smaller `micro_batch`")
                }
            } else {
                checker.error("'ranks: \(r)' needs 'micro_batch': the ranks share the batch's micro-batches", node["ranks"]?.mark ?? node.mark,
                              hint: "add e.g. `micro_batch: \(max(1, batch / r))` (part of the result, unlike `ranks`: 1 rank and \(r) give the same weights)")
            }
        }
    }
}

/// The common training params (`TrainingFields.common`) of a `train` or `distill` stage, decoded with their
/// schema defaults (a kind's `Params` decodes it from the same params: `TrainingSettings(from: decoder)`).
struct TrainingSettings: Decodable {
    struct AdamW: Decodable {
        var lr: Double
        var betas: Betas
        var weightDecay: Double
        var eps: Double
    }

    /// `[β1, β2]` (the schema says "at least 2"; `TrainingFields.check` says "exactly 2").
    struct Betas: Decodable {
        var beta1: Double
        var beta2: Double

        init(from decoder: Decoder) throws {
            var c = try decoder.unkeyedContainer()
            beta1 = try c.decode(Double.self)
            beta2 = try c.decode(Double.self)
            guard c.isAtEnd else {
                throw ParamDecodingError(path: "optimizer.adamw.betas", message: "needs exactly [β1, β2]")
            }
        }
    }

    struct Optimizer: Decodable {
        var adamw: AdamW
    }

    struct Timesteps: Decodable {
        var density: TimestepDensity.Kind
        var mean: Double
        var std: Double
        var modeScale: Double
        var shift: Double
    }

    var optimizer: Optimizer
    var schedule: LearningRateSchedule.Kind
    var warmupSteps: Int
    /// 0 disables clipping.
    var gradClip: Double
    var steps: Int
    var batch: Int
    var checkpointEvery: Int
    var guidance: Double
    var timesteps: Timesteps

    /// The optimiser these settings mean.
    var optimizerSettings: OptimizerSettings {
        let a = optimizer.adamw
        return OptimizerSettings(learningRate: a.lr, beta1: a.betas.beta1, beta2: a.betas.beta2, weightDecay: a.weightDecay, eps: a.eps,
                                 gradClip: gradClip > 0 ? gradClip : nil,
                                 schedule: LearningRateSchedule(schedule, warmupSteps: warmupSteps))
    }

    /// The training randomness (σ density and schedule) for the Philox stream `seed`.
    func random(seed: UInt64) -> TrainingRandom {
        let t = timesteps
        return TrainingRandom(seed: seed, density: TimestepDensity(t.density, mean: t.mean, std: t.std, modeScale: t.modeScale),
                              schedule: FlowMatchSchedule(FlowMatchSchedulerConfig(shift: t.shift)))
    }
}

/// Batches for step s: samples (s·B + j) mod N, j < B, in dataset order.
struct TrainingData {
    let dataset: PromptDataset
    let config: ModelConfig
    let batchSize: Int
    let backend: any Backend
    /// Seed of the fixed per-sample x0 when the dataset has no latents (distillation only).
    let syntheticSeed: UInt64?
    /// FLUX guidance (models with `guidance_embeds`).
    var guidance: Float = 1
    /// Whether x0 comes from the dataset's `latents` when it has them (`distill`'s `x0: noise` turns this off).
    var useLatents = true

    func indices(step: Int) -> [Int] { (0..<batchSize).map { (step * batchSize + $0) % dataset.count } }

    func rows(_ t: Tensor, _ idx: [Int]) throws -> Tensor {
        let parts = try idx.map { try backend.transfer(t.rows($0..<($0 + 1))) }
        return parts.count == 1 ? parts[0] : try backend.concat(parts, axis: 0)
    }

    func batch(step: Int) throws -> TrainingBatch {
        let idx = indices(step: step)
        let x0: Tensor
        if useLatents, let l = dataset.latents {
            x0 = try rows(l, idx)
        } else {
            let shape = Array(try dataset.latentShape(for: config, batch: 1).dropFirst())
            let parts = try idx.map { try PromptDataset.noise($0..<($0 + 1), sampleShape: shape, seed: syntheticSeed ?? 0, backend: backend) }
            x0 = parts.count == 1 ? parts[0] : try backend.concat(parts, axis: 0)
        }
        var b = TrainingBatch(latents: x0, encoderHiddenStates: try rows(dataset.encoderHiddenStates, idx),
                              pooledProjections: try rows(dataset.pooledProjections, idx))
        if case .flux(let c) = config {
            b.imgIds = dataset.imageIds(for: config)
            b.txtIds = [Float](repeating: 0, count: dataset.encoderHiddenStates.shape[1] * 3)
            if c.guidanceEmbeds { b.guidance = [Float](repeating: guidance, count: idx.count) }
        }
        return b
    }
}

/// Runs a trainer to the end with checkpoints, progress and NaN handling.
struct TrainingLoop {
    let ctx: StageContext
    let trainer: Trainer
    let data: TrainingData
    let steps: Int
    let checkpointEvery: Int

    /// The store's partial-results namespace of this execution's checkpoint: its action key (nil: none, no checkpoints).
    var checkpointNamespace: String? { ctx.actionKey.isEmpty ? nil : ctx.actionKey }

    /// The last checkpoint of this execution, if one is stored and readable.
    func lastCheckpoint() -> (state: TrainingState, digest: Digest)? {
        guard let ns = checkpointNamespace, let d = ctx.store.partial(namespace: ns, name: "checkpoint")?.digest else { return nil }
        return loadCheckpoint(d)
    }

    /// The checkpoint object `d`, if readable and of this execution.
    func loadCheckpoint(_ d: Digest) -> (state: TrainingState, digest: Digest)? {
        do {
            try ctx.store.verify(d)
            let s = try TrainingState.load(path: ctx.store.path(of: d).path)
            guard s.metadata["action_key"] == ctx.actionKey else { return nil }
            return (s, d)
        } catch {
            ctx.progress.log("ignoring an unreadable checkpoint (\(error)); starting from step 0")
            return nil
        }
    }

    func saveCheckpoint(completed: Int) throws -> Digest? {
        guard let ns = checkpointNamespace, DataParallel.isRoot else { return nil }   // ranks 1… never write
        let state = try trainer.state(completedSteps: completed, metadata: ["action_key": ctx.actionKey, "stage": ctx.stage.name])
        let previous = ctx.store.partial(namespace: ns, name: "checkpoint")?.digest
        let d = try ctx.store.putPartial(try state.serialized(), namespace: ns, name: "checkpoint", owner: ctx.actionKey,
                                         stage: ctx.stage.name, extra: ["step": String(completed)]).digest
        // The new checkpoint is recorded: the one it supersedes (unique to this execution: it holds the step and
        // the action key) is no longer needed, so long runs do not fill the disk with old states.
        if let previous, previous != d { ctx.store.discard(previous) }
        return d
    }

    /// Trains from the last checkpoint (or step 0) to `steps`. Returns the per-step total losses of this execution
    /// and the step it started at.
    func run() async throws -> (losses: [Double], start: Int) {
        let parallel = try DataParallel.plan(ctx, batch: data.batchSize)
        if let parallel {
            ctx.recorder.log("micro-batches: \(parallel.micro.count) of \(parallel.micro.size) (batch \(parallel.micro.batch)), summed in order over \(parallel.collective.description)\n")
        }
        var start = 0
        var lastGood: Int?
        if let (state, d) = try resumePoint(parallel?.collective) {
            do { start = try trainer.restore(state) } catch {
                throw ctx.failure("cannot resume from checkpoint \(d.short): \(error)", log: "fix: `hprune cache gc` removes stale checkpoints")
            }
            lastGood = start
            ctx.progress.log("resuming from the checkpoint at step \(start) of \(steps)")
            ctx.recorder.log("resumed from checkpoint \(d.short) at step \(start)\n")
        }
        ctx.recorder.metric("resumed_from_step", Double(start))
        // The bar counts this execution's steps (so the ETA is right after a resume); the message says where we are.
        let bar = ctx.progress.bar(total: steps - start, unit: "steps")
        let loopStart = ContinuousClock.now
        var losses: [Double] = []
        var step = start
        while step < steps {
            try Task.checkCancellation()
            let r: StepResult
            do {
                if let parallel {
                    r = try trainer.dataParallelStep(try data.batch(step: step), step: step, micro: parallel.micro, collective: parallel.collective)
                } else {
                    r = try trainer.step(try data.batch(step: step), step: step)
                }
            } catch let e as TrainingError {
                if case .nonFinite = e {
                    let kept = lastGood.map { "the last good checkpoint (after step \($0)) is kept in the store and the next run resumes from it" }
                        ?? "no checkpoint was saved before it (checkpoint_every \(checkpointEvery))"
                    throw ctx.failure("\(e); \(kept)",
                                      log: "fix: lower `optimizer.adamw.lr`, keep `grad_clip` on, or check the dataset for NaN/Inf")
                }
                throw ctx.failure("\(e)")
            }
            losses.append(r.loss.total)
            step += 1
            var msg = String(format: "step %d/%d loss %.5g", step, steps, r.loss.total)
            if r.loss.feature != 0 { msg += String(format: " (out %.4g feat %.4g)", r.loss.output, r.loss.feature) }
            bar.advance(message: msg)
            if step % checkpointEvery == 0 && step < steps {
                if try saveCheckpoint(completed: step) != nil { lastGood = step }
            }
            TrainingObserver.notify(ctx.store.root, ctx.stage.name, step)
        }
        let seconds = Double((ContinuousClock.now - loopStart).components.attoseconds) * 1e-18
            + Double((ContinuousClock.now - loopStart).components.seconds)
        if !losses.isEmpty, seconds > 0 { ctx.recorder.metric("steps_per_second", Double(losses.count) / seconds, unit: "1/s") }
        if let parallel {
            ctx.recorder.metric("micro_batches", Double(parallel.micro.count))
            try checkRanksAgree(parallel.collective)
        }
        if let first = losses.first, let last = losses.last {
            ctx.recorder.metric("loss_first", first)
            ctx.recorder.metric("loss_last", last)
            let k = min(10, losses.count)
            ctx.recorder.metric("loss_first\(k)_mean", losses.prefix(k).reduce(0, +) / Double(k))
            ctx.recorder.metric("loss_last\(k)_mean", losses.suffix(k).reduce(0, +) / Double(k))
        }
        ctx.recorder.metric("steps_run", Double(losses.count))
        if !losses.isEmpty { ctx.recorder.log(Self.lossCurveLine(losses, start: start)) }
        return (losses, start)
    }

    /// Where to start: the last checkpoint as rank 0 finds it (every rank then reads that same object), or nil.
    func resumePoint(_ collective: (any Collective)?) throws -> (state: TrainingState, digest: Digest)? {
        guard let collective, collective.size > 1 else { return lastCheckpoint() }
        let mine = collective.rank == 0 ? lastCheckpoint() : nil
        let chosen = try collective.broadcast(mine.map { Array($0.digest.hex.utf8) } ?? [], root: 0)
        if collective.rank == 0 { return mine }
        guard !chosen.isEmpty else { return nil }
        let hex = String(decoding: chosen, as: UTF8.self)
        guard let d = Digest(hex: hex), let found = loadCheckpoint(d) else {
            throw ctx.failure("rank \(collective.rank) cannot read the checkpoint \(hex.prefix(12)) rank 0 resumes from",
                              log: "fix: the store must be on a filesystem every rank's node mounts")
        }
        return found
    }

    /// After the last step every rank holds the same trained weights; a difference means the ranks did not run the
    /// same model and data, and nothing is stored.
    func checkRanksAgree(_ collective: any Collective) throws {
        guard collective.size > 1 else { return }
        let prints = try collective.allGather(try trainer.trainedWeightsFingerprint())
        guard Set(prints).count == 1 else {
            throw ctx.failure("the \(collective.size) ranks ended with different weights (fingerprints \(prints.map { String($0, radix: 16) }.joined(separator: ", "))); nothing is stored",
                              log: "fix: every rank must run the same hprune binary on the same store and CPU kernels (HPRUNE_ISA)")
        }
    }

    /// How many points the recorded loss curve has at most (`lossCurveLine`).
    static let lossCurvePoints = 100

    /// The loss curve of one execution as one log line, `loss_curve every=N: STEP:LOSS STEP:LOSS …\n`: for each window
    /// of N consecutive steps (N = ⌈steps / 100⌉), the last step of the window (1-based, counting from the resumed
    /// step) and the mean total loss over the window (the last window may be shorter). `hprune report --html`
    /// draws it (`HTMLReport.parseLossCurve`); the ledger keeps it with the stage's log, no artifact changes.
    static func lossCurveLine(_ losses: [Double], start: Int) -> String {
        let every = max(1, (losses.count + lossCurvePoints - 1) / lossCurvePoints)
        var parts: [String] = []
        var i = 0
        while i < losses.count {
            let window = losses[i..<min(i + every, losses.count)]
            parts.append(String(format: "%d:%.6g", start + i + window.count, window.reduce(0, +) / Double(window.count)))
            i += every
        }
        return "loss_curve every=\(every): " + parts.joined(separator: " ") + "\n"
    }

    /// Stores the trained tensors (in each tensor's stored dtype; f32 for new models) and returns `manifest` with
    /// those tensors pointing at the new objects. Tensors that did not change keep their objects (content addressing).
    static func storeTrained(_ names: [String], weights: WeightStore, into manifest: ModelManifest, store: ArtifactStore) throws -> ModelManifest {
        var out = manifest
        let be = weights.backend
        for n in names {
            let t = try weights(n)
            let dtype = out.tensors[n]?.object.dtype ?? .f32
            let data: Data
            switch dtype {
            case .bf16: data = Data(try be.bytes(try be.cast(t, to: .bf16)))
            case .f16: data = Data(try be.bytes(try be.cast(t, to: .f16)))
            default: data = Data(try be.bytes(t.dtype == .f32 ? t : try be.cast(t, to: .f32)))
            }
            let d = try store.put(data)
            out.tensors[n] = ManifestTensor(object: TensorObject(digest: d, dtype: dtype == .bf16 || dtype == .f16 ? dtype : .f32,
                                                                 shape: t.shape, bytes: data.count))
        }
        return out
    }
}
