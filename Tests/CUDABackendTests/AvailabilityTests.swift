// The CUDA backend on a machine without a usable GPU: reported unavailable with the reason (and as unverified on
// a GPU), `make` refuses with that reason, and the self-check harness itself catches wrong and throwing ops.
import BackendConformance
import CPUBackend
import CUDABackend
import Foundation
import Testing
import TensorCore

/// True when the NVIDIA driver library cannot be loaded here.
let noDriver: Bool = {
    guard let h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) else { return true }
    dlclose(h)
    return false
}()

@Suite("CUDA availability and the self-check harness")
struct AvailabilityTests {
    @Test("without a driver: unavailable, with the reason and 'unverified on a GPU'", .enabled(if: noDriver))
    func unavailable() throws {
        let info = CUDABackendProvider().info()
        #expect(info.name == "cuda")
        #expect(!info.available)
        #expect(info.reason?.contains("libcuda.so.1") == true, "\(info.reason ?? "")")
        #expect(info.reason?.contains("unverified on a GPU") == true)
        #expect(throws: RegistryError.self) { _ = try CUDABackendProvider().make() }
    }

    @Test("without a driver: no numerics either; every kernel family has a numerics version", .enabled(if: noDriver))
    func numericsNeedTheGPU() {
        #expect(throws: RegistryError.self) { _ = try CUDABackendProvider().numerics() }
        #expect(KernelFamily.all.allSatisfy { $0.numericsVersion >= 1 } && CUDABackendProvider.gemmNumericsVersion >= 1)
    }

    @Test("the self-check passes a correct backend (CPU) at the start-up sizes")
    func cpuPasses() {
        let report = SelfCheck.run(CPUBackend(), sizes: SelfCheck.startupSizes)
        #expect(report.failures.isEmpty, "\(report.failures)")
        #expect(report.passed.count == Op.allCases.count)
    }

    @Test("the self-check reports an op whose result is wrong, one that throws, and one with no case")
    func catchesFaults() {
        let wrong = OpCase(op: .gelu, label: "gelu (perturbed off the reference)", tolerance: .elementwise) { be, s in
            let y = try be.floats(try be.gelu(try be.tensor([0.5, -1, 2], shape: [3])))
            return ["y": be is ReferenceBackend ? y : y.map { $0 + 1e-3 }]
        }
        let throwing = OpCase(op: .silu, label: "silu (throws off the reference)", tolerance: .elementwise) { be, s in
            guard be is ReferenceBackend else { throw BackendError.unsupported(.silu, backend: be.displayName) }
            return ["y": try be.floats(try be.silu(try be.tensor([1], shape: [1])))]
        }
        let good = OpCases.all.first { $0.op == .scale }!
        let report = SelfCheck.run(CPUBackend(), sizes: SelfCheck.startupSizes, cases: [wrong, throwing, good])
        #expect(report.failures[.gelu]?.contains("y[0]") == true, "\(report.failures[.gelu] ?? "")")
        #expect(report.failures[.silu]?.contains("no CPU implementation") == true, "\(report.failures[.silu] ?? "")")
        #expect(report.failures[.scale] == nil)
        #expect(report.failures[.matmul] == "no conformance case covers this op")
        #expect(report.passed == [.scale])
    }
}

@Suite("CUDA on a GPU: the conformance suite (runs only where the driver loads)")
struct CUDADeviceTests {
    @Test("every op matches the reference at the full conformance sizes", .enabled(if: !noDriver))
    func conformance() throws {
        let be = try CUDABackendProvider().make()
        let report = SelfCheck.run(be, sizes: SelfCheck.fullSizes)
        #expect(report.failures.isEmpty, "\(report.failedOps.map { "\($0): \(report.failures[$0]!)" }.joined(separator: "\n"))")
    }
}
