// Group-wise int4 (our own format): exact codes on hand-made groups, error bounds on random weights, edge cases.
import Testing
import TensorCore

struct Int4Tests {
    @Test("symmetric: scale = absmax/7, nibble = q + 8, ties to even")
    func symmetricCodes() throws {
        // One group of 4: absmax 7 -> scale 1; 2.5 rounds to 2 (even), -3.5 to -4.
        let q = try quantizeInt4([7, 2.5, -3.5, 0], scheme: .symmetric, groupSize: 4)
        #expect(q.scales == [1])
        #expect(q.packed == [PackedNibbles(high: 15, low: 10).byte, PackedNibbles(high: 4, low: 8).byte])
        #expect(dequantizeInt4(q) == [7, 2, -4, 0])
    }

    @Test("asymmetric: range holds 0, integer zero point, odd count padded with the zero")
    func asymmetricCodes() throws {
        // Group [0, 15] -> scale 1, zero 0; group [-3, 12] -> scale 1, zero 3; last group [5] alone.
        let w: [Float] = [0, 15, 7, 3, -3, 12, 0, 1, 5]
        let q = try quantizeInt4(w, scheme: .asymmetric, groupSize: 4)
        #expect(q.scales == [1, 1, Float(5) / 15])
        #expect(q.zeroPoints == [0, 3, 0])
        #expect(dequantizeInt4(q).prefix(8) == [0, 15, 7, 3, -3, 12, 0, 1])
        #expect(q.packed.count == 5 && PackedNibbles(byte: q.packed[4]).low == 0)
    }

    @Test("random weights round-trip within half a step", arguments: [Int4Scheme.symmetric, .asymmetric],
          [64, 128])
    func roundTrip(_ scheme: Int4Scheme, _ group: Int) throws {
        let w = lcgWeights(count: 37 * 50, seed: 3)
        let q = try quantizeInt4(w, shape: [37, 50], scheme: scheme, groupSize: group)
        #expect(q.layout.blockCount == (37 * 50 + group - 1) / group)
        let back = dequantizeInt4(q)
        for i in 0..<w.count {
            #expect(abs(back[i] - w[i]) <= q.scales[i / group] * 0.5 + 1e-6)
        }
    }

    @Test("all-zero groups decode to zero; bad shape or group size throws")
    func edges() throws {
        for scheme in [Int4Scheme.symmetric, .asymmetric] {
            let q = try quantizeInt4([Float](repeating: 0, count: 10), scheme: scheme, groupSize: 4)
            #expect(dequantizeInt4(q) == [Float](repeating: 0, count: 10))
            #expect(throws: QuantError.self) { try quantizeInt4([1, 2, 3], shape: [2, 2], scheme: scheme) }
            #expect(throws: QuantError.self) { try quantizeInt4([1, 2, 3], scheme: scheme, groupSize: 3) }
        }
    }
}

struct QuantizeWeightTests {
    @Test("quantizeWeight covers every format and round-trips within each format's error",
          arguments: [QuantSpec.nf4(blockSize: 64), .fp4(blockSize: 128), .int4(.symmetric, blockSize: 64),
                      .int4(.asymmetric, blockSize: 128), .int8])
    func everyFormat(_ format: QuantSpec) throws {
        let w = lcgWeights(count: 24 * 128, seed: 11)
        let q = try quantizeWeight(w, shape: [24, 128], format: format, doubleQuant: true)
        #expect(q.spec == format)
        let back = q.dequantized()
        let maxErr = zip(back, w).map { abs($0 - $1) }.max()!
        #expect(maxErr < (format == .int8 ? 0.005 : 0.1), "\(format): max error \(maxErr)")
        #expect(q.storageBytes < w.count * 4 / (format == .int8 ? 3 : 6))
    }

    @Test("quantizeWeight: bf16 source must be bf16 values; shape must match")
    func errors() {
        #expect(throws: QuantError.self) { try quantizeWeight([1, 2, 3], shape: [2, 2], format: .int8) }
        #expect(throws: QuantError.notRepresentable(index: 0, value: 0.1, dtype: .bfloat16)) {
            try quantizeWeight([0.1, 0.5], shape: [2], format: .nf4(blockSize: 64), sourceDType: .bfloat16)
        }
    }
}
