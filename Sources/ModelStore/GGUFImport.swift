// Importing what hprune exports: a GGUF file in ComfyUI-GGUF's layout back into a `Model` artifact (fused
// tensors split, shift/scale halves swapped back), and `importModel`, which picks the GGUF or diffusers-folder
// importer by path. F32 / F16 / BF16 tensors keep their bytes, so an unchanged tensor has its old digest;
// GGML-quantised ones are dequantised to f32 (hprune runs no GGML kernels).

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec

extension ModelStore {
    /// Imports a diffusers folder, or a `.gguf` file (`importGGUF`).
    public static func importModel(at url: URL, store: ArtifactStore, sourceDigest: Digest? = nil,
                                   config: [String: JSONValue]? = nil) throws -> Digest {
        url.pathExtension.lowercased() == "gguf"
            ? try importGGUF(at: url, store: store, sourceDigest: sourceDigest, config: config)
            : try importDiffusers(at: url, store: store, sourceDigest: sourceDigest)
    }

    /// Imports a GGUF file with original-checkpoint key names (what `hprune export --format gguf` and
    /// ComfyUI-GGUF's convert.py write) for the diffusers config in its `hprune.diffusers_config` key, or `config`.
    /// Memoised by the file's source digest, as `importDiffusers`.
    public static func importGGUF(at url: URL, store: ArtifactStore, sourceDigest: Digest? = nil,
                                  config given: [String: JSONValue]? = nil) throws -> Digest {
        let source = try sourceDigest ?? store.hashSource(at: url)
        let key = "import-gguf-" + Digest.of(Data("hprune.model-import-gguf/\(importVersion):\(source.hex):\(given.map { String(decoding: (try? configJSON($0)) ?? Data(), as: UTF8.self) } ?? "")".utf8)).hex
        if let rec = store.action(for: key), let d = rec.outputs["model"], store.contains(d) { return d }

        let g = try GGUFFile(path: url.path)
        var configObject: [String: JSONValue]
        if let given {
            configObject = given
        } else if case .string(let text)? = g.value(ggufConfigKey), case .success(let v) = JSONValue.parse(Data(text.utf8)), let o = v.objectValue {
            configObject = o
        } else {
            throw ModelStoreError("\(url.path): no '\(ggufConfigKey)' key, so the diffusers config is unknown",
                                  fix: "pass the model's config.json with --config (the transformer/config.json of the diffusers pipeline)")
        }
        let config = try ModelConfig.parse(configObject, file: url.path + " (\(given == nil ? ggufConfigKey : "--config"))")
        let structure = ModelStructure(config)
        let specs = Dictionary(uniqueKeysWithValues: structure.tensors.map { ($0.name, $0) })
        let layout = try originalLayout(config, names: Set(specs.keys))
        let fileTensors = Dictionary(uniqueKeysWithValues: g.tensors.map { ($0.name, $0) })
        let missing = layout.map(\.name).filter { fileTensors[$0] == nil }
        let extra = Set(fileTensors.keys).subtracting(layout.map(\.name)).sorted()
        guard missing.isEmpty, extra.isEmpty else {
            throw ModelStoreError("\(url.path): the tensors do not match the \(config.architecture.rawValue) config (missing \(missing.prefix(5).joined(separator: ", ")); unexpected \(extra.prefix(5).joined(separator: ", ")))",
                                  fix: "import a GGUF written for this config (num_layers, num_single_layers, dual_attention_layers must match the file)")
        }

        var tensors: [String: ManifestTensor] = [:]
        for o in layout {
            try Task.checkCancellation()
            let info = fileTensors[o.name]!
            let rows = o.parts.map { specs[$0]!.shape[0] }
            var expect = specs[o.parts[0]]!.shape
            expect[0] = rows.reduce(0, +)
            guard info.shape == expect else {
                throw ModelStoreError("\(url.path): tensor '\(o.name)' has shape \(info.shape), the config needs \(expect)",
                                      fix: "import a GGUF written for this config")
            }
            // Raw element bytes (exact for F32/F16/BF16), or f32 values of a dequantised GGML block type.
            let dtype: StorageDType
            var raw: [UInt8]
            switch info.type {
            case .f32: dtype = .f32; raw = try g.bytes(o.name)
            case .f16: dtype = .f16; raw = try g.bytes(o.name)
            case .bf16: dtype = .bf16; raw = try g.bytes(o.name)
            default:
                dtype = .f32
                raw = []
                raw.reserveCapacity(info.elementCount * 4)
                for v in try g.floats(o.name) {
                    let u = v.bitPattern
                    raw += [UInt8(truncatingIfNeeded: u), UInt8(truncatingIfNeeded: u >> 8), UInt8(truncatingIfNeeded: u >> 16), UInt8(truncatingIfNeeded: u >> 24)]
                }
            }
            if o.swapHalves {
                let h = raw.count / 2
                raw = Array(raw[h...]) + Array(raw[..<h])
            }
            let rowBytes = raw.count / expect[0]
            var at = 0
            for (p, n) in zip(o.parts, rows) {
                let d = Data(raw[at..<(at + n * rowBytes)])
                at += n * rowBytes
                tensors[p] = ManifestTensor(object: TensorObject(digest: try store.put(d), dtype: dtype, shape: specs[p]!.shape, bytes: d.count))
            }
        }
        var cfg = configObject
        cfg.removeValue(forKey: removedComponentsConfigKey)
        cfg.removeValue(forKey: "quantization_config")
        cfg["_class_name"] = .string(config.architecture.rawValue)
        let manifest = ModelManifest(architecture: config.architecture.rawValue, config: cfg, tensors: tensors)
        let digest = try put(manifest, store: store)
        try store.recordAction(ActionRecord(key: key, stage: "import", kind: "import", outputs: ["model": digest], seconds: 0,
                                            extra: ["path": url.path, "source": source.hex]))
        return digest
    }
}
