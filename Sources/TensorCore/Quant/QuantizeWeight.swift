// One entry point over every `QuantFormat`, for the `quantise` stage: quantise a weight, dequantise it, size it.
// Legend: shape = the weight's shape ([out, in] for a Linear), n = its element count.

/// A weight in any of the quantised formats.
public enum QuantizedWeight: Hashable, Sendable {
    case fourBit(Quantized4Bit)
    case int4(QuantizedInt4)
    case int8(QuantizedInt8Rows)

    /// The format this weight is stored in.
    public var format: QuantFormat {
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
    _ w: UnsafeBufferPointer<Float>, shape: [Int], format: QuantFormat, doubleQuant: Bool = false,
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
    _ w: [Float], shape: [Int], format: QuantFormat, doubleQuant: Bool = false, sourceDType: SourceDType = .float32
) throws -> QuantizedWeight {
    try w.withUnsafeBufferPointer {
        try quantizeWeight($0, shape: shape, format: format, doubleQuant: doubleQuant, sourceDType: sourceDType)
    }
}
