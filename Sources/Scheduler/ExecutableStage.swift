// What a stage kind implements to run: given its checked params and its inputs' artifacts, produce its
// outputs' artifacts in the store. Implementations live in the `Stages` module, one file per kind.
import ArtifactStore
import Foundation
import StageGraph

/// An artifact handed to a stage: its type, digest, and for sources the file or folder it came from.
public struct ArtifactRef: Sendable, Hashable {
    public var type: ArtifactType
    public var digest: Digest
    /// Set for `models:`/`datasets:` sources (absolute path); nil for artifacts in the store.
    public var sourcePath: URL?

    public init(type: ArtifactType, digest: Digest, sourcePath: URL? = nil) {
        self.type = type
        self.digest = digest
        self.sourcePath = sourcePath
    }
}

/// A stage failure the user can act on; the scheduler shows `message` and keeps `log` in the ledger.
public struct StageFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var log: String?
    public init(_ message: String, log: String? = nil) {
        self.message = message
        self.log = log
    }
    public var description: String { message }
}

/// Everything a running stage may use.
public struct StageContext: Sendable {
    public var stage: StageNode
    public var params: ParamValue { stage.params }
    /// Inputs by params path (`model`, `inputs.scores`).
    public var inputs: [String: ArtifactRef]
    public var store: ArtifactStore
    /// A fresh, private directory for scratch files; removed after the stage.
    public var workDirectory: URL
    /// The folder of the recipe file: relative paths in params are relative to it.
    public var recipeDirectory: URL
    public var seed: Int
    public var backend: String
    /// identity → numerics version of the kernel families `backend` computes with (KeyContext.numerics).
    public var numerics: [String: Int]
    public var progress: ProgressSink
    /// Metrics and logs, recorded in the ledger by the scheduler.
    public var recorder: StageRecorder
    /// This execution's action key (hex SHA-256): a stable name for state that must survive an interruption
    /// (training checkpoints, in the store's partials), since a re-run of the same stage with the same inputs has
    /// the same key. Set for shard tasks too.
    public var actionKey: String = ""
    /// `[hprune binary, "_job", recipe, --set …, --store …, --backend …]`: reopens this run's recipe and store in
    /// another process (a stage that starts its own data-parallel ranks appends `--stage`, `--key`, …); nil when
    /// the stage runs without a command line (library use, tests).
    public var jobCommand: [String]?

    /// The input bound at `path`, by the reference written there.
    public func input(_ path: String) -> ArtifactRef? { inputs[path] }

    /// `numerics` as one stable line (`cpu=1,cpu.avx512_bf16=1,tensorcore=1`), for names of partial results that
    /// must not be shared between kernel families.
    public var numericsLine: String { numerics.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
}

/// Metrics (name, value, unit) and log text a stage reports; thread-safe.
public final class StageRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [(String, Double, String)] = []
    private var text = ""
    public init() {}
    public func metric(_ name: String, _ value: Double, unit: String = "") {
        lock.withLock { items.append((name, value, unit)) }
    }
    /// Appends to the stage's log (e.g. a command's stdout/stderr); the ledger keeps the last 64 KiB.
    public func log(_ s: String) { lock.withLock { text += s } }
    public var metrics: [(name: String, value: Double, unit: String)] { lock.withLock { items.map { ($0.0, $0.1, $0.2) } } }
    public var logText: String { lock.withLock { text.count > 65536 ? String(text.suffix(65536)) : text } }
}

public protocol ExecutableStageKind: StageKindDescription {
    /// Runs the stage; returns port → digest of each output artifact (already in the store).
    /// Must honour task cancellation (SIGINT) promptly and leave nothing half-written.
    func run(_ context: StageContext) async throws -> [String: Digest]
}

/// A kind whose work splits into independent shards that keep their partial results in the store (`score`: one
/// ΔP per component). Shard tasks (a Slurm job array) fill the store; the stage's normal `run` then finds every
/// part kept and assembles the same outputs as a single process would.
public protocol ShardableStageKind: ExecutableStageKind {
    /// Computes and keeps shard `index` of `count` (0 ≤ index < count); records no action.
    func runShard(_ context: StageContext, index: Int, count: Int) async throws
}
