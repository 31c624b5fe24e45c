// One entry point over every `QuantSpec`, for the `quantise` stage: quantise a weight, dequantise it, size it.
// Legend: shape = the weight's shape ([out, in] for a Linear), n = its element count.

/// A weight in any of the quantised formats.
public enum QuantizedWeight: Hashable, Sendable {
    case fourBit(Quantized4Bit)
    case int4(QuantizedInt4)
    case int8(QuantizedInt8Rows)

    /// The format and block size this weight is stored in.
    public var spec: QuantSpec {
        switch self {
        case .fourBit(let q): return q.type == .nf4 ? .nf4(blockSize: q.blockSize) : .fp4(blockSize: q.blockSize)
        case .int4(let q): return .int4(q.scheme, blockSize: q.groupSize)
        case .int8: return .int8
        }
    }

    /// Bytes the quantised weight occupies (codes + scales + zero points / nested statistics).
    public var storageBytes: Int {
        switch self {
        case .fourBit(let q): return q.isNested ? q.layout.nestedStorageBytes : q.layout.storageBytes()
        case .int4(let q): return q.layout.storageBytes(withZeroPoints: q.scheme == .asymmetric)
        case .int8(let q): return Int8RowLayout(rows: q.rows, cols: q.cols).storageBytes
        }
    }

    /// The dequantised weight, [n] fp32 row-major.
    public func dequantized() -> [Float] {
        switch self {
        case .fourBit(let q): return dequantize4bit(q)
        case .int4(let q): return dequantizeInt4(q)
        case .int8(let q): return dequantizeInt8Rows(q)
        }
    }
}

/// Quantises a weight (w: [n] fp32 row-major of `shape`) to `format`.
///
/// ```swift
/// let q = try quantizeWeight(w, shape: [1536, 1536], format: .nf4(blockSize: 64), doubleQuant: true)
/// ```
/// `doubleQuant` applies to nf4/fp4 only; `int8` quantises per row of the last dimension (rows = n / shape.last).
/// - Throws: `QuantError` for a shape that does not match, or a block size the format does not accept.
public func quantizeWeight(
    _ w: UnsafeBufferPointer<Float>, shape: [Int], format: QuantSpec, doubleQuant: Bool = false,
    sourceDType: SourceDType = .float32
) throws -> QuantizedWeight {
    guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == w.count else {
        throw QuantError.shapeMismatch(name: nil, shape: shape, count: w.count)
    }
    switch format {
    case .nf4(let b), .fp4(let b):
        let type: FourBitType
        if case .nf4 = format { type = .nf4 } else { type = .fp4 }
        return .fourBit(try quantize4bit(w, shape: shape, format: type, blockSize: b, doubleQuant: doubleQuant,
                                         sourceDType: sourceDType))
    case .int4(let scheme, let b):
        return .int4(try quantizeInt4(w, shape: shape, scheme: scheme, groupSize: b))
    case .int8:
        let cols = shape.last ?? 1
        return .int8(try quantizeInt8Rows(w, rows: cols == 0 ? 0 : w.count / cols, cols: cols))
    }
}

/// Convenience overload of `quantizeWeight` for arrays.
public func quantizeWeight(
    _ w: [Float], shape: [Int], format: QuantSpec, doubleQuant: Bool = false, sourceDType: SourceDType = .float32
) throws -> QuantizedWeight {
    try w.withUnsafeBufferPointer {
        try quantizeWeight($0, shape: shape, format: format, doubleQuant: doubleQuant, sourceDType: sourceDType)
    }
}

extension QuantizedWeight {
    /// Marker between a weight's name and its quant-state tensor: `X.weight.quant_state.bitsandbytes__nf4`,
    /// `X.weight.quant_state.hprune__int4`, `X.weight.quant_state.hprune__int8`.
    public static let quantStateMarker = ".quant_state."

    /// The tensors stored for this weight under `name` (full name → tensor), in its format's layout
    /// (QuantTraits.swift), read back by `StoredQuantWeight`:
    /// - nf4/fp4: bitsandbytes' serialized keys (`Quantized4Bit.bitsandbytesTensors`);
    /// - int4: `name` U8 [ceil(n/2)] packed, `name.scales` F32 [nb], `name.zeros` U8 [nb] (asymmetric),
    ///   `name.quant_state.hprune__int4` U8 JSON {scheme, group_size, dtype, shape};
    /// - int8: `name` I8 shape, `name.SCB` F32 [rows] (per-row absmax, bitsandbytes' name), quant-state JSON
    ///   {rows, cols, dtype, shape}.
    /// `shape` and `sourceDType` are recorded in the int4 / int8 quant state (nf4/fp4 carry their own).
    public func storedTensors(name: String, shape: [Int], sourceDType: SourceDType) -> [String: SerializedTensor] {
        let shapeText = "[" + shape.map(String.init).joined(separator: ", ") + "]"
        var out: [String: SerializedTensor] = [:]
        switch self {
        case .fourBit(let fb):
            out = fb.bitsandbytesTensors(weightName: name)
        case .int4(let q4):
            out[name] = SerializedTensor(uint8: q4.packed)
            out[name + ".scales"] = SerializedTensor(float32: q4.scales)
            if q4.scheme == .asymmetric { out[name + ".zeros"] = SerializedTensor(uint8: q4.zeroPoints) }
            let json = "{\"scheme\": \"\(q4.scheme.rawValue)\", \"group_size\": \(q4.groupSize), \"dtype\": \"\(sourceDType.rawValue)\", \"shape\": \(shapeText)}"
            out[name + Self.quantStateMarker + "hprune__int4"] = SerializedTensor(uint8: Array(json.utf8))
        case .int8(let q8):
            out[name] = SerializedTensor(dtype: .int8, shape: shape, bytes: q8.q.map { UInt8(bitPattern: $0) })
            out[name + ".SCB"] = SerializedTensor(float32: q8.rowAbsmax)
            let json = "{\"rows\": \(q8.rows), \"cols\": \(q8.cols), \"dtype\": \"\(sourceDType.rawValue)\", \"shape\": \(shapeText)}"
            out[name + Self.quantStateMarker + "hprune__int8"] = SerializedTensor(uint8: Array(json.utf8))
        }
        return out
    }
}
