// A recipe after loading: `extends` merged, `--set` overrides applied, `${…}` interpolated, top-level keys
// checked. Stage bodies are kept as YAML nodes (with marks) because their schema belongs to the stage kind,
// which `StageGraph` checks against the registry.
import YAMLSupport

/// A named entry of `models:` or `datasets:`.
public struct Declaration: Sendable, Hashable {
    public var name: String
    /// Where the name was written (the key).
    public var mark: SourceMark
    /// The mapping under the name, interpolated.
    public var body: YAMLNode

    public init(name: String, mark: SourceMark, body: YAMLNode) {
        self.name = name
        self.mark = mark
        self.body = body
    }
}

/// One entry of `stages:`.
public struct StageDeclaration: Sendable, Hashable {
    public var name: String
    public var mark: SourceMark
    /// The value of `kind:` (empty if missing; the loader reports that).
    public var kind: String
    public var kindMark: SourceMark
    /// The whole stage mapping, interpolated (it includes `kind`).
    public var body: YAMLNode
    /// The stage's `slurm:` overrides (see ExecutorSettings.swift); not part of its cache key.
    public var slurm: SlurmSettings?

    public init(name: String, mark: SourceMark, kind: String, kindMark: SourceMark, body: YAMLNode,
                slurm: SlurmSettings? = nil) {
        self.name = name
        self.mark = mark
        self.kind = kind
        self.kindMark = kindMark
        self.body = body
        self.slurm = slurm
    }
}

public struct Recipe: Sendable {
    /// The path the recipe was loaded from, as given.
    public var file: String
    public var schemaVersion: Int
    public var name: String
    public var description: String?
    public var seed: Int
    /// `auto`, `cpu`, `cuda` or `reference` (`hprune run --backend` overrides it).
    public var backend: BackendSelection
    public var vars: [String: YAMLNode]
    public var models: [Declaration]
    public var datasets: [Declaration]
    public var stages: [StageDeclaration]
    /// The whole document after merge, overrides and interpolation: what `diff` compares by dotted path.
    public var document: YAMLNode
    /// Every file that went into the recipe (itself first, then what it extends), for digests and messages.
    public var files: [String]
    /// `local` (default) or `slurm`: where stages run (`hprune run --executor` overrides it).
    public var executor: String = "local"
    /// The recipe-level `slurm:` block: defaults for every stage's job.
    public var slurm = SlurmSettings()

    /// A stage's Slurm settings: the recipe's defaults with the stage's own `slurm:` over them.
    public func slurmSettings(forStage name: String) -> SlurmSettings {
        slurm.overridden(by: stages.first { $0.name == name }?.slurm)
    }

    public init(file: String, schemaVersion: Int, name: String, description: String?, seed: Int, backend: BackendSelection,
                vars: [String: YAMLNode], models: [Declaration], datasets: [Declaration],
                stages: [StageDeclaration], document: YAMLNode, files: [String]) {
        self.file = file
        self.schemaVersion = schemaVersion
        self.name = name
        self.description = description
        self.seed = seed
        self.backend = backend
        self.vars = vars
        self.models = models
        self.datasets = datasets
        self.stages = stages
        self.document = document
        self.files = files
    }
}
