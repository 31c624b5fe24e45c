// The scheduler: runs ready stages concurrently (up to `jobs`), reuses cached results by action key, records
// every action, and stops cleanly: on a failure (unless keep-going) or on cancellation (SIGINT) running stages
// are cancelled, later ones are not started, and nothing half-written is left (objects are written atomically,
// scratch directories are removed).
import ArtifactStore
import Foundation
import StageGraph


public struct StageResult: Sendable {
    public var name: String
    public var kind: String
    public var status: StageStatus
    public var key: String?
    /// The canonical JSON `key` hashes (what the ledger keeps for `diff` and `plan --why`).
    public var canonical: String?
    public var seconds: Double
    public var outputs: [String: Digest]
    public var error: String?
    public var log: String?
    public var metrics: [(name: String, value: Double, unit: String)]
    /// Peak resident memory of the process when the stage ended, in bytes.
    public var peakMemory: Int
}

public struct RunOptions: Sendable {
    public var jobs: Int
    public var keepGoing: Bool
    public var force: Set<String>
    public init(jobs: Int = ProcessInfo.processInfo.activeProcessorCount, keepGoing: Bool = false, force: Set<String> = []) {
        self.jobs = max(1, jobs)
        self.keepGoing = keepGoing
        self.force = force
    }
}

public enum SchedulerEvent: Sendable {
    case started(stage: String, kind: String, index: Int, total: Int)
    case finished(StageResult, index: Int, total: Int)
    /// Something the user should see even in quiet mode (e.g. a damaged cache entry).
    case warning(String)
}

public struct Scheduler: Sendable {
    public var graph: Graph
    public var kinds: [String: any ExecutableStageKind]
    public var store: ArtifactStore
    public var context: KeyContext
    /// Every model/dataset source, resolved and hashed.
    public var sources: [String: ArtifactRef]
    public var fileDependencies: [String: [String: String]]
    public var recipeDirectory: URL
    public var backend: String
    public var options: RunOptions
    public var isTerminal: Bool
    public var events: @Sendable (SchedulerEvent) -> Void
    public var output: @Sendable (String) -> Void
    /// Where stages that miss the cache run: nil runs them in this process; a `RemoteExecutor` (Slurm) submits
    /// each as a job that runs exactly that action against this store.
    public var remote: (any RemoteExecutor)?
    /// The `hprune _job` command line prefix that reopens this recipe and store (`StageContext.jobCommand`).
    public var jobCommand: [String]?

    public init(graph: Graph, kinds: [String: any ExecutableStageKind], store: ArtifactStore, context: KeyContext,
                sources: [String: ArtifactRef], fileDependencies: [String: [String: String]] = [:],
                recipeDirectory: URL, backend: String, options: RunOptions, isTerminal: Bool = false,
                events: @escaping @Sendable (SchedulerEvent) -> Void = { _ in },
                output: @escaping @Sendable (String) -> Void = { _ in }) {
        self.graph = graph
        self.kinds = kinds
        self.store = store
        self.context = context
        self.sources = sources
        self.fileDependencies = fileDependencies
        self.recipeDirectory = recipeDirectory
        self.backend = backend
        self.options = options
        self.isTerminal = isTerminal
        self.events = events
        self.output = output
    }

    /// Runs the graph; returns one result per stage in graph order.
    public func run() async -> [StageResult] {
        let stages = graph.stages
        let total = stages.count
        var results: [String: StageResult] = [:]
        var outputs: [String: [String: Digest]] = [:]
        var started: Set<String> = []
        var stopping = false

        await withTaskGroup(of: StageResult.self) { group in
            var running = 0
            func launchReady() {
                var progress = true
                while progress {
                    progress = false
                    for (index, stage) in stages.enumerated() where !started.contains(stage.name) {
                        if stopping { return }
                        let deps = stage.dependencies
                        if deps.contains(where: { d in results[d].map { $0.status != .ran && $0.status != .cached } ?? false }) {
                            started.insert(stage.name)
                            let failed = deps.filter { d in results[d].map { $0.status != .ran && $0.status != .cached } ?? false }
                            let r = StageResult(name: stage.name, kind: stage.kind.name, status: .skipped, key: nil, canonical: nil, seconds: 0,
                                                outputs: [:], error: "not run: depends on " + failed.joined(separator: ", "),
                                                log: nil, metrics: [], peakMemory: 0)
                            results[stage.name] = r
                            events(.finished(r, index: index + 1, total: total))
                            progress = true
                            continue
                        }
                        guard running < options.jobs, deps.allSatisfy({ results[$0] != nil }) else { continue }
                        started.insert(stage.name)
                        running += 1
                        let inputs = boundInputs(stage, upstream: outputs)
                        let digests = inputs.mapValues { $0.digest }
                        group.addTask {
                            await execute(stage, inputs: inputs, inputDigests: digests, index: index + 1, total: total)
                        }
                    }
                }
            }
            launchReady()
            while let r = await group.next() {
                running -= 1
                results[r.name] = r
                outputs[r.name] = r.outputs
                let index = (stages.firstIndex { $0.name == r.name } ?? 0) + 1
                events(.finished(r, index: index, total: total))
                if r.status == .cancelled || Task.isCancelled { stopping = true; group.cancelAll() }
                if r.status == .failed && !options.keepGoing { stopping = true; group.cancelAll() }
                launchReady()
            }
        }
        let cancelled = Task.isCancelled
        return stages.map { stage in
            results[stage.name] ?? StageResult(
                name: stage.name, kind: stage.kind.name, status: cancelled ? .cancelled : .skipped, key: nil, canonical: nil, seconds: 0,
                outputs: [:], error: cancelled ? "not run: the run was interrupted" : "not run: an earlier stage failed",
                log: nil, metrics: [], peakMemory: 0)
        }
    }

    /// The artifacts bound to `stage`'s input paths: sources, and the outputs of upstream stages already done
    /// (`upstream`: stage → port → digest); an input whose stage has not produced it yet is absent.
    func boundInputs(_ stage: StageNode, upstream: [String: [String: Digest]]) -> [String: ArtifactRef] {
        var inputs: [String: ArtifactRef] = [:]
        for b in stage.bindings {
            switch b.source {
            case .source(let n): inputs[b.path] = sources[n]
            case .stage(let s, let port):
                if let d = upstream[s]?[port] { inputs[b.path] = ArtifactRef(type: b.type, digest: d) }
            }
        }
        return inputs
    }

    /// Runs the one stage `name` whose upstream stages are already done (`upstream`: stage → port → digest),
    /// as a job of a remote executor does. The result is not sent to `events` as `.finished`.
    public func runSingle(_ name: String, upstream: [String: [String: Digest]]) async -> StageResult? {
        guard let index = graph.stages.firstIndex(where: { $0.name == name }) else { return nil }
        let stage = graph.stages[index]
        let inputs = boundInputs(stage, upstream: upstream)
        return await execute(stage, inputs: inputs, inputDigests: inputs.mapValues(\.digest), index: index + 1,
                             total: graph.stages.count)
    }

    /// Runs shard `index` of `count` of stage `name` (a `ShardableStageKind`) whose upstream stages are done.
    /// Nothing is recorded as the stage's action: the parts it keeps are found by the stage's own run later.
    public func runShard(_ name: String, upstream: [String: [String: Digest]], index: Int, count: Int) async throws {
        guard let stage = graph.stages.first(where: { $0.name == name }) else { throw StageFailure("no stage '\(name)'") }
        guard let kind = kinds[stage.kind.name] as? any ShardableStageKind else {
            throw StageFailure("stage kind '\(stage.kind.name)' cannot be split into shards")
        }
        let inputs = boundInputs(stage, upstream: upstream)
        guard let json = canonical(stage, inputDigests: inputs.mapValues(\.digest)) else {
            throw StageFailure("internal: an input of '\(name)' has no digest")
        }
        let work = store.root.appendingPathComponent("tmp").appendingPathComponent("shard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let ctx = StageContext(stage: stage, inputs: inputs, store: store, workDirectory: work,
                               recipeDirectory: recipeDirectory, seed: context.seed, backend: backend,
                               numerics: context.numerics,
                               progress: ProgressSink(stage: stage.name, isTerminal: isTerminal, emit: output),
                               recorder: StageRecorder(), actionKey: ActionKey.hash(json))
        try await kind.runShard(ctx, index: index, count: count)
    }

    /// The canonical JSON of `stage`'s action given its inputs' digests (by params path), or nil if one is missing.
    func canonical(_ stage: StageNode, inputDigests: [String: Digest]) -> String? {
        Planner.canonical(stage, context: context, files: fileDependencies[stage.name] ?? [:]) { endpoint in
            switch endpoint {
            case .source(let n): return sources[n].map { "sha256:" + $0.digest.hex }
            case .stage: return stage.bindings.first { $0.source == endpoint }.flatMap { inputDigests[$0.path] }.map { "sha256:" + $0.hex }
            }
        }
    }

    /// Runs stage `name` (upstream done) as one rank of a data-parallel group started by the stage itself: no
    /// lock, no cache look-up and no action record (the process that started the ranks holds the lock and records
    /// the action); returns what the kind returned (rank 0: the outputs, already in the store) and its recorder.
    public func runAsRank(_ name: String, upstream: [String: [String: Digest]], key: String,
                          progress: ProgressSink) async throws -> (outputs: [String: Digest], recorder: StageRecorder) {
        guard let stage = graph.stages.first(where: { $0.name == name }) else { throw StageFailure("no stage '\(name)'") }
        guard let kind = kinds[stage.kind.name] else { throw StageFailure("stage kind '\(stage.kind.name)' cannot run in this build") }
        let scratch = try store.makeStageDirectory()
        defer { scratch.remove() }
        let recorder = StageRecorder()
        let ctx = StageContext(stage: stage, inputs: boundInputs(stage, upstream: upstream), store: store,
                               workDirectory: scratch.url, recipeDirectory: recipeDirectory, seed: context.seed,
                               backend: backend, numerics: context.numerics, progress: progress, recorder: recorder, actionKey: key, jobCommand: jobCommand)
        return (try await kind.run(ctx), recorder)
    }

    /// Runs one stage, or reuses its cached outputs.
    func execute(_ stage: StageNode, inputs: [String: ArtifactRef], inputDigests: [String: Digest],
                 index: Int, total: Int) async -> StageResult {
        let clock = ContinuousClock.now
        let json = canonical(stage, inputDigests: inputDigests)
        func result(_ status: StageStatus, key: String?, outputs: [String: Digest] = [:], error: String? = nil,
                    log: String? = nil, recorder: StageRecorder? = nil) -> StageResult {
            let d = ContinuousClock.now - clock
            return StageResult(name: stage.name, kind: stage.kind.name, status: status, key: key, canonical: json,
                               seconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18,
                               outputs: outputs, error: error, log: log ?? nilIfEmpty(recorder?.logText), metrics: recorder?.metrics ?? [],
                               peakMemory: Self.peakResidentBytes())
        }
        guard let json else { return result(.failed, key: nil, error: "internal: an input of '\(stage.name)' has no digest") }
        let key = ActionKey.hash(json)
        guard let kind = kinds[stage.kind.name] else {
            return result(.failed, key: key, error: "stage kind '\(stage.kind.name)' cannot run in this build")
        }
        if !options.force.contains(stage.name), let hit = store.action(for: key),
           Set(hit.outputs.keys).isSuperset(of: stage.outputs.map(\.name)), verifyCachedOutputs(hit, stage: stage.name) {
            return result(.cached, key: key, outputs: hit.outputs)
        }
        if Task.isCancelled { return result(.cancelled, key: key, error: "interrupted") }
        events(.started(stage: stage.name, kind: stage.kind.name, index: index, total: total))
        let progress = ProgressSink(stage: stage.name, isTerminal: isTerminal, emit: output)

        if let remote {
            let recorder = StageRecorder()
            do {
                let status = try await remote.run(stage: stage, key: key, forced: options.force.contains(stage.name),
                                                  shardable: kind is any ShardableStageKind, progress: progress, recorder: recorder)
                guard let hit = store.action(for: key) else {
                    return result(.failed, key: key, error: "the job for '\(stage.name)' ended without recording action \(key.prefix(12))",
                                  recorder: recorder)
                }
                return result(status, key: key, outputs: hit.outputs, recorder: recorder)
            } catch is CancellationError {
                return result(.cancelled, key: key, error: "interrupted", recorder: recorder)
            } catch let failure as StageFailure {
                return result(Task.isCancelled ? .cancelled : .failed, key: key, error: failure.message,
                              log: failure.log.map { (recorder.logText.isEmpty ? "" : recorder.logText + "\n") + $0 }, recorder: recorder)
            } catch {
                return result(Task.isCancelled ? .cancelled : .failed, key: key, error: "\(error)", recorder: recorder)
            }
        }

        // One run per action key across processes and hosts: wait for whoever holds it, then look again.
        // A forced stage asked to run regardless, so it takes no lock (identical concurrent runs write identical,
        // content-addressed objects by atomic rename, which is safe).
        var lock: ActionLock?
        if !options.force.contains(stage.name) {
            do {
                lock = try await store.lockAction(key, what: "stage '\(stage.name)'", onWait: { owner in
                    progress.log("waiting for \(owner), which is running the same action")
                })
            } catch is CancellationError {
                return result(.cancelled, key: key, error: "interrupted")
            } catch {
                return result(.failed, key: key, error: "cannot lock action \(key.prefix(12)): \(error)")
            }
            if let hit = store.action(for: key), Set(hit.outputs.keys).isSuperset(of: stage.outputs.map(\.name)) {
                lock?.release()
                return result(.cached, key: key, outputs: hit.outputs)
            }
        }
        defer { lock?.release() }

        let recorder = StageRecorder()
        let scratch: StageDirectory
        do { scratch = try store.makeStageDirectory() } catch {
            return result(.failed, key: key, error: "cannot create a scratch folder in \(store.root.path)/tmp: \(PlainError.describe(error))")
        }
        defer { scratch.remove() }
        let work = scratch.url
        do {
            let ctx = StageContext(stage: stage, inputs: inputs, store: store, workDirectory: work,
                                   recipeDirectory: recipeDirectory, seed: context.seed, backend: backend,
                                   numerics: context.numerics, progress: progress, recorder: recorder, actionKey: key, jobCommand: jobCommand)
            let outs = try await kind.run(ctx)
            if Task.isCancelled { return result(.cancelled, key: key, error: "interrupted", recorder: recorder) }
            let missing = stage.outputs.map(\.name).filter { outs[$0] == nil }
            if !missing.isEmpty {
                return result(.failed, key: key, error: "internal: stage produced no '\(missing.joined(separator: "', '"))'")
            }
            let d = ContinuousClock.now - clock
            let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            try store.recordAction(ActionRecord(key: key, stage: stage.name, kind: stage.kind.name, outputs: outs,
                                                createdAt: Date(), seconds: seconds, extra: [:], canonical: json))
            return result(.ran, key: key, outputs: outs, recorder: recorder)
        } catch is CancellationError {
            return result(.cancelled, key: key, error: "interrupted", recorder: recorder)
        } catch let failure as StageFailure {
            return result(Task.isCancelled ? .cancelled : .failed, key: key, error: failure.message, log: failure.log.map { (recorder.logText.isEmpty ? "" : recorder.logText + "\n") + $0 }, recorder: recorder)
        } catch {
            return result(Task.isCancelled ? .cancelled : .failed, key: key, error: PlainError.describe(error), recorder: recorder)
        }
    }

    /// Cached outputs up to `verifyLimit` bytes in all are re-hashed before they are trusted; a corrupt object
    /// is reported and evicted by the store, and the stage runs again. Larger artifacts (model weights) are
    /// verified by their readers as they read them.
    func verifyCachedOutputs(_ record: ActionRecord, stage: String) -> Bool {
        let total = record.objectSizes.values.reduce(0, +)
        guard total <= Self.verifyLimit else { return true }
        for hex in record.objectSizes.keys.sorted() {
            guard let digest = Digest(hex: hex) else { continue }
            do { try store.verify(digest) } catch {
                events(.warning("stage '\(stage)': cached output is damaged (\(error)); running it again"))
                return false
            }
        }
        return true
    }

    static let verifyLimit: Int64 = 256 << 20

    private func nilIfEmpty(_ s: String?) -> String? { (s?.isEmpty ?? true) ? nil : s }

    /// Peak resident set size of this process (bytes).
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}
