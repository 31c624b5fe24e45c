// Loads the bitsandbytes reference fixtures (Tests/Fixtures/quant: index.json + quant.bin, made by generate.py).
import Foundation

/// The fixture index and its binary blob.
struct QuantFixtures: @unchecked Sendable {  // immutable after loading
    let index: [String: Any]
    let blob: Data

    static let shared: QuantFixtures = {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fixtures/quant")
        let indexData = try! Data(contentsOf: dir.appendingPathComponent("index.json"))
        let index = try! JSONSerialization.jsonObject(with: indexData) as! [String: Any]
        let blob = try! Data(contentsOf: dir.appendingPathComponent("quant.bin"))
        return QuantFixtures(index: index, blob: blob)
    }()

    var cases: [[String: Any]] { index["cases"] as! [[String: Any]] }
    var blockwise8: [[String: Any]] { index["blockwise8"] as! [[String: Any]] }
    var int8Rows: [[String: Any]] { index["int8_rows"] as! [[String: Any]] }
    var big: [String: Any] { index["big"] as! [String: Any] }
    var torchSums: [[String: Any]] { index["torch_sums"] as! [[String: Any]] }

    func bytes(_ ref: Any?) -> [UInt8] {
        let r = ref as! [String: Any]
        let off = r["offset"] as! Int
        let count = r["count"] as! Int
        let size = (r["dtype"] as! String) == "f32" ? 4 : 1
        return [UInt8](blob[off..<(off + count * size)])
    }

    func floats(_ ref: Any?) -> [Float] {
        let b = bytes(ref)
        return stride(from: 0, to: b.count, by: 4).map { i in
            Float(bitPattern: UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24)
        }
    }
}

/// Float bit patterns, so NaN and -0 compare exactly.
func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

/// 64-bit FNV-1a, as generate.py computes it.
func fnv1a(_ bytes: [UInt8]) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

func floatBytes(_ x: [Float]) -> [UInt8] {
    x.flatMap { v -> [UInt8] in
        let u = v.bitPattern
        return [UInt8(u & 0xFF), UInt8((u >> 8) & 0xFF), UInt8((u >> 16) & 0xFF), UInt8(u >> 24)]
    }
}

/// generate.py's LCG weights: 31-bit LCG, top 23 bits scaled into [-0.5, 0.5).
func lcgWeights(count: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<count).map { _ in
        s = (s &* 1_103_515_245 &+ 12345) & 0x7FFF_FFFF
        return Float(Double(s >> 8) * 0x1p-23 - 0.5)
    }
}
