// Holds NF4/FP4 quantisation to bitsandbytes 0.50 byte for byte (packed codes, absmax bits, nested statistics,
// quant_state JSON) and dequantisation to bitsandbytes' dequantize_4bit, on every committed fixture.
import Testing
import TensorCore

struct Quantize4BitTests {
    static let fx = QuantFixtures.shared

    struct Config: CustomStringConvertible, Sendable {
        let caseIndex: Int
        let resultIndex: Int
        let description: String
    }

    static var configs: [Config] {
        var out: [Config] = []
        for (ci, c) in fx.cases.enumerated() {
            for (ri, r) in (c["results"] as! [[String: Any]]).enumerated() {
                let name = "\(c["name"]!) \(r["quant_type"]!)/\(r["blocksize"]!) nested=\(r["nested"]!)"
                out.append(Config(caseIndex: ci, resultIndex: ri, description: name))
            }
        }
        return out
    }

    static func quantise(_ c: [String: Any], _ r: [String: Any]) throws -> Quantized4Bit {
        let input = fx.floats(c["input"])
        return try quantize4bit(
            input, shape: c["shape"] as? [Int], format: FourBitType(rawValue: r["quant_type"] as! String)!,
            blockSize: r["blocksize"] as! Int, doubleQuant: r["nested"] as! Bool,
            sourceDType: SourceDType(rawValue: c["dtype"] as! String)!)
    }

    @Test("quantize4bit matches bitsandbytes byte for byte", arguments: configs)
    func matchesBitsandbytes(_ cfg: Config) throws {
        let c = Self.fx.cases[cfg.caseIndex]
        let r = (c["results"] as! [[String: Any]])[cfg.resultIndex]
        let q = try Self.quantise(c, r)
        #expect(q.packed == Self.fx.bytes(r["packed"]), "packed codes")
        #expect([q.packed.count, 1] == r["packed_shape"] as! [Int])
        switch q.absmax {
        case .plain(let a):
            #expect(!(r["nested"] as! Bool))
            #expect(bits(a) == bits(Self.fx.floats(r["absmax"])), "absmax bits")
        case .nested(let n):
            #expect(r["nested"] as! Bool)
            #expect(String(n.offset.bitPattern, radix: 16) == String(UInt32(r["offset_bits"] as! String, radix: 16)!, radix: 16),
                    "nested offset")
            #expect(n.codes == Self.fx.bytes(r["absmax"]), "nested absmax codes")
            #expect(bits(n.absmax) == bits(Self.fx.floats(r["nested_absmax"])), "nested absmax")
            #expect(bits(n.codeTable) == bits(Self.fx.floats(r["nested_quant_map"])), "nested quant map")
        }
        #expect(bits(q.type.codebook.values) == bits(Self.fx.floats(r["quant_map"])), "quant_map")
        let json = String(decoding: Self.fx.bytes(r["quant_state"]), as: UTF8.self)
        #expect(q.bitsandbytesQuantStateJSON() == json)
    }

    @Test("dequantize4bit matches bitsandbytes' dequantize_4bit bit for bit", arguments: configs)
    func dequantMatches(_ cfg: Config) throws {
        let c = Self.fx.cases[cfg.caseIndex]
        let r = (c["results"] as! [[String: Any]])[cfg.resultIndex]
        let q = try Self.quantise(c, r)
        // The reference is bitsandbytes' pure-PyTorch dequantize (backends/default) in float32; its AVX512 C++
        // kernel differs on some shapes (see generate.py and `cpu_kernel_mismatches` in index.json).
        let canonical = { (x: [Float]) in x.map { $0.isNaN ? Float.nan : $0 } }
        #expect(bits(canonical(dequantize4bit(q))) == bits(canonical(Self.fx.floats(r["dequant"]))))
    }

    @Test("a 2432x1024 layer (absmax mean over 2 PyTorch threads) matches bitsandbytes' digests")
    func bigLayer() throws {
        let big = Self.fx.big
        let shape = big["shape"] as! [Int]
        let w = lcgWeights(count: shape[0] * shape[1], seed: UInt64(big["lcg_seed"] as! Int))
        #expect(w.prefix(4).map { String($0.bitPattern, radix: 16) } == (big["lcg_first"] as! [String]).map {
            String(UInt32($0, radix: 16)!, radix: 16) })
        let q = try quantize4bit(w, shape: shape, format: .nf4, blockSize: 64, doubleQuant: true)
        guard case .nested(let n) = q.absmax else { Issue.record("not nested"); return }
        #expect(fnv1a(q.packed) == big["packed_fnv1a"] as! String)
        #expect(fnv1a(n.codes) == big["absmax_fnv1a"] as! String)
        #expect(fnv1a(floatBytes(n.absmax)) == big["nested_absmax_fnv1a"] as! String)
        #expect(n.offset.bitPattern == UInt32(big["offset_bits"] as! String, radix: 16)!)
        #expect(q.bitsandbytesQuantStateJSON() == big["quant_state"] as! String)
    }

    @Test("bad input throws a clear error instead of crashing")
    func badInput() {
        #expect(throws: QuantError.shapeMismatch(name: nil, shape: [3, 3], count: 8)) {
            try quantize4bit([Float](repeating: 1, count: 8), shape: [3, 3], format: .nf4)
        }
        #expect(throws: QuantError.invalidBlockSize(48, allowed: bitsandbytesBlockSizes)) {
            try quantize4bit([Float](repeating: 1, count: 96), format: .nf4, blockSize: 48)
        }
        #expect(throws: QuantError.self) {
            try quantize4bit([0.1], format: .nf4, sourceDType: .bfloat16)
        }
        #expect(QuantError.invalidBlockSize(48, allowed: [64]).description.contains("use one of 64"))
    }

    @Test("empty weight quantises to nothing")
    func empty() throws {
        let q = try quantize4bit([], shape: [0, 4], format: .fp4, doubleQuant: true)
        #expect(q.packed.isEmpty)
        #expect(dequantize4bit(q).isEmpty)
    }
}
