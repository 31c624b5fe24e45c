// The checked stage graph: sources (models, datasets), stages with resolved input bindings, in a stable
// topological order. `GraphBuilder.build` turns a `Recipe` into it, reporting every problem at once.
import RecipeLanguage
import YAMLSupport

public struct SourceNode: Sendable {
    public enum Role: String, Sendable { case model, dataset }
    public var name: String
    public var role: Role
    /// Checked body (`path`, `format`, `sha256`, …) with defaults.
    public var params: ParamValue
    public var mark: SourceMark
    public var artifactType: ArtifactType { role == .model ? .model : .dataset }
}

/// Where an input comes from.
public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
    case source(String)
    case stage(String, port: String)

    public var description: String {
        switch self {
        case .source(let n): return n
        case .stage(let s, let p): return "\(s).\(p)"
        }
    }
    public var stageName: String? { if case .stage(let s, _) = self { return s }; return nil }
}

/// One input of a stage: the params field that named it and what it resolved to.
public struct Binding: Sendable, Hashable {
    /// The dotted params path, e.g. `model` or `inputs.scores`.
    public var path: String
    /// The text written in the recipe.
    public var target: String
    public var source: Endpoint
    public var type: ArtifactType
    public var mark: SourceMark
}

public struct StageNode: Sendable {
    public var name: String
    public var kind: any StageKindDescription
    /// Checked params with defaults (references as written).
    public var params: ParamValue
    public var bindings: [Binding]
    public var outputs: [PortSpec]
    public var mark: SourceMark
    /// What each reference written in the params resolved to.
    public func endpoint(for target: String) -> Endpoint? { bindings.first { $0.target == target }?.source }

    /// Stage names this one reads from, in first-use order.
    public var dependencies: [String] {
        var seen: [String] = []
        for b in bindings { if let s = b.source.stageName, !seen.contains(s) { seen.append(s) } }
        return seen
    }
}

public struct Graph: Sendable {
    public var sources: [SourceNode]
    /// Topological order; ties keep the order of the recipe file.
    public var stages: [StageNode]

    public func stage(_ name: String) -> StageNode? { stages.first { $0.name == name } }
    public func source(_ name: String) -> SourceNode? { sources.first { $0.name == name } }

    /// Names of stages that read (transitively) from `name`, in topological order.
    public func dependents(of names: Set<String>) -> [String] {
        var hit = names
        var out: [String] = []
        for s in stages where !names.contains(s.name) {
            if s.dependencies.contains(where: hit.contains) {
                hit.insert(s.name)
                out.append(s.name)
            }
        }
        return out
    }
}
