// The stage-kind registry as the pipeline sees it: a kind's name, version, typed params, and ports.
// Running a kind is the Scheduler's business (`ExecutableStageKind`); this half only checks and plans.
import YAMLSupport

/// A named, typed output of a stage.
public struct PortSpec: Sendable, Hashable {
    public var name: String
    public var type: ArtifactType
    public var doc: String
    public init(_ name: String, _ type: ArtifactType, doc: String = "") {
        self.name = name
        self.type = type
        self.doc = doc
    }
}

/// What the checker and planner need to know about a stage kind.
public protocol StageKindDescription: Sendable {
    /// The value of `kind:` in a recipe.
    var name: String { get }
    /// Bumped whenever the kind's numerics or outputs change, so old cache entries stop matching.
    var version: Int { get }
    /// One line for `hprune kinds` and the docs.
    var summary: String { get }
    var schema: Schema { get }
    /// The output ports; may depend on the params (e.g. the files a `command` declares).
    func outputs(params: ParamValue) -> [PortSpec]
    /// The port a bare `stage` reference means.
    func defaultOutput(params: ParamValue) -> String
    /// Checks beyond the schema (cross-field rules). Report through `checker`.
    func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker)
    /// Whether results depend on the compute backend (false for external programs).
    var usesBackend: Bool { get }
    /// Files (relative to the recipe) whose content enters the cache key, e.g. a script a command runs.
    func fileDependencies(params: ParamValue) -> [String]
}

extension StageKindDescription {
    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {}
    public var usesBackend: Bool { true }
    public func fileDependencies(params: ParamValue) -> [String] { [] }
}

/// Keys every stage may have besides its kind's own params.
public enum CommonStageKeys {
    public static let fields: [Field] = [
        Field("kind", .string, required: true, doc: "The stage kind (see the list of kinds)."),
        Field("description", .string, doc: "Free text for people; not part of the cache key."),
    ]
    /// `slurm:` (sbatch settings, see RecipeLanguage/ExecutorSettings.swift) is checked by the recipe loader and
    /// documented in Docs/scale-out.md, so the generated per-kind tables stay short.
    public static let names: Set<String> = Set(fields.map(\.name) + ["slurm"])
}

/// Every stage kind the program knows, by name.
public struct StageRegistry: Sendable {
    public private(set) var kinds: [String: any StageKindDescription] = [:]

    public init(_ kinds: [any StageKindDescription] = []) {
        for k in kinds { register(k) }
    }

    public mutating func register(_ kind: any StageKindDescription) {
        precondition(kinds[kind.name] == nil, "stage kind '\(kind.name)' registered twice")
        kinds[kind.name] = kind
    }

    public subscript(name: String) -> (any StageKindDescription)? { kinds[name] }
    public var names: [String] { kinds.keys.sorted() }
}

/// The schema of `models:` and `datasets:` entries (sources: files outside the store, hashed on use).
public enum SourceSchema {
    public static let model = Schema([
        Field("path", .string, required: true,
              doc: "File or directory (e.g. a diffusers `transformer/` folder). Relative to the recipe file."),
        Field("format", .choice(["diffusers", "safetensors", "file", "directory"]), default: .string("diffusers"),
              doc: "How to read it. `file`/`directory` are opaque inputs for `command` stages."),
        Field("sha256", .string, doc: "Pin: the run fails if the content digest differs."),
        Field("description", .string, doc: "Free text."),
    ])
    public static let dataset = Schema([
        Field("path", .string, required: true, doc: "File or directory. Relative to the recipe file."),
        Field("format", .choice(["safetensors", "file", "directory"]), default: .string("file"),
              doc: "How to read it."),
        Field("sha256", .string, doc: "Pin: the run fails if the content digest differs."),
        Field("description", .string, doc: "Free text."),
    ])
}
