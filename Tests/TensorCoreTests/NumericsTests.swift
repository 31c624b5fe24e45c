// Numerics identities: each backend names the kernel families it computes with here, with their versions — what
// action keys include (Scheduler/ActionKey.swift). The CPU family is the dispatched one (auto or forced), an AMX
// family also names the family it takes the rest from, and every family has a version.
import CPUBackend
import Testing
import TensorCore

@Suite struct NumericsTests {
    @Test func cpuNamesTheSharedKernelsAndTheFamilyInUse() {
        #expect(CPUBackend.numerics(family: .scalar) == [
            .tensorCore, NumericsFamily("cpu", CPUBackend.commonNumericsVersion),
            NumericsFamily("cpu.scalar", CPUBackend.Family.scalar.numericsVersion),
        ])
        // The automatic choice is the family `hprune backends` reports, and only that plain family.
        let auto = CPUBackend.numerics()
        let families = auto.map(\.identity).filter { $0.hasPrefix("cpu.") }
        #expect(families == ["cpu." + CPUKernelReport.current().selected], "\(auto)")
        // amx_emu runs on the best plain family, which it names too.
        let emu = CPUBackend.numerics(family: .amxEmu).map(\.identity)
        #expect(emu.contains("cpu.amx_emu") && emu.filter { $0.hasPrefix("cpu.") }.count == 2, "\(emu)")
        for f in CPUBackend.Family.allCases where f != .auto {
            #expect(f.numericsVersion >= 1 && f.numericsIdentity == "cpu." + f.rawValue)
        }
    }

    @Test func theRegistryGivesEachBackendsFamiliesSorted() throws {
        #expect(try BackendRegistry.standard.numerics("reference") == [.reference, .tensorCore])
        let cpu = try BackendRegistry.standard.numerics("cpu")
        #expect(cpu.map(\.identity) == cpu.map(\.identity).sorted() && cpu.versions["tensorcore"] == tensorCoreNumericsVersion)
        #expect(throws: RegistryError.self) { try BackendRegistry.standard.numerics("banana") }
    }
}
