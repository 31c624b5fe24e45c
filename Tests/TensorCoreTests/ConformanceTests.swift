// Conformance harness (ggml test-backend-ops style): every op on every available backend against the reference,
// at sizes 1, 7, 63, 65, 1000 and non-tile-multiple shapes, with a tolerance per op group.
import BackendConformance
import CPUBackend
import Testing
import TensorCore

/// The backends under test besides the reference (the CUDA backend adds itself here when available). The AMX kernel
/// family runs through its emulation twin on every CPU, and on real tiles where the CPU has AMX.
let backendsUnderTest: [any Backend] = {
    let amx = CPUBackend.Family.amx.isSupported
    print("[ConformanceTests] AMX family: emulation twin (amx_emu)" + (amx ? " and real tiles (amx)" : "; no usable AMX on this CPU"))
    return [CPUBackend(), CPUBackend(kernels: .scalarTwins), CPUBackend(family: .amxEmu)]
        + (amx ? [CPUBackend(family: .amx)] : [])
}()

/// Sizes every case runs at.
let conformanceSizes = [1, 7, 63, 65, 1000].map { CaseSize(n: $0, rows: 3) } + [CaseSize(n: 17, rows: 1)]

@Suite("Conformance: every op on every backend vs the reference")
struct ConformanceTests {
    @Test("every op has a conformance case")
    func everyOpCovered() {
        let covered = Set(OpCases.all.map(\.op))
        let missing = Op.allCases.filter { !covered.contains($0) }
        #expect(missing.isEmpty, "ops without a conformance case: \(missing)")
    }

    @Test("every backend under test claims every op it is tested on")
    func supportsMatches() {
        for be in backendsUnderTest { for c in OpCases.all { #expect(be.supports(c.op), "\(be.name) \(c.op)") } }
    }

    @Test("op matches the reference", arguments: OpCases.all.map(\.label))
    func opMatchesReference(label: String) throws {
        let c = OpCases.all.first { $0.label == label }!
        let ref = ReferenceBackend()
        for size in conformanceSizes {
            let want = try c.run(ref, size)
            for be in backendsUnderTest where be.supports(c.op) {
                let got = try c.run(be, size)
                let problem = mismatch(got, want, c.tolerance, perOutput: c.perOutput)
                #expect(problem == nil, "\(be.name)/\(be is CPUBackend ? (be as! CPUBackend).kernels.rawValue + "/" + (be as! CPUBackend).family.rawValue : "") \(c.label) at \(size): \(problem ?? "")")
            }
        }
    }
}
