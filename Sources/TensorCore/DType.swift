// Element types of tensors: full-precision floats, small integers, and the 4-bit weight formats.
// A 4-bit dtype carries its `QuantFormat` (code table kind + block size); the packed layout is in QuantizedWeight.swift.

/// The element type of a tensor.
///
/// 4-bit formats pack two values per byte (first value in the high nibble, as bitsandbytes) and
/// need per-block scales that live beside the packed bytes in a `QuantizedWeight`.
///
///     let w: DType = .nf4(blockSize: 64)
public enum DType: Hashable, Sendable, CustomStringConvertible {
    case f32, bf16, f16, i8, u8
    /// A 4-bit weight format with its block (or group) size.
    case q4(QuantFormat)

    /// NF4 (bitsandbytes normal-float code), absmax per `blockSize` values.
    public static func nf4(blockSize: Int = 64) -> DType { .q4(QuantFormat(.nf4, blockSize: blockSize)) }
    /// FP4 (bitsandbytes e2m1 code), absmax per `blockSize` values.
    public static func fp4(blockSize: Int = 64) -> DType { .q4(QuantFormat(.fp4, blockSize: blockSize)) }
    /// Symmetric int4 with one scale per group of `groupSize` values.
    public static func int4(groupSize: Int = 128) -> DType { .q4(QuantFormat(.int4, blockSize: groupSize)) }

    /// Bits per element (4 for the packed formats).
    public var bitsPerElement: Int {
        switch self {
        case .f32: 32
        case .bf16, .f16: 16
        case .i8, .u8: 8
        case .q4: 4
        }
    }

    /// Bytes needed to store `count` elements (4-bit formats round up to whole bytes).
    public func byteCount(for count: Int) -> Int { (count * bitsPerElement + 7) / 8 }

    /// True for the dtypes that ops compute on directly (`f32`, `bf16`, `f16`).
    public var isFloatingPoint: Bool { self == .f32 || self == .bf16 || self == .f16 }

    public var description: String {
        switch self {
        case .f32: "f32"
        case .bf16: "bf16"
        case .f16: "f16"
        case .i8: "i8"
        case .u8: "u8"
        case .q4(let f): "\(f.kind.rawValue)(block \(f.blockSize))"
        }
    }
}

/// The 4-bit code families. The code tables themselves are defined by the quantisation module (TensorCore/Quant).
public enum QuantKind: String, Hashable, Sendable, CaseIterable {
    /// bitsandbytes NF4: 16 normal-float levels in [-1, 1], value = code[q] * absmax.
    case nf4
    /// bitsandbytes FP4 (e2m1 with bias), value = code[q] * absmax.
    case fp4
    /// Symmetric int4: value = code[q] * scale with the code table chosen by the quantisation module.
    case int4
}

/// A 4-bit format: which code table, and how many consecutive weights share one scale.
public struct QuantFormat: Hashable, Sendable, CustomStringConvertible {
    public var kind: QuantKind
    /// Number of consecutive values (row-major over the flattened weight) sharing one scale (bitsandbytes default 64).
    public var blockSize: Int

    public init(_ kind: QuantKind, blockSize: Int) {
        self.kind = kind
        self.blockSize = blockSize
    }

    public var description: String { "\(kind.rawValue)/\(blockSize)" }
}
