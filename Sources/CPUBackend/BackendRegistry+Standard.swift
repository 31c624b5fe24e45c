// The standard backend list of this build: CPU first, then the scalar reference. The CUDA backend (a later issue)
// adds its provider here, before CPU, so `auto` prefers it where it is available.
import TensorCore

/// Provider of the C-kernel CPU backend (always available; features from cpuid).
public struct CPUBackendProvider: BackendProvider {
    public init() {}
    public var name: String { "cpu" }
    public func info() -> BackendInfo {
        BackendInfo(name: name, available: true,
                    features: CPUBackend.cpuFeatures + ["threads=\(CPUBackend.threadCount)"])
    }
    public func make() throws -> any Backend { CPUBackend() }
    /// The families `make()`'s backend dispatches to in this process (`CPUBackend.numerics()`).
    public func numerics() throws -> [NumericsFamily] { CPUBackend.numerics() }
}

extension BackendRegistry {
    /// Every backend this build knows, in order of preference for `auto`.
    public static var standard: BackendRegistry { BackendRegistry([CPUBackendProvider(), ReferenceBackendProvider()]) }

    /// The standard backends with their availability and features (`hprune backends`).
    public static func available() -> [BackendInfo] { standard.infos() }
}
