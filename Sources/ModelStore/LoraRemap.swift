// `hprune lora-remap`: rewrites a LoRA trained for the teacher (diffusers / PEFT key layout) onto a pruned
// diffusers export: block prefixes renumbered from the export's weights-file metadata, adapters of removed
// modules dropped and listed, and the lora_B rows of a block made context_pre_only cut to (scale, shift) as its
// norm1_context.linear was. W + B·A of every kept adapter is then exactly the teacher's merged weight, pruned.

import TensorFiles
import Foundation
import ModelSpec

/// What a LoRA remap did.
public struct LoraRemapReport: Sendable, Hashable {
    /// Tensors written.
    public var kept: Int
    /// Adapters whose block index changed.
    public var renumbered: Int
    /// Teacher module paths whose adapters were dropped, with why.
    public var dropped: [(module: String, reason: String)]
    /// Module paths whose lora_B rows were cut for context_pre_only.
    public var sliced: [String]

    public static func == (a: Self, b: Self) -> Bool {
        a.kept == b.kept && a.renumbered == b.renumbered && a.sliced == b.sliced
            && a.dropped.map(\.module) == b.dropped.map(\.module) && a.dropped.map(\.reason) == b.dropped.map(\.reason)
    }
    public func hash(into h: inout Hasher) { h.combine(kept); h.combine(renumbered); h.combine(sliced) }
}

extension ModelStore {
    /// Adapter tensor suffixes, after the module path: (suffix, whether its rows are the module's output rows).
    static let loraSuffixes: [(String, Bool)] = [
        (".lora_A.weight", false), (".lora_B.weight", true), (".lora_B.bias", true), (".lora.down.weight", false),
        (".lora.up.weight", true), (".lora_magnitude_vector", true), (".alpha", false),
    ]

    /// Remaps the LoRA file at `lora` onto the diffusers export folder `export`, writing `out/<lora file name>`.
    /// - Throws: `ExportRefusal` for a key that is not in diffusers' PEFT layout or an adapter whose shape does not
    ///   fit the export's module.
    public static func remapLoRA(lora: String, export: String, out: URL) throws -> LoraRemapReport {
        let file = try SafetensorsFile(path: lora)
        let config = try ModelConfig.load(path: export + "/" + DiffusersFolder.configName)
        let folder = try DiffusersFolder(path: export)
        let weightsPath = folder.files.first?.path ?? export
        let meta = (try? SafetensorsFile(path: weightsPath))?.metadata ?? [:]
        var prefixes: [String: String]?
        if let text = meta[prefixMapMetadataKey] {
            guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String] else {
                throw ExportRefusal("\(weightsPath): metadata '\(prefixMapMetadataKey)' is not a JSON object of strings", fix: "re-export the model with this hprune")
            }
            prefixes = o
        }
        let converted = meta[contextPreOnlyMetadataKey]
        let specs = Dictionary(uniqueKeysWithValues: ModelStructure(config).tensors.map { ($0.name, $0) })
        let d = config.innerDim

        var entries: [TensorEntry] = []
        var sources: [String: (name: String, slice: Bool)] = [:]
        var dropped: [String: String] = [:]
        var sliced = Set<String>()
        var renumbered = Set<String>()
        for info in file.tensors {
            guard let (suffix, rowsAreOutputs) = loraSuffixes.first(where: { info.name.hasSuffix($0.0) }) else {
                throw ExportRefusal("\(lora): tensor '\(info.name)' is not a diffusers/PEFT LoRA key (…lora_A.weight, …lora_B.weight, …lora.down/up.weight, …alpha)",
                                    fix: "convert the LoRA to diffusers' key layout first (diffusers' load_lora_weights does this for kohya files)")
            }
            let path = String(info.name.dropLast(suffix.count))
            // The module path starts at a known top-level module; what is before it (`transformer.`) is kept.
            let starts = ["single_transformer_blocks.", "transformer_blocks."]
            var head = ""
            var module = path
            if let r = starts.lazy.compactMap({ path.range(of: $0) }).first {
                head = String(path[..<r.lowerBound]); module = String(path[r.lowerBound...])
            } else if path.hasPrefix("transformer.") {
                head = "transformer."; module = String(path.dropFirst(head.count))
            }
            var newModule = module
            if module.hasPrefix("transformer_blocks.") || module.hasPrefix("single_transformer_blocks.") {
                let parts = module.split(separator: ".", maxSplits: 2).map(String.init)
                let blockPrefix = parts[0] + "." + parts[1] + "."
                if let prefixes {
                    guard let p = prefixes[blockPrefix] else { dropped[module] = "block removed"; continue }
                    newModule = p + (parts.count > 2 ? parts[2] : "")
                    if p != blockPrefix { renumbered.insert(module) }
                }
            }
            guard let spec = specs[newModule + ".weight"], spec.shape.count == 2 else {
                let cpo = converted.flatMap { c in prefixes?[c] }.map { newModule.hasPrefix($0) } ?? false
                dropped[module] = cpo ? "its block became the last (context_pre_only) block, which has no such module" : "not a Linear of this model"
                continue
            }
            guard folder.contains(newModule + ".weight") else { dropped[module] = "sub-component removed"; continue }
            var shape = info.shape
            var slice = false
            if rowsAreOutputs, shape.first != spec.shape[0] {
                if let converted, module == converted + "norm1_context.linear", shape.first == 6 * d, spec.shape[0] == 2 * d {
                    slice = true
                    shape[0] = 2 * d
                    sliced.insert(module)
                } else {
                    throw ExportRefusal("\(lora): '\(info.name)' has \(shape.first ?? 0) rows, but \(newModule) has \(spec.shape[0]) outputs",
                                        fix: "use a LoRA trained for this model's teacher")
                }
            }
            if suffix == ".lora_A.weight" || suffix == ".lora.down.weight", shape.count == 2, shape[1] != spec.shape[1] {
                throw ExportRefusal("\(lora): '\(info.name)' has \(shape[1]) inputs, but \(newModule) has \(spec.shape[1])",
                                    fix: "use a LoRA trained for this model's teacher")
            }
            let name = head + newModule + suffix
            entries.append(TensorEntry(name: name, dtype: info.dtype, shape: shape))
            sources[name] = (info.name, slice)
        }
        var metadata = file.metadata
        let report = LoraRemapReport(kept: entries.count, renumbered: renumbered.count,
                                     dropped: dropped.keys.sorted().map { ($0, dropped[$0]!) }, sliced: sliced.sorted())
        let summary: [String: Any] = ["export": export, "dropped": report.dropped.map(\.module), "sliced": report.sliced]
        if let j = try? JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]) {
            metadata["hprune_lora_remap"] = String(decoding: j, as: UTF8.self)
        }
        let fileName = URL(fileURLWithPath: lora).lastPathComponent
        try writeFolder(at: out) { tmp in
            try SafetensorsWriter.write(entries: entries, metadata: metadata, to: tmp.appendingPathComponent(fileName).path) { e in
                let (src, slice) = sources[e.name]!
                let bytes = try file.bytes(src)
                guard slice else { return bytes }
                // Rows [d, 2d) (scale_msa) then [0, d) (shift_msa).
                let row = bytes.count / (6 * d)
                var outBytes = Data(bytes[(bytes.startIndex + d * row)..<(bytes.startIndex + 2 * d * row)])
                outBytes.append(bytes[bytes.startIndex..<(bytes.startIndex + d * row)])
                return outBytes
            }
        }
        return report
    }
}
