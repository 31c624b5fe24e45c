// Tensor values, storage (heap and memory-mapped), 16-bit conversions and the backend registry.
import CPUBackend
import Foundation
import Testing
import TensorCore

@Suite("Tensor, storage, conversions, registry")
struct TensorTests {
    @Test("views share storage: reshape and first-axis rows")
    func views() throws {
        let be = ReferenceBackend()
        let x = try be.tensor((0..<12).map(Float.init), shape: [3, 4])
        #expect(try be.floats(x.rows(1..<3)) == (4..<12).map(Float.init))
        #expect(x.reshaped([2, -1]).shape == [2, 6])
        #expect(x.rows(1..<2).reshaped([2, 2]).rowCount == 2)
        #expect(DType.nf4(blockSize: 64).byteCount(for: 7) == 4)
        #expect(DType.bf16.byteCount(for: 7) == 14)
        #expect(DType.nf4(blockSize: 64).description == "nf4/64" && DType.int4(groupSize: 128).blockSize == 128)
    }

    @Test("heap storage is 64-byte aligned and zeroed")
    func heap() throws {
        let s = try HostStorage(byteCount: 1000)
        #expect(Int(bitPattern: s.base) % 64 == 0)
        #expect(UnsafeRawBufferPointer(start: s.base, count: 1000).allSatisfy { $0 == 0 })
    }

    @Test("a mapped region at an unaligned offset reads the right bytes; a bad region names the file")
    func mapped() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-map-\(UUID()).bin").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values = (0..<5000).map { Float($0) * 0.5 }
        var data = Data([1, 2, 3])                                            // 3-byte header: unaligned floats
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        FileManager.default.createFile(atPath: path, contents: data)
        let s = try HostStorage(mapping: path, offset: 3 + 4 * 4096, length: 4 * 10)
        #expect(s.isReadOnly)
        let t = Tensor(storage: s, shape: [10], dtype: .f32)
        let ref = ReferenceBackend()
        #expect(try ref.floats(ref.cast(t, to: .f32)) == Array(values[4096..<4106]))
        do {
            _ = try HostStorage(mapping: path, offset: 10, length: 1 << 20)
            Issue.record("expected an error")
        } catch let e as BackendError {
            #expect(e.description.contains(path) && e.description.contains("outside the file"))
        }
        #expect(throws: BackendError.self) { _ = try HostStorage(mapping: path + ".missing", offset: 0, length: 4) }
    }

    @Test("f16 conversion matches Swift's Float16 (round to nearest even, subnormals, overflow)")
    func f16() {
        var r = Inputs(5)
        let special: [Float] = [0, -0, 65504, 65519.99, 65520, 1e6, 5.96e-8, 2.98e-8, 2.9802322e-8, 3e-8, 6.1e-5,
                                1.0009765, 1.00048828125, 1.00146484375, .infinity, -.infinity, .greatestFiniteMagnitude]
        for f in special + r.uniform(2000, -70000, 70000) + r.uniform(2000, -1e-4, 1e-4) {
            #expect(FloatBits.f16(f) == Float16(f).bitPattern, "\(f)")
            #expect(FloatBits.float(f16: FloatBits.f16(f)) == Float(Float16(f)), "\(f)")
        }
        #expect(FloatBits.float(f16: FloatBits.f16(.nan)).isNaN)
    }

    @Test("bf16 rounds to nearest even and keeps NaN")
    func bf16() {
        #expect(FloatBits.bf16(1.00390625) == 0x3F80)                 // tie → even (down)
        #expect(FloatBits.bf16(1.01171875) == 0x3F82)                 // tie → even (up)
        #expect(FloatBits.bf16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)                // just above the tie
        #expect(FloatBits.bf16(.infinity) == 0x7F80)
        #expect(FloatBits.bf16(3.4e38) == 0x7F80)                     // rounds up to inf
        #expect(FloatBits.float(bf16: FloatBits.bf16(.nan)).isNaN)
        #expect(FloatBits.float(bf16: 0xC040) == -3)
    }

    @Test("the conformance comparison detects a one-ulp difference when exactness is required")
    func comparator() {
        let a: [Float] = [1, 2, .nan], b: [Float] = [1, 2.0000002, .nan]
        #expect(mismatch(["x": a], ["x": a], .exact) == nil)
        #expect(mismatch(["x": b], ["x": a], .exact) != nil)
        #expect(mismatch(["x": b], ["x": a], .elementwise) == nil)
        #expect(mismatch(["x": [1.1]], ["x": [1]], .contraction) != nil)
    }

    @Test("registry lists cpu and reference with features; JSON has every key")
    func registry() throws {
        let infos = BackendRegistry.available()
        #expect(infos.map(\.name) == ["cpu", "reference"])
        #expect(infos.allSatisfy { $0.available && $0.reason == nil })
        #if arch(x86_64)
        #expect(infos[0].features.contains("sse2"))
        #endif
        let json = String(decoding: try JSONEncoder().encode(infos[1]), as: UTF8.self)
        #expect(json.contains("\"reason\":null") && json.contains("\"features\""))
        #expect(try BackendRegistry.standard.make("auto").name == "cpu")
        #expect(throws: RegistryError.self) { _ = try BackendRegistry.standard.make("tpu") }
        #expect(RegistryError.unknown("tpu", known: ["cpu"]).description.contains("choose one of: cpu, auto"))
    }
}
