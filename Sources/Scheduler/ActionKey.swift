// Action keys: SHA-256 of the canonical JSON of what determines a stage's outputs (DESIGN.md §3):
// {kind, kind version, resolved params with defaults, input artifact digests, backend class, the numerics version of
// every kernel family the backend computes with, seed, hprune version, digests of declared file deps}. References in
// params are replaced by the digest they resolve to. The canonical JSON itself is kept with the action (ActionRecord,
// the ledger), so `hprune diff` and `hprune plan --why` can say which of these changed (InputDiff.swift).
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
    /// `cpu`, `cuda` or `reference`: the backend the stages compute with.
    public var backendClass: String
    /// identity → numerics version of every kernel family that backend computes with in this process
    /// (`tensorcore`: 1, `cpu`: 1, `cpu.avx512_bf16`: 1, …; `BackendProvider.numerics()`). Part of the key of every
    /// stage whose kind uses the backend, so another family, or a family whose version was bumped because its
    /// results changed, misses the cache. Kinds that do not use the backend (`command`) never see it.
    public var numerics: [String: Int]
    public var hpruneVersion: String

    public init(seed: Int, backendClass: String, numerics: [String: Int], hpruneVersion: String = HPrune.version) {
        self.seed = seed
        self.backendClass = backendClass
        self.numerics = numerics
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
        let json = describe(kind: kind, version: version, usesBackend: usesBackend, params: params, context: context,
                            fileDependencies: fileDependencies) { target in
            guard let d = resolve(target) else { missing = true; return .null }
            return .string(d)
        }
        return missing ? nil : json
    }

    /// The same JSON where an input that is not known yet is written as `pending(target)` (e.g.
    /// `pending:teacher.model`): not a key, but what `plan --why` compares while an upstream stage has to run.
    public static func provisionalJSON(kind: String, version: Int, usesBackend: Bool, params: ParamValue,
                                       context: KeyContext, fileDependencies: [String: String] = [:],
                                       resolve: (String) -> String?, pending: (String) -> String) -> String {
        describe(kind: kind, version: version, usesBackend: usesBackend, params: params, context: context,
                 fileDependencies: fileDependencies) { target in .string(resolve(target) ?? pending(target)) }
    }

    /// The prefix of a pending input in a provisional JSON.
    public static let pendingPrefix = "pending:"

    private static func describe(kind: String, version: Int, usesBackend: Bool, params: ParamValue, context: KeyContext,
                                 fileDependencies: [String: String], reference: (String) -> ParamValue) -> String {
        let keyed = params.mapReferences(reference)
        var fields: [(String, ParamValue)] = [
            ("kind", .string(kind)),
            ("kind_version", .int(version)),
            ("params", keyed),
            ("seed", .int(context.seed)),
            ("backend", .string(usesBackend ? context.backendClass : "none")),
            ("hprune", .string(context.hpruneVersion)),
        ]
        // Only where the backend computes: a `command` stage's key stays what it was before numerics entered keys.
        if usesBackend {
            fields.append(("numerics", .map(context.numerics.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        }
        if !fileDependencies.isEmpty {
            fields.append(("files", .map(fileDependencies.map { ($0.key, .string($0.value)) })))
        }
        return ParamValue.map(fields).canonicalJSON
    }

    public static func hash(_ canonicalJSON: String) -> String { Digest.of(Data(canonicalJSON.utf8)).hex }
}
