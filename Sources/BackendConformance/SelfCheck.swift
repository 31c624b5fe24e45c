// The backend self-check: every conformance case on a backend under test against the scalar reference, at the
// start-up sizes (1, 7, 65) or the full conformance sizes. An op whose case throws or misses its tolerance is
// reported with the first problem; the CUDA backend disables such ops, `hprune selftest` prints them.
import Foundation
import TensorCore

/// What a self-check found.
public struct SelfCheckReport: Sendable {
    /// `Backend.name` of the backend checked.
    public var backend: String
    /// Ops whose every case matched the reference at every size.
    public var passed: [Op]
    /// Ops that failed, with the first problem ("n=7 rows=3: out[3]: got …").
    public var failures: [Op: String]
    public var seconds: Double

    /// Ops in `Op.allCases` order that failed.
    public var failedOps: [Op] { Op.allCases.filter { failures[$0] != nil } }
}

/// Runs conformance cases on a backend and compares them with `ReferenceBackend`.
///
///     let report = SelfCheck.run(cuda, sizes: SelfCheck.startupSizes)
///     for op in report.failedOps { print(op, report.failures[op]!) }
public enum SelfCheck {
    /// Small shapes for the start-up check (n = 1, 7, 65 with 3 leading rows).
    public static let startupSizes = [1, 7, 65].map { CaseSize(n: $0, rows: 3) }
    /// The conformance suite's sizes (as ConformanceTests).
    public static let fullSizes = [1, 7, 63, 65, 1000].map { CaseSize(n: $0, rows: 3) } + [CaseSize(n: 17, rows: 1)]

    /// Every case of `cases` at every size; ops with no case at all are failures too (never silently trusted).
    public static func run(_ backend: any Backend, sizes: [CaseSize], cases: [OpCase] = OpCases.all,
                           progress: ((Op, String?) -> Void)? = nil) -> SelfCheckReport {
        let start = Date()
        let reference = ReferenceBackend()
        var failures: [Op: String] = [:]
        var checked = Set<Op>()
        for c in cases {
            checked.insert(c.op)
            guard failures[c.op] == nil else { continue }
            var problem: String?
            for size in sizes where problem == nil {
                do {
                    let want = try c.run(reference, size)
                    let got = try c.run(backend, size)
                    if let m = mismatch(got, want, c.tolerance, perOutput: c.perOutput) { problem = "\(c.label) at \(size): \(m)" }
                } catch {
                    problem = "\(c.label) at \(size): \(error)"
                }
            }
            if let problem { failures[c.op] = problem }
            progress?(c.op, problem)
        }
        for op in Op.allCases where !checked.contains(op) { failures[op] = "no conformance case covers this op" }
        return SelfCheckReport(backend: backend.name, passed: Op.allCases.filter { failures[$0] == nil }, failures: failures,
                               seconds: Date().timeIntervalSince(start))
    }
}
