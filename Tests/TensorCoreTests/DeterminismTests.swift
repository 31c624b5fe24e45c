// Determinism: every op gives bit-identical results with 1 and 2 threads and across runs, at sizes large enough
// for the kernels to split the work (fixed reduction order is what makes artifact digests reproducible).
import CPUBackend
import Testing
import TensorCore

@Suite("Determinism across thread counts", .serialized)
struct DeterminismTests {
    @Test("every op: 1 thread, 2 threads and a repeat are bit-identical (default family, AMX emulated and real)")
    func threadsBitIdentical() throws {
        for family in [CPUBackend.Family.auto, .amxEmu, .amx] where family.isSupported {
            try threadsBitIdentical(CPUBackend(family: family))
        }
    }

    func threadsBitIdentical(_ cpu: CPUBackend) throws {
        let size = CaseSize(n: 4099, rows: 9)
        defer { CPUBackend.setThreadCount(nil) }
        CPUBackend.setThreadCount(2)
        #expect(CPUBackend.threadCount == 2, "this test needs a machine with at least 2 cores")
        for c in OpCases.all {
            CPUBackend.setThreadCount(1)
            let one = try c.run(cpu, size)
            CPUBackend.setThreadCount(2)
            let two = try c.run(cpu, size)
            let again = try c.run(cpu, size)
            #expect(mismatch(two, one, .exact) == nil, "\(cpu.family) \(c.label): \(mismatch(two, one, .exact) ?? "")")
            #expect(mismatch(again, two, .exact) == nil, "\(cpu.family) \(c.label) repeat: \(mismatch(again, two, .exact) ?? "")")
        }
    }
}
