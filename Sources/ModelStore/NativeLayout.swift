// A block-pruned model rewritten as diffusers' own model: kept blocks renumbered, num_layers /
// num_single_layers / dual_attention_layers rewritten, and (SD3) the new last block made context_pre_only
// exactly, so `from_pretrained` of the export loads every weight and newly initialises none.

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec

/// An export that cannot be written in the requested form (invalid input: exit 2), with the fix.
public struct ExportRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var fix: String
    public init(_ message: String, fix: String) {
        self.message = message
        self.fix = fix
    }
    public var description: String { "\(message); \(fix)" }
}

/// The renumbered form of a manifest (`ModelStore.renumbered`).
public struct NativeLayout: Sendable {
    /// The renumbered model: diffusers names and config; `structure.removed` holds only the sub-component
    /// removals left (renumbered), which diffusers has no form for.
    public var manifest: ModelManifest
    /// Old global block index → new global block index, for every kept block.
    public var blockMap: [Int: Int]
    /// Sub-component addresses (old numbering) made redundant by the renumbering: `ff_context` of a block that
    /// became the last SD3 block (context_pre_only blocks have none).
    public var absorbed: [String]
    /// Whether an SD3 block was converted to context_pre_only (its old global index).
    public var convertedToContextPreOnly: Int?
    /// Old state_dict block prefix → new (`transformer_blocks.3.` → `transformer_blocks.2.`), every kept block.
    public var blockPrefixes: [String: String] = [:]

    /// What a LoRA remap needs to know about this export, as safetensors metadata of its weights file.
    public var exportMetadata: [String: String] {
        var m: [String: String] = [:]
        if !blockPrefixes.isEmpty, let d = try? JSONSerialization.data(withJSONObject: blockPrefixes, options: [.sortedKeys]) {
            m[ModelStore.prefixMapMetadataKey] = String(decoding: d, as: UTF8.self)
        }
        if let c = convertedToContextPreOnly { m[ModelStore.contextPreOnlyMetadataKey] = "transformer_blocks.\(c)." }
        return m
    }
}

extension ModelStore {
    /// Weights-file metadata of a renumbered export: JSON object old block prefix → new prefix.
    public static let prefixMapMetadataKey = "hprune_block_prefixes"
    /// Weights-file metadata: the old prefix of the block made context_pre_only.
    public static let contextPreOnlyMetadataKey = "hprune_context_pre_only_from"

    /// Rewrites a pruned manifest without its removed blocks (see the file header).
    ///
    /// SD3 last-block rule: diffusers builds block i with `context_pre_only = (i == num_layers - 1)`. When the
    /// original last block is removed, the new last block's context output is never used (every later block
    /// passes (c, x) through; `norm_out` reads only x), so its `norm1_context` (AdaLayerNormZero, 6 chunks
    /// shift, scale, gate, shift_mlp, scale_mlp, gate_mlp of [6D, D]) becomes AdaLayerNormContinuous
    /// ([2D, D], chunk order scale, shift) from the scale_msa rows [D, 2D) then the shift_msa rows [0, D), and
    /// `attn.to_add_out`, `ff_context` (and the parameter-free `norm2_context`) are dropped: the context
    /// q/k/v input is identical and everything dropped only fed the discarded output. Rows are moved as bytes
    /// (a bitsandbytes 4-bit weight as packed codes and absmax blocks, when chunk boundaries fall on block
    /// boundaries), so nothing is re-rounded. New tensors go into the store.
    ///
    /// - Throws: `ExportRefusal` when every block (of a kind that needs one) is removed, or a quantised
    ///   `norm1_context.linear.weight` cannot be split exactly.
    public static func renumbered(_ manifest: ModelManifest, store: ArtifactStore) throws -> NativeLayout {
        var withClass = manifest.config
        withClass["_class_name"] = .string(manifest.architecture)
        let config = try ModelConfig.parse(withClass, file: "model config")
        let structure = ModelStructure(config)
        let removal = try Removal(parsing: manifest.structure.removed, in: structure)
        let removedBlocks = Set(removal.addresses.filter { $0.component == .block }.map(\.block))
        if removedBlocks.isEmpty {
            return NativeLayout(manifest: manifest, blockMap: Dictionary(uniqueKeysWithValues: structure.blocks.map { ($0.index, $0.index) }),
                                absorbed: [], convertedToContextPreOnly: nil)
        }

        var newConfig = manifest.config
        var blockMap: [Int: Int] = [:]
        // Old prefix → new prefix, for every kept block.
        var prefixMap: [String: String] = [:]
        var converted: Int?
        var convertedPrefix = ""
        switch config {
        case .sd3(let c):
            let kept = (0..<c.numLayers).filter { !removedBlocks.contains($0) }
            guard !kept.isEmpty else {
                throw ExportRefusal("every transformer block is removed (\(removal.strings.joined(separator: ", ")))",
                                    fix: "keep at least one block")
            }
            for (k, i) in kept.enumerated() {
                blockMap[i] = k
                prefixMap["transformer_blocks.\(i)."] = "transformer_blocks.\(k)."
            }
            newConfig["num_layers"] = .int(kept.count)
            newConfig["dual_attention_layers"] = .array(c.dualAttentionLayers.compactMap { blockMap[$0] }.map(JSONValue.int))
            if kept.last! != c.numLayers - 1 {
                converted = kept.last!
                convertedPrefix = "transformer_blocks.\(kept.count - 1)."
            }
        case .flux(let c):
            let kept = (0..<c.numLayers).filter { !removedBlocks.contains($0) }
            let keptSingle = (0..<c.numSingleLayers).filter { !removedBlocks.contains(c.numLayers + $0) }
            guard !kept.isEmpty else {
                throw ExportRefusal("every double block (transformer_blocks) is removed", fix: "keep at least one double block")
            }
            for (k, i) in kept.enumerated() {
                blockMap[i] = k
                prefixMap["transformer_blocks.\(i)."] = "transformer_blocks.\(k)."
            }
            for (k, j) in keptSingle.enumerated() {
                blockMap[c.numLayers + j] = kept.count + k
                prefixMap["single_transformer_blocks.\(j)."] = "single_transformer_blocks.\(k)."
            }
            newConfig["num_layers"] = .int(kept.count)
            newConfig["num_single_layers"] = .int(keptSingle.count)
        }

        var tensors: [String: ManifestTensor] = [:]
        for (name, t) in manifest.tensors {
            guard let new = renamed(name, prefixMap) else { continue }   // a removed block's tensor (never present)
            if converted != nil, new.hasPrefix(convertedPrefix) {
                let local = new.dropFirst(convertedPrefix.count)
                if local.hasPrefix("attn.to_add_out.") || local.hasPrefix("ff_context.") { continue }
                if local == "norm1_context.linear.weight" || local == "norm1_context.linear.bias" {
                    tensors[new] = try scaleShiftRows(t, name: name, inner: config.innerDim, store: store)
                    continue
                }
            }
            tensors[new] = t
        }

        var subs: [String] = []
        var absorbed: [String] = []
        for a in removal.addresses where a.component != .block {
            guard let k = blockMap[a.block] else { continue }
            if a.block == converted && a.component == .ff_context { absorbed.append(a.description); continue }
            subs.append(ComponentAddress(block: k, component: a.component).description)
        }
        var out = manifest
        out.config = newConfig
        out.tensors = tensors
        out.structure.removed = subs
        out.structure.frozenBlocks = manifest.structure.frozenBlocks.compactMap { blockMap[$0] }
        try checkComplete(out)
        return NativeLayout(manifest: out, blockMap: blockMap, absorbed: absorbed, convertedToContextPreOnly: converted,
                            blockPrefixes: prefixMap)
    }

    /// `name` with its block prefix mapped, or nil when it belongs to a block not in `map`; non-block names as is.
    static func renamed(_ name: String, _ map: [String: String]) -> String? {
        for head in ["transformer_blocks.", "single_transformer_blocks."] where name.hasPrefix(head) {
            let rest = name.dropFirst(head.count)
            guard let dot = rest.firstIndex(of: ".") else { return name }
            let old = head + rest[..<dot] + "."
            guard let new = map[old] else { return nil }
            return new + rest[rest.index(after: dot)...]
        }
        return name
    }

    /// The renumbered manifest has exactly the tensors (names and shapes) its config and removals need.
    static func checkComplete(_ m: ModelManifest) throws {
        var withClass = m.config
        withClass["_class_name"] = .string(m.architecture)
        let structure = ModelStructure(try ModelConfig.parse(withClass, file: "renumbered config"))
        let removal = try Removal(parsing: m.structure.removed, in: structure)
        let need = try structure.requiredTensors(after: removal)
        let have = Set(m.tensors.keys)
        let missing = need.map(\.name).filter { !have.contains($0) }
        let extra = have.subtracting(need.map(\.name)).sorted()
        let wrongShape = need.filter { spec in
            guard let t = m.tensors[spec.name] else { return false }
            return (t.quantisation?.originalShape ?? t.object.shape) != spec.shape
        }.map(\.name)
        guard missing.isEmpty, extra.isEmpty, wrongShape.isEmpty else {
            throw ModelStoreError("internal: the renumbered model does not match its config (missing \(missing.prefix(5)), unexpected \(extra.prefix(5)), wrong shape \(wrongShape.prefix(5)))",
                                  fix: "report this; export with --format safetensors meanwhile")
        }
    }

    /// `norm1_context.linear` weight [6D, D] or bias [6D] → the scale_msa rows then the shift_msa rows ([2D, D] / [2D]).
    static func scaleShiftRows(_ t: ManifestTensor, name: String, inner d: Int, store: ArtifactStore) throws -> ManifestTensor {
        let shape = t.quantisation?.originalShape ?? t.object.shape
        let rowElems = shape.count == 2 ? shape[1] : 1
        guard shape.first == 6 * d, shape.count <= 2 else {
            throw ModelStoreError("tensor '\(name)' has shape \(shape), expected [\(6 * d)\(shape.count == 2 ? ", \(d)" : "")]",
                                  fix: "the model is inconsistent with its config")
        }
        let chunk = d * rowElems           // elements per chunk of d rows
        func reorder(_ o: TensorObject, unit: Int, shape newShape: [Int]) throws -> TensorObject {
            // `unit` elements of `o` per chunk; chunk 1 (scale) then chunk 0 (shift).
            let bytes = try data(o, store: store, name: name)
            let per = unit * o.dtype.byteSize
            guard bytes.count >= 2 * per else {
                throw ModelStoreError("tensor '\(name)': \(bytes.count) bytes, too few for two chunks of \(per)", fix: "the model is inconsistent")
            }
            var out = Data(bytes[(bytes.startIndex + per)..<(bytes.startIndex + 2 * per)])
            out.append(bytes[bytes.startIndex..<(bytes.startIndex + per)])
            return TensorObject(digest: try store.put(out), dtype: o.dtype, shape: newShape, bytes: out.count)
        }
        let newShape = shape.count == 2 ? [2 * d, d] : [2 * d]
        guard let q = t.quantisation else {
            return ManifestTensor(object: try reorder(t.object, unit: chunk, shape: newShape))
        }
        guard q.format.bitsandbytesType != nil, let bs = q.blockSize, bs > 0 else {
            throw ExportRefusal("'\(name)' is quantised as \(q.format), which cannot be split into the context_pre_only norm of the new last block",
                                fix: "export the model before quantising (or quantise with nf4/fp4)")
        }
        let nestedGroup = q.doubleQuant ? 256 : 1
        guard chunk % (bs * nestedGroup) == 0 else {
            throw ExportRefusal("'\(name)' (\(q.format), block \(bs)\(q.doubleQuant ? ", double-quant" : "")): its \(d)-row chunks (\(chunk) elements) do not fall on \(q.doubleQuant ? "nested-absmax groups of \(bs * 256)" : "absmax blocks of \(bs)") elements, so the new last block's context norm cannot be cut out exactly",
                                fix: "export before quantising, or quantise with a block size dividing \(chunk)\(q.doubleQuant ? " / 256 (or without --double-quant)" : "")")
        }
        let packedShape = [chunk, 1]   // 2 chunks × chunk/2 bytes
        let weight = try reorder(t.object, unit: chunk / 2, shape: packedShape)
        var comps = q.companions
        for (suffix, o) in q.companions {
            switch suffix {
            case ".absmax": comps[suffix] = try reorder(o, unit: chunk / bs, shape: [2 * chunk / bs])
            case ".nested_absmax": comps[suffix] = try reorder(o, unit: chunk / bs / 256, shape: [2 * chunk / bs / 256])
            case ".quant_map", ".nested_quant_map": break
            default:
                guard suffix.hasPrefix(".quant_state.") else {
                    throw ModelStoreError("tensor '\(name)': unknown companion '\(suffix)'", fix: "report this")
                }
                let json = String(decoding: try data(o, store: store, name: name + suffix), as: UTF8.self)
                let old = "\"shape\": [\(shape.map(String.init).joined(separator: ", "))]"
                guard json.contains(old) else {
                    throw ModelStoreError("tensor '\(name)\(suffix)': quant state \(json) has no \(old)", fix: "re-quantise the model")
                }
                let new = Data(json.replacingOccurrences(of: old, with: "\"shape\": [\(newShape.map(String.init).joined(separator: ", "))]").utf8)
                comps[suffix] = TensorObject(digest: try store.put(new), dtype: o.dtype, shape: [new.count], bytes: new.count)
            }
        }
        var nq = q
        nq.originalShape = newShape
        nq.companions = comps
        return ManifestTensor(object: weight, quantisation: nq)
    }
}
