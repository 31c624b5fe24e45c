// Holds the 8-bit quantisers and PyTorch's float32 sum emulation to bitsandbytes / PyTorch bit for bit.
import Testing
import TensorCore

struct Blockwise8Tests {
    static let fx = QuantFixtures.shared

    @Test("quantizeBlockwise8 matches bitsandbytes quantize_blockwise (codes, absmax, dequant)")
    func blockwise8() {
        for c in Self.fx.blockwise8 {
            let x = Self.fx.floats(c["input"])
            let q = quantizeBlockwise8(x, blockSize: c["blocksize"] as! Int)
            #expect(q.codes == Self.fx.bytes(c["q"]), "\(c["name"]!) codes")
            #expect(bits(q.absmax) == bits(Self.fx.floats(c["absmax"])), "\(c["name"]!) absmax")
            #expect(bits(q.codeTable) == bits(Self.fx.floats(c["code"])), "dynamic map")
            #expect(bits(dequantizeBlockwise8(q)) == bits(Self.fx.floats(c["dequant"])), "\(c["name"]!) dequant")
        }
    }

    @Test("quantizeInt8Rows matches bitsandbytes int8_vectorwise_quant")
    func int8Rows() throws {
        for c in Self.fx.int8Rows {
            let shape = c["shape"] as! [Int]
            let x = Self.fx.floats(c["input"])
            let q = try x.withUnsafeBufferPointer { try quantizeInt8Rows($0, rows: shape[0], cols: shape[1]) }
            #expect(q.q.map { UInt8(bitPattern: $0) } == Self.fx.bytes(c["q"]), "\(c["name"]!) codes")
            #expect(bits(q.rowAbsmax) == bits(Self.fx.floats(c["row_absmax"])), "\(c["name"]!) row absmax")
            let back = dequantizeInt8Rows(q)
            for (a, b) in zip(back, x) { #expect(abs(a - b) <= q.rowAbsmax.max()! / 127) }
        }
    }

    @Test("int8 rows: zero row gives zeros, wrong shape throws")
    func int8Edges() throws {
        let q = try [0, 0, 1, -2].withUnsafeBufferPointer { try quantizeInt8Rows($0, rows: 2, cols: 2) }
        #expect(q.q == [0, 0, 64, -127])
        #expect(throws: QuantError.self) {
            try [Float](repeating: 0, count: 5).withUnsafeBufferPointer { try quantizeInt8Rows($0, rows: 2, cols: 2) }
        }
    }

    @Test("torchFloatSum / torchFloatMean match PyTorch's CPU float32 sum and mean, 1 and 2 threads")
    func torchSums() {
        for c in Self.fx.torchSums {
            let n = c["n"] as! Int
            let x: [Float]
            if let seed = c["lcg_seed"] as? Int { x = lcgWeights(count: n, seed: UInt64(seed)) } else {
                x = Self.fx.floats(c["input"])
            }
            x.withUnsafeBufferPointer { p in
                #expect(torchFloatSum(p).bitPattern == UInt32(c["sum_bits"] as! String, radix: 16)!, "sum n=\(n)")
                #expect(torchFloatMean(p).bitPattern == UInt32(c["mean_bits"] as! String, radix: 16)!, "mean n=\(n)")
            }
        }
    }
}
