// The `Model` artifact: a small JSON manifest (config, structure, quantisation, tensor name → object digest)
// whose digest is the model's digest, plus one store object per tensor. A pruned or frozen model reuses its
// teacher's tensor objects, so it adds only its manifest to the store.

import ArtifactStore
import TensorFiles
import Foundation
import TensorCore

/// One tensor's bytes in the store: object digest, safetensors dtype, shape and byte length.
public struct TensorObject: Codable, Sendable, Hashable {
    public var digest: Digest
    public var dtype: StorageDType
    public var shape: [Int]
    public var bytes: Int

    public init(digest: Digest, dtype: StorageDType, shape: [Int], bytes: Int) {
        self.digest = digest
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }
}

/// How a quantised weight is stored: its format and the companion tensors written next to it.
public struct TensorQuantisation: Codable, Sendable, Hashable {
    /// `nf4`, `fp4`, `int4`, `int4-asym`, `int8` in the JSON (the raw value); its traits decode the weight.
    public var format: QuantFormat
    /// Elements per block / group (nil for per-row int8).
    public var blockSize: Int?
    public var doubleQuant: Bool
    /// The weight's shape and dtype before quantisation.
    public var originalShape: [Int]
    public var originalDType: StorageDType
    /// Suffix (`.absmax`, `.quant_map`, `.quant_state.bitsandbytes__nf4`, …) → tensor; the full name is the
    /// weight's name + suffix.
    public var companions: [String: TensorObject]

    public init(format: QuantFormat, blockSize: Int?, doubleQuant: Bool, originalShape: [Int], originalDType: StorageDType,
                companions: [String: TensorObject]) {
        self.format = format
        self.blockSize = blockSize
        self.doubleQuant = doubleQuant
        self.originalShape = originalShape
        self.originalDType = originalDType
        self.companions = companions
    }

    enum CodingKeys: String, CodingKey {
        case format, companions
        case blockSize = "block_size"
        case doubleQuant = "double_quant"
        case originalShape = "original_shape"
        case originalDType = "original_dtype"
    }
}

/// A tensor of the model: its object, and for a quantised weight how it was quantised.
public struct ManifestTensor: Codable, Sendable, Hashable {
    public var object: TensorObject
    public var quantisation: TensorQuantisation?

    public init(object: TensorObject, quantisation: TensorQuantisation? = nil) {
        self.object = object
        self.quantisation = quantisation
    }

    /// Every object this tensor needs (itself and its companions).
    public var objects: [TensorObject] { [object] + (quantisation?.companions.values.map { $0 } ?? []) }
}

/// SGDistill's per-block update multipliers, as decided by `distill`'s set-up.
public struct SGDistillRecord: Codable, Sendable, Hashable {
    public var form: String
    public var threshold: Double
    /// Removed parameter fraction the decision was made on.
    public var compressionRatio: Double
    /// [|B|] multipliers, or nil when the ratio was not above the threshold. With `components`, the value of each
    /// block's parameters that no scored component owns.
    public var multipliers: [Double]?
    /// Per-component multipliers (`blocks.12.ff` → m), when the scores had component entries (`inverse` only);
    /// nil (and absent from the JSON, so block-only manifests keep their digests) otherwise.
    public var components: [String: Double]?

    public init(form: String, threshold: Double, compressionRatio: Double, multipliers: [Double]?, components: [String: Double]? = nil) {
        self.form = form
        self.threshold = threshold
        self.compressionRatio = compressionRatio
        self.multipliers = multipliers
        self.components = components
    }

    enum CodingKeys: String, CodingKey {
        case form, threshold, multipliers, components
        case compressionRatio = "compression_ratio"
    }
}

/// What has been done to the model: removed components, frozen blocks, SGDistill scales.
public struct ModelStructureRecord: Codable, Sendable, Hashable {
    /// Removed addresses (`blocks.25`, `blocks.12.ff`), sorted.
    public var removed: [String]
    /// Frozen global block indices (PWP).
    public var frozenBlocks: [Int]
    /// Frozen non-block module prefixes (`pos_embed.`).
    public var frozenPrefixes: [String]
    public var sgdistill: SGDistillRecord?

    public init(removed: [String] = [], frozenBlocks: [Int] = [], frozenPrefixes: [String] = [], sgdistill: SGDistillRecord? = nil) {
        self.removed = removed
        self.frozenBlocks = frozenBlocks
        self.frozenPrefixes = frozenPrefixes
        self.sgdistill = sgdistill
    }

    enum CodingKeys: String, CodingKey {
        case removed, sgdistill
        case frozenBlocks = "frozen_blocks"
        case frozenPrefixes = "frozen_prefixes"
    }
}

/// The model-wide quantisation settings (per-tensor details are in `ManifestTensor.quantisation`).
public struct QuantisationRecord: Codable, Sendable, Hashable {
    public var format: QuantFormat
    public var blockSize: Int?
    public var doubleQuant: Bool
    public var computeDType: String
    /// Layer patterns left unquantised.
    public var keep: [String]

    public init(format: QuantFormat, blockSize: Int?, doubleQuant: Bool, computeDType: String, keep: [String]) {
        self.format = format
        self.blockSize = blockSize
        self.doubleQuant = doubleQuant
        self.computeDType = computeDType
        self.keep = keep
    }

    enum CodingKeys: String, CodingKey {
        case format, keep
        case blockSize = "block_size"
        case doubleQuant = "double_quant"
        case computeDType = "compute_dtype"
    }
}

/// The manifest of a `Model` artifact.
///
/// ```json
/// {"schema": 1, "kind": "hprune.model", "architecture": "SD3Transformer2DModel",
///  "config": {…config.json, without hprune_removed / quantization_config…},
///  "structure": {"removed": ["blocks.25"], "frozen_blocks": [0, 1], "frozen_prefixes": ["pos_embed."], "sgdistill": null},
///  "quantisation": {"format": "nf4", "block_size": 64, "double_quant": false, "compute_dtype": "bfloat16", "keep": []},
///  "tensors": {"proj_out.weight": {"object": {"digest": "ab12…", "dtype": "U8", "shape": [64, 1], "bytes": 64},
///              "quantisation": {"format": "nf4", "block_size": 64, "double_quant": false, "original_shape": [16, 8],
///                               "original_dtype": "F32", "companions": {".absmax": {…}, ".quant_map": {…}, …}}}, …}}
/// ```
public struct ModelManifest: Codable, Sendable, Hashable {
    public static let currentSchema = 1
    public static let kindTag = "hprune.model"

    public var schema: Int
    public var kind: String
    /// diffusers `_class_name`.
    public var architecture: String
    /// config.json content (the keys hprune adds on export are kept out).
    public var config: [String: JSONValue]
    public var structure: ModelStructureRecord
    public var quantisation: QuantisationRecord?
    /// Tensor name → tensor. Tensors of removed components are absent.
    public var tensors: [String: ManifestTensor]

    public init(architecture: String, config: [String: JSONValue], structure: ModelStructureRecord = ModelStructureRecord(),
                quantisation: QuantisationRecord? = nil, tensors: [String: ManifestTensor]) {
        schema = Self.currentSchema
        kind = Self.kindTag
        self.architecture = architecture
        self.config = config
        self.structure = structure
        self.quantisation = quantisation
        self.tensors = tensors
    }

    /// Canonical bytes: sorted keys, no extra whitespace beyond the encoder's, trailing newline. Equal manifests
    /// give equal bytes, hence equal digests.
    public func encoded() -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard var d = try? enc.encode(self) else { preconditionFailure("ModelManifest is always encodable") }
        d.append(0x0A)
        return d
    }

    /// Decodes a manifest read from `source` (a digest or path, for messages).
    public static func decode(_ data: Data, source: String) throws -> ModelManifest {
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let m: ModelManifest
        do { m = try dec.decode(ModelManifest.self, from: data) } catch {
            throw ModelStoreError("\(source) is not a Model manifest (\(error))",
                                  fix: "pass a model artifact (the output of an import, prune, freeze, quantise or distill stage)")
        }
        guard m.kind == kindTag, m.schema == currentSchema else {
            throw ModelStoreError("\(source): manifest kind '\(m.kind)' schema \(m.schema) is not supported (expected \(kindTag) schema \(currentSchema))",
                                  fix: "re-run the stage that made it with this hprune")
        }
        return m
    }

    /// config.json as it should be written on export: the config plus `hprune_removed` and, for a bitsandbytes
    /// 4-bit model, `quantization_config`.
    public func exportConfig(quantizationConfig: [String: JSONValue]?) -> [String: JSONValue] {
        var c = config
        if !structure.removed.isEmpty { c["hprune_removed"] = .array(structure.removed.map(JSONValue.string)) }
        if let q = quantizationConfig { c["quantization_config"] = .object(q) }
        return c
    }

    /// Whether any tensor is quantised.
    public var isQuantised: Bool { quantisation != nil || tensors.values.contains { $0.quantisation != nil } }

    /// Bytes of every tensor and companion (the weight memory on disk).
    public var weightBytes: Int { tensors.values.reduce(0) { $0 + $1.objects.reduce(0) { $0 + $1.bytes } } }

    /// Bytes by stored dtype (quantised weights count their packed codes and companions under their dtypes).
    public var bytesByDType: [String: Int] {
        var out: [String: Int] = [:]
        for t in tensors.values { for o in t.objects { out[o.dtype.rawValue, default: 0] += o.bytes } }
        return out
    }
}

/// A model artifact that cannot be read, imported or exported, with the fix.
public struct ModelStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var fix: String
    public init(_ message: String, fix: String) {
        self.message = message
        self.fix = fix
    }
    public var description: String { "\(message); \(fix)" }
}
