// The diffusers model-folder layout: `config.json` plus either one
// `diffusion_pytorch_model.safetensors` or shards listed by
// `diffusion_pytorch_model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor: shard}}).

import Foundation

/// A diffusers model folder opened for reading; tensors are served from memory-mapped shards.
///
/// ```swift
/// let folder = try DiffusersFolder(path: "models/sd35-tiny")
/// let config = folder.config                 // parsed config.json
/// let w = try folder.floats("proj_out.weight")
/// ```
public final class DiffusersFolder: @unchecked Sendable {
    /// File name of the single-file weights.
    public static let weightsName = "diffusion_pytorch_model.safetensors"
    /// File name of the weights of hprune's loader layout (removed sub-components): deliberately not
    /// `weightsName`, so plain `from_pretrained` refuses the folder instead of filling the removed modules with
    /// random weights; Examples/diffusers/hprune_diffusers.py and hprune read it.
    public static let loaderWeightsName = "hprune_loader.safetensors"
    /// File name of the shard index.
    public static let indexName = "diffusion_pytorch_model.safetensors.index.json"
    /// File name of the model config.
    public static let configName = "config.json"

    /// The folder path as given.
    public let path: String
    /// Path of config.json.
    public let configPath: String
    /// Parsed config.json (an object).
    public let config: [String: JSONValue]
    /// The opened safetensors files (one, or the shards in index order).
    public let files: [SafetensorsFile]
    private let owner: [String: Int]

    /// Opens a folder, validating config.json, the index (if any) and every shard's header.
    public init(path: String) throws {
        self.path = path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw TensorFileError(.missingFile, file: path, message: "not a directory",
                                  fix: "pass a diffusers model folder (config.json + diffusion_pytorch_model.safetensors)")
        }
        configPath = path + "/" + Self.configName
        config = try Self.readJSONObject(configPath, kind: .invalidConfig, what: "config.json")

        var single = path + "/" + Self.weightsName
        if !fm.fileExists(atPath: single), fm.fileExists(atPath: path + "/" + Self.loaderWeightsName) {
            single = path + "/" + Self.loaderWeightsName
        }
        let indexPath = path + "/" + Self.indexName
        if fm.fileExists(atPath: indexPath) {
            let index = try Self.readJSONObject(indexPath, kind: .invalidIndex, what: "the shard index")
            guard let map = index["weight_map"]?.objectValue else {
                throw TensorFileError(.invalidIndex, file: indexPath, message: "no 'weight_map' object",
                                      fix: "the index must map each tensor name to its shard file")
            }
            var shardNames: [String] = []
            var shardOf: [String: String] = [:]
            for name in map.keys.sorted() {
                guard let shard = map[name]?.stringValue, !shard.contains("/"), !shard.isEmpty else {
                    throw TensorFileError(.invalidIndex, file: indexPath, tensor: name,
                                          message: "weight_map entry is not a plain file name",
                                          fix: "list shard files by name, in the same folder")
                }
                shardOf[name] = shard
                if !shardNames.contains(shard) { shardNames.append(shard) }
            }
            shardNames.sort()
            var opened: [SafetensorsFile] = []
            for s in shardNames {
                let p = path + "/" + s
                guard fm.fileExists(atPath: p) else {
                    throw TensorFileError(.missingFile, file: p, message: "shard named by \(Self.indexName) does not exist",
                                          fix: "copy the missing shard into the folder or regenerate the index")
                }
                opened.append(try SafetensorsFile(path: p))
            }
            var owner: [String: Int] = [:]
            for (i, f) in opened.enumerated() {
                for t in f.tensors {
                    if let j = owner[t.name] {
                        throw TensorFileError(.invalidIndex, file: f.path, tensor: t.name, offset: t.fileOffset,
                                              message: "tensor also stored in \(opened[j].path)",
                                              fix: "keep each tensor in exactly one shard")
                    }
                    owner[t.name] = i
                }
            }
            for (name, shard) in shardOf {
                guard let i = owner[name], opened[i].path.hasSuffix("/" + shard) else {
                    throw TensorFileError(.invalidIndex, file: indexPath, tensor: name,
                                          message: "index says the tensor is in \(shard), but it is not there",
                                          fix: "regenerate the index from the shards")
                }
            }
            files = opened
            self.owner = owner
        } else if fm.fileExists(atPath: single) {
            let f = try SafetensorsFile(path: single)
            files = [f]
            var owner: [String: Int] = [:]
            for t in f.tensors { owner[t.name] = 0 }
            self.owner = owner
        } else {
            throw TensorFileError(.missingFile, file: path,
                                  message: "no \(Self.weightsName) and no \(Self.indexName)",
                                  fix: "put the weights next to config.json (diffusers layout)")
        }
    }

    /// All tensors (every shard), in shard then data order.
    public var tensors: [TensorInfo] { files.flatMap(\.tensors) }

    /// Whether a tensor named `name` exists.
    public func contains(_ name: String) -> Bool { owner[name] != nil }

    /// The file holding `name`; throws `.missingTensor` naming the folder.
    public func file(for name: String) throws -> SafetensorsFile {
        guard let i = owner[name] else {
            throw TensorFileError(.missingTensor, file: path, tensor: name,
                                  message: "no tensor of this name in the checkpoint",
                                  fix: "check that the checkpoint matches config.json")
        }
        return files[i]
    }

    /// Header entry of `name`.
    public func info(_ name: String) throws -> TensorInfo { try file(for: name).info(name) }

    /// Calls `body` with the bytes of `name` (valid only inside `body`).
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try file(for: name).withBytes(name, body)
    }

    /// `name` decoded to Float.
    public func floats(_ name: String) throws -> [Float] { try file(for: name).floats(name) }

    /// Floating-point tensors containing NaN or ±Inf, over all shards.
    public func nonFiniteTensors() -> [String] { files.flatMap { $0.nonFiniteTensors() } }

    /// Writes a diffusers folder: `config.json` and the weights, in one file or, when
    /// `maxShardBytes` is given and exceeded, in shards `diffusion_pytorch_model-0000i-of-0000n.safetensors`
    /// with an index. Each file is written atomically; config.json is written last.
    public static func write(config: Data, tensors: [TensorPayload], to path: String,
                             metadata: [String: String]? = ["format": "pt"], maxShardBytes: Int? = nil) throws {
        guard case .success(let v) = JSONValue.parse(config), v.objectValue != nil else {
            throw TensorFileError(.invalidConfig, file: path + "/" + configName,
                                  message: "config is not a JSON object", fix: "pass the model's config.json bytes")
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw TensorFileError(.ioFailure, file: path, message: "cannot create folder (\(error.localizedDescription))",
                                  fix: "check write permission")
        }
        let total = tensors.reduce(0) { $0 + $1.data.count }
        if let limit = maxShardBytes, total > limit {
            // Greedy in name order; a tensor larger than the limit gets a shard of its own.
            var shards: [[TensorPayload]] = [[]]
            var size = 0
            for t in tensors.sorted(by: { $0.name < $1.name }) {
                if size + t.data.count > limit, !shards[shards.count - 1].isEmpty {
                    shards.append([])
                    size = 0
                }
                shards[shards.count - 1].append(t)
                size += t.data.count
            }
            let n = shards.count
            var weightMap: [String] = []
            for (i, shard) in shards.enumerated() {
                let name = String(format: "diffusion_pytorch_model-%05d-of-%05d.safetensors", i + 1, n)
                try SafetensorsWriter.write(shard, metadata: metadata, to: path + "/" + name)
                for t in shard { weightMap.append("\(CompactJSON.string(t.name)): \(CompactJSON.string(name))") }
            }
            let index = "{\n  \"metadata\": {\n    \"total_size\": \(total)\n  },\n  \"weight_map\": {\n    "
                + weightMap.sorted().joined(separator: ",\n    ") + "\n  }\n}\n"
            try AtomicFile.write(Data(index.utf8), to: path + "/" + indexName)
        } else {
            try SafetensorsWriter.write(tensors, metadata: metadata, to: path + "/" + weightsName)
        }
        try AtomicFile.write(config, to: path + "/" + configName)
    }

    /// The most bytes config.json or the shard index may have (FLUX.1's index is ~100 KB); a larger file (or
    /// /dev/zero behind a link) is refused after reading one byte past it.
    public static let maxJSONBytes = 64 << 20

    private static func readJSONObject(_ p: String, kind: TensorFileError.Kind, what: String) throws -> [String: JSONValue] {
        guard let handle = FileHandle(forReadingAtPath: p) else {
            throw TensorFileError(.missingFile, file: p, message: "\(what) is missing or unreadable",
                                  fix: "a diffusers folder needs config.json next to the weights")
        }
        defer { try? handle.close() }
        var data = Data()
        while data.count <= maxJSONBytes,
              let chunk = try? handle.read(upToCount: min(1 << 20, maxJSONBytes + 1 - data.count)), !chunk.isEmpty {
            data.append(chunk)
        }
        if data.count > maxJSONBytes {
            throw TensorFileError(kind, file: p, message: "\(what) is larger than \(maxJSONBytes) bytes",
                                  fix: "\(what) is a small JSON file; is this the right folder?")
        }
        switch JSONValue.parse(data) {
        case .failure(let why):
            throw TensorFileError(kind, file: p, offset: 0, message: "\(what) is not valid JSON (\(why))",
                                  fix: "repair or re-download \(what)")
        case .success(let v):
            guard let o = v.objectValue else {
                throw TensorFileError(kind, file: p, offset: 0, message: "\(what) is \(v.typeName), expected an object",
                                      fix: "repair or re-download \(what)")
            }
            return o
        }
    }
}
