// Weight-only quantisation of a model's Linear layers (W4A16 / W8A16) into checkpoint tensors: which tensors
// are quantised (2-D `*.weight` not matched by a keep pattern), and the tensors each becomes. NF4/FP4 use
// bitsandbytes' key layout (`weight`, `weight.absmax`, `weight.quant_map`, nested keys,
// `weight.quant_state.bitsandbytes__nf4`), so diffusers + bitsandbytes load the result.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Checkpoint
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
    public var format: QuantFormat
    /// nf4/fp4 only: 8-bit quantisation of the absmax vector (bitsandbytes `bnb_4bit_use_double_quant`).
    public var doubleQuant: Bool
    /// Layer or tensor name patterns left unquantised: `proj_out`, `norm_out.*`, `transformer_blocks.0.*`.
    /// A pattern without `*`/`?` matches the layer itself and everything under it.
    public var keep: [String]
    /// The compute dtype recorded for loaders (`bnb_4bit_compute_dtype`): float32, bfloat16 or float16.
    public var computeDType: String

    public init(format: QuantFormat, doubleQuant: Bool = false, keep: [String] = [], computeDType: String = "bfloat16") {
        self.format = format
        self.doubleQuant = doubleQuant
        self.keep = keep
        self.computeDType = computeDType
    }

    /// The short format name (`nf4`, `fp4`, `int4`, `int4-asym`, `int8`).
    public var formatName: String {
        switch format {
        case .nf4: return "nf4"
        case .fp4: return "fp4"
        case .int4(.symmetric, _): return "int4"
        case .int4(.asymmetric, _): return "int4-asym"
        case .int8: return "int8"
        }
    }
}

public enum LinearQuantiser {
    /// Suffix marking a tensor as the quant-state of a quantised weight (`X.weight.quant_state.bitsandbytes__nf4`,
    /// `X.weight.quant_state.hprune__int4`).
    public static let quantStateMarker = ".quant_state."

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
    /// Returns full tensor name → tensor: `name` itself (the packed codes) and its companions.
    ///
    /// - nf4/fp4: bitsandbytes' serialized keys (`Quantized4Bit.bitsandbytesTensors`), bit-identical to
    ///   `bitsandbytes.functional.quantize_4bit` on CPU.
    /// - int4: `name` U8 [ceil(n/2)] packed, `name.scales` F32 [nb], `name.zeros` U8 [nb] (asymmetric),
    ///   `name.quant_state.hprune__int4` U8 JSON {scheme, group_size, shape, dtype}.
    /// - int8: `name` I8 shape, `name.SCB` F32 [rows] (per-row absmax, bitsandbytes' name), quant-state JSON.
    public static func quantise(name: String, weights w: [Float], shape: [Int], sourceDType: StorageDType,
                                options: QuantiseOptions) throws -> [String: EncodedTensor] {
        let src: SourceDType = sourceDType == .bf16 ? .bfloat16 : (sourceDType == .f16 ? .float16 : .float32)
        let q = try quantizeWeight(w, shape: shape, format: options.format, doubleQuant: options.doubleQuant, sourceDType: src)
        var out: [String: EncodedTensor] = [:]
        switch q {
        case .fourBit(let fb):
            for (k, t) in fb.bitsandbytesTensors(weightName: name) {
                out[k] = EncodedTensor(dtype: t.dtype == .uint8 ? .u8 : .f32, shape: t.shape, data: Data(t.bytes))
            }
        case .int4(let q4):
            out[name] = EncodedTensor(dtype: .u8, shape: [q4.packed.count], data: Data(q4.packed))
            out[name + ".scales"] = EncodedTensor(dtype: .f32, shape: [q4.scales.count], data: floatBytes(q4.scales))
            if q4.scheme == .asymmetric {
                out[name + ".zeros"] = EncodedTensor(dtype: .u8, shape: [q4.zeroPoints.count], data: Data(q4.zeroPoints))
            }
            let json = "{\"scheme\": \"\(q4.scheme.rawValue)\", \"group_size\": \(q4.groupSize), \"dtype\": \"\(src.rawValue)\", \"shape\": [\(shape.map(String.init).joined(separator: ", "))]}"
            out[name + quantStateMarker + "hprune__int4"] = EncodedTensor(dtype: .u8, shape: [json.utf8.count], data: Data(json.utf8))
        case .int8(let q8):
            out[name] = EncodedTensor(dtype: .i8, shape: shape, data: q8.q.withUnsafeBytes { Data($0) })
            out[name + ".SCB"] = EncodedTensor(dtype: .f32, shape: [q8.rowAbsmax.count], data: floatBytes(q8.rowAbsmax))
            let json = "{\"rows\": \(q8.rows), \"cols\": \(q8.cols), \"dtype\": \"\(src.rawValue)\", \"shape\": [\(shape.map(String.init).joined(separator: ", "))]}"
            out[name + quantStateMarker + "hprune__int8"] = EncodedTensor(dtype: .u8, shape: [json.utf8.count], data: Data(json.utf8))
        }
        return out
    }

    /// diffusers' `quantization_config` for a bitsandbytes 4-bit checkpoint (nf4/fp4); nil for other formats,
    /// which diffusers cannot load.
    public static func diffusersQuantizationConfig(_ options: QuantiseOptions) -> [String: JSONValue]? {
        let type: String
        switch options.format {
        case .nf4: type = "nf4"
        case .fp4: type = "fp4"
        default: return nil
        }
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

    static func floatBytes(_ v: [Float]) -> Data {
        var d = Data(capacity: v.count * 4)
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }
}
