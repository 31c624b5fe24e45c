// Reading forward-pass inputs from a safetensors file (tensors named like diffusers' forward arguments) and
// running a model on them: the engine behind `hprune forward`. Errors name the file and the tensor.

import TensorFiles
import Foundation
import ModelSpec
import TensorCore

extension TransformerInputs {
    /// Reads `hidden_states`, `encoder_hidden_states`, `pooled_projections`, `timestep` and, for FLUX,
    /// `img_ids`, `txt_ids` (optional: zeros) and `guidance` (models with guidance embeds) from `path`.
    ///
    /// `timestep` / `guidance` may be a scalar or hold one value per batch element (a scalar is broadcast);
    /// `img_ids` / `txt_ids` may be (L,3) or (B,L,3) (the first batch entry is used, as diffusers does).
    public static func load(path: String, for config: ModelConfig, backend: any Backend) throws -> TransformerInputs {
        let file = try SafetensorsFile(path: path)
        func fail(_ name: String, _ message: String, _ fix: String) -> ModelError {
            ModelError(source: path, subject: name, message: message, fix: fix)
        }
        func floats(_ name: String) throws -> (values: [Float], shape: [Int])? {
            guard file.contains(name) else { return nil }
            let info = try file.info(name)
            guard info.dtype.isFloatingPoint || [.i64, .i32].contains(info.dtype) else {
                throw fail(name, "dtype \(info.dtype.rawValue) is not a number type this command reads", "store it as F32, BF16 or F16")
            }
            if info.dtype == .i64 || info.dtype == .i32 {
                let v: [Float] = try file.withBytes(name) { raw in
                    info.dtype == .i64 ? raw.bindMemory(to: Int64.self).map { Float($0) } : raw.bindMemory(to: Int32.self).map { Float($0) }
                }
                return (v, info.shape)
            }
            return (try file.floats(name), info.shape)
        }
        func required(_ name: String) throws -> (values: [Float], shape: [Int]) {
            guard let t = try floats(name) else {
                throw fail(name, "missing", "add a tensor named '\(name)' (diffusers' forward argument)")
            }
            guard t.values.allSatisfy(\.isFinite) else { throw fail(name, "contains NaN or Inf", "pass finite values") }
            return t
        }
        func tensor(_ name: String) throws -> Tensor {
            let t = try required(name)
            return try backend.tensor(t.values, shape: t.shape)
        }
        func perBatch(_ name: String, batch: Int, optional: Bool = false) throws -> [Float]? {
            if optional, !file.contains(name) { return nil }
            let t = try required(name)
            if t.values.count == 1 { return Array(repeating: t.values[0], count: batch) }
            guard t.values.count == batch else {
                throw fail(name, "shape \(t.shape.shapeString) holds \(t.values.count) values, batch is \(batch)",
                           "give one value per batch element, or a scalar")
            }
            return t.values
        }
        func ids(_ name: String, length: Int) throws -> [Float]? {
            guard let t = try floats(name) else { return nil }
            guard t.shape.last == 3, t.values.count >= length * 3, (t.shape.count == 2 && t.shape[0] == length)
                || (t.shape.count == 3 && t.shape[1] == length) else {
                throw fail(name, "shape \(t.shape.shapeString), expected (\(length),3)", "pass (L,3) position ids")
            }
            return Array(t.values.prefix(length * 3))
        }
        let hs = try tensor("hidden_states")
        let ehs = try tensor("encoder_hidden_states")
        let pooled = try tensor("pooled_projections")
        let b = hs.shape.first ?? 0
        let t = try perBatch("timestep", batch: b)!
        var inputs = TransformerInputs(hiddenStates: hs, encoderHiddenStates: ehs, pooledProjections: pooled, timestep: t)
        if case .flux(let c) = config {
            inputs.guidance = try perBatch("guidance", batch: b, optional: !c.guidanceEmbeds)
            guard hs.rank == 3 else {
                throw fail("hidden_states", "shape \(hs.shape.shapeString), expected (B,L,C) packed latents", "pack the latents as FluxPipeline does")
            }
            guard let img = try ids("img_ids", length: hs.shape[1]) else {
                throw fail("img_ids", "missing", "add img_ids (L,3) = (0, row, col) for each image token")
            }
            inputs.imgIds = img
            inputs.txtIds = try ids("txt_ids", length: ehs.rank == 3 ? ehs.shape[1] : 0)
        }
        return inputs
    }
}

extension DiffusionTransformer {
    /// Forward pass whose input errors name `source` (the inputs file) instead of `<inputs>`.
    public func forward(_ inputs: TransformerInputs, removing extra: Removal = Removal(), inputsSource source: String) throws -> Tensor {
        let check = InputCheck(source: source)
        if let m = self as? SD3Transformer { return try m.forward(inputs, removing: extra, check: check, tape: Tape(weights: weights)).value }
        if let m = self as? FluxTransformer { return try m.forward(inputs, removing: extra, check: check, tape: Tape(weights: weights)).value }
        return try forward(inputs, removing: extra)
    }
}
