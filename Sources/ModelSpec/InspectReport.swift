// `hprune inspect` as a library function: architecture, config summary, blocks with their
// sub-components and parameter counts, bytes by dtype. Codable for `--json`, `renderText()` for people.

import TensorFiles
import Foundation

/// The report of `inspect(path:)`.
public struct InspectReport: Sendable, Hashable, Codable {
    /// One sub-component of a block.
    public struct Component: Sendable, Hashable, Codable {
        /// `blocks.12.ff`.
        public var address: String
        public var name: String
        public var parameters: Int
        public var removed: Bool
    }

    /// One block.
    public struct Block: Sendable, Hashable, Codable {
        public var index: Int
        public var kind: String
        public var prefix: String
        public var contextPreOnly: Bool
        public var dualAttention: Bool
        public var parameters: Int
        public var removed: Bool
        /// Sub-components other than the whole block.
        public var components: [Component]
    }

    public var path: String
    /// diffusers `_class_name`.
    public var architecture: String
    /// Key config values (diffusers names), defaults filled in.
    public var config: [String: JSONValue]
    public var innerDim: Int
    /// Trainable parameters of the full (unpruned) architecture.
    public var parametersFull: Int
    /// Trainable parameters after the recorded removal (what the checkpoint holds).
    public var parameters: Int
    /// Elements of stored buffers (SD3 `pos_embed.pos_embed`).
    public var bufferElements: Int
    /// Recorded removal (`hprune_removed`).
    public var removed: [String]
    public var blocks: [Block]
    public var tensorCount: Int
    /// Bytes of tensor data by dtype name (`"BF16": 16_000_000_000`).
    public var bytesByDType: [String: Int]
    public var totalBytes: Int
    /// Weight files (one, or the shards).
    public var files: [String]
    public var unexpectedTensors: [String]
    public var uncheckedTensors: [String]
    /// Floating-point tensors holding NaN or ±Inf (empty unless `scanNonFinite`).
    public var nonFiniteTensors: [String]
}

/// Opens, validates and summarises a diffusers model folder, or a bare safetensors file.
///
/// A folder (or a `diffusion_pytorch_model.safetensors` next to its config.json) is checked
/// against its config: throws the errors of `ModelCheckpoint.init(path:)`. Any other file is
/// validated as safetensors only and reported with architecture `"safetensors"`, no blocks, and
/// every element counted as a parameter. `scanNonFinite` reads every float tensor once to list
/// NaN/Inf tensors (a full pass over the weights).
public func inspect(path: String, scanNonFinite: Bool = true) throws -> InspectReport {
    var isDir: ObjCBool = false
    let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
    if exists && !isDir.boolValue {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        if url.lastPathComponent == DiffusersFolder.weightsName,
           FileManager.default.fileExists(atPath: dir + "/" + DiffusersFolder.configName) {
            return try inspect(path: dir, scanNonFinite: scanNonFinite)
        }
        return try inspectFile(path: path, scanNonFinite: scanNonFinite)
    }
    let ckpt = try ModelCheckpoint(path: path)
    let s = ckpt.structure
    var blocks: [InspectReport.Block] = []
    for b in s.blocks {
        let whole = ComponentAddress(block: b.index, component: .block)
        var comps: [InspectReport.Component] = []
        for c in b.components where c != .block {
            let a = ComponentAddress(block: b.index, component: c)
            comps.append(.init(address: a.description, name: c.rawValue, parameters: try s.parameterCount(of: a),
                               removed: ckpt.removal.isRemoved(block: b.index, c)))
        }
        blocks.append(.init(index: b.index, kind: b.kind.rawValue, prefix: b.prefix, contextPreOnly: b.contextPreOnly,
                            dualAttention: b.dualAttention, parameters: try s.parameterCount(of: whole),
                            removed: ckpt.removal.isBlockRemoved(b.index), components: comps))
    }
    var bytes: [String: Int] = [:]
    for t in ckpt.folder.tensors { bytes[t.dtype.rawValue, default: 0] += t.byteCount }
    return InspectReport(
        path: path, architecture: s.config.architecture.rawValue, config: configSummary(s.config),
        innerDim: s.config.innerDim, parametersFull: s.parameterCount,
        parameters: try s.parameterCount(after: ckpt.removal),
        bufferElements: s.tensors.filter(\.isBuffer).reduce(0) { $0 + $1.elementCount },
        removed: ckpt.removal.strings, blocks: blocks, tensorCount: ckpt.folder.tensors.count,
        bytesByDType: bytes, totalBytes: bytes.values.reduce(0, +), files: ckpt.folder.files.map(\.path),
        unexpectedTensors: ckpt.unexpectedTensors, uncheckedTensors: ckpt.uncheckedTensors,
        nonFiniteTensors: scanNonFinite ? ckpt.folder.nonFiniteTensors() : [])
}

/// The report for a bare safetensors file (no config): storage only.
private func inspectFile(path: String, scanNonFinite: Bool) throws -> InspectReport {
    let f = try SafetensorsFile(path: path)
    var bytes: [String: Int] = [:]
    for t in f.tensors { bytes[t.dtype.rawValue, default: 0] += t.byteCount }
    let elements = f.tensors.reduce(0) { $0 + $1.elementCount }
    return InspectReport(
        path: path, architecture: "safetensors", config: f.metadata.mapValues { .string($0) }, innerDim: 0,
        parametersFull: elements, parameters: elements, bufferElements: 0, removed: [], blocks: [],
        tensorCount: f.tensors.count, bytesByDType: bytes, totalBytes: bytes.values.reduce(0, +), files: [path],
        unexpectedTensors: [], uncheckedTensors: [], nonFiniteTensors: scanNonFinite ? f.nonFiniteTensors() : [])
}

/// The config as diffusers key → value, defaults filled in.
public func configSummary(_ config: ModelConfig) -> [String: JSONValue] {
    switch config {
    case .sd3(let c):
        return ["sample_size": .int(c.sampleSize), "patch_size": .int(c.patchSize), "in_channels": .int(c.inChannels),
                "num_layers": .int(c.numLayers), "attention_head_dim": .int(c.attentionHeadDim),
                "num_attention_heads": .int(c.numAttentionHeads), "joint_attention_dim": .int(c.jointAttentionDim),
                "caption_projection_dim": .int(c.captionProjectionDim), "pooled_projection_dim": .int(c.pooledProjectionDim),
                "out_channels": .int(c.outChannels), "pos_embed_max_size": .int(c.posEmbedMaxSize),
                "dual_attention_layers": .array(c.dualAttentionLayers.map { .int($0) }),
                "qk_norm": c.qkNorm.map { .string($0) } ?? .null]
    case .flux(let c):
        return ["patch_size": .int(c.patchSize), "in_channels": .int(c.inChannels), "out_channels": .int(c.outChannels),
                "num_layers": .int(c.numLayers), "num_single_layers": .int(c.numSingleLayers),
                "attention_head_dim": .int(c.attentionHeadDim), "num_attention_heads": .int(c.numAttentionHeads),
                "joint_attention_dim": .int(c.jointAttentionDim), "pooled_projection_dim": .int(c.pooledProjectionDim),
                "guidance_embeds": .bool(c.guidanceEmbeds), "axes_dims_rope": .array(c.axesDimsRope.map { .int($0) })]
    }
}

extension InspectReport {
    /// Human-readable rendering: header, config, one line per block, bytes by dtype.
    public func renderText() -> String {
        func count(_ n: Int) -> String {
            if n >= 1_000_000_000 { return String(format: "%.2fB", Double(n) / 1e9) }
            if n >= 1_000_000 { return String(format: "%.2fM", Double(n) / 1e6) }
            if n >= 1_000 { return String(format: "%.1fK", Double(n) / 1e3) }
            return String(n)
        }
        var out: [String] = []
        out.append(blocks.isEmpty ? "\(path): \(architecture), \(tensorCount) tensors"
                                  : "\(path): \(architecture), \(blocks.count) blocks, D=\(innerDim)")
        let pct = parametersFull > 0 ? 100.0 * Double(parameters) / Double(parametersFull) : 100
        out.append("parameters: \(parameters) (\(count(parameters))), \(String(format: "%.1f", pct))% of \(count(parametersFull)); buffers: \(bufferElements) elements")
        out.append("config: " + config.keys.sorted().map { k in "\(k)=\(render(config[k]!))" }.joined(separator: " "))
        if !removed.isEmpty { out.append("removed: " + removed.joined(separator: ", ")) }
        out.append("blocks:")
        for b in blocks {
            var flags: [String] = []
            if b.contextPreOnly { flags.append("context_pre_only") }
            if b.dualAttention { flags.append("dual_attention") }
            if b.removed { flags.append("REMOVED") }
            let comps = b.components.map { "\($0.name) \(count($0.parameters))\($0.removed ? " (removed)" : "")" }.joined(separator: ", ")
            out.append("  \(String(b.index).leftPad(3)) \(b.kind.padding(toLength: 6, withPad: " ", startingAt: 0)) \(count(b.parameters).leftPad(8))  \(comps)\(flags.isEmpty ? "" : "  [" + flags.joined(separator: ", ") + "]")")
        }
        out.append("storage: \(tensorCount) tensors, \(totalBytes) bytes in \(files.count) file(s): "
                   + bytesByDType.keys.sorted().map { "\($0) \(bytesByDType[$0]!)" }.joined(separator: ", "))
        if !unexpectedTensors.isEmpty {
            out.append("warning: \(unexpectedTensors.count) tensor(s) not used by the model: " + unexpectedTensors.prefix(5).joined(separator: ", ") + (unexpectedTensors.count > 5 ? ", …" : ""))
        }
        if !nonFiniteTensors.isEmpty {
            out.append("warning: NaN/Inf in \(nonFiniteTensors.count) tensor(s): " + nonFiniteTensors.prefix(5).joined(separator: ", ") + (nonFiniteTensors.count > 5 ? ", …" : ""))
        }
        return out.joined(separator: "\n") + "\n"
    }

    private func render(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool(let b): String(b)
        case .int(let i): String(i)
        case .double(let d): String(d)
        case .string(let s): s
        case .array(let a): "[" + a.map(render).joined(separator: ",") + "]"
        case .object: "{…}"
        }
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
