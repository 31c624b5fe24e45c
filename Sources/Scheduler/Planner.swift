// The planner: a pure function from a checked graph, the digests of its sources and a view of the action
// cache to, for each stage, its action key and whether it is cached.
//
//     teacher ──► score ──► prune ──► quantise        cached stages know their outputs' digests, so the
//        └─────────────────────────────┘              next stage's key is known too; below the first stage
//                                                     that must run, keys are unknown until it has run.
import ArtifactStore
import StageGraph

public struct PlanEntry: Sendable {
    public var name: String
    public var kind: String
    /// The action key, or nil while an upstream stage has still to run.
    public var key: String?
    /// Merkle key over definitions (params, source digests, upstream definition keys): equal iff nothing the
    /// stage depends on changed. Used by `diff` to say what would re-run.
    public var definitionKey: String
    /// The canonical JSON the action key hashes (ActionKey.swift); while `key` is nil, the provisional JSON with
    /// each unknown input as `pending:<stage>.<port>`. What `plan --why` compares with the stage's last action.
    public var canonical: String
    /// The canonical JSON the definition key hashes (upstream inputs as `def:<key>#<port>`); what `diff` of two
    /// recipes compares.
    public var definitionCanonical: String
    public var cached: Bool
    /// Outputs (port → artifact digest) when cached.
    public var outputs: [String: Digest]?
    /// `path ← endpoint` for each input.
    public var inputs: [String]
    public var forced: Bool
}

public struct Plan: Sendable {
    public var entries: [PlanEntry]
    public func entry(_ name: String) -> PlanEntry? { entries.first { $0.name == name } }
}

public enum Planner {
    /// - Parameters:
    ///   - sourceDigests: content digest of each model/dataset source.
    ///   - fileDependencies: per stage, path → digest of extra files its kind declared (scripts, …).
    ///   - lookup: the action cache (key → outputs), nil on a miss.
    public static func plan(_ graph: Graph, sourceDigests: [String: Digest], context: KeyContext,
                            fileDependencies: [String: [String: String]] = [:],
                            force: Set<String> = [], lookup: (String) -> [String: Digest]?) -> Plan {
        var outputs: [String: [String: Digest]] = [:]   // stage → port → digest, for known outputs
        var definitionKeys: [String: String] = [:]
        var entries: [PlanEntry] = []
        for stage in graph.stages {
            let deps = fileDependencies[stage.name] ?? [:]
            let definitionJSON = canonical(stage, context: context, files: deps) { endpoint in
                switch endpoint {
                case .source(let n): return sourceDigests[n].map { "sha256:" + $0.hex }
                case .stage(let s, let port): return definitionKeys[s].map { "def:" + $0 + "#" + port }
                }
            } ?? "" // sources are always known, upstream stages come first: never nil
            let definition = ActionKey.hash(definitionJSON)
            definitionKeys[stage.name] = definition

            let resolveAction = { (endpoint: Endpoint) -> String? in
                switch endpoint {
                case .source(let n): return sourceDigests[n].map { "sha256:" + $0.hex }
                case .stage(let s, let port): return outputs[s]?[port].map { "sha256:" + $0.hex }
                }
            }
            // One JSON: the action's canonical JSON when every input is known, else the provisional one.
            var pending = false
            let shown = ActionKey.provisionalJSON(
                kind: stage.kind.name, version: stage.kind.version, usesBackend: stage.kind.usesBackend,
                params: keyedParams(stage), context: context, fileDependencies: deps,
                resolve: { target in stage.endpoint(for: target).flatMap(resolveAction) },
                pending: { target in
                    pending = true
                    guard case .stage(let s, let port)? = stage.endpoint(for: target) else { return ActionKey.pendingPrefix + target }
                    return ActionKey.pendingPrefix + s + "." + port
                })
            let action = pending ? nil : ActionKey.hash(shown)
            let forced = force.contains(stage.name)
            var cached = false
            if let action, !forced, let hit = lookup(action),
               Set(hit.keys).isSuperset(of: stage.outputs.map(\.name)) {
                outputs[stage.name] = hit
                cached = true
            }
            entries.append(PlanEntry(name: stage.name, kind: stage.kind.name, key: action, definitionKey: definition,
                                     canonical: shown, definitionCanonical: definitionJSON,
                                     cached: cached, outputs: cached ? outputs[stage.name] : nil,
                                     inputs: stage.bindings.map { "\($0.path) ← \($0.source)" }, forced: forced))
        }
        return Plan(entries: entries)
    }

    /// The action key of `stage` given how to name each input endpoint, or nil if one is unknown.
    public static func key(_ stage: StageNode, context: KeyContext, files: [String: String] = [:],
                           resolve: (Endpoint) -> String?) -> String? {
        canonical(stage, context: context, files: files, resolve: resolve).map(ActionKey.hash)
    }

    /// The canonical JSON `key` hashes, or nil if an input is unknown.
    public static func canonical(_ stage: StageNode, context: KeyContext, files: [String: String] = [:],
                                 resolve: (Endpoint) -> String?) -> String? {
        ActionKey.canonicalJSON(
            kind: stage.kind.name, version: stage.kind.version, usesBackend: stage.kind.usesBackend,
            params: keyedParams(stage), context: context, fileDependencies: files,
            resolve: { target in stage.endpoint(for: target).flatMap(resolve) })
    }

    /// The stage's params without the top-level fields its kind marks `keyed: false` (they never change outputs).
    static func keyedParams(_ stage: StageNode) -> ParamValue {
        let unkeyed = Set(stage.kind.schema.fields.filter { !$0.keyed }.map(\.name))
        guard !unkeyed.isEmpty, case .map(let kv) = stage.params else { return stage.params }
        return .map(kv.filter { !unkeyed.contains($0.0) })
    }
}
