// `hprune selftest`: every op of a backend against the scalar reference, at the start-up sizes (1, 7, 65) or, with
// --full, the whole conformance suite's sizes. For CUDA this is the start-up self-check run on demand; an op that
// fails is printed with its first mismatch and the command exits 1.
import ArgumentParser
import BackendConformance
import CUDABackend
import Foundation
import Stages
import TensorCore

struct SelfTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check every op of a backend against the scalar reference (the CUDA start-up self-check on demand).",
        discussion: """
            Exit 0 when every op matches, 1 when one fails or the backend cannot run here, 2 for an unknown backend.
            Examples:
              hprune selftest --backend cuda
              hprune selftest --backend cuda --full --json
              hprune selftest --backend cpu
            """)

    @Option(help: "cuda | cpu | reference.") var backend = "cuda"
    @Flag(help: "Run the conformance suite's sizes (1, 7, 63, 65, 1000 and 17×1) instead of the start-up sizes.") var full = false
    @Flag(help: "Print JSON: {\"backend\", \"sizes\", \"passed\", \"failed\": {op: problem}, \"seconds\", \"features\"}.") var json = false

    func run() async throws {
        let registry = BackendRegistry.all
        guard let provider = registry.providers.first(where: { $0.name == backend }) else {
            Terminal.err("error: \(RegistryError.unknown(backend, known: registry.providers.map(\.name)))")
            throw Exit.invalid
        }
        let info = provider.info()
        guard info.available else {
            Terminal.err("error: backend '\(backend)' cannot run here: \(info.reason ?? "unknown reason")")
            throw Exit.failed
        }
        let be: any Backend
        do { be = try provider.make() } catch {
            Terminal.err("error: \(error)")
            throw Exit.failed
        }
        let sizes = full ? SelfCheck.fullSizes : SelfCheck.startupSizes
        let log: ((Op, String?) -> Void)? = json ? nil : { op, problem in
            Terminal.err(problem == nil ? "ok    \(op)" : "FAIL  \(op): \(problem!)")
        }
        if !json { Terminal.err("selftest \(backend) (\(info.features.joined(separator: " "))): \(sizes.count) sizes") }
        // Ops the CUDA start-up check disabled fail here again, with the reason they were disabled.
        let report = SelfCheck.run(be, sizes: sizes, progress: log)
        if json {
            Terminal.printJSON([
                "backend": backend, "sizes": sizes.map(\.description), "passed": report.passed.map(\.rawValue),
                "failed": Dictionary(uniqueKeysWithValues: report.failedOps.map { ($0.rawValue, report.failures[$0]!) }),
                "seconds": report.seconds, "features": info.features,
            ] as [String: Any])
        } else {
            print("\(backend): \(report.passed.count)/\(Op.allCases.count) ops match the reference"
                  + (report.failures.isEmpty ? "" : "; failed: \(report.failedOps.map(\.rawValue).joined(separator: ", "))")
                  + String(format: " (%.1f s)", report.seconds))
        }
        if !report.failures.isEmpty { throw Exit.failed }
    }
}
