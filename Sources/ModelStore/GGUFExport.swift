// GGUF export in the layout city96/ComfyUI-GGUF loads (its tools/convert.py): the original checkpoint's key
// names (BFL FLUX `double_blocks` / `single_blocks` with fused qkv and linear1, SAI SD3 `joint_blocks` with
// fused qkv; `final_layer.adaLN_modulation` and the pre-only context modulation in shift, scale order), the
// inverse of diffusers' single-file converters, and convert.py's per-tensor type policy.

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec

/// One tensor of the original checkpoint: its name and the diffusers tensors it is made of (concatenated along
/// dim 0), with the two halves swapped when the original stores (shift, scale) where diffusers has (scale, shift).
public struct OriginalTensor: Sendable, Hashable {
    public var name: String
    public var parts: [String]
    public var swapHalves: Bool
}

extension ModelStore {
    /// hprune's own GGUF key (ComfyUI-GGUF ignores it): the diffusers config.json, so an import needs nothing else.
    public static let ggufConfigKey = "hprune.diffusers_config"

    /// The original-checkpoint tensors of a (renumbered, complete) diffusers model, in no particular order.
    /// - Throws: if a diffusers tensor has no original name (the model has removed sub-components).
    public static func originalLayout(_ config: ModelConfig, names: Set<String>) throws -> [OriginalTensor] {
        var out: [OriginalTensor] = []
        var used = Set<String>()
        func add(_ name: String, _ parts: [String], swap: Bool = false) {
            guard parts.allSatisfy(names.contains) else { return }
            out.append(OriginalTensor(name: name, parts: parts, swapHalves: swap))
            used.formUnion(parts)
        }
        /// weight and bias of a Linear (or a fused group of Linears).
        func linear(_ dst: String, _ srcs: [String], swap: Bool = false) {
            add(dst + ".weight", srcs.map { $0 + ".weight" }, swap: swap)
            add(dst + ".bias", srcs.map { $0 + ".bias" }, swap: swap)
        }
        switch config {
        case .flux(let c):
            linear("time_in.in_layer", ["time_text_embed.timestep_embedder.linear_1"])
            linear("time_in.out_layer", ["time_text_embed.timestep_embedder.linear_2"])
            linear("vector_in.in_layer", ["time_text_embed.text_embedder.linear_1"])
            linear("vector_in.out_layer", ["time_text_embed.text_embedder.linear_2"])
            linear("guidance_in.in_layer", ["time_text_embed.guidance_embedder.linear_1"])
            linear("guidance_in.out_layer", ["time_text_embed.guidance_embedder.linear_2"])
            linear("txt_in", ["context_embedder"])
            linear("img_in", ["x_embedder"])
            for i in 0..<c.numLayers {
                let b = "transformer_blocks.\(i).", d = "double_blocks.\(i)."
                linear(d + "img_mod.lin", [b + "norm1.linear"])
                linear(d + "txt_mod.lin", [b + "norm1_context.linear"])
                linear(d + "img_attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"])
                linear(d + "txt_attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"])
                add(d + "img_attn.norm.query_norm.scale", [b + "attn.norm_q.weight"])
                add(d + "img_attn.norm.key_norm.scale", [b + "attn.norm_k.weight"])
                add(d + "txt_attn.norm.query_norm.scale", [b + "attn.norm_added_q.weight"])
                add(d + "txt_attn.norm.key_norm.scale", [b + "attn.norm_added_k.weight"])
                linear(d + "img_mlp.0", [b + "ff.net.0.proj"])
                linear(d + "img_mlp.2", [b + "ff.net.2"])
                linear(d + "txt_mlp.0", [b + "ff_context.net.0.proj"])
                linear(d + "txt_mlp.2", [b + "ff_context.net.2"])
                linear(d + "img_attn.proj", [b + "attn.to_out.0"])
                linear(d + "txt_attn.proj", [b + "attn.to_add_out"])
            }
            for j in 0..<c.numSingleLayers {
                let b = "single_transformer_blocks.\(j).", d = "single_blocks.\(j)."
                linear(d + "modulation.lin", [b + "norm.linear"])
                linear(d + "linear1", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"])
                add(d + "norm.query_norm.scale", [b + "attn.norm_q.weight"])
                add(d + "norm.key_norm.scale", [b + "attn.norm_k.weight"])
                linear(d + "linear2", [b + "proj_out"])
            }
        case .sd3(let c):
            add("pos_embed", ["pos_embed.pos_embed"])
            linear("x_embedder.proj", ["pos_embed.proj"])
            linear("t_embedder.mlp.0", ["time_text_embed.timestep_embedder.linear_1"])
            linear("t_embedder.mlp.2", ["time_text_embed.timestep_embedder.linear_2"])
            linear("y_embedder.mlp.0", ["time_text_embed.text_embedder.linear_1"])
            linear("y_embedder.mlp.2", ["time_text_embed.text_embedder.linear_2"])
            linear("context_embedder", ["context_embedder"])
            for i in 0..<c.numLayers {
                let b = "transformer_blocks.\(i).", x = "joint_blocks.\(i).x_block.", ctx = "joint_blocks.\(i).context_block."
                linear(x + "attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"])
                linear(ctx + "attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"])
                add(x + "attn.ln_q.weight", [b + "attn.norm_q.weight"])
                add(x + "attn.ln_k.weight", [b + "attn.norm_k.weight"])
                add(ctx + "attn.ln_q.weight", [b + "attn.norm_added_q.weight"])
                add(ctx + "attn.ln_k.weight", [b + "attn.norm_added_k.weight"])
                add(x + "attn2.ln_q.weight", [b + "attn2.norm_q.weight"])
                add(x + "attn2.ln_k.weight", [b + "attn2.norm_k.weight"])
                linear(x + "attn.proj", [b + "attn.to_out.0"])
                linear(ctx + "attn.proj", [b + "attn.to_add_out"])
                linear(x + "attn2.qkv", [b + "attn2.to_q", b + "attn2.to_k", b + "attn2.to_v"])
                linear(x + "attn2.proj", [b + "attn2.to_out.0"])
                linear(x + "adaLN_modulation.1", [b + "norm1.linear"])
                // The last block's context modulation is AdaLayerNormContinuous: diffusers (scale, shift), SAI (shift, scale).
                linear(ctx + "adaLN_modulation.1", [b + "norm1_context.linear"], swap: i == c.numLayers - 1)
                linear(x + "mlp.fc1", [b + "ff.net.0.proj"])
                linear(x + "mlp.fc2", [b + "ff.net.2"])
                linear(ctx + "mlp.fc1", [b + "ff_context.net.0.proj"])
                linear(ctx + "mlp.fc2", [b + "ff_context.net.2"])
            }
        }
        linear("final_layer.linear", ["proj_out"])
        linear("final_layer.adaLN_modulation.1", ["norm_out.linear"], swap: true)
        let left = names.subtracting(used).sorted()
        guard left.isEmpty else {
            throw ModelStoreError("internal: no original-checkpoint name for \(left.prefix(5).joined(separator: ", "))", fix: "report this")
        }
        return out
    }

    /// The GGML type a tensor is written as: convert.py's policy (1-D and ≤ 1024-element f32/bf16 tensors F32;
    /// others F16, or BF16 from a bf16 source), with 2-D Linear weights at `quant` (when their rows are whole
    /// blocks; else the convert.py type).
    public static func ggufType(name: String, shape: [Int], source: StorageDType, quant: GGMLType) -> GGMLType {
        let n = shape.reduce(1, *)
        let base: GGMLType = source == .bf16 ? .bf16 : .f16
        if (shape.count == 1 || n <= 1024) && (source == .f32 || source == .bf16) { return .f32 }
        if shape.count == 2 && name.hasSuffix(".weight") && shape[1] % quant.blockSize == 0 { return quant }
        return base
    }

    /// Writes a (renumbered, unquantised) model as a GGUF file at `path` for ComfyUI-GGUF, streaming one tensor
    /// at a time. `general.architecture` is `flux` or `sd3`.
    /// - Throws: `ExportRefusal` for a quantised model or one with removed sub-components.
    public static func exportGGUF(_ manifest: ModelManifest, store: ArtifactStore, to path: URL, quant: GGMLType) throws {
        if manifest.isQuantised {
            throw ExportRefusal("the model is already quantised (\(manifest.quantisation.map { "\($0.format)" } ?? "per-tensor"))",
                                fix: "export the model before the quantise stage with --format gguf --quant TYPE")
        }
        guard manifest.structure.removed.isEmpty else {
            throw ExportRefusal("GGUF has no form for removed sub-components (\(manifest.structure.removed.joined(separator: ", ")))",
                                fix: "prune whole blocks only, or export --format diffusers --layout loader")
        }
        var withClass = manifest.config
        withClass["_class_name"] = .string(manifest.architecture)
        let config = try ModelConfig.parse(withClass, file: "model config")
        let layout = try originalLayout(config, names: Set(manifest.tensors.keys)).sorted { $0.name < $1.name }
        var infos: [GGUFTensorInfo] = []
        for o in layout {
            let first = manifest.tensors[o.parts[0]]!.object
            guard first.dtype == .f32 || first.dtype == .bf16 || first.dtype == .f16 else {
                throw ExportRefusal("tensor '\(o.parts[0])' is \(first.dtype.rawValue)", fix: "GGUF export reads f32, bf16 or f16 weights")
            }
            var shape = first.shape
            shape[0] = o.parts.reduce(0) { $0 + manifest.tensors[$1]!.object.shape[0] }
            infos.append(GGUFTensorInfo(name: o.name, shape: shape, type: ggufType(name: o.name, shape: shape, source: first.dtype, quant: quant)))
        }
        let arch = config.architecture == .flux ? "flux" : "sd3"
        let metadata: [(String, GGUFValue)] = [("general.architecture", .string(arch)),
                                               ("general.quantization_version", .uint32(2)),
                                               ("general.file_type", .uint32(quant.fileType)),
                                               (ggufConfigKey, .string(String(decoding: try configJSON(withClass, pretty: false), as: UTF8.self)))]
        let byName = Dictionary(uniqueKeysWithValues: layout.map { ($0.name, $0) })
        try writeFile(at: path) { tmpPath in
            try GGUF.write(to: tmpPath, metadata: metadata, tensors: infos) { info in
                try Task.checkCancellation()
                let o = byName[info.name]!
                var values: [Float] = []
                for p in o.parts { values += try floats(p, of: manifest, store: store) }
                if o.swapHalves {
                    let h = values.count / 2
                    values = Array(values[h...]) + Array(values[..<h])
                }
                return GGMLQuants.quantize(values, as: info.type)
            }
        }
    }
}
