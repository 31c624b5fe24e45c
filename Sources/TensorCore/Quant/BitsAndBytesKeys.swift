// The serialized key layout of a bitsandbytes 4-bit Linear weight (what `Linear4bit._save_to_state_dict` writes,
// via `QuantState.as_dict(packed=True)`), produced and parsed back byte for byte, without any checkpoint code:
// the checkpoint writer stores the returned tensors as they are.
import Foundation

/// Element type of a serialized tensor (safetensors names: "U8", "I8", "F32").
public enum SerializedDType: String, Hashable, Sendable, CaseIterable {
    case uint8 = "U8"
    /// int8 codes (per-row int8 weights).
    case int8 = "I8"
    case float32 = "F32"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8, .int8: return 1
        case .float32: return 4
        }
    }
}

/// A tensor ready to be written to a checkpoint: little-endian raw bytes with dtype and shape.
public struct SerializedTensor: Hashable, Sendable {
    public var dtype: SerializedDType
    public var shape: [Int]
    /// Raw little-endian bytes, shape.product * dtype.size of them.
    public var bytes: [UInt8]

    public init(dtype: SerializedDType, shape: [Int], bytes: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// A float32 tensor of the given values.
    public init(float32 values: [Float], shape: [Int]? = nil) {
        var b = [UInt8]()
        b.reserveCapacity(values.count * 4)
        for v in values {
            let u = v.bitPattern.littleEndian
            b.append(UInt8(truncatingIfNeeded: u)); b.append(UInt8(truncatingIfNeeded: u >> 8))
            b.append(UInt8(truncatingIfNeeded: u >> 16)); b.append(UInt8(truncatingIfNeeded: u >> 24))
        }
        self.init(dtype: .float32, shape: shape ?? [values.count], bytes: b)
    }

    /// A uint8 tensor of the given bytes.
    public init(uint8 values: [UInt8], shape: [Int]? = nil) {
        self.init(dtype: .uint8, shape: shape ?? [values.count], bytes: values)
    }

    /// Element count from the shape.
    public var count: Int { shape.reduce(1, *) }

    /// The float32 values (nil when the dtype is not float32 or the byte count is wrong).
    public func floats() -> [Float]? {
        guard dtype == .float32, bytes.count == count * 4 else { return nil }
        return (0..<count).map { i in
            let u = UInt32(bytes[4 * i]) | UInt32(bytes[4 * i + 1]) << 8 | UInt32(bytes[4 * i + 2]) << 16
                | UInt32(bytes[4 * i + 3]) << 24
            return Float(bitPattern: u)
        }
    }
}

extension Quantized4Bit {
    /// Keys in the order bitsandbytes writes them, relative to the weight name: "" is the weight itself.
    public var bitsandbytesKeySuffixes: [String] {
        var s = ["", ".absmax", ".quant_map"]
        if isNested { s += [".nested_absmax", ".nested_quant_map"] }
        s.append(".quant_state.bitsandbytes__\(type.rawValue)")
        return s
    }

    /// The tensors bitsandbytes saves for this weight under `weightName` (e.g. "blocks.0.attn.to_q.weight"):
    ///
    /// ```
    /// X.weight                            U8  [ceil(n/2), 1]  packed codes
    /// X.weight.absmax                     F32 [nb]            (U8 [nb] codes when nested)
    /// X.weight.quant_map                  F32 [16]            the NF4 / FP4 table
    /// X.weight.nested_absmax              F32 [nn]            nested only
    /// X.weight.nested_quant_map           F32 [256]           nested only: the dynamic 8-bit map
    /// X.weight.quant_state.bitsandbytes__nf4  U8 [len]        JSON, e.g. {"quant_type": "nf4", "blocksize": 64,
    ///     "dtype": "float32", "shape": [3, 7], "nested_blocksize": 256, "nested_dtype": "float32",
    ///     "nested_offset": 1.7728103399276733}   (json.dumps spacing, Python float repr)
    /// ```
    public func bitsandbytesTensors(weightName: String) -> [String: SerializedTensor] {
        var out: [String: SerializedTensor] = [:]
        out[weightName] = SerializedTensor(uint8: packed, shape: [packed.count, 1])
        switch absmax {
        case .plain(let a):
            out[weightName + ".absmax"] = SerializedTensor(float32: a)
        case .nested(let nested):
            out[weightName + ".absmax"] = SerializedTensor(uint8: nested.codes)
            out[weightName + ".nested_absmax"] = SerializedTensor(float32: nested.absmax)
            out[weightName + ".nested_quant_map"] = SerializedTensor(float32: nested.codeTable)
        }
        out[weightName + ".quant_map"] = SerializedTensor(float32: type.codebook.values)
        out[weightName + ".quant_state.bitsandbytes__\(type.rawValue)"] =
            SerializedTensor(uint8: Array(bitsandbytesQuantStateJSON().utf8))
        return out
    }

    /// The JSON text bitsandbytes packs into `quant_state.bitsandbytes__<type>` (`pack_dict_to_tensor`).
    public func bitsandbytesQuantStateJSON() -> String {
        var s = "{\"quant_type\": \"\(type.rawValue)\", \"blocksize\": \(blockSize), "
        s += "\"dtype\": \"\(sourceDType.rawValue)\", \"shape\": [\(shape.map(String.init).joined(separator: ", "))]"
        if case .nested(let n) = absmax {
            s += ", \"nested_blocksize\": \(NestedAbsmax.blockSize), \"nested_dtype\": \"float32\", "
            s += "\"nested_offset\": \(pythonFloatRepr(Double(n.offset)))"
        }
        return s + "}"
    }

    /// Reads a 4-bit weight back from bitsandbytes' tensors (as `QuantState.from_dict` does).
    ///
    /// `tensors` may hold other keys too; only `weightName` and its suffixes are read.
    /// - Throws: `QuantError` naming the key when one is missing or malformed.
    public init(bitsandbytesTensors tensors: [String: SerializedTensor], weightName: String) throws {
        guard let stateKey = ["nf4", "fp4"].map({ weightName + ".quant_state.bitsandbytes__" + $0 })
            .first(where: { tensors[$0] != nil }), let stateTensor = tensors[stateKey]
        else { throw QuantError.missingKey(weightName + ".quant_state.bitsandbytes__nf4") }
        guard stateTensor.dtype == .uint8,
              let json = try? JSONSerialization.jsonObject(with: Data(stateTensor.bytes), options: [.fragmentsAllowed]),
              let dict = json as? [String: Any]
        else { throw QuantError.badQuantState(key: stateKey, reason: "not a uint8 tensor holding a JSON object") }

        guard let typeName = dict["quant_type"] as? String, let type = FourBitType(rawValue: typeName) else {
            throw QuantError.badQuantState(key: stateKey, reason: "quant_type must be \"nf4\" or \"fp4\"")
        }
        guard let blockSize = (dict["blocksize"] as? NSNumber)?.intValue, bitsandbytesBlockSizes.contains(blockSize)
        else { throw QuantError.badQuantState(key: stateKey, reason: "blocksize must be one of \(bitsandbytesBlockSizes)") }
        guard let dtypeName = dict["dtype"] as? String, let dtype = SourceDType(rawValue: dtypeName) else {
            throw QuantError.badQuantState(key: stateKey, reason: "dtype must be float32, bfloat16 or float16")
        }
        guard let shapeAny = dict["shape"] as? [Any] else {
            throw QuantError.badQuantState(key: stateKey, reason: "shape must be a list of integers")
        }
        let shape = shapeAny.compactMap { ($0 as? NSNumber)?.intValue }
        guard shape.count == shapeAny.count, shape.allSatisfy({ $0 >= 0 }) else {
            throw QuantError.badQuantState(key: stateKey, reason: "shape must be a list of non-negative integers")
        }
        let layout = FourBitLayout(count: shape.reduce(1, *), blockSize: blockSize)

        func tensor(_ key: String, _ dtype: SerializedDType, count: Int) throws -> SerializedTensor {
            guard let t = tensors[key] else { throw QuantError.missingKey(key) }
            guard t.dtype == dtype, t.count == count, t.bytes.count == count * dtype.size else {
                throw QuantError.badTensor(key: key, expected: "\(dtype.rawValue) with \(count) elements",
                                           got: "\(t.dtype.rawValue) \(t.shape) (\(t.bytes.count) bytes)")
            }
            return t
        }
        func floatTensor(_ key: String, count: Int) throws -> [Float] {
            guard let f = try tensor(key, .float32, count: count).floats() else {
                throw QuantError.badTensor(key: key, expected: "F32 with \(count) elements", got: "unreadable bytes")
            }
            return f
        }
        let packed = try tensor(weightName, .uint8, count: layout.packedByteCount).bytes
        let nested = dict["nested_offset"] != nil
        let scales: Absmax4Bit
        if nested {
            guard let offset = (dict["nested_offset"] as? NSNumber)?.doubleValue else {
                throw QuantError.badQuantState(key: stateKey, reason: "nested_offset must be a number")
            }
            if let nb = (dict["nested_blocksize"] as? NSNumber)?.intValue, nb != NestedAbsmax.blockSize {
                throw QuantError.badQuantState(key: stateKey, reason: "nested_blocksize \(nb) is not supported (256)")
            }
            let codes = try tensor(weightName + ".absmax", .uint8, count: layout.blockCount).bytes
            let nAbs = try floatTensor(weightName + ".nested_absmax", count: layout.nestedBlockCount)
            let map = try floatTensor(weightName + ".nested_quant_map", count: 256)
            scales = .nested(NestedAbsmax(codes: codes, absmax: nAbs, offset: Float(offset), codeTable: map))
        } else {
            scales = .plain(try floatTensor(weightName + ".absmax", count: layout.blockCount))
        }
        if let mapTensor = tensors[weightName + ".quant_map"] {
            guard let map = mapTensor.floats(), map == type.codebook.values else {
                throw QuantError.badTensor(key: weightName + ".quant_map",
                                           expected: "bitsandbytes' \(type.rawValue) table (F32 [16])",
                                           got: "\(mapTensor.dtype.rawValue) \(mapTensor.shape) with other values")
            }
        } else {
            throw QuantError.missingKey(weightName + ".quant_map")
        }
        self.init(type: type, shape: shape, blockSize: blockSize, packed: packed, absmax: scales, sourceDType: dtype)
    }
}

/// Python's `repr(float)` (what `json.dumps` writes): shortest round-trip digits, exponent form when the
/// decimal exponent is < -4 or >= 16, `.0` on integral values, `NaN` / `Infinity` as json.dumps spells them.
public func pythonFloatRepr(_ x: Double) -> String {
    if x.isNaN { return "NaN" }
    if x.isInfinite { return x < 0 ? "-Infinity" : "Infinity" }
    // Swift's description also prints the shortest round-trip digits; take them apart and re-lay them.
    var text = "\(abs(x))"
    let negative = x.sign == .minus
    var exp10 = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exp10 = Int(text[text.index(after: e)...]) ?? 0
        text = String(text[..<e])
    }
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    let intPart = String(parts[0])
    let fracPart = parts.count > 1 ? String(parts[1]) : ""
    var digits = intPart + fracPart
    var decpt = intPart.count + exp10  // value = 0.digits * 10^decpt
    while digits.count > 1 && digits.hasPrefix("0") { digits.removeFirst(); decpt -= 1 }
    while digits.count > 1 && digits.hasSuffix("0") { digits.removeLast() }
    if digits == "0" { return negative ? "-0.0" : "0.0" }

    var out: String
    if decpt > 16 || decpt < -3 {
        // d.ddde±XX
        let first = digits.prefix(1)
        let rest = digits.dropFirst()
        let e = decpt - 1
        out = String(first) + (rest.isEmpty ? "" : "." + rest)
        out += "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
    } else if decpt <= 0 {
        out = "0." + String(repeating: "0", count: -decpt) + digits
    } else if decpt >= digits.count {
        out = digits + String(repeating: "0", count: decpt - digits.count) + ".0"
    } else {
        let i = digits.index(digits.startIndex, offsetBy: decpt)
        out = String(digits[..<i]) + "." + String(digits[i...])
    }
    return negative ? "-" + out : out
}
