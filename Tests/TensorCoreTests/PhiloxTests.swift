// Philox 4x32-10: Random123 known answers, the (seed, index) → normal mapping on every backend, and its statistics.
import CPUBackend
import Foundation
import Testing
import TensorCore

@Suite("Philox noise")
struct PhiloxTests {
    @Test("Random123 kat_vectors for philox4x32 10")
    func knownAnswers() {
        // Random123 tests/kat_vectors: counter (4 words), key (2 words) → output (4 words).
        let cases: [((UInt32, UInt32, UInt32, UInt32), (UInt32, UInt32), [UInt32])] = [
            ((0, 0, 0, 0), (0, 0), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ((.max, .max, .max, .max), (.max, .max), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            ((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0),
             [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
        ]
        for (ctr, key, want) in cases {
            let r = Philox.block(ctr, key: key)
            #expect([r.0, r.1, r.2, r.3] == want)
        }
    }

    @Test("deterministic log and sincos agree with libm to 1e-14")
    func detMath() {
        var u = 0x1p-33
        while u < 1 {
            #expect(abs(Philox.detLog(u) - log(u)) < 1e-14 * max(1, abs(log(u))))
            u *= 1.37
        }
        for i in 0...1000 {
            let t = Double(i) / 1000
            let (c, s) = Philox.detSinCos2Pi(t)
            #expect(abs(c - cos(2 * Double.pi * t)) < 1e-14 && abs(s - sin(2 * Double.pi * t)) < 1e-14, "t=\(t)")
        }
    }

    @Test("the CPU kernel gives the reference's numbers bit for bit, at any offset")
    func cpuMatchesReference() throws {
        let cpu = CPUBackend(), ref = ReferenceBackend()
        for (seed, offset, n) in [(UInt64(0), UInt64(0), 1), (7, 1, 7), (42, 2, 63), (1 << 40, 3, 1000), (5, .max - 2, 9)] {
            let a = try cpu.floats(try cpu.randomNormal([n], seed: seed, offset: offset))
            let b = try ref.floats(try ref.randomNormal([n], seed: seed, offset: offset))
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "seed \(seed) offset \(offset)")
        }
        // A window of a stream equals the stream read from that offset.
        let whole = try cpu.floats(try cpu.randomNormal([100], seed: 9, offset: 0))
        let tail = try cpu.floats(try cpu.randomNormal([95], seed: 9, offset: 5))
        #expect(Array(whole[5...]) == tail)
    }

    @Test("pinned values: a change to the mapping is caught")
    func pinned() {
        // Recorded from this implementation; the CUDA kernel must reproduce them.
        let v = (0..<4).map { Philox.normal(seed: 0, index: UInt64($0)) }
        #expect(v.allSatisfy { $0.isFinite })
        let r = Philox.words(seed: 0, block: 0)
        #expect([r.0, r.1, r.2, r.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        // lane 0 = sqrt(-2 ln u1) cos(2π u2) from (r0, r1), recomputed with libm in f64.
        let u1 = (Double(r.0) + 0.5) * 0x1p-32, u2 = (Double(r.1) + 0.5) * 0x1p-32
        #expect(abs(Double(v[0]) - (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)) < 1e-6)
        #expect(abs(Double(v[1]) - (-2 * log(u1)).squareRoot() * sin(2 * Double.pi * u2)) < 1e-6)
    }

    @Test("standard normal statistics over 200k samples")
    func statistics() throws {
        let cpu = CPUBackend()
        let x = try cpu.floats(try cpu.randomNormal([200_000], seed: 123, offset: 0)).map(Double.init)
        let mean = x.reduce(0, +) / Double(x.count)
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count)
        let within1 = Double(x.filter { abs($0) < 1 }.count) / Double(x.count)
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.01)
        #expect(abs(within1 - 0.6827) < 0.005)
    }
}
