// Small, real stage kinds for the pipeline half's tests (StageGraphTests, SchedulerTests), so those targets
// check and run graphs without compiling the numeric half (`Stages` and everything below it):
//   write          — writes its declared output files: the contents of its inputs (in input-name order, each
//                    input's files in name order) followed by `text` and a newline, `repeat` times.
//   consume-model  — checks only: reads a model, has a bounded number (for port-type and range diagnostics).
import ArtifactStore
import Foundation
import Scheduler
import StageGraph
import YAMLSupport

public struct WriteKind: ExecutableStageKind {
    public init() {}
    public let name = "write"
    public let version = 1
    public let summary = "test kind: concatenates its inputs and a text into its output files"
    public var usesBackend: Bool { false }
    public let schema = Schema([
        Field("text", .string, required: true, doc: "appended to the inputs' contents"),
        Field("inputs", .dictionary(.reference(.any)), default: .map([]), doc: "name → reference"),
        Field("outputs", .list(.string), default: .list([]), doc: "file names to write"),
        Field("repeat", .integer(min: 1), default: .int(1), doc: "how often `text` is written"),
    ])

    public func outputs(params: ParamValue) -> [PortSpec] {
        let files = (params["outputs"]?.list ?? []).compactMap(\.string)
        return [PortSpec("files", .files)] + files.map { PortSpec($0, .files) }
    }
    public func defaultOutput(params: ParamValue) -> String { "files" }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        var body = Data()
        for (name, _) in (ctx.params["inputs"]?.entries ?? []).sorted(by: { $0.0 < $1.0 }) {
            guard let ref = ctx.input("inputs.\(name)") else { continue }
            if let path = ref.sourcePath {
                body.append(try Data(contentsOf: path))
            } else {
                for entry in try ctx.store.readTree(ref.digest).entries.sorted(by: { $0.path < $1.path }) {
                    body.append(try ctx.store.data(entry.digest))
                }
            }
        }
        let text = ctx.params["text"]?.string ?? ""
        for _ in 0..<(ctx.params["repeat"]?.int ?? 1) { body.append(Data((text + "\n").utf8)) }
        let out = ctx.workDirectory.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        var ports: [String: Digest] = [:]
        for f in (ctx.params["outputs"]?.list ?? []).compactMap(\.string) {
            let dir = ctx.workDirectory.appendingPathComponent("port-\(f)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try body.write(to: dir.appendingPathComponent(f))
            try body.write(to: out.appendingPathComponent(f))
            ports[f] = try ctx.store.putTree(dir)
        }
        ports["files"] = try ctx.store.putTree(out)
        return ports
    }
}

/// A kind with typed ports, to test port-type checking (`write` accepts anything).
public struct ConsumeModelKind: StageKindDescription {
    public init() {}
    public let name = "consume-model"
    public let version = 1
    public let summary = "test kind: reads a model"
    public let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "a model"),
        Field("ratio", .number(min: 0, max: 1, exclusive: true), default: .double(0.2), doc: "a ratio"),
    ])
    public func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("report", .report)] }
    public func defaultOutput(params: ParamValue) -> String { "report" }
}

public enum TestKinds {
    public static let executable: [any ExecutableStageKind] = [WriteKind()]
    public static var registry: StageRegistry {
        var r = StageRegistry(executable)
        r.register(ConsumeModelKind())
        return r
    }
    public static var executables: [String: any ExecutableStageKind] {
        Dictionary(executable.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }
}
