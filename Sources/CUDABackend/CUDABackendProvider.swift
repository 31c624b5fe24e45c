// How the CUDA backend is found and vouched for: the provider opens GPU 0 once per process, runs the start-up
// self-check (every op at n = 1, 7, 65 against the reference), disables the ops that fail and says so on stderr.
// Without a driver, GPU, NVRTC or cuBLASLt it is "unavailable" with the reason, and everything else still works.
import BackendConformance
import Foundation
import TensorCore

/// The process-wide CUDA backend, opened and self-checked on first use.
public enum CUDARuntime {
    /// False until Tests/GPU/device-check.sh has passed on a GPU and its figures are in Docs/performance.md; while
    /// false, `hprune backends` marks the backend "unverified-on-gpu".
    public static let verifiedOnGPU = false

    public struct Opened: @unchecked Sendable {
        public let backend: CUDABackend
        public let report: SelfCheckReport
    }

    nonisolated(unsafe) private static var state: Result<Opened, Error>?
    private static let lock = NSLock()

    /// Opens device 0 and self-checks it (once); the error says why CUDA cannot be used here.
    public static func open() -> Result<Opened, Error> {
        lock.withLock {
            if let state { return state }
            let r = Result<Opened, Error> {
                let backend = CUDABackend(context: try CUDAContext())
                let report = SelfCheck.run(backend, sizes: SelfCheck.startupSizes)
                backend.disable(report.failures)
                for op in report.failedOps {
                    FileHandle.standardError.write(Data("warning: cuda: op \(op) failed the start-up self-check and is disabled: \(report.failures[op]!)\n".utf8))
                }
                return Opened(backend: backend, report: report)
            }
            state = r
            return r
        }
    }

    /// Why the backend is unavailable, phrased for `hprune backends`.
    public static func reason(_ error: Error) -> String {
        var why = "\(error)"
        if case CUDAError.libraryMissing(let name, _, _)? = error as? CUDAError, name == "libcuda.so.1" {
            why = "no NVIDIA driver: libcuda.so.1 was not found"
        }
        return why + "; the CUDA backend is unverified on a GPU (Tests/GPU/device-check.sh has not run yet)"
    }
}

/// Provider of the CUDA backend for `BackendRegistry`.
public struct CUDABackendProvider: BackendProvider {
    public init() {}
    public var name: String { "cuda" }

    /// Availability; on a machine with a GPU this opens it and runs the self-check (once per process).
    public func info() -> BackendInfo {
        switch CUDARuntime.open() {
        case .failure(let e):
            return BackendInfo(name: name, available: false, reason: CUDARuntime.reason(e))
        case .success(let o):
            let c = o.backend.context
            var features = [c.deviceName.replacingOccurrences(of: " ", with: "-"), "sm_\(c.arch)",
                            "nvrtc-\(c.compiler.version.0).\(c.compiler.version.1)", "cublasLt-\(c.cublas.version())",
                            "selfcheck=\(o.report.passed.count)/\(Op.allCases.count)"]
            if !o.report.failures.isEmpty { features.append("disabled=" + o.report.failedOps.map(\.rawValue).joined(separator: ",")) }
            if !CUDARuntime.verifiedOnGPU { features.append("unverified-on-gpu") }
            guard !o.report.passed.isEmpty else {
                return BackendInfo(name: name, available: false, reason: "every op failed the start-up self-check", features: features)
            }
            return BackendInfo(name: name, available: true, features: features)
        }
    }

    public func make() throws -> any Backend {
        switch CUDARuntime.open() {
        case .failure(let e): throw RegistryError.unavailable(name, reason: CUDARuntime.reason(e))
        case .success(let o): return o.backend
        }
    }

    /// The version of the GEMM path (identity `cuda.gemm`: cuBLASLt with CUBLAS_COMPUTE_32F, no TF32, the bias and
    /// GELU epilogues, SiLU as an extra pass). Bump it when its results change.
    public static let gemmNumericsVersion = 1

    /// tensorcore, `cuda.gemm`, every kernel family of `KernelFamily.all` (`cuda.<family>`), and what cuBLASLt's
    /// algorithm choice depends on: the GPU's architecture (`cuda.sm_<arch>`) and the cuBLASLt version
    /// (`cuda.cublaslt-<version>`), which may change the last bits of a GEMM. Opens the GPU (once per process).
    public func numerics() throws -> [NumericsFamily] {
        switch CUDARuntime.open() {
        case .failure(let e): throw RegistryError.unavailable(name, reason: CUDARuntime.reason(e))
        case .success(let o):
            let c = o.backend.context
            return [.tensorCore, NumericsFamily("cuda.gemm", Self.gemmNumericsVersion)]
                + KernelFamily.all.map { NumericsFamily("cuda." + $0.name, $0.numericsVersion) }
                + [NumericsFamily("cuda.sm_\(c.arch)", 1), NumericsFamily("cuda.cublaslt-\(c.cublas.version())", 1)]
        }
    }
}
