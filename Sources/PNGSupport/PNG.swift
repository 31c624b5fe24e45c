// A dependency-free PNG writer: 8-bit greyscale or RGB, filter type 0 on every row, IDAT as a zlib stream of
// stored (uncompressed) deflate blocks. Enough for sample grids; no system zlib needed. Reading: PNGDecode.swift.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif

/// An 8-bit image in row-major order, interleaved channels (1 = greyscale, 3 = RGB).
///
///     let image = try PNGImage(width: 2, height: 1, channels: 1, pixels: [0, 255])
///     try image.write(to: URL(fileURLWithPath: "out.png"))
public struct PNGImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// 1 (greyscale) or 3 (RGB).
    public let channels: Int
    /// [height, width, channels] bytes.
    public let pixels: [UInt8]

    /// The largest width or height PNG allows (2³¹ − 1); we also refuse images over 1 GiB of pixels.
    public static let maxDimension = Int(Int32.max)

    /// Checks the size and channel count against the pixel buffer.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard channels == 1 || channels == 3 else { throw PNGError.unsupportedChannels(channels) }
        guard width > 0, height > 0, width <= Self.maxDimension, height <= Self.maxDimension,
              width.multipliedReportingOverflow(by: height).partialValue <= (1 << 30) / channels else {
            throw PNGError.badSize(width: width, height: height)
        }
        guard pixels.count == width * height * channels else {
            throw PNGError.pixelCountMismatch(expected: width * height * channels, got: pixels.count)
        }
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    /// The PNG file's bytes.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr: [UInt8] = []
        ihdr.appendBigEndian(UInt32(width))
        ihdr.appendBigEndian(UInt32(height))
        ihdr += [8, channels == 1 ? 0 : 2, 0, 0, 0]   // bit depth, colour type, compression, filter, interlace
        Self.appendChunk("IHDR", ihdr, to: &out)
        // Each scanline: filter byte 0 (None), then the row's bytes.
        let stride = width * channels
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (stride + 1))
        for y in 0..<height {
            raw.append(0)
            raw += pixels[(y * stride)..<((y + 1) * stride)]
        }
        Self.appendChunk("IDAT", Self.zlibStored(raw), to: &out)
        Self.appendChunk("IEND", [], to: &out)
        return out
    }

    /// Writes the PNG atomically: a temp file beside `url`, fsynced, renamed over `url`, then the folder fsynced.
    public func write(to url: URL) throws {
        try Self.writeAtomically(encoded(), to: url)
    }

    // ── format pieces ───────────────────────────────────────────────────────────────────────

    /// Largest payload of one stored deflate block.
    static let maxStoredBlock = 65535

    /// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4): header 78 01, blocks of ≤ 65,535
    /// bytes (BFINAL on the last; an empty input is one empty final block), Adler-32 big-endian.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        out.reserveCapacity(data.count + data.count / maxStoredBlock * 5 + 11)
        var start = 0
        repeat {
            let n = min(maxStoredBlock, data.count - start)
            let final = start + n == data.count
            out.append(final ? 1 : 0)          // BFINAL, BTYPE 00, rest of the byte padding
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[start..<(start + n)]
            start += n
        } while start < data.count
        out.appendBigEndian(adler32(data))
        return out
    }

    /// One chunk: length, type, data, CRC-32 of type + data.
    static func appendChunk(_ type: String, _ data: [UInt8], to out: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        precondition(typeBytes.count == 4, "chunk types are 4 ASCII letters")
        out.appendBigEndian(UInt32(data.count))
        out += typeBytes
        out += data
        out.appendBigEndian(crc32(data, initial: crc32(typeBytes)))
    }

    /// CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320) as PNG and zlib use it; `initial` continues a CRC.
    public static func crc32(_ data: [UInt8], initial: UInt32 = 0) -> UInt32 {
        var c = ~initial
        for b in data { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Adler-32 (RFC 1950).
    public static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < data.count {
            let end = min(data.count, i + 5552)   // the largest run before b can overflow 32 bits
            while i < end { a &+= UInt32(data[i]); b &+= a; i += 1 }
            a %= 65521; b %= 65521
        }
        return b << 16 | a
    }

    /// Writes `bytes` (e.g. a PNG read elsewhere) to `url` atomically: temp file beside it → fsync → rename →
    /// fsync(folder), so `url` is either the old file or the whole new one, never half-written.
    public static func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
        let path = url.path
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/.\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw PNGError.io(path: tmp, operation: "create", code: errno) }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        var done = 0
        let count = bytes.count
        let failure: Int32? = bytes.withUnsafeBytes { buf -> Int32? in
            while done < count {
                let n = systemWrite(fd, buf.baseAddress! + done, count - done)
                if n < 0 { if errno == EINTR { continue }; return errno }
                done += n
            }
            return nil
        }
        if let failure { close(fd); throw PNGError.io(path: tmp, operation: "write", code: failure) }
        if fsync(fd) != 0 { let e = errno; close(fd); throw PNGError.io(path: tmp, operation: "fsync", code: e) }
        close(fd)
        guard rename(tmp, path) == 0 else { throw PNGError.io(path: path, operation: "rename \(tmp) to", code: errno) }
        ok = true
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}

/// Why an image could not be made or written.
public enum PNGError: Error, Equatable, CustomStringConvertible {
    case unsupportedChannels(Int)
    case badSize(width: Int, height: Int)
    case pixelCountMismatch(expected: Int, got: Int)
    case io(path: String, operation: String, code: Int32)
    /// A file `decode` cannot read: not a PNG, corrupt, or outside the supported subset.
    case malformed(source: String, reason: String)

    public var description: String {
        switch self {
        case .unsupportedChannels(let c):
            return "a PNG image needs 1 (greyscale) or 3 (RGB) channels, got \(c)"
        case .badSize(let w, let h):
            return "image size \(w)×\(h) is not allowed (each side 1…2³¹−1, at most 1 GiB of pixels)"
        case .pixelCountMismatch(let e, let g):
            return "the image needs \(e) pixel bytes (width × height × channels), got \(g)"
        case .io(let path, let op, let code):
            return "\(path): \(op) failed: \(String(cString: strerror(code)))"
        case .malformed(let source, let reason):
            return "\(source): not a readable PNG: \(reason) (8-bit grey, RGB, grey+alpha or RGBA, non-interlaced are read)"
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8((v >> 16) & 0xFF)); append(UInt8((v >> 8) & 0xFF)); append(UInt8(v & 0xFF))
    }
}
