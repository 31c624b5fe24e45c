// `hprune backends`: the compute backends this build has, whether each can run here, and why not.
import ArgumentParser
import CPUBackend
import Foundation
import TensorCore

struct Backends: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the compute backends, their CPU/GPU features, and why one is unavailable.",
        discussion: "Example: hprune backends --json")

    @Flag(help: "Print JSON: [{\"name\", \"available\", \"reason\", \"features\"}].") var json = false

    func run() async throws {
        let infos = Self.all()
        if json {
            Terminal.printJSON(infos.map { i -> [String: Any] in
                ["name": i.name, "available": i.available, "reason": i.reason ?? NSNull(), "features": i.features]
            })
            return
        }
        for i in infos {
            print("\(i.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(i.available ? "available  " : "unavailable") "
                  + (i.available ? i.features.joined(separator: " ") : i.reason ?? ""))
        }
    }

    /// The standard registry (cpu, reference) plus the CUDA entry.
    static func all() -> [BackendInfo] {
        BackendRegistry.available() + [CUDAProbe.info()]
    }
}

/// Looks for the NVIDIA driver without linking it. This build has no CUDA kernels, so the entry is never
/// available; the reason says what a user would have to change.
enum CUDAProbe {
    static func info() -> BackendInfo {
        guard let handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) else {
            return BackendInfo(name: "cuda", available: false,
                               reason: "no NVIDIA driver: libcuda.so.1 was not found (and this build has no CUDA kernels yet)")
        }
        defer { dlclose(handle) }
        return BackendInfo(name: "cuda", available: false,
                           reason: "the NVIDIA driver is present, but this build of hprune has no CUDA backend yet; use `cpu`")
    }
}
