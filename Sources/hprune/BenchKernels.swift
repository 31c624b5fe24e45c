// `hprune bench kernels`: GEMM (f32, bf16), fused attention and W4A16 GEMM throughput, optionally against
// PyTorch in the same run (interleaved, same thread count). Build with `-c release` for meaningful numbers.
import ArgumentParser
import Benchmarks
import Foundation

struct BenchKernels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "GEMM / attention / W4A16 throughput of the CPU kernels (optionally vs PyTorch, same run).",
        discussion: """
            Examples:
              hprune bench kernels
              hprune bench kernels --json --compare-torch /tmp/ref/bin/python --threads 2
            JSON: [{"name", "dtype", "shape", "threads", "gflops", "reference_gflops", "ratio", …}]
            """)

    @Flag(help: "Print a JSON array of records.") var json = false
    @Option(name: .customLong("compare-torch"), help: ArgumentHelp("A Python with torch to time the same shapes.", valueName: "python"))
    var compareTorch: String?
    @Option(help: "Threads (0 = one per core).") var threads = 0
    @Option(help: "Timed repetitions per case (the median is reported).") var repetitions = 7
    @Option(help: "Only cases whose name, dtype or shape contains this text.") var filter: String?
    @Option(help: "cpu (the C kernels) or cuda (GEMM, attention, W4A16 GEMV on the GPU; PyTorch on the same GPU).")
    var backend = "cpu"

    func validate() throws {
        guard threads >= 0 else { throw ValidationError("--threads must be ≥ 0") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be ≥ 1") }
    }

    func run() async throws {
        if backend == "cuda" {
            do {
                let records = try CUDAKernelBench.run(python: compareTorch, repetitions: repetitions, filter: filter,
                                                      log: json ? nil : { Terminal.err($0) })
                if json { Terminal.printJSON(records) } else {
                    for r in records { print(r.keys.sorted().map { "\($0)=\(r[$0]!)" }.joined(separator: " ")) }
                }
            } catch {
                Terminal.err("error: \(error)")
                throw Exit.failed
            }
            return
        }
        guard backend == "cpu" else { throw ValidationError("--backend must be cpu or cuda, got '\(backend)'") }
        var log: (@Sendable (String) -> Void)?
        if !json { log = { @Sendable line in Terminal.err(line) } }
        let options = KernelBenchOptions(threads: threads, comparePython: compareTorch, repetitions: repetitions,
                                         filter: filter, log: log)
        let results: [KernelBenchResult]
        do { results = try runKernelBench(options) } catch {
            Terminal.err("error: \(error)")
            throw Exit.failed
        }
        print(json ? kernelBenchJSON(results) : formatKernelBenchTable(results))
    }
}
