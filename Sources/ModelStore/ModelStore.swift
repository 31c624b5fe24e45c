// Reading and writing `Model` artifacts: import a diffusers folder (one object per tensor, memoised by the
// folder's source digest so a re-import reads nothing), read manifests and tensors back (verified), and
// export a manifest as a diffusers folder or a single safetensors file (temp dir → fsync → rename).

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import TensorCore

public enum ModelStore {
    /// Version of the import procedure; part of the memo key, so changing the import re-imports.
    static let importVersion = 1

    /// Stores `manifest` and returns its digest (the model's digest).
    @discardableResult
    public static func put(_ manifest: ModelManifest, store: ArtifactStore) throws -> Digest {
        try store.put(manifest.encoded())
    }

    /// Reads a manifest (verified against its digest).
    public static func manifest(_ digest: Digest, store: ArtifactStore) throws -> ModelManifest {
        try ModelManifest.decode(try store.data(digest), source: "model \(digest.short)")
    }

    /// The bytes of one tensor object, verified against its digest and checked against its recorded length.
    public static func data(_ object: TensorObject, store: ArtifactStore, name: String) throws -> Data {
        let d = try store.data(object.digest)
        guard d.count == object.bytes else {
            throw ModelStoreError("tensor '\(name)': object \(object.digest.short) has \(d.count) bytes, the manifest says \(object.bytes)",
                                  fix: "the manifest is inconsistent; re-run the stage that produced it")
        }
        return d
    }

    /// A float tensor decoded to fp32 ([n] row-major).
    public static func floats(_ name: String, of manifest: ModelManifest, store: ArtifactStore) throws -> [Float] {
        guard let t = manifest.tensors[name] else {
            throw ModelStoreError("the model has no tensor '\(name)'", fix: "check the name with `hprune inspect`")
        }
        guard t.quantisation == nil, t.object.dtype.isFloatingPoint else {
            throw ModelStoreError("tensor '\(name)' is stored as \(t.object.dtype.rawValue)\(t.quantisation.map { " (\($0.format))" } ?? ""), not as floats",
                                  fix: "use the model before quantisation")
        }
        let d = try data(t.object, store: store, name: name)
        guard let f = d.withUnsafeBytes({ FloatDecoding.decode($0, dtype: t.object.dtype) }) else {
            throw ModelStoreError("tensor '\(name)': cannot decode \(t.object.dtype.rawValue)", fix: "use f32, bf16 or f16 weights")
        }
        return f
    }

    /// The stored tensors of the quantised weight `name` (its codes and every companion, each verified), for its
    /// format's traits to decode (`StoredQuantWeight.dequantised()`, `.prepared4Bit()`).
    public static func storedQuantWeight(_ name: String, _ t: ManifestTensor, store: ArtifactStore) throws -> StoredQuantWeight {
        guard let q = t.quantisation else {
            throw ModelStoreError("tensor '\(name)' is not quantised", fix: "read it with `ModelStore.floats`")
        }
        func part(_ o: TensorObject, _ key: String) throws -> SerializedTensor {
            guard let dtype = SerializedDType(rawValue: o.dtype.rawValue) else {
                throw ModelStoreError("quantised tensor '\(key)' is stored as \(o.dtype.rawValue); quantised parts are U8, I8 or F32",
                                      fix: "re-run the quantise stage")
            }
            return SerializedTensor(dtype: dtype, shape: o.shape, bytes: [UInt8](try data(o, store: store, name: key)))
        }
        var companions: [String: SerializedTensor] = [:]
        for (suffix, o) in q.companions { companions[suffix] = try part(o, name + suffix) }
        return StoredQuantWeight(name: name, format: q.format, blockSize: q.blockSize, shape: q.originalShape,
                                 codes: try part(t.object, name), companions: companions)
    }

    // MARK: Import

    /// Imports a diffusers model folder (config.json + weights, single or sharded): validates it against its
    /// config (`ModelCheckpoint`), stores each tensor as one object, and returns the manifest digest.
    ///
    /// Memoised by the folder's source digest (`hashSource`, itself memoised by path/size/mtime/inode): importing the
    /// same folder again reads no tensor and writes nothing.
    public static func importDiffusers(at url: URL, store: ArtifactStore, sourceDigest: Digest? = nil) throws -> Digest {
        let source = try sourceDigest ?? store.hashSource(at: url)
        let key = "import-" + Digest.of(Data("hprune.model-import/\(importVersion):\(source.hex)".utf8)).hex
        if let rec = store.action(for: key), let d = rec.outputs["model"], store.contains(d) { return d }

        let checkpoint = try ModelCheckpoint(path: url.path)
        let folder = checkpoint.folder
        var config = folder.config
        config.removeValue(forKey: removedComponentsConfigKey)
        let qconfig = config.removeValue(forKey: "quantization_config")?.objectValue

        var objects: [String: TensorObject] = [:]
        var states: [String: Data] = [:]
        for info in folder.tensors {
            try Task.checkCancellation()
            let data = try folder.withBytes(info.name) { Data($0) }
            let digest = try store.put(data)
            objects[info.name] = TensorObject(digest: digest, dtype: info.dtype, shape: info.shape, bytes: data.count)
            if info.name.contains(".quant_state.") { states[info.name] = data }
        }
        let tensors = try groupQuantised(objects, states: states, source: folder.path)
        var quant: QuantisationRecord?
        if let q = qconfig {
            let typeName = q["bnb_4bit_quant_type"]?.stringValue ?? "nf4"
            guard let type = QuantFormat(rawValue: typeName), type.bitsandbytesType != nil else {
                throw ModelStoreError("\(folder.path): quantization_config.bnb_4bit_quant_type '\(typeName)' is not a bitsandbytes 4-bit type (nf4, fp4)",
                                      fix: "import a bitsandbytes nf4/fp4 checkpoint, or the unquantised model")
            }
            let block = tensors.values.compactMap(\.quantisation).first?.blockSize
            quant = QuantisationRecord(format: type, blockSize: block, doubleQuant: q["bnb_4bit_use_double_quant"]?.boolValue ?? false,
                                       computeDType: q["bnb_4bit_compute_dtype"]?.stringValue ?? "float32", keep: [])
        } else if let first = tensors.values.compactMap(\.quantisation).first {
            quant = QuantisationRecord(format: first.format, blockSize: first.blockSize, doubleQuant: first.doubleQuant,
                                       computeDType: "float32", keep: [])
        }
        let manifest = ModelManifest(architecture: checkpoint.config.architecture.rawValue, config: config,
                                     structure: ModelStructureRecord(removed: checkpoint.removal.strings),
                                     quantisation: quant, tensors: tensors)
        let digest = try put(manifest, store: store)
        try store.recordAction(ActionRecord(key: key, stage: "import", kind: "import", outputs: ["model": digest], seconds: 0,
                                            extra: ["path": url.path, "source": source.hex]))
        return digest
    }

    /// Known companion suffixes of a quantised weight.
    static let companionSuffixes = [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".scales", ".zeros", ".SCB"]

    /// Groups quantised weights (those with a `X.quant_state.*` tensor) with their companions.
    static func groupQuantised(_ objects: [String: TensorObject], states: [String: Data], source: String) throws -> [String: ManifestTensor] {
        var out: [String: ManifestTensor] = [:]
        var consumed = Set<String>()
        let marker = ".quant_state."
        for (name, stateObj) in objects where name.contains(marker) {
            guard let r = name.range(of: marker) else { continue }
            let base = String(name[..<r.lowerBound])
            let tag = String(name[r.upperBound...])       // bitsandbytes__nf4, hprune__int4, …
            guard let weight = objects[base] else {
                throw ModelStoreError("\(source): '\(name)' has no weight '\(base)'", fix: "the quantised checkpoint is incomplete")
            }
            var companions: [String: TensorObject] = [String(name.dropFirst(base.count)): stateObj]
            for s in companionSuffixes { if let o = objects[base + s] { companions[s] = o; consumed.insert(base + s) } }
            consumed.insert(name)
            consumed.insert(base)
            // The quant-state JSON (bitsandbytes and hprune write the same keys) gives shape, dtype and block size.
            let json = states[name].flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
            var formatName = tag.split(separator: "_").last.map(String.init) ?? tag
            if formatName == "int4", (json["scheme"] as? String) == Int4Scheme.asymmetric.rawValue { formatName = QuantFormat.int4Asym.rawValue }
            guard let format = QuantFormat(rawValue: formatName) else {
                throw ModelStoreError("\(source): '\(name)' is a quant state of the unknown format '\(formatName)' (known: \(QuantFormat.allCases.map(\.rawValue).joined(separator: ", ")))",
                                      fix: "import a checkpoint quantised by bitsandbytes (nf4/fp4) or hprune")
            }
            let block = (json["blocksize"] as? NSNumber ?? json["group_size"] as? NSNumber)?.intValue
            let shape = (json["shape"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? weight.shape
            let dtype: StorageDType = ["bfloat16": .bf16, "float16": .f16][json["dtype"] as? String ?? ""] ?? .f32
            out[base] = ManifestTensor(object: weight, quantisation: TensorQuantisation(
                format: format, blockSize: block, doubleQuant: companions[".nested_absmax"] != nil,
                originalShape: shape, originalDType: dtype, companions: companions))
        }
        for (name, o) in objects where !consumed.contains(name) { out[name] = ManifestTensor(object: o) }
        return out
    }

    // MARK: Export

    /// Writes `manifest` as a diffusers folder at `dir` (config.json + diffusion_pytorch_model.safetensors),
    /// streaming one tensor at a time from the store (each verified). The folder is built next to `dir` and
    /// renamed into place, so `dir` is either absent or complete.
    /// - Throws: if `dir` exists and is not empty.
    public static func exportDiffusers(_ manifest: ModelManifest, store: ArtifactStore, to dir: URL,
                                       quantizationConfig: [String: JSONValue]? = nil, metadata: [String: String] = [:],
                                       weightsName: String = DiffusersFolder.weightsName) throws {
        try writeFolder(at: dir) { tmp in
            try writeSafetensors(manifest, store: store, to: tmp.appendingPathComponent(weightsName).path,
                                 metadata: metadata.merging(["format": "pt"]) { _, b in b })
            try AtomicFile.write(try configJSON(manifest.exportConfig(quantizationConfig: quantizationConfig)),
                                 to: tmp.appendingPathComponent(DiffusersFolder.configName).path)
        }
    }

    /// Writes `manifest` as one safetensors file `model.safetensors` in `dir`, with config.json content and the
    /// structure in the metadata (`config`, `hprune_structure`).
    public static func exportSafetensors(_ manifest: ModelManifest, store: ArtifactStore, to dir: URL) throws {
        let config = String(decoding: try configJSON(manifest.exportConfig(quantizationConfig: nil), pretty: false), as: UTF8.self)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let structure = String(decoding: try enc.encode(manifest.structure), as: UTF8.self)
        try writeFolder(at: dir) { tmp in
            try writeSafetensors(manifest, store: store, to: tmp.appendingPathComponent("model.safetensors").path,
                                 metadata: ["format": "pt", "config": config, "hprune_structure": structure])
        }
    }

    /// Every tensor and companion, streamed from the store into one safetensors file.
    static func writeSafetensors(_ manifest: ModelManifest, store: ArtifactStore, to path: String, metadata: [String: String]) throws {
        var byName: [String: TensorObject] = [:]
        for (name, t) in manifest.tensors {
            byName[name] = t.object
            for (suffix, o) in t.quantisation?.companions ?? [:] { byName[name + suffix] = o }
        }
        let entries = byName.map { TensorEntry(name: $0.key, dtype: $0.value.dtype, shape: $0.value.shape) }
        try SafetensorsWriter.write(entries: entries, metadata: metadata, to: path) { info in
            try Task.checkCancellation()
            guard let o = byName[info.name] else { throw ModelStoreError("internal: no object for \(info.name)", fix: "report this") }
            return try data(o, store: store, name: info.name)
        }
    }

    /// config.json bytes as Python's `json.dumps(indent=2, sort_keys=True)` writes them (floats keep their `.0`,
    /// which diffusers' config checks need, e.g. `llm_int8_threshold: 6.0`), with a trailing newline.
    public static func configJSON(_ config: [String: JSONValue], pretty: Bool = true) throws -> Data {
        var out = ""
        write(.object(config), indent: pretty ? 0 : nil, into: &out)
        if pretty { out += "\n" }
        return Data(out.utf8)
    }

    static func write(_ v: JSONValue, indent: Int?, into out: inout String) {
        let nl = indent.map { "\n" + String(repeating: " ", count: $0 + 2) } ?? ""
        let close = indent.map { "\n" + String(repeating: " ", count: $0) } ?? ""
        let sep = indent == nil ? ", " : ","
        let inner = indent.map { $0 + 2 }
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if !d.isFinite { out += d.isNaN ? "NaN" : (d < 0 ? "-Infinity" : "Infinity") }
            else if d == d.rounded(), abs(d) < 1e16 { out += String(Int64(d)) + ".0" }
            else { out += "\(d)" }
        case .string(let s): out += quote(s)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, x) in a.enumerated() { out += (i == 0 ? "" : sep) + nl; write(x, indent: inner, into: &out) }
            out += close + "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                out += (i == 0 ? "" : sep) + nl + quote(k) + ": "
                write(o[k] ?? .null, indent: inner, into: &out)
            }
            out += close + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var r = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": r += "\\\""
            case "\\": r += "\\\\"
            case "\n": r += "\\n"
            case "\r": r += "\\r"
            case "\t": r += "\\t"
            default:
                if u.value < 0x20 || u.value > 0x7e {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        r += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else {
                        r += String(format: "\\u%04x", u.value)
                    }
                } else {
                    r.unicodeScalars.append(u)
                }
            }
        }
        return r + "\""
    }

    /// Creates the parent folders of `target` and returns the parent; the nearest existing ancestor must be a
    /// folder (a path under a regular file cannot be created).
    static func createParent(of target: URL) throws -> URL {
        try OutputFolder.createParents(of: target)
        return target.deletingLastPathComponent()
    }

    /// Writes one output file at `path`: it must not exist; parents are created; `body` writes the path (through
    /// its own temp file + rename, as `GGUF.write` does), so `path` is either absent or complete.
    public static func writeFile(at path: URL, _ body: (String) throws -> Void) throws {
        let target = path.standardizedFileURL
        if FileManager.default.fileExists(atPath: target.path) {
            throw ModelStoreError("\(target.path) already exists", fix: "remove it or choose another --out")
        }
        _ = try createParent(of: target)
        try body(target.path)
    }

    /// Builds a folder in a sibling temp directory (`body` fills it), then renames it to `dir`; `dir` must be absent
    /// or empty. On any error the temp directory is removed and `dir` is untouched.
    public static func writeFolder(at dir: URL, _ body: (URL) throws -> Void) throws {
        let fm = FileManager.default
        let target = dir.standardizedFileURL
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: target.path, isDirectory: &isDir) {
            let empty = isDir.boolValue && ((try? fm.contentsOfDirectory(atPath: target.path))?.isEmpty ?? false)
            guard empty else {
                throw ModelStoreError("\(target.path) already exists", fix: "remove it or choose another --out")
            }
            try fm.removeItem(at: target)
        }
        let parent = try createParent(of: target)
        let tmp = parent.appendingPathComponent(".\(target.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try OutputFolder.createFolder(tmp, for: target)
        do {
            try body(tmp)
            guard rename(tmp.path, target.path) == 0 else {
                throw ModelStoreError("cannot rename \(tmp.path) to \(target.path) (\(String(cString: strerror(errno))))",
                                      fix: "check write permission on \(parent.path)")
            }
            let fd = open(parent.path, O_RDONLY)
            if fd >= 0 { fsync(fd); close(fd) }
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
    }
}
