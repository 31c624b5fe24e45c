// `hprune backends`: the compute backends this build has, whether each can run here, and why not. On a GPU
// machine listing CUDA opens the GPU and runs its start-up self-check; ops it disabled are listed under it. For the
// CPU: the kernel family chosen per op and every family's feature score. For each available backend: the kernel
// families it computes with here and their numerics versions, which enter the action keys of backend stages.
import ArgumentParser
import CPUBackend
import CUDABackend
import Foundation
import Stages
import TensorCore

struct Backends: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the compute backends, their CPU/GPU features, and why one is unavailable.",
        discussion: "Example: hprune backends --json")

    @Flag(help: "Print JSON: [{\"name\", \"available\", \"reason\", \"features\", \"numerics\"}] (cpu adds \"kernels\", cuda \"disabled_ops\").")
    var json = false

    func run() async throws {
        let infos = Self.all()
        let k = CPUKernelReport.current()
        let disabled = Self.cudaDisabledOps()
        if json {
            Terminal.printJSON(infos.map { i -> [String: Any] in
                var d: [String: Any] = ["name": i.name, "available": i.available, "reason": i.reason ?? NSNull(), "features": i.features,
                                        "numerics": Self.numerics(i).map { $0.versions } ?? NSNull()]
                if i.name == "cpu" { d["kernels"] = Self.kernelsJSON(k) }
                if i.name == "cuda" { d["disabled_ops"] = disabled }
                return d
            })
            return
        }
        for i in infos {
            print("\(i.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(i.available ? "available  " : "unavailable") "
                  + (i.available ? i.features.joined(separator: " ") : i.reason ?? ""))
            if i.name == "cuda" {
                for (op, why) in disabled.sorted(by: { $0.key < $1.key }) { print("           disabled \(op): \(why)") }
            }
            if let n = Self.numerics(i) {
                print("           numerics (part of action keys): " + n.map(\.description).joined(separator: ", "))
            }
        }
        print("")
        print("cpu kernels: family \(k.selected) (HPRUNE_ISA=scalar|avx2|avx512|avx512_bf16|amx|amx_emu forces one)")
        print("  cpu: \(k.vendor.isEmpty ? "unknown vendor" : k.vendor) family \(k.cpuFamily) model \(k.model); "
              + "L1d \(k.l1dBytes >> 10) KiB, L2 \(k.l2Bytes >> 10) KiB, L3 \(k.l3Bytes >> 20) MiB (\(k.cacheSource)); blocking: \(k.blocking)")
        for (op, fam) in k.ops { print("  \(op.padding(toLength: 20, withPad: " ", startingAt: 0)) \(fam)") }
        print("  families (score; * = eligible for the automatic choice):")
        for f in k.families {
            let state = f.supported ? "score \(f.score)\(f.autoEligible ? "*" : " ")" : "unavailable"
            print("    \(f.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(state)" + (f.note.map { "  \($0)" } ?? ""))
        }
    }

    static func kernelsJSON(_ k: CPUKernelReport) -> [String: Any] {
        ["selected": k.selected,
         "ops": Dictionary(uniqueKeysWithValues: k.ops.map { ($0.op, $0.family) }),
         "families": k.families.map { f -> [String: Any] in
             ["name": f.name, "supported": f.supported, "score": f.score, "auto_eligible": f.autoEligible,
              "note": f.note ?? NSNull()]
         },
         "cpu": ["vendor": k.vendor, "family": k.cpuFamily, "model": k.model, "l1d_bytes": k.l1dBytes,
                 "l2_bytes": k.l2Bytes, "l3_bytes": k.l3Bytes, "cache_source": k.cacheSource, "blocking": k.blocking]]
    }

    /// The kernel families an available backend computes with here, with their numerics versions.
    static func numerics(_ info: BackendInfo) -> [NumericsFamily]? {
        info.available ? try? BackendRegistry.all.numerics(info.name) : nil
    }

    /// Every backend of the build: cuda, cpu, reference.
    static func all() -> [BackendInfo] { BackendRegistry.all.infos() }

    /// Ops the CUDA start-up self-check disabled, with the reason (empty where CUDA did not open).
    static func cudaDisabledOps() -> [String: String] {
        guard case .success(let o) = CUDARuntime.open() else { return [:] }
        return Dictionary(uniqueKeysWithValues: o.report.failedOps.map { ($0.rawValue, o.report.failures[$0]!) })
    }
}
