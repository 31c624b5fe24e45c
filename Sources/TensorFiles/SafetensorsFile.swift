// A read-only, memory-mapped safetensors file. Opening it validates the whole header (see
// SafetensorsHeader); tensor bytes are then views into the mapping, never copies.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file mapped read-only into memory.
///
/// ```swift
/// let file = try SafetensorsFile(path: "model/diffusion_pytorch_model.safetensors")
/// let w = try file.floats("proj_out.weight")   // decoded to Float
/// ```
/// Byte views returned by `withBytes` are valid only inside the closure.
public final class SafetensorsFile: @unchecked Sendable {
    /// The path as given.
    public let path: String
    /// The validated header.
    public let header: SafetensorsHeader
    /// File size in bytes.
    public let fileSize: Int
    private let base: UnsafeRawPointer?
    private let index: [String: Int]

    /// Opens and validates `path`. Throws `TensorFileError` for any malformed input.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            let why = String(cString: strerror(errno))
            throw TensorFileError(.cannotOpen, file: path, message: "cannot open (\(why))",
                                  fix: "check the path and its permissions")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw TensorFileError(.cannotOpen, file: path, message: "cannot stat (\(String(cString: strerror(errno))))",
                                  fix: "check the path and its permissions")
        }
        let size = Int(st.st_size)
        if size < 8 {
            throw TensorFileError(
                .emptyFile, file: path, offset: 0,
                message: size == 0 ? "file is empty" : "file is \(size) bytes, too short for the 8-byte header length",
                fix: "the file is truncated or not a safetensors file; re-download or re-export it")
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw TensorFileError(.ioFailure, file: path, message: "cannot memory-map \(size) bytes (\(String(cString: strerror(errno))))",
                                  fix: "check free address space and that the file is a regular file")
        }
        let raw = UnsafeRawPointer(map)
        do {
            let prefix = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
            let n = try SafetensorsHeader.headerLength(prefix: prefix, fileSize: size, file: path)
            let json = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: raw + 8), count: n, deallocator: .none)
            header = try SafetensorsHeader.parse(json: json, fileSize: size, file: path)
        } catch {
            munmap(map, size)
            throw error
        }
        base = raw
        fileSize = size
        var idx: [String: Int] = [:]
        for (i, t) in header.tensors.enumerated() { idx[t.name] = i }
        index = idx
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), fileSize) }
    }

    /// Tensors in data order.
    public var tensors: [TensorInfo] { header.tensors }
    /// The `__metadata__` map.
    public var metadata: [String: String] { header.metadata }
    /// Tensor names in data order.
    public var names: [String] { header.tensors.map(\.name) }

    /// Whether the file holds a tensor named `name`.
    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// The header entry of `name`; throws `.missingTensor` when absent.
    public func info(_ name: String) throws -> TensorInfo {
        guard let i = index[name] else {
            throw TensorFileError(.missingTensor, file: path, tensor: name,
                                  message: "no tensor of this name in the file",
                                  fix: "check the name; `hprune inspect` lists the tensors")
        }
        return header.tensors[i]
    }

    /// Calls `body` with the tensor's bytes (a view into the mapping, valid only inside `body`).
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let t = try info(name)
        guard let base else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: base + t.fileOffset, count: t.byteCount))
    }

    /// A copy of the tensor's bytes.
    public func bytes(_ name: String) throws -> Data {
        try withBytes(name) { Data($0) }
    }

    /// The tensor decoded to `Float` (from F32, F16, BF16 or F64; other dtypes throw `.dtypeMismatch`).
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        return try withBytes(name) { raw in
            guard let v = FloatDecoding.decode(raw, dtype: t.dtype) else {
                throw TensorFileError(.dtypeMismatch, file: path, tensor: name, offset: t.fileOffset,
                                      message: "dtype \(t.dtype.rawValue) cannot be read as floating point",
                                      fix: "store this tensor as F32, F16 or BF16")
            }
            return v
        }
    }

    /// Names of floating-point tensors holding at least one NaN or ±Inf, in data order.
    ///
    /// Whether that is an error (training) or a warning (inference) is the caller's choice.
    public func nonFiniteTensors() -> [String] {
        guard let base else { return [] }
        return header.tensors.filter { t in
            FloatDecoding.hasNonFinite(UnsafeRawBufferPointer(start: base + t.fileOffset, count: t.byteCount),
                                       dtype: t.dtype)
        }.map(\.name)
    }
}
