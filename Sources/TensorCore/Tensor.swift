// The tensor value: a shape, a dtype and a reference to backend-owned storage.
// Tensors are always contiguous row-major; reshapes and first-axis slices are free views, anything else is an op.

/// An n-dimensional array stored contiguously (row-major) in a backend's storage.
///
/// A `Tensor` is a cheap value: copying it shares the storage. Views (`reshaped`, `rows`) share it too.
/// Ops never write into their inputs except the documented in-place ones (`axpy`, `adamw`, `clipGradNorm`).
///
///     let x = try cpu.tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])   // (2,3) f32
///     let y = try cpu.gelu(x.reshaped([3, 2]))
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let storage: any TensorStorage
    /// Offset of the first element inside `storage`, in bytes.
    public let byteOffset: Int
    public let shape: [Int]
    public let dtype: DType

    public init(storage: any TensorStorage, byteOffset: Int = 0, shape: [Int], dtype: DType) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(byteOffset + dtype.byteCount(for: shape.reduce(1, *)) <= storage.byteCount,
                     "tensor of shape \(shape) \(dtype) does not fit its storage")
        self.storage = storage
        self.byteOffset = byteOffset
        self.shape = shape
        self.dtype = dtype
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    /// Bytes the elements occupy.
    public var byteCount: Int { dtype.byteCount(for: count) }
    public var device: Device { storage.device }

    /// Size of the last axis (1 for a scalar).
    public var lastDim: Int { shape.last ?? 1 }
    /// Product of all axes but the last (the number of "rows" that row-wise ops such as norms run over).
    public var rowCount: Int { shape.isEmpty ? 1 : shape.dropLast().reduce(1, *) }

    /// The same elements with another shape (free: shares storage). `-1` infers one axis.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        return Tensor(storage: storage, byteOffset: byteOffset, shape: s, dtype: dtype)
    }

    /// Elements `range` along the first axis (free: shares storage). For 4-bit dtypes the row must start on a byte.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "rows \(range) out of bounds for shape \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        let startBits = range.lowerBound * inner * dtype.bitsPerElement
        precondition(startBits % 8 == 0, "rows view of a 4-bit tensor must start on a byte boundary")
        var s = shape
        s[0] = range.count
        return Tensor(storage: storage, byteOffset: byteOffset + startBits / 8, shape: s, dtype: dtype)
    }

    /// Host address of the first element; nil when the storage is not host memory.
    public var hostPointer: UnsafeMutableRawPointer? {
        guard let h = storage as? HostStorage else { return nil }
        return h.base + byteOffset
    }

    public var description: String { "Tensor(\(shape), \(dtype), \(device))" }
}

/// Shape helpers shared by backends.
extension Array where Element == Int {
    /// "(2,3,4)" — the form used in error messages and shape comments.
    public var shapeString: String { "(" + map(String.init).joined(separator: ",") + ")" }
}
