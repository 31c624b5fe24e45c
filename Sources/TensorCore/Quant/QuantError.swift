// Errors of the quantisers and of the bitsandbytes key-layout reader: each names the input and how to fix it.

/// What went wrong quantising a weight or reading a quantised one back.
public enum QuantError: Error, Equatable, CustomStringConvertible {
    /// The element count does not match the shape.
    case shapeMismatch(name: String?, shape: [Int], count: Int)
    /// A block size the format (bitsandbytes) does not accept.
    case invalidBlockSize(Int, allowed: [Int])
    /// A value is not representable in the declared source dtype.
    case notRepresentable(index: Int, value: Float, dtype: SourceDType)
    /// A key bitsandbytes' layout requires is absent.
    case missingKey(String)
    /// A tensor has the wrong dtype, shape or byte count.
    case badTensor(key: String, expected: String, got: String)
    /// The packed quant_state JSON cannot be used.
    case badQuantState(key: String, reason: String)
    /// A companion tensor of a stored quantised weight (`.scales`, `.zeros`, `.SCB`) is absent.
    case missingCompanion(key: String)
    /// A stored quantised weight's tensors do not fit its format, block size or shape.
    case badLayout(key: String, reason: String)

    public var description: String {
        switch self {
        case .shapeMismatch(let name, let shape, let count):
            let what = name.map { "tensor '\($0)'" } ?? "weight"
            return "\(what): shape \(shape) holds \(shape.reduce(1, *)) elements but \(count) values were given; "
                + "pass the weight's own shape"
        case .invalidBlockSize(let b, let allowed):
            return "block size \(b) is not supported; use one of \(allowed.map(String.init).joined(separator: ", "))"
        case .notRepresentable(let i, let v, let dtype):
            return "element \(i) (\(v)) is not a \(dtype.rawValue) value; round the weight to \(dtype.rawValue) "
                + "first or declare its dtype as float32"
        case .missingKey(let key):
            return "missing tensor '\(key)'; the checkpoint is not a complete bitsandbytes 4-bit weight "
                + "(re-save it with bitsandbytes or `hprune quantise`)"
        case .badTensor(let key, let expected, let got):
            return "tensor '\(key)': expected \(expected), got \(got)"
        case .badQuantState(let key, let reason):
            return "tensor '\(key)': \(reason)"
        case .missingCompanion(let key):
            return "missing tensor '\(key)' (a companion of the quantised weight)"
        case .badLayout(let key, let reason):
            return "quantised tensor '\(key)': \(reason)"
        }
    }
}
