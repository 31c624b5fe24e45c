// The training loop's step, shared by `train` (flow matching) and `distill` (teacher → student): draw σ from
// the timestep density and noise (both pure functions of (seed, step), so a resumed run draws exactly what an
// uninterrupted one would), form x_t and v, forward/backward the student, check the loss, update with AdamW.
//
// Dimension legend: B batch; x0, noise, x_t, v shaped like the model's hidden states
// (SD3 (B,C,H,W), FLUX packed (B,Li,C)).

import Foundation
import ModelSpec
import Models
import TensorCore

/// One batch of training data (the stage builds it from a dataset).
public struct TrainingBatch: @unchecked Sendable {
    /// Clean latents x0 (hidden-states shape).
    public var latents: Tensor
    /// (B,Lt,J).
    public var encoderHiddenStates: Tensor
    /// (B,P).
    public var pooledProjections: Tensor
    /// FLUX: guidance per sample, image and text position ids.
    public var guidance: [Float]?
    public var imgIds: [Float]?
    public var txtIds: [Float]?

    public init(latents: Tensor, encoderHiddenStates: Tensor, pooledProjections: Tensor,
                guidance: [Float]? = nil, imgIds: [Float]? = nil, txtIds: [Float]? = nil) {
        self.latents = latents
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.guidance = guidance
        self.imgIds = imgIds
        self.txtIds = txtIds
    }

    public var batchSize: Int { latents.shape.first ?? 0 }
}

/// The noisy input and velocity target of one step.
public struct FlowMatchDraw: @unchecked Sendable {
    /// σ per sample, in [0, 1].
    public var sigmas: [Float]
    /// x_t = σ·noise + (1−σ)·x0.
    public var noisy: Tensor
    /// v = noise − x0.
    public var target: Tensor
}

/// Where a step's random numbers come from: stream `seed`, draw index derived from the step only.
public struct TrainingRandom: Sendable, Hashable {
    public var seed: UInt64
    public var density: TimestepDensity
    public var schedule: FlowMatchSchedule

    public init(seed: UInt64, density: TimestepDensity = .logitNormal(mean: 0, std: 1),
                schedule: FlowMatchSchedule = FlowMatchSchedule(FlowMatchSchedulerConfig())) {
        self.seed = seed
        self.density = density
        self.schedule = schedule
    }

    /// Stream for noise of `step` (the noise elements are indices 0… of it).
    func noiseSeed(step: Int) -> UInt64 { mix(seed, UInt64(step) &* 2 &+ 1) }
    /// Stream for the timestep draws of `step`.
    func sigmaSeed(step: Int) -> UInt64 { mix(seed, UInt64(step) &* 2 &+ 2) }

    /// SplitMix64 finaliser of (a, b): independent streams per (seed, step).
    private func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = a &+ b &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// σ for each of `count` samples of `step`: u from the density (normal draws for logit-normal, else uniform
    /// from the same Philox stream), then the training sigma at index ⌊u·n⌋ (diffusers' SD3 training scripts).
    /// `first`: the batch position of the first sample (a micro-batch draws its rows' values of the whole batch).
    public func sigmas(step: Int, count: Int, first: Int = 0) -> [Float] {
        (first..<(first + count)).map { b in
            let z = Double(Philox.normal(seed: sigmaSeed(step: step), index: UInt64(b)))
            let draw: Double
            switch density {
            case .logitNormal: draw = z
            default: draw = 0.5 * (1 + erf(z / 2.0.squareRoot()))     // Φ(z): uniform in (0, 1)
            }
            return schedule.trainingSigma(u: density.u(draw: min(draw, 0.999_999_9)))
        }
    }

    /// x_t and v for clean latents `x0` at `step`. `sampleOffset`: the batch position of x0's first row, so a
    /// micro-batch of rows [o, o+n) draws exactly the σ and noise those rows of the whole batch would.
    public func draw(_ x0: Tensor, step: Int, sampleOffset: Int = 0, backend be: any Backend) throws -> FlowMatchDraw {
        let b = x0.shape[0]
        let sig = sigmas(step: step, count: b, first: sampleOffset)
        let perSample = UInt64(x0.shape.dropFirst().reduce(1, *))
        let noise = try be.randomNormal(x0.shape, seed: noiseSeed(step: step), offset: UInt64(sampleOffset) * perSample)
        let x = try asF32(be, x0)
        let target = try be.add(noise, try be.scale(x, -1))                                 // v = noise − x0
        let s = try be.tensor(sig, shape: [b] + Array(repeating: 1, count: x0.rank - 1))    // (B,1,…)
        let noisy = try be.add(x, try be.mul(target, s))                                   // x0 + σ·v
        return FlowMatchDraw(sigmas: sig, noisy: noisy, target: target)
    }

    private func asF32(_ be: any Backend, _ t: Tensor) throws -> Tensor {
        let x = try be.transfer(t)
        return x.dtype == .f32 ? x : try be.cast(x, to: .f32)
    }
}

/// What to minimise.
public enum TrainingObjective: Sendable {
    /// MSE(v_student, noise − x0).
    case flowMatching
    /// Distillation from `teacher` with `loss`.
    case distillation(teacher: any DiffusionTransformer, loss: DistillationLoss)
}

/// The outcome of one step.
public struct StepResult: Sendable, Hashable {
    /// 0-based step index.
    public var step: Int
    public var loss: LossBreakdown
    /// Gradient norm before clipping.
    public var gradientNorm: Double
    /// Learning rate factor of the schedule at this step.
    public var lrFactor: Double
}

/// Trains the trainable parameters of `model` step by step.
///
///     let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss()),
///                               trainable: TrainableParameters(structure: s, loaded: Set(student.weights.names)),
///                               settings: OptimizerSettings(), random: TrainingRandom(seed: 0), totalSteps: 100)
///     for step in 0..<100 { let r = try trainer.step(batch(step), step: step) }
public final class Trainer: @unchecked Sendable {
    public let model: any DiffusionTransformer
    public let objective: TrainingObjective
    public let trainable: TrainableParameters
    public let random: TrainingRandom
    public let totalSteps: Int
    public let optimizer: ScaledAdamW
    /// Blocks in the feature loss (distillation).
    public let features: FeatureBlocks

    public init(model: any DiffusionTransformer, objective: TrainingObjective, trainable: TrainableParameters,
                settings: OptimizerSettings, random: TrainingRandom, totalSteps: Int) throws {
        self.model = model
        self.objective = objective
        self.trainable = trainable
        self.random = random
        self.totalSteps = totalSteps
        optimizer = ScaledAdamW(weights: model.weights, settings: settings, trainable: trainable)
        features = FeatureBlocks(structure: model.structure, removal: model.removal, trainable: trainable)
        if case .distillation(let teacher, _) = objective {
            guard teacher.structure.config == model.structure.config else {
                throw TrainingError.mismatch("the teacher's architecture or config differs from the student's (\(teacher.structure.config.architecture) vs \(model.structure.config.architecture))")
            }
        }
        try model.weights.requireFinite(trainable.names)
    }

    /// The model inputs for a batch at noisy latents `x`.
    func inputs(_ batch: TrainingBatch, noisy x: Tensor, sigmas: [Float]) -> TransformerInputs {
        TransformerInputs(hiddenStates: x, encoderHiddenStates: batch.encoderHiddenStates,
                          pooledProjections: batch.pooledProjections, timestep: sigmas.map { model.timestep(sigma: $0) },
                          guidance: batch.guidance, imgIds: batch.imgIds, txtIds: batch.txtIds)
    }

    /// Computes the loss and gradients at 0-based `step` without updating anything. `sampleOffset`: where `batch`
    /// starts within the step's global batch (a micro-batch; DataParallel.swift); 0 for a whole batch.
    public func lossAndGradients(_ batch: TrainingBatch, step: Int, sampleOffset: Int = 0) throws -> (LossBreakdown, [String: Tensor]) {
        let be = model.backend
        let d = try random.draw(batch.latents, step: step, sampleOffset: sampleOffset, backend: be)
        let inp = inputs(batch, noisy: d.noisy, sigmas: d.sigmas)
        let names = trainable
        switch objective {
        case .flowMatching:
            let r = try model.mseGradients(inp, target: d.target, trainable: { names.contains($0) })
            return (LossBreakdown(total: Double(r.loss), output: Double(r.loss)), r.gradients)
        case .distillation(let teacher, let loss):
            let capture = loss.feature != 0 ? features.indices : []
            let t = try teacher.forwardTrace(inp, capture: capture)
            var breakdown = LossBreakdown(total: 0, output: 0)
            let r = try model.gradients(inp, trainable: { names.contains($0) }, capture: capture) { s in
                let (b, g) = try loss.evaluate(student: s, teacher: t, target: d.target, features: features, backend: be)
                breakdown = b
                return g
            }
            return (breakdown, r.gradients)
        }
    }

    /// One training step at 0-based `step`: loss, gradients, a finite check, one AdamW update.
    /// - Throws: `TrainingError.nonFinite` (nothing updated) when the loss or gradient norm is NaN/Inf.
    public func step(_ batch: TrainingBatch, step: Int) throws -> StepResult {
        let (loss, grads) = try lossAndGradients(batch, step: step)
        guard loss.total.isFinite else { throw TrainingError.nonFinite(step: step, what: "loss", value: loss.total) }
        let applied = try optimizer.step(grads, step: step, totalSteps: totalSteps)
        return StepResult(step: step, loss: loss, gradientNorm: applied,
                          lrFactor: optimizer.settings.schedule.factor(step: step, totalSteps: totalSteps))
    }
}
