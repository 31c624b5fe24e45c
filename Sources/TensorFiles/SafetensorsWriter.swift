// Writing safetensors files byte-compatible with the reference `safetensors` library: tensors
// sorted by dtype (descending, Rust declaration order) then name, a compact JSON header with
// `__metadata__` first, padded with spaces to a multiple of 8, written temp → fsync → rename.
// Large checkpoints are streamed one tensor at a time (`write(entries:…)`).

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

/// A tensor's name, dtype and shape, without data (for header-first, streamed writes).
public struct TensorEntry: Sendable, Hashable {
    public var name: String
    public var dtype: StorageDType
    public var shape: [Int]

    public init(name: String, dtype: StorageDType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// Serialises tensors in the safetensors format.
public enum SafetensorsWriter {
    /// The 8-byte length prefix plus padded JSON header for `entries`, and the entries' layout
    /// (in data order, with offsets) — the order their bytes must follow the header in.
    ///
    /// Metadata keys are written sorted (the reference writer uses hash order, so only files
    /// with at most one metadata key are byte-comparable).
    public static func header(for entries: [TensorEntry], metadata: [String: String]? = nil,
                              file: String = "<memory>") throws -> (bytes: Data, layout: [TensorInfo]) {
        var seen = Set<String>()
        var sizes: [String: Int] = [:]
        for t in entries {
            if t.name == "__metadata__" || !seen.insert(t.name).inserted {
                throw TensorFileError(.invalidWrite, file: file, tensor: t.name,
                                      message: t.name == "__metadata__" ? "'__metadata__' is reserved" : "tensor name used twice",
                                      fix: "give every tensor a unique name")
            }
            var count = t.dtype.byteSize
            for d in t.shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                if d < 0 || o {
                    throw TensorFileError(.invalidWrite, file: file, tensor: t.name,
                                          message: "shape \(t.shape) is negative or overflows", fix: "fix the shape")
                }
                count = p
            }
            sizes[t.name] = count
        }
        let ordered = entries.sorted {
            $0.dtype.referenceOrder != $1.dtype.referenceOrder
                ? $0.dtype.referenceOrder > $1.dtype.referenceOrder
                : Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8))
        }
        var parts: [String] = []
        if let metadata {
            let items = metadata.sorted { $0.key < $1.key }.map { "\(CompactJSON.string($0.key)):\(CompactJSON.string($0.value))" }
            parts.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        var ranges: [Range<Int>] = []
        for t in ordered {
            let end = offset + (sizes[t.name] ?? 0)
            parts.append("\(CompactJSON.string(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":\(CompactJSON.intArray(t.shape)),\"data_offsets\":[\(offset),\(end)]}")
            ranges.append(offset..<end)
            offset = end
        }
        var json = Data(("{" + parts.joined(separator: ",") + "}").utf8)
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var out = Data(capacity: 8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        let layout = zip(ordered, ranges).map { t, r in
            TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: r, fileOffset: 8 + json.count + r.lowerBound)
        }
        return (out, layout)
    }

    /// The complete file contents for `tensors` and optional metadata.
    public static func serialize(_ tensors: [TensorPayload], metadata: [String: String]? = nil,
                                 file: String = "<memory>") throws -> Data {
        let (head, layout) = try header(for: tensors.map { TensorEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                        metadata: metadata, file: file)
        let byName = Dictionary(tensors.map { ($0.name, $0.data) }, uniquingKeysWith: { a, _ in a })
        var out = head
        out.reserveCapacity(head.count + (layout.last?.dataOffsets.upperBound ?? 0))
        for t in layout {
            let d = byName[t.name] ?? Data()
            guard d.count == t.byteCount else {
                throw TensorFileError(.invalidWrite, file: file, tensor: t.name,
                                      message: "shape \(t.shape) of \(t.dtype.rawValue) needs \(t.byteCount) bytes, got \(d.count)",
                                      fix: "pass data matching the shape and dtype")
            }
            out.append(d)
        }
        return out
    }

    /// Writes `tensors` to `path` atomically (temp file, fsync, rename).
    public static func write(_ tensors: [TensorPayload], metadata: [String: String]? = nil, to path: String) throws {
        let data = try serialize(tensors, metadata: metadata, file: path)
        try AtomicFile.write(data, to: path)
    }

    /// Streams a file: writes the header for `entries`, then asks `bytes` for each tensor's data
    /// in data order (one tensor in memory at a time). Atomic like `write`.
    public static func write(entries: [TensorEntry], metadata: [String: String]? = nil, to path: String,
                             bytes: (TensorInfo) throws -> Data) throws {
        let (head, layout) = try header(for: entries, metadata: metadata, file: path)
        try AtomicFile.write(to: path) { sink in
            try sink.write(head)
            for t in layout {
                let d = try bytes(t)
                guard d.count == t.byteCount else {
                    throw TensorFileError(.invalidWrite, file: path, tensor: t.name,
                                          message: "shape \(t.shape) of \(t.dtype.rawValue) needs \(t.byteCount) bytes, got \(d.count)",
                                          fix: "pass data matching the shape and dtype")
                }
                try sink.write(d)
            }
        }
    }
}

/// Whole-file writes that never leave a half-written file behind.
public enum AtomicFile {
    /// Sequential writer handed to `write(to:_:)`.
    public struct Sink {
        fileprivate let fd: Int32
        fileprivate let path: String

        /// Appends `data` to the file.
        public func write(_ data: Data) throws {
            try data.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    guard let base = raw.baseAddress else { return }
                    let r = systemWrite(fd, base + done, raw.count - done)
                    if r <= 0 {
                        throw TensorFileError(.ioFailure, file: path, offset: done,
                                              message: "write failed (\(String(cString: strerror(errno))))",
                                              fix: "check free disk space")
                    }
                    done += r
                }
            }
        }
    }

    /// Writes `data` to `path` via a temporary file in the same directory, fsync, then rename.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { try $0.write(data) }
    }

    /// Runs `body` against a temporary file next to `path`, then fsyncs and renames it into
    /// place; on any error the temporary file is removed and `path` is left untouched.
    public static func write(to path: String, _ body: (Sink) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func fail(_ what: String) -> TensorFileError {
            TensorFileError(.ioFailure, file: path, message: "\(what) (\(String(cString: strerror(errno))))",
                            fix: "check free disk space and write permission on \(dir)")
        }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        if fd < 0 { throw fail("cannot create temporary file \(tmp)") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        do {
            try body(Sink(fd: fd, path: path))
        } catch {
            close(fd)
            throw error
        }
        if fsync(fd) != 0 { close(fd); throw fail("fsync failed") }
        close(fd)
        if rename(tmp, path) != 0 { throw fail("rename to final name failed") }
        ok = true
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}

@inline(__always) private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, p, n)
    #else
    Darwin.write(fd, p, n)
    #endif
}
