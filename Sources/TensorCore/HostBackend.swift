// Allocation and transfer shared by the backends that compute on host memory (reference and CPU).
// Both use `HostStorage`, so a tensor made by one is directly usable by the other (no copies in tests).

/// A backend whose tensors live in host memory.
public protocol HostBackend: Backend {}

extension HostBackend {
    public var device: Device { .host }

    public func zeros(_ shape: [Int], dtype: DType) throws -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(storage: try HostStorage(byteCount: dtype.byteCount(for: count)), shape: shape, dtype: dtype)
    }

    public func tensor(_ values: [Float], shape: [Int], dtype: DType) throws -> Tensor {
        guard values.count == shape.reduce(1, *) else {
            throw BackendError.invalidArgument(.cast, "\(values.count) values do not fill shape \(shape.shapeString)")
        }
        let t = try zeros(shape, dtype: dtype)
        let p = t.hostPointer!
        switch dtype {
        case .f32: values.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        case .bf16:
            let o = p.assumingMemoryBound(to: UInt16.self)
            for i in values.indices { o[i] = FloatBits.bf16(values[i]) }
        case .f16:
            let o = p.assumingMemoryBound(to: UInt16.self)
            for i in values.indices { o[i] = FloatBits.f16(values[i]) }
        case .i8:
            let o = p.assumingMemoryBound(to: Int8.self)
            for i in values.indices { o[i] = Int8(max(-128, min(127, values[i].rounded(.toNearestOrEven)))) }
        case .u8:
            let o = p.assumingMemoryBound(to: UInt8.self)
            for i in values.indices { o[i] = UInt8(max(0, min(255, values[i].rounded(.toNearestOrEven)))) }
        case .nf4, .fp4, .int4:
            throw BackendError.unsupportedDType(.cast, dtype, backend: displayName)
        }
        return t
    }

    public func tensor(bytes: [UInt8], shape: [Int], dtype: DType) throws -> Tensor {
        let t = try zeros(shape, dtype: dtype)
        guard bytes.count == t.byteCount else {
            throw BackendError.invalidArgument(.cast, "\(bytes.count) bytes do not fill \(shape.shapeString) \(dtype) (\(t.byteCount) bytes)")
        }
        bytes.withUnsafeBytes { t.hostPointer!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return t
    }

    public func floats(_ x: Tensor) throws -> [Float] {
        let p = try host(x, .cast)
        let n = x.count
        switch x.dtype {
        case .f32: return Array(UnsafeBufferPointer(start: p.assumingMemoryBound(to: Float.self), count: n))
        case .bf16:
            let s = p.assumingMemoryBound(to: UInt16.self)
            return (0..<n).map { FloatBits.float(bf16: s[$0]) }
        case .f16:
            let s = p.assumingMemoryBound(to: UInt16.self)
            return (0..<n).map { FloatBits.float(f16: s[$0]) }
        case .i8:
            let s = p.assumingMemoryBound(to: Int8.self)
            return (0..<n).map { Float(s[$0]) }
        case .u8:
            let s = p.assumingMemoryBound(to: UInt8.self)
            return (0..<n).map { Float(s[$0]) }
        case .nf4, .fp4, .int4:
            throw BackendError.unsupportedDType(.cast, x.dtype, backend: displayName)
        }
    }

    public func bytes(_ x: Tensor) throws -> [UInt8] {
        let p = try host(x, .cast)
        return Array(UnsafeRawBufferPointer(start: p, count: x.byteCount))
    }

    public func transfer(_ x: Tensor) throws -> Tensor {
        guard x.device == .host else { throw BackendError.wrongDevice(.cast, expected: .host, got: x.device) }
        return x
    }

    /// The host address of `x`'s first element, or a `wrongDevice` error naming `op`.
    public func host(_ x: Tensor, _ op: Op) throws -> UnsafeMutableRawPointer {
        guard let p = x.hostPointer else { throw BackendError.wrongDevice(op, expected: .host, got: x.device) }
        return p
    }

    /// Like `host`, but for a tensor the op writes into: throws for read-only (mapped) storage.
    public func hostWritable(_ x: Tensor, _ op: Op) throws -> UnsafeMutableRawPointer {
        guard !x.storage.isReadOnly else { throw BackendError.readOnly(op) }
        return try host(x, op)
    }

    /// Typed f32 view of a host tensor (after checking its dtype is f32).
    public func f32(_ x: Tensor, _ op: Op) throws -> UnsafeMutablePointer<Float> {
        try OpChecks.dtype(op, x, [.f32], backend: displayName)
        return try host(x, op).assumingMemoryBound(to: Float.self)
    }

    /// A fresh f32 tensor and its pointer.
    public func newF32(_ shape: [Int]) throws -> (Tensor, UnsafeMutablePointer<Float>) {
        let t = try zeros(shape, dtype: .f32)
        return (t, t.hostPointer!.assumingMemoryBound(to: Float.self))
    }
}
