// Pins the block layouts, code tables and format names (ggml-style size assertions).
import Testing
import TensorCore

struct LayoutTests {
    @Test("layout sizes")
    func sizes() {
        #expect(QuantLayoutAssertions.hold)
        #expect(MemoryLayout<PackedNibbles>.size == 1)
        let l = FourBitLayout(count: 2432 * 9728, blockSize: 64)
        #expect(l.packedByteCount == 2432 * 9728 / 2)
        #expect(l.blockCount == 369_664)
        #expect(l.nestedBlockCount == 1444)
        #expect(l.storageBytes() == 11_829_248 + 369_664 * 4)
        #expect(l.nestedStorageBytes == 11_829_248 + 369_664 + 1444 * 4 + 4)
        let odd = FourBitLayout(count: 1551, blockSize: 64)
        #expect(odd.packedByteCount == 776 && odd.blockCount == 25 && odd.elementCount(ofBlock: 24) == 15)
        #expect(Int8RowLayout(rows: 3, cols: 5).storageBytes == 15 + 12)
    }

    @Test("packing: first element in the high nibble")
    func packing() {
        let p = PackedNibbles(high: 0xA, low: 0x3)
        #expect(p.byte == 0xA3 && p.high == 0xA && p.low == 0x3)
    }

    @Test("code tables: bounds are the float32 midpoints of the sorted codes; FP4 order; dynamic map sorted")
    func tables() {
        for book in [FourBitCodebook.nf4, .fp4] {
            let sorted = book.sortedToCode.map { book.values[Int($0)] }
            #expect(sorted == sorted.sorted())
            for i in 0..<15 { #expect(book.bounds[i] == (sorted[i] + sorted[i + 1]) / 2) }
            #expect(Set(book.sortedToCode).count == 16)
            // Ties go to the lower sorted code; NaN to the top one.
            for i in 0..<15 { #expect(book.code(ofScaled: book.bounds[i]) == book.sortedToCode[i]) }
            #expect(book.code(ofScaled: .nan) == book.sortedToCode[15])
        }
        #expect(FourBitCodebook.fp4.values.map { $0 * 12 } == [0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3])
        #expect(FourBitCodebook.nf4.values.first == -1 && FourBitCodebook.nf4.values.last == 1)
        #expect(DynamicMap8.signed == DynamicMap8.signed.sorted() && DynamicMap8.signed.count == 256)
        #expect(DynamicMap8.signed.last == 1 && DynamicMap8.signed.contains(0))
    }

    @Test("format names")
    func names() {
        #expect(QuantSpec(name: "nf4") == .nf4(blockSize: 64))
        #expect(QuantSpec(name: "int4-asym", blockSize: 128) == .int4(.asymmetric, blockSize: 128))
        #expect(QuantSpec(name: "int4") == .int4(.symmetric, blockSize: 64))
        #expect(QuantSpec(name: "INT4-Symmetric") == .int4(.symmetric, blockSize: 64))
        #expect(QuantSpec(name: "int8")?.blockSize == nil)
        #expect(QuantSpec(name: "q4_k") == nil)
        #expect(QuantSpec.fp4(blockSize: 128).description == "fp4/128")
        // The stored names: what manifests hold (their JSON is the raw value) and what `description` prints.
        #expect(QuantFormat.allCases.map(\.rawValue) == ["nf4", "fp4", "int4", "int4-asym", "int8"])
        #expect(QuantFormat.allCases.allSatisfy { "\($0)" == $0.rawValue })
        for f in QuantFormat.allCases { #expect(QuantSpec(f, blockSize: 32).format == f) }
        #expect(QuantFormat(name: "int4-sym") == .int4)
        #expect(QuantFormat(rawValue: "int4-sym") == nil)
    }
}
