// diffusers `config.json` for the two transformer families the method compresses, with
// diffusers' defaults for absent keys (diffusers 0.42 `SD3Transformer2DModel.__init__`,
// `FluxTransformer2DModel.__init__`). Unknown keys are ignored, as diffusers does.

import TensorFiles
import Foundation

/// An error in a model config, an address, or a removal set.
public struct ModelSpecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the input came from (file path, or `<address>` for a parsed address).
    public var source: String
    /// The config key, tensor, or address concerned.
    public var subject: String?
    /// What is wrong.
    public var message: String
    /// How to fix it.
    public var fix: String

    public init(source: String, subject: String? = nil, message: String, fix: String) {
        self.source = source
        self.subject = subject
        self.message = message
        self.fix = fix
    }

    public var description: String {
        "\(source)\(subject.map { ": '\($0)'" } ?? ""): error: \(message). fix: \(fix)"
    }
}

/// The transformer family, named by diffusers' `_class_name`.
public enum Architecture: String, Sendable, Hashable, Codable, CaseIterable {
    case sd3 = "SD3Transformer2DModel"
    case flux = "FluxTransformer2DModel"
}

/// `SD3Transformer2DModel` config (SD3, SD3.5 Medium/Large/Large Turbo).
public struct SD3Config: Sendable, Hashable, Codable {
    public var sampleSize = 128
    public var patchSize = 2
    public var inChannels = 16
    public var numLayers = 18
    public var attentionHeadDim = 64
    public var numAttentionHeads = 18
    public var jointAttentionDim = 4096
    public var captionProjectionDim = 1152
    public var pooledProjectionDim = 2048
    /// `out_channels`; diffusers uses `in_channels` when null.
    public var outChannels = 16
    public var posEmbedMaxSize = 96
    /// Blocks with a second, image-only attention (`attn2`); SD3.5 Medium: 0...12.
    public var dualAttentionLayers: [Int] = []
    /// nil (SD3) or "rms_norm" (SD3.5).
    public var qkNorm: String?

    public init() {}

    /// D = heads × head_dim.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
}

/// `FluxTransformer2DModel` config (FLUX.1 dev / schnell).
public struct FluxConfig: Sendable, Hashable, Codable {
    public var patchSize = 1
    public var inChannels = 64
    /// `out_channels`; diffusers uses `in_channels` when null.
    public var outChannels = 64
    public var numLayers = 19
    public var numSingleLayers = 38
    public var attentionHeadDim = 128
    public var numAttentionHeads = 24
    public var jointAttentionDim = 4096
    public var pooledProjectionDim = 768
    public var guidanceEmbeds = false
    public var axesDimsRope: [Int] = [16, 56, 56]

    public init() {}

    /// D = heads × head_dim.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
}

/// A parsed model config of either family.
public enum ModelConfig: Sendable, Hashable, Codable {
    case sd3(SD3Config)
    case flux(FluxConfig)

    /// The family.
    public var architecture: Architecture {
        switch self {
        case .sd3: .sd3
        case .flux: .flux
        }
    }

    /// D = heads × head_dim.
    public var innerDim: Int {
        switch self {
        case .sd3(let c): c.innerDim
        case .flux(let c): c.innerDim
        }
    }

    /// Reads and parses a config.json file.
    public static func load(path: String) throws -> ModelConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelSpecError(source: path, message: "cannot read the config file",
                                 fix: "pass a diffusers model folder containing config.json")
        }
        guard case .success(let v) = JSONValue.parse(data), let o = v.objectValue else {
            throw ModelSpecError(source: path, message: "config.json is not a JSON object",
                                 fix: "repair or re-download config.json")
        }
        return try parse(o, file: path)
    }

    /// Parses a decoded config.json object (`file` is used in error messages).
    public static func parse(_ json: [String: JSONValue], file: String) throws -> ModelConfig {
        var r = ConfigReader(json: json, file: file)
        guard let className = json["_class_name"]?.stringValue else {
            throw ModelSpecError(source: file, subject: "_class_name",
                                 message: "missing '_class_name'; cannot tell the architecture",
                                 fix: "add \"_class_name\": \"SD3Transformer2DModel\" or \"FluxTransformer2DModel\"")
        }
        switch className {
        case Architecture.sd3.rawValue:
            var c = SD3Config()
            c.sampleSize = try r.int("sample_size", c.sampleSize)
            c.patchSize = try r.int("patch_size", c.patchSize, max: ConfigLimits.patch)
            c.inChannels = try r.int("in_channels", c.inChannels)
            c.numLayers = try r.int("num_layers", c.numLayers)
            c.attentionHeadDim = try r.int("attention_head_dim", c.attentionHeadDim)
            c.numAttentionHeads = try r.int("num_attention_heads", c.numAttentionHeads)
            c.jointAttentionDim = try r.int("joint_attention_dim", c.jointAttentionDim)
            c.captionProjectionDim = try r.int("caption_projection_dim", c.captionProjectionDim)
            c.pooledProjectionDim = try r.int("pooled_projection_dim", c.pooledProjectionDim)
            c.outChannels = try r.optionalInt("out_channels", 16) ?? c.inChannels
            c.posEmbedMaxSize = try r.int("pos_embed_max_size", c.posEmbedMaxSize, max: ConfigLimits.posEmbed)
            try r.bound("num_attention_heads", c.numAttentionHeads * c.attentionHeadDim, ConfigLimits.dimension)
            c.dualAttentionLayers = try r.intList("dual_attention_layers", [])
            c.qkNorm = try r.optionalString("qk_norm")
            if let q = c.qkNorm, q != "rms_norm" {
                throw ModelSpecError(source: file, subject: "qk_norm", message: "qk_norm '\(q)' is not supported",
                                     fix: "use null (SD3) or \"rms_norm\" (SD3.5)")
            }
            for l in c.dualAttentionLayers where l < 0 || l >= c.numLayers {
                throw ModelSpecError(source: file, subject: "dual_attention_layers",
                                     message: "layer \(l) is outside 0..<\(c.numLayers)", fix: "list block indices that exist")
            }
            if c.captionProjectionDim != c.innerDim {
                throw ModelSpecError(source: file, subject: "caption_projection_dim",
                                     message: "caption_projection_dim \(c.captionProjectionDim) must equal num_attention_heads × attention_head_dim = \(c.innerDim)",
                                     fix: "set caption_projection_dim to \(c.innerDim)")
            }
            return .sd3(c)
        case Architecture.flux.rawValue:
            var c = FluxConfig()
            c.patchSize = try r.int("patch_size", c.patchSize, max: ConfigLimits.patch)
            c.inChannels = try r.int("in_channels", c.inChannels)
            c.outChannels = try r.optionalInt("out_channels", nil) ?? c.inChannels
            c.numLayers = try r.int("num_layers", c.numLayers)
            c.numSingleLayers = try r.int("num_single_layers", c.numSingleLayers, allowZero: true)
            c.attentionHeadDim = try r.int("attention_head_dim", c.attentionHeadDim)
            c.numAttentionHeads = try r.int("num_attention_heads", c.numAttentionHeads)
            c.jointAttentionDim = try r.int("joint_attention_dim", c.jointAttentionDim)
            c.pooledProjectionDim = try r.int("pooled_projection_dim", c.pooledProjectionDim)
            try r.bound("num_attention_heads", c.numAttentionHeads * c.attentionHeadDim, ConfigLimits.dimension)
            c.guidanceEmbeds = try r.bool("guidance_embeds", c.guidanceEmbeds)
            c.axesDimsRope = try r.intList("axes_dims_rope", c.axesDimsRope)
            if c.axesDimsRope.count != 3 || c.axesDimsRope.contains(where: { $0 <= 0 || $0 % 2 != 0 })
                || c.axesDimsRope.reduce(0, +) != c.attentionHeadDim {
                throw ModelSpecError(source: file, subject: "axes_dims_rope",
                                     message: "axes_dims_rope \(c.axesDimsRope) must be three positive even sizes summing to attention_head_dim \(c.attentionHeadDim)",
                                     fix: "e.g. [16, 56, 56] for head_dim 128")
            }
            return .flux(c)
        default:
            throw ModelSpecError(source: file, subject: "_class_name",
                                 message: "unsupported model class '\(className)'",
                                 fix: "hprune supports SD3Transformer2DModel (SD3/SD3.5) and FluxTransformer2DModel (FLUX.1); pass the transformer/ subfolder of a pipeline")
        }
    }
}

/// Typed access to config keys with diffusers' defaults and errors naming the key.
struct ConfigReader {
    let json: [String: JSONValue]
    let file: String

    func fail(_ key: String, _ v: JSONValue, _ want: String) -> ModelSpecError {
        ModelSpecError(source: file, subject: key, message: "expected \(want), got \(v.valueDescription)",
                       fix: "set '\(key)' to \(want) or remove it to use the default")
    }

    mutating func int(_ key: String, _ def: Int, allowZero: Bool = false, max: Int = ConfigLimits.dimension) throws -> Int {
        guard let v = json[key], !v.isNull else { return def }
        guard let i = v.intValue, i > 0 || (allowZero && i == 0) else {
            throw fail(key, v, allowZero ? "a non-negative integer" : "a positive integer")
        }
        try bound(key, i, max)
        return i
    }

    mutating func optionalInt(_ key: String, _ def: Int?) throws -> Int? {
        guard let v = json[key] else { return def }
        if v.isNull { return nil }
        guard let i = v.intValue, i > 0 else { throw fail(key, v, "a positive integer or null") }
        try bound(key, i, ConfigLimits.dimension)
        return i
    }

    /// Values past `max` are refused before anything is sized by them (no real model comes near).
    func bound(_ key: String, _ i: Int, _ max: Int) throws {
        guard i > max else { return }
        throw ModelSpecError(source: file, subject: key,
                             message: "\(key) is \(i), larger than any model hprune can load (at most \(max))",
                             fix: "set '\(key)' to the model's real value (see the checkpoint's original config.json)")
    }

    mutating func bool(_ key: String, _ def: Bool) throws -> Bool {
        guard let v = json[key], !v.isNull else { return def }
        guard let b = v.boolValue else { throw fail(key, v, "true or false") }
        return b
    }

    mutating func optionalString(_ key: String) throws -> String? {
        guard let v = json[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw fail(key, v, "a string or null") }
        return s
    }

    mutating func intList(_ key: String, _ def: [Int]) throws -> [Int] {
        guard let v = json[key], !v.isNull else { return def }
        guard let a = v.arrayValue else { throw fail(key, v, "a list of integers") }
        guard a.count <= ConfigLimits.dimension else { throw fail(key, v, "a list of at most \(ConfigLimits.dimension) integers") }
        return try a.map { e in
            guard let i = e.intValue else { throw fail(key, e, "a list of integers") }
            guard abs(i) <= ConfigLimits.dimension else { throw fail(key, e, "a list of integers of magnitude at most \(ConfigLimits.dimension)") }
            return i
        }
    }
}
