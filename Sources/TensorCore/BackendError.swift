// Errors thrown by backends. An op a backend lacks is an error naming the op and the backend, never a fallback.

/// What went wrong in a backend call.
public enum BackendError: Error, Equatable, CustomStringConvertible {
    /// The backend does not implement `op`. Pick another backend (`hprune backends` lists them).
    case unsupported(Op, backend: String)
    /// The op does not accept this dtype on this backend.
    case unsupportedDType(Op, DType, backend: String)
    /// Arguments that do not fit together (shapes, axes, sizes); `detail` says which and how.
    case invalidArgument(Op, String)
    /// A tensor lives on another device than the backend computing on it.
    case wrongDevice(Op, expected: Device, got: Device)
    /// An in-place op was given read-only (memory-mapped) storage.
    case readOnly(Op)
    case outOfMemory(bytes: Int)
    case mapFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .unsupported(let op, let backend):
            "op \(op) has no \(backend) implementation"
        case .unsupportedDType(let op, let dtype, let backend):
            "op \(op) does not support dtype \(dtype) on the \(backend) backend"
        case .invalidArgument(let op, let detail):
            "op \(op): \(detail)"
        case .wrongDevice(let op, let expected, let got):
            "op \(op): tensor is on \(got) but this backend computes on \(expected); transfer it first"
        case .readOnly(let op):
            "op \(op) writes in place but the tensor is read-only (memory-mapped weights); copy it first with cast"
        case .outOfMemory(let bytes):
            "out of memory allocating \(bytes) bytes"
        case .mapFailed(let path, let reason):
            "\(path): cannot memory-map: \(reason)"
        }
    }
}
