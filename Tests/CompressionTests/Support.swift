// Shared helpers for the compression-maths tests: fixture configs and synthetic sensitivity tables.

import TensorFiles
import Compression
import Foundation
import ModelSpec
import Testing

/// Tests/Fixtures.
let fixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// The structure of a committed fixture model (`sd35_large_turbo_layout`, `sd3_tiny`, `flux_tiny`, …).
func fixtureStructure(_ name: String) throws -> ModelStructure {
    ModelStructure(try ModelConfig.load(path: fixturesRoot + "/models/\(name)/config.json"))
}

/// SD3.5 Large (Turbo) at full size: 38 layers, 38 heads × 64.
func sd35LargeStructure() throws -> ModelStructure {
    let json = #"{"_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 2432, "in_channels": 16, "joint_attention_dim": 4096, "num_attention_heads": 38, "num_layers": 38, "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 192, "qk_norm": "rms_norm", "sample_size": 128}"#
    guard case .success(let v) = JSONValue.parse(Data(json.utf8)), let o = v.objectValue else { throw CompressionError("json", "bad", fix: "") }
    return ModelStructure(try ModelConfig.parse(o, file: "<sd35-large>"))
}

/// A sensitivity where ΔP of every address is `f(address)`.
func sensitivity(_ s: ModelStructure, form: PositionWeight.Form = .none, _ f: (ComponentAddress) -> Double?) throws -> Sensitivity {
    var d: [ComponentAddress: Double] = [:]
    for a in s.allAddresses { if let v = f(a) { d[a] = v } }
    return try Sensitivity(deltas: d, structure: s, positionWeight: PositionWeight(form: form), metric: "test")
}
