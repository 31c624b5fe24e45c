// The PNG reader against PNGs Python's zlib compressed (Tests/Fixtures/images/generate.py, part 3): fixed and
// dynamic Huffman blocks, all five row filters, grey+alpha and RGBA composited over white; and against our writer.
import Foundation
import Testing
@testable import PNGSupport

/// Alpha over white, rounded as `PNGImage.decode` documents: (v·a + 255·(255 − a) + 127) / 255.
private func over(_ v: Int, _ a: Int) -> UInt8 { UInt8((v * a + 255 * (255 - a) + 127) / 255) }

@Test func decodesZlibCompressedPNGsWithEveryFilter() throws {
    let rgba = try PNGImage.decode(try fixture("filters-rgba-23x17.png"))
    #expect(rgba.width == 23 && rgba.height == 17 && rgba.channels == 3)
    var want: [UInt8] = []
    for y in 0..<17 {
        for x in 0..<23 {
            let a = (x * 11 + y * 23) % 256
            for c in 0..<3 { want.append(over((x * 31 + y * 17 + c * 71 + (x * y) % 13) % 256, a)) }
        }
    }
    #expect(rgba.pixels == want)

    let ga = try PNGImage.decode(try fixture("grey-alpha-40x30.png"))
    #expect(ga.width == 40 && ga.height == 30 && ga.channels == 1)
    var wantGA: [UInt8] = []
    for y in 0..<30 { for x in 0..<40 { wantGA.append(over((x * 7 + y * 3) % 256, (255 - x * 5 + 256 * 4) % 256)) } }
    #expect(ga.pixels == wantGA)

    let wide = try PNGImage.decode(try fixture("wide-grey-640x48.png"))
    #expect(wide.width == 640 && wide.height == 48 && wide.channels == 1)
    var wantWide: [UInt8] = []
    for y in 0..<48 { for x in 0..<640 { wantWide.append(UInt8((x / 8 * 40 + y / 6 * 25) % 256)) } }
    #expect(wide.pixels == wantWide)
}

@Test func decodesWhatTheWriterWrites() throws {
    let grey = try PNGImage(width: 300, height: 221, channels: 1, pixels: greyPattern(width: 300, height: 221))
    #expect(try PNGImage.decode(grey.encoded()) == grey)       // two stored blocks
    #expect(try PNGImage.decode(try fixture("rgb-5x4.png")).channels == 3)
}

@Test func refusesWhatItCannotRead() throws {
    #expect(throws: PNGError.self) { try PNGImage.decode(Array("not a png".utf8), source: "x.png") }
    var truncated = try fixture("wide-grey-640x48.png")
    truncated.removeLast(40)
    do {
        _ = try PNGImage.decode(truncated, source: "cut.png")
        Issue.record("a truncated PNG decoded")
    } catch let e as PNGError {
        #expect("\(e)".hasPrefix("cut.png: not a readable PNG: "), "\(e)")
    }
}
