// A training checkpoint: the trainable tensors, the AdamW moments and step count, and the position in the
// run (next step; every random draw is a function of (seed, step), so the step is the RNG position). Saved
// as one safetensors file: `param/<name>`, `adam_m/<name>`, `adam_v/<name>` (f32) with the counters in metadata.

import TensorFiles
import Foundation
import Models
import TensorCore

/// Everything needed to continue a run exactly where it stopped.
public struct TrainingState: Sendable {
    /// Steps completed (the next step's 0-based index).
    public var step: Int
    /// Position of the random streams: equal to `step` (draws are keyed by step); kept explicitly for checks.
    public var rngPosition: UInt64
    public var optimizerSteps: Int
    /// Trainable parameter name → (shape, values).
    public var parameters: [String: (shape: [Int], values: [Float])]
    public var moments: [String: (m: [Float], v: [Float])]
    /// Free-form facts checked on restore (e.g. the action key it belongs to).
    public var metadata: [String: String]

    public init(step: Int, rngPosition: UInt64, optimizerSteps: Int, parameters: [String: (shape: [Int], values: [Float])],
                moments: [String: (m: [Float], v: [Float])], metadata: [String: String] = [:]) {
        self.step = step
        self.rngPosition = rngPosition
        self.optimizerSteps = optimizerSteps
        self.parameters = parameters
        self.moments = moments
        self.metadata = metadata
    }

    /// The safetensors bytes of this state.
    public func serialized() throws -> Data {
        var payloads: [TensorPayload] = []
        for (n, p) in parameters {
            payloads.append(TensorPayload(name: "param/" + n, shape: p.shape, floats: p.values))
            if let m = moments[n] {
                payloads.append(TensorPayload(name: "adam_m/" + n, shape: p.shape, floats: m.m))
                payloads.append(TensorPayload(name: "adam_v/" + n, shape: p.shape, floats: m.v))
            }
        }
        var meta = metadata
        meta["hprune.training_state"] = "1"
        meta["step"] = String(step)
        meta["rng_position"] = String(rngPosition)
        meta["optimizer_steps"] = String(optimizerSteps)
        return try SafetensorsWriter.serialize(payloads.sorted { $0.name < $1.name }, metadata: meta)
    }

    /// Reads a state written by `serialized()` from `path`.
    public static func load(path: String) throws -> TrainingState {
        let f = try SafetensorsFile(path: path)
        let meta = f.metadata
        guard meta["hprune.training_state"] == "1", let step = meta["step"].flatMap(Int.init),
              let rng = meta["rng_position"].flatMap(UInt64.init), let opt = meta["optimizer_steps"].flatMap(Int.init) else {
            throw TrainingError.mismatch("\(path) is not an hprune training checkpoint")
        }
        var params: [String: (shape: [Int], values: [Float])] = [:]
        var moments: [String: (m: [Float], v: [Float])] = [:]
        for info in f.tensors where info.name.hasPrefix("param/") {
            let n = String(info.name.dropFirst(6))
            params[n] = (info.shape, try f.floats(info.name))
            if f.contains("adam_m/" + n), f.contains("adam_v/" + n) {
                moments[n] = (try f.floats("adam_m/" + n), try f.floats("adam_v/" + n))
            }
        }
        var rest = meta
        for k in ["hprune.training_state", "step", "rng_position", "optimizer_steps"] { rest.removeValue(forKey: k) }
        return TrainingState(step: step, rngPosition: rng, optimizerSteps: opt, parameters: params, moments: moments, metadata: rest)
    }
}

extension Trainer {
    /// The state after `completedSteps` steps.
    public func state(completedSteps: Int, metadata: [String: String] = [:]) throws -> TrainingState {
        let be = model.backend
        var params: [String: (shape: [Int], values: [Float])] = [:]
        var moments: [String: (m: [Float], v: [Float])] = [:]
        for n in trainable.names {
            let t = try model.weights(n)
            params[n] = (t.shape, try be.floats(t))
            if let m = try optimizer.moments(of: n) { moments[n] = m }
        }
        return TrainingState(step: completedSteps, rngPosition: UInt64(completedSteps), optimizerSteps: optimizer.stepCount,
                             parameters: params, moments: moments, metadata: metadata)
    }

    /// Puts the saved parameters and optimiser state back; returns the step to continue from.
    /// - Throws: when the state's parameters are not this trainer's (names or shapes differ).
    public func restore(_ s: TrainingState) throws -> Int {
        let be = model.backend
        guard Set(s.parameters.keys) == Set(trainable.names) else {
            throw TrainingError.mismatch("the checkpoint trains different parameters than this run")
        }
        for (n, p) in s.parameters {
            guard try model.weights(n).shape == p.shape else {
                throw TrainingError.mismatch("checkpoint tensor '\(n)' has shape \(p.shape), the model \(try model.weights(n).shape)")
            }
            model.weights.set(n, try be.tensor(p.values, shape: p.shape))
        }
        try optimizer.restore(stepCount: s.optimizerSteps, moments: s.moments)
        return s.step
    }
}
