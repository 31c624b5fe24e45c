// The element types a safetensors file can hold, spelled as safetensors spells them.
// This module does no arithmetic on tensors; it only needs sizes, names and the order the
// reference writer lays tensors out in.

/// An element type as stored in a safetensors file (`"F32"`, `"BF16"`, …).
///
/// The raw value is the spelling in the file header. Sub-byte formats (`F4`, `F6_*`) are not
/// supported and are reported as unknown dtypes.
public enum StorageDType: String, Sendable, Hashable, Codable, CaseIterable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: 1
        case .i16, .u16, .f16, .bf16: 2
        case .i32, .u32, .f32: 4
        case .f64, .i64, .u64: 8
        }
    }

    /// Whether the elements are floating point (the ones a NaN/Inf scan looks at).
    public var isFloatingPoint: Bool {
        switch self {
        case .f8e5m2, .f8e4m3, .f16, .bf16, .f32, .f64: true
        default: false
        }
    }

    /// Position in the Rust `safetensors::Dtype` declaration order. The reference writer sorts
    /// tensors by this rank, descending, then by name; our writer does the same so files are
    /// byte-identical with Python's `safetensors.torch.save_file`.
    public var referenceOrder: Int {
        switch self {
        case .bool: 0
        case .u8: 1
        case .i8: 2
        case .f8e5m2: 3
        case .f8e4m3: 4
        case .i16: 5
        case .u16: 6
        case .f16: 7
        case .bf16: 8
        case .i32: 9
        case .u32: 10
        case .f32: 11
        case .f64: 12
        case .i64: 13
        case .u64: 14
        }
    }

    /// The dtype names this reader knows, for error messages.
    public static var knownNames: String {
        allCases.map(\.rawValue).joined(separator: ", ")
    }
}
