// Writing safetensors files byte-compatible with the reference `safetensors` library: tensors
// sorted by dtype (descending, Rust declaration order) then name, a compact JSON header with
// `__metadata__` first, padded with spaces to a multiple of 8, written temp → fsync → rename.

import Foundation

/// A tensor to write: its name, dtype, shape, and raw little-endian bytes.
public struct TensorPayload: Sendable, Hashable {
    public var name: String
    public var dtype: StorageDType
    public var shape: [Int]
    public var data: Data

    public init(name: String, dtype: StorageDType, shape: [Int], data: Data) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    /// An F32 tensor from Float values (little-endian).
    public init(name: String, shape: [Int], floats: [Float]) {
        self.init(name: name, dtype: .f32, shape: shape,
                  data: floats.withUnsafeBufferPointer { Data(buffer: $0) })
    }
}

/// Serialises tensors in the safetensors format.
public enum SafetensorsWriter {
    /// The complete file contents for `tensors` and optional metadata.
    ///
    /// Metadata keys are written sorted (the reference writer uses hash order, so only files
    /// with at most one metadata key are byte-comparable).
    public static func serialize(_ tensors: [TensorPayload], metadata: [String: String]? = nil,
                                 file: String = "<memory>") throws -> Data {
        var seen = Set<String>()
        for t in tensors {
            if t.name == "__metadata__" || !seen.insert(t.name).inserted {
                throw CheckpointError(.invalidWrite, file: file, tensor: t.name,
                                      message: t.name == "__metadata__" ? "'__metadata__' is reserved" : "tensor name used twice",
                                      fix: "give every tensor a unique name")
            }
            var count = 1
            for d in t.shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                if d < 0 || o {
                    throw CheckpointError(.invalidWrite, file: file, tensor: t.name,
                                          message: "shape \(t.shape) is negative or overflows", fix: "fix the shape")
                }
                count = p
            }
            if count * t.dtype.byteSize != t.data.count {
                throw CheckpointError(.invalidWrite, file: file, tensor: t.name,
                                      message: "shape \(t.shape) of \(t.dtype.rawValue) needs \(count * t.dtype.byteSize) bytes, got \(t.data.count)",
                                      fix: "pass data matching the shape and dtype")
            }
        }
        let ordered = tensors.sorted {
            $0.dtype.referenceOrder != $1.dtype.referenceOrder
                ? $0.dtype.referenceOrder > $1.dtype.referenceOrder
                : Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8))
        }
        var parts: [String] = []
        if let metadata {
            let items = metadata.keys.sorted().map { "\(CompactJSON.string($0)):\(CompactJSON.string(metadata[$0]!))" }
            parts.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        for t in ordered {
            let end = offset + t.data.count
            parts.append("\(CompactJSON.string(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":\(CompactJSON.intArray(t.shape)),\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Data(("{" + parts.joined(separator: ",") + "}").utf8)
        header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))
        var out = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(header)
        for t in ordered { out.append(t.data) }
        return out
    }

    /// Writes `tensors` to `path` atomically (temp file, fsync, rename).
    public static func write(_ tensors: [TensorPayload], metadata: [String: String]? = nil, to path: String) throws {
        let data = try serialize(tensors, metadata: metadata, file: path)
        try AtomicFile.write(data, to: path)
    }
}

/// Whole-file writes that never leave a half-written file behind.
public enum AtomicFile {
    /// Writes `data` to `path` via a temporary file in the same directory, fsync, then rename.
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func fail(_ what: String) -> CheckpointError {
            CheckpointError(.ioFailure, file: path, message: "\(what) (\(String(cString: strerror(errno))))",
                            fix: "check free disk space and write permission on \(dir)")
        }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        if fd < 0 { throw fail("cannot create temporary file \(tmp)") }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        let written: Bool = data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let r = Glibc_write(fd, raw.baseAddress! + done, raw.count - done)
                if r <= 0 { return false }
                done += r
            }
            return true
        }
        if !written { close(fd); throw fail("write failed") }
        if fsync(fd) != 0 { close(fd); throw fail("fsync failed") }
        close(fd)
        if rename(tmp, path) != 0 { throw fail("rename to final name failed") }
        ok = true
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { Glibc.write(fd, p, n) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { Darwin.write(fd, p, n) }
#endif
