// Weight-only quantisation of a model's Linear layers (W4A16 / W8A16) into checkpoint tensors: which tensors
// are quantised (2-D `*.weight` not matched by a keep pattern), and the tensors each becomes. NF4/FP4 use
// bitsandbytes' key layout (`weight`, `weight.absmax`, `weight.quant_map`, nested keys,
// `weight.quant_state.bitsandbytes__nf4`), so diffusers + bitsandbytes load the result.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorFiles
import Foundation
import TensorCore

/// A checkpoint tensor produced by quantisation: dtype, shape, little-endian bytes.
public struct EncodedTensor: Sendable, Hashable {
    public var dtype: StorageDType
    public var shape: [Int]
    public var data: Data

    public init(dtype: StorageDType, shape: [Int], data: Data) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }
}

/// What to quantise and how.
public struct QuantiseOptions: Sendable, Hashable {
    public var spec: QuantSpec
    /// nf4/fp4 only: 8-bit quantisation of the absmax vector (bitsandbytes `bnb_4bit_use_double_quant`).
    public var doubleQuant: Bool
    /// Layer or tensor name patterns left unquantised: `proj_out`, `norm_out.*`, `transformer_blocks.0.*`.
    /// A pattern without `*`/`?` matches the layer itself and everything under it.
    public var keep: [String]
    /// The compute dtype recorded for loaders (`bnb_4bit_compute_dtype`): a `LoaderComputeDType` raw value, or
    /// what an imported checkpoint's config says.
    public var computeDType: String

    public init(spec: QuantSpec, doubleQuant: Bool = false, keep: [String] = [], computeDType: String = LoaderComputeDType.bfloat16.rawValue) {
        self.spec = spec
        self.doubleQuant = doubleQuant
        self.keep = keep
        self.computeDType = computeDType
    }

    /// The stored format (`nf4`, `fp4`, `int4`, `int4-asym`, `int8`).
    public var format: QuantFormat { spec.format }
}

/// The activation dtype a quantised checkpoint records for its loaders (diffusers `bnb_4bit_compute_dtype`).
public enum LoaderComputeDType: String, CaseIterable, Sendable, Hashable, Codable {
    case float32, bfloat16, float16
}

public enum LinearQuantiser {
    /// Suffix marking a tensor as the quant-state of a quantised weight (`X.weight.quant_state.bitsandbytes__nf4`,
    /// `X.weight.quant_state.hprune__int4`).
    public static let quantStateMarker = QuantizedWeight.quantStateMarker

    /// Whether `name` (shape `shape`) is a Linear weight this request quantises: a 2-D `*.weight` whose layer is
    /// not kept. Conv and norm weights (not 2-D) and biases stay as they are.
    public static func shouldQuantise(name: String, shape: [Int], options: QuantiseOptions) -> Bool {
        guard name.hasSuffix(".weight"), shape.count == 2 else { return false }
        return !isKept(name, patterns: options.keep)
    }

    /// Whether a keep pattern matches the tensor `name` or its layer (`name` without `.weight`).
    public static func isKept(_ name: String, patterns: [String]) -> Bool {
        let layer = name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
        for p in patterns {
            if p.contains("*") || p.contains("?") || p.contains("[") {
                if fnmatch(p, layer, 0) == 0 || fnmatch(p, name, 0) == 0 { return true }
            } else if layer == p || name == p || layer.hasPrefix(p + ".") {
                return true
            }
        }
        return false
    }

    /// Keep patterns that match none of `names` (for "matches nothing" errors).
    public static func unmatchedKeepPatterns(_ patterns: [String], names: [String]) -> [String] {
        patterns.filter { p in !names.contains { isKept($0, patterns: [p]) } }
    }

    /// Quantises one weight: `w` [n] row-major fp32 of `shape`, stored originally as `sourceDType`.
    /// Returns full tensor name → tensor: `name` itself (the packed codes) and its companions, in the layout of
    /// `QuantizedWeight.storedTensors` (nf4/fp4: bitsandbytes' serialized keys, bit-identical to
    /// `bitsandbytes.functional.quantize_4bit` on CPU; int4: codes, `.scales`, `.zeros`; int8: codes, `.SCB`).
    public static func quantise(name: String, weights w: [Float], shape: [Int], sourceDType: StorageDType,
                                options: QuantiseOptions) throws -> [String: EncodedTensor] {
        let src: SourceDType = sourceDType == .bf16 ? .bfloat16 : (sourceDType == .f16 ? .float16 : .float32)
        let q = try quantizeWeight(w, shape: shape, format: options.spec, doubleQuant: options.doubleQuant, sourceDType: src)
        return q.storedTensors(name: name, shape: shape, sourceDType: src).mapValues { t in
            let dtype: StorageDType = switch t.dtype {
            case .uint8: .u8
            case .int8: .i8
            case .float32: .f32
            }
            return EncodedTensor(dtype: dtype, shape: t.shape, data: Data(t.bytes))
        }
    }

    /// diffusers' `quantization_config` for a bitsandbytes 4-bit checkpoint (nf4/fp4); nil for other formats,
    /// which diffusers cannot load.
    public static func diffusersQuantizationConfig(_ options: QuantiseOptions) -> [String: JSONValue]? {
        guard let type = options.format.bitsandbytesType?.rawValue else { return nil }
        return [
            "quant_method": .string("bitsandbytes"),
            "_load_in_4bit": .bool(true), "_load_in_8bit": .bool(false),
            "load_in_4bit": .bool(true), "load_in_8bit": .bool(false),
            "bnb_4bit_quant_type": .string(type),
            "bnb_4bit_use_double_quant": .bool(options.doubleQuant),
            "bnb_4bit_compute_dtype": .string(options.computeDType),
            "bnb_4bit_quant_storage": .string("uint8"),
            "llm_int8_enable_fp32_cpu_offload": .bool(false),
            "llm_int8_has_fp16_weight": .bool(false),
            "llm_int8_skip_modules": .null,
            "llm_int8_threshold": .double(6.0),
        ]
    }
}
