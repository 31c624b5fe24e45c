// Writes a run into the ledger as it happens: the run when it starts, each stage as it finishes (with
// metrics, log tails and the canonical JSON of its action key), and the final status. Ledger failures are warnings: they never stop a run.
import ArtifactStore
import Foundation
import Scheduler
import YAMLSupport

final class RunRecorder: @unchecked Sendable {
    let store: ArtifactStore
    let workspace: Workspace
    let backend: String
    private(set) var runID = RunID("")
    private let lock = NSLock()

    init(store: ArtifactStore, workspace: Workspace, backend: String) {
        self.store = store
        self.workspace = workspace
        self.backend = backend
    }

    func begin() throws -> RunID {
        let recipe = workspace.recipe
        let read = { (f: String) in (try? String(contentsOfFile: f, encoding: .utf8)) ?? "" }
        var extended: [String: String] = [:]
        for f in recipe.files.dropFirst() { extended[f] = read(f) }
        let resolved = recipe.document.canonicalJSON
        let start = RunStart(recipePath: recipe.file, recipeName: recipe.name, recipeText: read(recipe.file),
                             extendedFiles: extended, recipeDigest: Digest.of(Data(resolved.utf8)).hex,
                             resolvedJSON: resolved, backend: backend, device: ProcessInfo.processInfo.hostName,
                             version: HPrune.version)
        do {
            runID = try store.ledger.beginRun(start)
        } catch {
            Terminal.err("error: cannot record the run in \(store.ledger.path): \(PlainError.describe(error))")
            throw Exit.failed
        }
        return runID
    }

    func handle(_ event: SchedulerEvent) {
        guard case .finished(let r, _, _) = event else { return }
        lock.withLock {
            let log = r.log ?? ""
            let (out, err) = Self.split(log)
            let execution = StageExecution(run: runID, stage: r.name, kind: r.kind, key: r.key ?? "", status: r.status,
                                           seconds: r.seconds, peakMemoryBytes: Int64(r.peakMemory), outputs: r.outputs,
                                           stdoutTail: out, stderrTail: err, error: r.error)
            do {
                try store.ledger.recordStage(execution)
                if let key = r.key, let canonical = r.canonical { try store.ledger.recordActionInput(key: key, canonical: canonical) }
                for m in r.metrics {
                    try store.ledger.recordMetric(run: runID, stage: r.name, name: m.name, value: m.value, unit: m.unit)
                }
            } catch {
                Terminal.err("warning: ledger: could not record stage '\(r.name)': \(error)")
            }
        }
    }

    func end(status: String) {
        do { try store.ledger.endRun(runID, status: RunStatus(rawValue: status) ?? .failed) } catch {
            Terminal.err("warning: ledger: could not close run \(runID): \(error)")
        }
    }

    /// The command kind logs `--- stdout ---` / `--- stderr ---` sections; anything else counts as stdout.
    static func split(_ log: String) -> (String, String) {
        guard let e = log.range(of: "--- stderr ---\n") else {
            return (log.replacingOccurrences(of: "--- stdout ---\n", with: ""), "")
        }
        let out = String(log[..<e.lowerBound]).replacingOccurrences(of: "--- stdout ---\n", with: "")
        return (out, String(log[e.upperBound...]))
    }
}
