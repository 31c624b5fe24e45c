// `hprune backends`: the compute backends this build has, whether each can run here, and why not. On a GPU
// machine listing CUDA opens the GPU and runs its start-up self-check; ops it disabled are listed under it.
import ArgumentParser
import CUDABackend
import Foundation
import Stages
import TensorCore

struct Backends: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the compute backends, their CPU/GPU features, and why one is unavailable.",
        discussion: "Example: hprune backends --json")

    @Flag(help: "Print JSON: [{\"name\", \"available\", \"reason\", \"features\"}] (cuda adds \"disabled_ops\").") var json = false

    func run() async throws {
        let infos = Self.all()
        let disabled = Self.cudaDisabledOps()
        if json {
            Terminal.printJSON(infos.map { i -> [String: Any] in
                var o: [String: Any] = ["name": i.name, "available": i.available, "reason": i.reason ?? NSNull(), "features": i.features]
                if i.name == "cuda" { o["disabled_ops"] = disabled }
                return o
            })
            return
        }
        for i in infos {
            print("\(i.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(i.available ? "available  " : "unavailable") "
                  + (i.available ? i.features.joined(separator: " ") : i.reason ?? ""))
            if i.name == "cuda" {
                for (op, why) in disabled.sorted(by: { $0.key < $1.key }) { print("           disabled \(op): \(why)") }
            }
        }
    }

    /// Every backend of the build: cuda, cpu, reference.
    static func all() -> [BackendInfo] { BackendRegistry.all.infos() }

    /// Ops the CUDA start-up self-check disabled, with the reason (empty where CUDA did not open).
    static func cudaDisabledOps() -> [String: String] {
        guard case .success(let o) = CUDARuntime.open() else { return [:] }
        return Dictionary(uniqueKeysWithValues: o.report.failedOps.map { ($0.rawValue, o.report.failures[$0]!) })
    }
}
