// Flow-matching schedule maths as diffusers 0.42 `FlowMatchEulerDiscreteScheduler` computes it
// (sigmas for sampling, training sigmas, dynamic shift), plus the training-time timestep density
// of `diffusers.training_utils.compute_density_for_timestep_sampling`. Scalars only; the tensor
// update x ← x + (σ_next − σ)·v belongs to the sampler over the backend.
//
// Precision follows diffusers: training sigmas in float32 (torch), inference sigmas computed in
// float64 (numpy) from the float32 `sigma_min`/`sigma_max`, then rounded to float32.

import TensorFiles
import Foundation

/// `FlowMatchEulerDiscreteScheduler` config (scheduler_config.json), defaults as diffusers.
public struct FlowMatchSchedulerConfig: Sendable, Hashable, Codable {
    public var numTrainTimesteps = 1000
    public var shift = 1.0
    public var useDynamicShifting = false
    public var baseShift = 0.5
    public var maxShift = 1.15
    public var baseImageSeqLen = 256
    public var maxImageSeqLen = 4096
    public var invertSigmas = false
    public var shiftTerminal: Double?
    /// "exponential" or "linear" (dynamic shifting only).
    public var timeShiftType = "exponential"

    public init(shift: Double = 1.0, useDynamicShifting: Bool = false) {
        self.shift = shift
        self.useDynamicShifting = useDynamicShifting
    }

    /// SD3.5 Large Turbo: shift 3.0, no dynamic shifting.
    public static let sd35LargeTurbo = FlowMatchSchedulerConfig(shift: 3.0)

    /// Parses a decoded scheduler_config.json; unsupported sigma conversions are rejected.
    public static func parse(_ json: [String: JSONValue], file: String) throws -> FlowMatchSchedulerConfig {
        func num(_ k: String, _ d: Double) throws -> Double {
            guard let v = json[k], !v.isNull else { return d }
            guard let x = v.numberValue else {
                throw ModelSpecError(source: file, subject: k, message: "expected a number, got \(v.typeName)", fix: "set '\(k)' to a number")
            }
            return x
        }
        func flag(_ k: String) throws -> Bool {
            guard let v = json[k], !v.isNull else { return false }
            guard let b = v.boolValue else {
                throw ModelSpecError(source: file, subject: k, message: "expected true or false, got \(v.typeName)", fix: "set '\(k)' to true or false")
            }
            return b
        }
        if let name = json["_class_name"]?.stringValue, name != "FlowMatchEulerDiscreteScheduler" {
            throw ModelSpecError(source: file, subject: "_class_name", message: "scheduler '\(name)' is not supported",
                                 fix: "use FlowMatchEulerDiscreteScheduler")
        }
        for k in ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling"] where try flag(k) {
            throw ModelSpecError(source: file, subject: k, message: "'\(k)' is not supported", fix: "set it to false")
        }
        var c = FlowMatchSchedulerConfig()
        c.numTrainTimesteps = Int(try num("num_train_timesteps", 1000))
        c.shift = try num("shift", 1.0)
        c.useDynamicShifting = try flag("use_dynamic_shifting")
        c.baseShift = try num("base_shift", 0.5)
        c.maxShift = try num("max_shift", 1.15)
        c.baseImageSeqLen = Int(try num("base_image_seq_len", 256))
        c.maxImageSeqLen = Int(try num("max_image_seq_len", 4096))
        c.invertSigmas = try flag("invert_sigmas")
        if let v = json["shift_terminal"], !v.isNull { c.shiftTerminal = v.numberValue }
        if let t = json["time_shift_type"]?.stringValue { c.timeShiftType = t }
        guard c.numTrainTimesteps > 0, c.timeShiftType == "exponential" || c.timeShiftType == "linear" else {
            throw ModelSpecError(source: file, message: "num_train_timesteps must be positive and time_shift_type exponential or linear",
                                 fix: "check scheduler_config.json")
        }
        return c
    }
}

/// The schedule maths of flow-matching Euler sampling and training.
public struct FlowMatchSchedule: Sendable, Hashable {
    public let config: FlowMatchSchedulerConfig
    /// Training sigmas, descending, float32 (`scheduler.sigmas` after construction): n values.
    public let trainingSigmas: [Float]
    /// `sigma_max`, `sigma_min` as diffusers stores them (`.item()` of the float32 tensor).
    public let sigmaMax: Double
    public let sigmaMin: Double

    public init(_ config: FlowMatchSchedulerConfig) {
        self.config = config
        let n = config.numTrainTimesteps
        let s = Float(config.shift)
        // np.linspace(1, n, n, float32)[::-1] / n, then shifted in float32 unless dynamic.
        trainingSigmas = (0..<n).map { i in
            let t = Float(Double(n - i))
            let sigma = t / Float(n)
            return config.useDynamicShifting ? sigma : s * sigma / (1 + (s - 1) * sigma)
        }
        sigmaMax = Double(trainingSigmas.first ?? 1)
        sigmaMin = Double(trainingSigmas.last ?? 0)
    }

    /// σ shift: s·σ / (1 + (s−1)·σ).
    public static func shifted(_ sigma: Double, shift s: Double) -> Double { s * sigma / (1 + (s - 1) * sigma) }

    /// Resolution-dependent `mu` (diffusers' `calculate_shift`): linear in the image token count
    /// between (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift).
    public func mu(imageSequenceLength len: Int) -> Double {
        let m = (config.maxShift - config.baseShift) / Double(config.maxImageSeqLen - config.baseImageSeqLen)
        let b = config.baseShift - m * Double(config.baseImageSeqLen)
        return Double(len) * m + b
    }

    /// Inference sigmas of `set_timesteps(steps, mu:)`: `steps` values then the terminal 0
    /// (1 when `invert_sigmas`). `mu` is required with dynamic shifting and ignored otherwise.
    public func sigmas(steps: Int, mu: Double? = nil) throws -> [Float] {
        guard steps >= 1 else {
            throw ModelSpecError(source: "<scheduler>", subject: "steps", message: "need at least one step, got \(steps)", fix: "pass steps ≥ 1")
        }
        if config.useDynamicShifting && mu == nil {
            throw ModelSpecError(source: "<scheduler>", subject: "mu", message: "use_dynamic_shifting needs mu",
                                 fix: "pass mu = schedule.mu(imageSequenceLength:)")
        }
        let n = Double(config.numTrainTimesteps)
        let t0 = sigmaMax * n, t1 = sigmaMin * n
        // numpy.linspace: arange(steps) * step + start, the last value set to stop exactly.
        let step = steps > 1 ? (t1 - t0) / Double(steps - 1) : 0
        var sig: [Double] = (0..<steps).map { i in
            let t = (steps > 1 && i == steps - 1) ? t1 : Double(i) * step + t0
            return t / n
        }
        if config.useDynamicShifting, let mu {
            sig = sig.map { t in
                config.timeShiftType == "linear" ? mu / (mu + (1 / t - 1)) : exp(mu) / (exp(mu) + (1 / t - 1))
            }
        } else {
            sig = sig.map { Self.shifted($0, shift: config.shift) }
        }
        if let term = config.shiftTerminal, term != 0, let last = sig.last {
            let scale = (1 - last) / (1 - term)
            sig = sig.map { 1 - (1 - $0) / scale }
        }
        var out = sig.map { Float($0) }
        if config.invertSigmas {
            out = out.map { 1 - $0 }
            out.append(1)
        } else {
            out.append(0)
        }
        return out
    }

    /// Model timesteps for the sampling steps: σ·num_train_timesteps (float32), `steps` values.
    public func timesteps(steps: Int, mu: Double? = nil) throws -> [Float] {
        try sigmas(steps: steps, mu: mu).dropLast().map { $0 * Float(config.numTrainTimesteps) }
    }

    /// One Euler step on a scalar: x + (σ_next − σ)·v (the tensor version applies it elementwise).
    public static func eulerStep(x: Float, velocity v: Float, sigma: Float, sigmaNext: Float) -> Float {
        x + (sigmaNext - sigma) * v
    }

    /// Training: the sigma for a density sample u ∈ [0, 1): index = ⌊u·n⌋ (clamped to n−1),
    /// σ = trainingSigmas[index], as diffusers' SD3 training scripts and the official code do.
    public func trainingSigma(u: Double) -> Float {
        let n = config.numTrainTimesteps
        let i = min(max(Int((u * Double(n)).rounded(.towardZero)), 0), n - 1)
        return trainingSigmas[i]
    }
}

/// The training-time timestep density (`weighting_scheme` of diffusers' SD3 training scripts).
public enum TimestepDensity: Sendable, Hashable, Codable {
    /// u = sigmoid(mean + std·z), z ~ N(0, 1). The official code: mean 0, std 1.
    case logitNormal(mean: Double, std: Double)
    /// u = 1 − r − scale·(cos²(π r / 2) − 1 + r), r ~ U[0, 1).
    case mode(scale: Double)
    /// u = r.
    case uniform

    /// The densities by name (recipes' `timesteps.density`, diffusers' `weighting_scheme`).
    public enum Kind: String, CaseIterable, Sendable, Hashable, Decodable {
        case logitNormal = "logit-normal"
        case uniform
        case mode
    }

    /// The density `kind` with its parameters (`mean` and `std` for logit-normal, `modeScale` for mode).
    public init(_ kind: Kind, mean: Double, std: Double, modeScale: Double) {
        switch kind {
        case .logitNormal: self = .logitNormal(mean: mean, std: std)
        case .uniform: self = .uniform
        case .mode: self = .mode(scale: modeScale)
        }
    }

    /// Maps one random draw to u: `z` standard normal for `.logitNormal`, `r` uniform [0, 1) otherwise.
    public func u(draw: Double) -> Double {
        switch self {
        case .logitNormal(let mean, let std):
            return 1 / (1 + exp(-(mean + std * draw)))
        case .mode(let scale):
            let c = cos(Double.pi * draw / 2)
            return 1 - draw - scale * (c * c - 1 + draw)
        case .uniform:
            return draw
        }
    }
}

/// Flow-matching training pair for one element: x_t = σ·noise + (1−σ)·x0, target v = noise − x0.
public func flowMatchNoisy(x0: Float, noise: Float, sigma: Float) -> (xt: Float, target: Float) {
    (sigma * noise + (1 - sigma) * x0, noise - x0)
}
