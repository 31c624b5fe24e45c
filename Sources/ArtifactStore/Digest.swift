// Digest: the SHA-256 content address of an object (64 lowercase hex digits), and the streaming hasher
// used for files (1–4 MiB reads, constant memory).
import Crypto
import Foundation

/// A SHA-256 content address: 64 lowercase hexadecimal digits.
///
/// Encodes (Codable) as its bare hex string, so JSON that mentions a digest can be scanned for references.
///
///     let d = Digest.of(Data("hello".utf8))
///     d.hex   // "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
public struct Digest: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The 64 lowercase hex digits.
    public let hex: String

    /// Parses 64 hex digits (either case; stored lowercase). Returns nil for anything else.
    public init?(hex: String) {
        let utf8 = hex.utf8
        guard utf8.count == 64, utf8.allSatisfy({ Self.hexValue($0) != nil }) else { return nil }
        self.hex = hex.lowercased()
    }

    init(_ digest: SHA256.Digest) {
        self.hex = Self.hexString(digest)
    }

    /// The digest of `data`.
    public static func of(_ data: some DataProtocol) -> Digest {
        Digest(SHA256.hash(data: data))
    }

    /// The hex digits, as written in the store's paths and JSON.
    public var description: String { hex }

    /// The first 12 hex digits, for messages and tables.
    public var short: String { String(hex.prefix(12)) }

    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let digest = Digest(hex: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "expected a SHA-256 digest (64 hex digits), got '\(text.prefix(80))'")
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static func hexString(_ digest: SHA256.Digest) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Size of the read buffer used when streaming files through SHA-256 (and copying them).
let streamChunkSize = 4 << 20

/// Streams a file through SHA-256 with a fixed 4 MiB buffer; optionally copies every byte to `copyTo`.
/// Returns the digest and the number of bytes read.
func hashFile(descriptor fd: Int32, path: String, copyTo out: Int32? = nil, outPath: String = "") throws -> (Digest, Int64) {
    var hasher = SHA256()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: streamChunkSize, alignment: 64)
    defer { buffer.deallocate() }
    var total: Int64 = 0
    while true {
        let n = try POSIX.read(fd, into: buffer, path: path)
        if n == 0 { break }
        let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
        hasher.update(bufferPointer: chunk)
        if let out { try POSIX.writeAll(out, chunk, path: outPath) }
        total += Int64(n)
    }
    return (Digest(hasher.finalize()), total)
}
