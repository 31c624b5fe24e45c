// The GGUF v3 container, as gguf-py's GGUFWriter lays it out and GGUFReader reads it: header, key/value
// metadata, tensor infos (dims innermost first), then 32-byte-aligned tensor data. A streaming writer (one
// tensor's bytes in memory at a time) and a bounds-checked reader.
import Foundation

/// A GGUF metadata value (the kinds hprune writes and reads).
public enum GGUFValue: Sendable, Hashable {
    case uint32(UInt32)
    case int32(Int32)
    case uint64(UInt64)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    var typeCode: UInt32 {
        switch self {
        case .uint32: 4
        case .int32: 5
        case .float32: 6
        case .bool: 7
        case .string: 8
        case .array: 9
        case .uint64: 10
        }
    }
}

/// One tensor of a GGUF file: name, shape (outermost first, as numpy / PyTorch), type, and data offset.
public struct GGUFTensorInfo: Sendable, Hashable {
    public var name: String
    /// Outermost first ([rows, cols]); the file stores it reversed.
    public var shape: [Int]
    public var type: GGMLType
    /// Offset from the start of the data section.
    public var offset: Int

    public init(name: String, shape: [Int], type: GGMLType, offset: Int = 0) {
        self.name = name
        self.shape = shape
        self.type = type
        self.offset = offset
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { type.byteCount(elementCount) }
}

/// A malformed or unsupported GGUF file, naming the file and the byte offset.
public struct GGUFError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var offset: Int
    public var message: String
    public var description: String { "\(path): offset \(offset): \(message)" }
}

public enum GGUF {
    public static let magic: UInt32 = 0x4655_4747   // "GGUF"
    public static let version: UInt32 = 3
    public static let alignment = 32

    /// Writes a GGUF file at `path` (through a temp file renamed into place): `metadata` in order, then the tensor
    /// infos in order, then each tensor's bytes from `data` (called once per tensor, in order; it must return
    /// exactly `info.byteCount` bytes).
    public static func write(to path: String, metadata: [(String, GGUFValue)], tensors: [GGUFTensorInfo],
                             data: (GGUFTensorInfo) throws -> [UInt8]) throws {
        var infos = tensors
        var offset = 0
        for i in infos.indices {
            infos[i].offset = offset
            offset += pad(infos[i].byteCount)
        }
        var head = [UInt8]()
        put32(magic, &head); put32(version, &head)
        put64(UInt64(infos.count), &head); put64(UInt64(metadata.count), &head)
        for (k, v) in metadata {
            putString(k, &head)
            put32(v.typeCode, &head)
            putValue(v, &head)
        }
        for t in infos {
            putString(t.name, &head)
            put32(UInt32(t.shape.count), &head)
            for d in t.shape.reversed() { put64(UInt64(d), &head) }
            put32(t.type.rawValue, &head)
            put64(UInt64(t.offset), &head)
        }
        head += [UInt8](repeating: 0, count: pad(head.count) - head.count)

        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let fh = FileHandle(forWritingAtPath: tmp) else {
            throw GGUFError(path: tmp, offset: 0, message: "cannot create the file (\(String(cString: strerror(errno))))")
        }
        var written = 0
        do {
            try fh.write(contentsOf: head)
            written = head.count
            for t in infos {
                let bytes = try data(t)
                guard bytes.count == t.byteCount else {
                    throw GGUFError(path: path, offset: written, message: "tensor '\(t.name)': \(bytes.count) bytes, expected \(t.byteCount)")
                }
                try fh.write(contentsOf: bytes)
                let p = pad(bytes.count) - bytes.count
                if p > 0 { try fh.write(contentsOf: [UInt8](repeating: 0, count: p)) }
                written += bytes.count + p
            }
            try fh.synchronize()
            try fh.close()
            guard rename(tmp, path) == 0 else {
                throw GGUFError(path: path, offset: 0, message: "cannot rename \(tmp) into place (\(String(cString: strerror(errno))))")
            }
        } catch {
            try? fh.close()
            unlink(tmp)
            if error is GGUFError || error is CancellationError { throw error }
            // FileHandle reports NSCocoaErrorDomain errors; name the POSIX cause instead.
            let ns = error as NSError
            let why = (ns.userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) } ?? ns.localizedDescription
            throw GGUFError(path: path, offset: written, message: "write failed (\(why)); check free disk space and write permission")
        }
    }

    static func pad(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
    static func put32(_ v: UInt32, _ o: inout [UInt8]) { for s in stride(from: 0, to: 32, by: 8) { o.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    static func put64(_ v: UInt64, _ o: inout [UInt8]) { for s in stride(from: 0, to: 64, by: 8) { o.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    static func putString(_ s: String, _ o: inout [UInt8]) { put64(UInt64(s.utf8.count), &o); o += Array(s.utf8) }
    static func putValue(_ v: GGUFValue, _ o: inout [UInt8]) {
        switch v {
        case .uint32(let x): put32(x, &o)
        case .int32(let x): put32(UInt32(bitPattern: x), &o)
        case .uint64(let x): put64(x, &o)
        case .float32(let x): put32(x.bitPattern, &o)
        case .bool(let b): o.append(b ? 1 : 0)
        case .string(let s): putString(s, &o)
        case .array(let a):
            put32(a.first?.typeCode ?? 4, &o)
            put64(UInt64(a.count), &o)
            for x in a { putValue(x, &o) }
        }
    }
}

/// A GGUF file read into memory (mapped), with every offset and length checked.
public struct GGUFFile: Sendable {
    public let path: String
    public let metadata: [(String, GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    /// Absolute offset of the data section.
    public let dataStart: Int
    let bytes: Data

    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let d: Data
        do { d = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw GGUFError(path: path, offset: 0, message: "cannot read the file (\((error as NSError).localizedDescription))")
        }
        bytes = d
        var r = Reader(data: d, path: path)
        guard try r.u32() == GGUF.magic else { throw GGUFError(path: path, offset: 0, message: "not a GGUF file (bad magic)") }
        let v = try r.u32()
        guard v == 2 || v == 3 else { throw GGUFError(path: path, offset: 4, message: "GGUF version \(v) is not supported (2 or 3)") }
        let nt = try r.u64(), nkv = try r.u64()
        guard nt < 1 << 24, nkv < 1 << 24 else { throw GGUFError(path: path, offset: 8, message: "implausible counts (\(nt) tensors, \(nkv) keys)") }
        var md: [(String, GGUFValue)] = []
        var alignment = GGUF.alignment
        for _ in 0..<nkv {
            let k = try r.string()
            let v = try r.value(type: try r.u32(), depth: 0)
            if k == "general.alignment", case .uint32(let a) = v, a > 0, a & (a - 1) == 0 { alignment = Int(a) }
            md.append((k, v))
        }
        var ts: [GGUFTensorInfo] = []
        for _ in 0..<nt {
            let at = r.pos
            let name = try r.string()
            let nd = try r.u32()
            guard nd >= 1, nd <= 8 else { throw GGUFError(path: path, offset: at, message: "tensor '\(name)': \(nd) dimensions") }
            var dims: [Int] = []
            for _ in 0..<nd {
                let x = try r.u64()
                guard x < 1 << 40 else { throw GGUFError(path: path, offset: r.pos - 8, message: "tensor '\(name)': dimension \(x)") }
                dims.append(Int(x))
            }
            let code = try r.u32()
            guard let type = GGMLType(rawValue: code) else {
                throw GGUFError(path: path, offset: r.pos - 4, message: "tensor '\(name)': GGML type \(code) is not supported (F32, F16, BF16, Q8_0, Q5_1, Q5_0, Q4_1, Q4_0)")
            }
            let off = try r.u64()
            let info = GGUFTensorInfo(name: name, shape: dims.reversed(), type: type, offset: Int(off))
            guard info.elementCount % type.blockSize == 0 else {
                throw GGUFError(path: path, offset: at, message: "tensor '\(name)': \(info.elementCount) elements is not a whole number of \(type.name) blocks")
            }
            ts.append(info)
        }
        let start = (r.pos + alignment - 1) / alignment * alignment
        for t in ts where t.offset > d.count || start + t.offset + t.byteCount > d.count {
            throw GGUFError(path: path, offset: start + t.offset, message: "tensor '\(t.name)' (\(t.byteCount) bytes) runs past the end of the file (\(d.count) bytes)")
        }
        metadata = md
        tensors = ts
        dataStart = start
    }

    /// The metadata value of `key`.
    public func value(_ key: String) -> GGUFValue? { metadata.first { $0.0 == key }?.1 }

    /// The raw bytes of tensor `name`.
    public func bytes(_ name: String) throws -> [UInt8] {
        guard let t = tensors.first(where: { $0.name == name }) else {
            throw GGUFError(path: path, offset: 0, message: "no tensor '\(name)'")
        }
        let a = bytes.startIndex + dataStart + t.offset
        return [UInt8](bytes[a..<(a + t.byteCount)])
    }

    /// Tensor `name` decoded to f32 ([n], outermost dimension first).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors.first(where: { $0.name == name }) else {
            throw GGUFError(path: path, offset: 0, message: "no tensor '\(name)'")
        }
        return GGMLQuants.dequantize(try bytes(name), as: t.type, count: t.elementCount)
    }

    struct Reader {
        let data: Data
        let path: String
        var pos = 0

        mutating func take(_ n: Int) throws -> Data {
            guard n >= 0, pos + n <= data.count else {
                throw GGUFError(path: path, offset: pos, message: "truncated: \(n) bytes needed, \(data.count - pos) left")
            }
            defer { pos += n }
            return data[(data.startIndex + pos)..<(data.startIndex + pos + n)]
        }
        mutating func le(_ n: Int) throws -> UInt64 {
            var v: UInt64 = 0
            for (i, b) in try take(n).enumerated() { v |= UInt64(b) << UInt64(8 * i) }
            return v
        }
        mutating func u32() throws -> UInt32 { UInt32(try le(4)) }
        mutating func u64() throws -> UInt64 { try le(8) }
        mutating func string() throws -> String {
            let n = try u64()
            guard n < 1 << 24 else { throw GGUFError(path: path, offset: pos - 8, message: "string of \(n) bytes") }
            guard let s = String(data: try take(Int(n)), encoding: .utf8) else {
                throw GGUFError(path: path, offset: pos - Int(n), message: "string is not UTF-8")
            }
            return s
        }
        mutating func value(type: UInt32, depth: Int) throws -> GGUFValue {
            switch type {
            case 0, 1: return .uint32(UInt32(try le(1)))
            case 2, 3: return .uint32(UInt32(try le(2)))
            case 4: return .uint32(try u32())
            case 5: return .int32(Int32(bitPattern: try u32()))
            case 6: return .float32(Float(bitPattern: try u32()))
            case 7: return .bool(try le(1) != 0)
            case 8: return .string(try string())
            case 9:
                guard depth < 4 else { throw GGUFError(path: path, offset: pos, message: "arrays nested too deeply") }
                let et = try u32()
                let n = try u64()
                guard n < 1 << 24 else { throw GGUFError(path: path, offset: pos - 8, message: "array of \(n) values") }
                return .array(try (0..<n).map { _ in try value(type: et, depth: depth + 1) })
            case 10, 11: return .uint64(try u64())
            case 12: return .float32(Float(Double(bitPattern: try u64())))
            default: throw GGUFError(path: path, offset: pos - 4, message: "unknown metadata type \(type)")
            }
        }
    }
}
