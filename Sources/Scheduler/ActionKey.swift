// Action keys: SHA-256 of the canonical JSON of what determines a stage's outputs (DESIGN.md §3):
// {kind, kind version, resolved params with defaults, input artifact digests, backend numerics class, seed,
// hprune version}. References in params are replaced by the digest they resolve to.
import ArtifactStore
import Foundation
import StageGraph
import YAMLSupport

public enum HPrune {
    /// The version baked into every action key: bump when a change alters any stage's outputs.
    public static let version = "0.1.0"
}

/// What besides the stage itself enters every key.
public struct KeyContext: Sendable, Hashable {
    public var seed: Int
    /// `cpu` or `cuda`: kernels differ in the last bits between backends, so their results are cached apart.
    public var backendClass: String
    public var hpruneVersion: String

    public init(seed: Int, backendClass: String, hpruneVersion: String = HPrune.version) {
        self.seed = seed
        self.backendClass = backendClass
        self.hpruneVersion = hpruneVersion
    }
}

public enum ActionKey {
    /// The canonical JSON that is hashed; `resolve` gives the digest (or upstream key) of each input endpoint.
    /// Returns nil when an input is not known yet (an upstream stage has still to run).
    public static func canonicalJSON(kind: String, version: Int, usesBackend: Bool, params: ParamValue,
                                     context: KeyContext, fileDependencies: [String: String] = [:],
                                     resolve: (String) -> String?) -> String? {
        var missing = false
        let keyed = params.mapReferences { target in
            guard let d = resolve(target) else { missing = true; return .null }
            return .string(d)
        }
        if missing { return nil }
        var fields: [(String, ParamValue)] = [
            ("kind", .string(kind)),
            ("kind_version", .int(version)),
            ("params", keyed),
            ("seed", .int(context.seed)),
            ("backend", .string(usesBackend ? context.backendClass : "none")),
            ("hprune", .string(context.hpruneVersion)),
        ]
        if !fileDependencies.isEmpty {
            fields.append(("files", .map(fileDependencies.map { ($0.key, .string($0.value)) })))
        }
        return ParamValue.map(fields).canonicalJSON
    }

    public static func hash(_ canonicalJSON: String) -> String { Digest.of(Data(canonicalJSON.utf8)).hex }
}
