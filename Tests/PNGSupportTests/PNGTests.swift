// The PNG writer against Python's zlib: CRC-32 / Adler-32 known answers, byte equality with PNGs built by
// zlib.compress(level=0) (Tests/Fixtures/images/generate.py), a multi-block PNG checked by zlib.decompress,
// the sample grid layout, atomic writes and size errors.
import Foundation
import Testing
@testable import PNGSupport

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/images")

func fixture(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name)))
}

/// The greyscale pattern of generate.py's `grey(x, y)`.
func greyPattern(width: Int, height: Int) -> [UInt8] {
    var out: [UInt8] = []
    for y in 0..<height { for x in 0..<width { out.append(UInt8((x * 19 + y * 37) % 256)) } }
    return out
}

@Test func crc32AndAdler32KnownAnswers() {
    // The check values of the CRC catalogue ("123456789") and RFC 1950's Wikipedia example.
    #expect(PNGImage.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
    #expect(PNGImage.crc32([]) == 0)
    #expect(PNGImage.crc32(Array("IEND".utf8)) == 0xAE42_6082)           // every PNG ends with these bytes
    #expect(PNGImage.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
    #expect(PNGImage.adler32([]) == 1)
    // Long input crosses the deferred-modulo boundary (5552 bytes): zlib.adler32(bytes(range(256)) * 100).
    #expect(PNGImage.adler32(Array((0..<25600).map { UInt8($0 % 256) })) == 0x747F_D0E0)
    // Continuing a CRC equals one CRC of the concatenation.
    #expect(PNGImage.crc32(Array("6789".utf8), initial: PNGImage.crc32(Array("12345".utf8))) == 0xCBF4_3926)
}

@Test func smallImagesMatchPythonZlibByteForByte() throws {
    let grey = try PNGImage(width: 13, height: 7, channels: 1, pixels: greyPattern(width: 13, height: 7))
    #expect(grey.encoded() == (try fixture("grey-13x7.png")))
    var rgbPixels: [UInt8] = []
    for y in 0..<4 { for x in 0..<5 { for c in 0..<3 { rgbPixels.append(UInt8((x * 50 + y * 20 + c * 90) % 256)) } } }
    let rgb = try PNGImage(width: 5, height: 4, channels: 3, pixels: rgbPixels)
    #expect(rgb.encoded() == (try fixture("rgb-5x4.png")))
}

@Test func multiBlockImageIsTheOnePythonVerified() throws {
    let image = try PNGImage(width: 300, height: 221, channels: 1, pixels: greyPattern(width: 300, height: 221))
    let bytes = image.encoded()
    if ProcessInfo.processInfo.environment["HPRUNE_RECORD"] == "1" {
        try image.write(to: fixtures.appendingPathComponent("ours-300x221.png"))
    }
    // Two stored blocks: 65,535 + 986 bytes of scanlines (221 × 301).
    let idat = Array(bytes[(8 + 25 + 8)...])
    #expect(idat[2] == 0 && idat[3] == 0xFF && idat[4] == 0xFF && idat[5] == 0 && idat[6] == 0)
    #expect(bytes == (try fixture("ours-300x221.png")))
    let verified = try #require(try JSONSerialization.jsonObject(with: Data(fixture("ours-300x221.verified.json"))) as? [String: Any])
    #expect(verified["size"] as? Int == bytes.count)
    #expect(verified["crc32"] as? Int == Int(PNGImage.crc32(bytes)))
    #expect(verified["stored_blocks"] as? [Int] == [65535, 986])
}

@Test func emptyStreamAndExactBlockBoundary() {
    // An empty payload is one empty final block; 65,535 bytes are one block, 65,536 two.
    #expect(PNGImage.zlibStored([]) == [0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01])
    let one = PNGImage.zlibStored([UInt8](repeating: 7, count: 65535))
    #expect(one.count == 2 + 5 + 65535 + 4 && one[2] == 1)
    let two = PNGImage.zlibStored([UInt8](repeating: 7, count: 65536))
    #expect(two.count == 2 + 5 + 65535 + 5 + 1 + 4 && two[2] == 0 && two[2 + 5 + 65535] == 1)
}

@Test func badSizesAreErrors() {
    #expect(throws: PNGError.unsupportedChannels(2)) { try PNGImage(width: 1, height: 1, channels: 2, pixels: [0, 0]) }
    #expect(throws: PNGError.badSize(width: 0, height: 3)) { try PNGImage(width: 0, height: 3, channels: 1, pixels: []) }
    #expect(throws: PNGError.badSize(width: 1 << 20, height: 1 << 20)) {
        try PNGImage(width: 1 << 20, height: 1 << 20, channels: 1, pixels: [])
    }
    #expect(throws: PNGError.pixelCountMismatch(expected: 6, got: 5)) {
        try PNGImage(width: 2, height: 1, channels: 3, pixels: [1, 2, 3, 4, 5])
    }
    #expect(throws: PNGError.pixelCountMismatch(expected: 4, got: 3)) {
        try ImageGrid.image(rows: [[[0, 0, 0]]], channels: 1, height: 2, width: 2, columns: 1)
    }
}

@Test func writeIsAtomicAndLeavesNoTempFiles() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("png-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("a.png")
    let image = try PNGImage(width: 2, height: 2, channels: 1, pixels: [0, 64, 128, 255])
    try image.write(to: url)
    try PNGImage(width: 1, height: 1, channels: 1, pixels: [9]).write(to: url)   // replaces
    #expect([UInt8](try Data(contentsOf: url)) == (try PNGImage(width: 1, height: 1, channels: 1, pixels: [9])).encoded())
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["a.png"])
    // A folder that does not exist: an error naming the path, nothing written.
    let missing = dir.appendingPathComponent("no/such/b.png")
    #expect { try image.write(to: missing) } throws: { "\($0)".contains(dir.appendingPathComponent("no/such").path) }
}

@Test func gridLayoutMapsRangeScalesAndLeavesGaps() throws {
    // Two rows, two columns, 1×2 tiles (height 1, width 2), scale 2, gap 1: (2·4+3) × (2·2+3) = 11 × 7.
    let a: [Float] = [-1, 1], b: [Float] = [0, 2]
    let g = try ImageGrid.image(rows: [[a, b], [nil, a]], channels: 1, height: 1, width: 2, columns: 2, scale: 2)
    #expect(g.width == 11 && g.height == 7 && g.channels == 1)
    func px(_ x: Int, _ y: Int) -> UInt8 { g.pixels[y * g.width + x] }
    #expect(px(0, 0) == 128 && px(5, 1) == 128)                         // border and gap
    #expect(px(1, 1) == 0 && px(2, 2) == 0 && px(3, 1) == 255 && px(4, 2) == 255)   // tile a, upscaled
    #expect(px(6, 1) == 128 && px(8, 1) == 255)                          // b: 0 → 127.5 → 128, 2 clamps to 255
    #expect(px(1, 4) == 128 && px(6, 4) == 0 && px(9, 5) == 255)         // empty cell, then a
    // RGB tiles are channel-planar in, interleaved out.
    let rgb = try ImageGrid.image(rows: [[[-1, 1, 0]]], channels: 3, height: 1, width: 1, columns: 1, gap: 0)
    #expect(rgb.pixels == [0, 255, 128])
}
