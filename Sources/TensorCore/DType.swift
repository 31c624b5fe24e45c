// Element types of tensors: full-precision floats, small integers, and the 4-bit weight formats.
// A 4-bit dtype carries its block (group) size; the packed layout is documented on `Packed4BitWeight`.
// The quantisation module (TensorCore/Quant) owns the code tables and maps its `QuantFormat` onto these cases.

/// The element type of a tensor.
///
/// 4-bit formats pack two values per byte (first value in the high nibble, as bitsandbytes) and need per-block
/// scales that live beside the packed bytes in a `Packed4BitWeight`.
///
///     let w: DType = .nf4(blockSize: 64)
public enum DType: Hashable, Sendable, CustomStringConvertible {
    case f32, bf16, f16, i8, u8
    /// bitsandbytes NF4: value = nf4Code[q] · absmax[block].
    case nf4(blockSize: Int)
    /// bitsandbytes FP4: value = fp4Code[q] · absmax[block].
    case fp4(blockSize: Int)
    /// Linear 4-bit integers, one scale (and optional zero) per group: value = code[q] · scale (+ zero).
    case int4(groupSize: Int)

    /// Bits per element (4 for the packed formats).
    public var bitsPerElement: Int {
        switch self {
        case .f32: 32
        case .bf16, .f16: 16
        case .i8, .u8: 8
        case .nf4, .fp4, .int4: 4
        }
    }

    /// Bytes needed to store `count` elements (4-bit formats round up to whole bytes).
    public func byteCount(for count: Int) -> Int { (count * bitsPerElement + 7) / 8 }

    /// True for the dtypes that ops compute on directly (`f32`, `bf16`, `f16`).
    public var isFloatingPoint: Bool { self == .f32 || self == .bf16 || self == .f16 }

    /// The block (group) size of a 4-bit format; nil for the others.
    public var blockSize: Int? {
        switch self {
        case .nf4(let b), .fp4(let b), .int4(let b): b
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .f32: "f32"
        case .bf16: "bf16"
        case .f16: "f16"
        case .i8: "i8"
        case .u8: "u8"
        case .nf4(let b): "nf4/\(b)"
        case .fp4(let b): "fp4/\(b)"
        case .int4(let b): "int4/\(b)"
        }
    }
}
