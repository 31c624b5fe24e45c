// Checks the top-level keys of a loaded recipe document and builds the `Recipe`: known keys only (with
// did-you-mean), types ("expected X, got Y"), ranges, identifier names unique across models, datasets and
// stages, and a string `kind` on every stage. Stage bodies beyond `kind` belong to the stage-kind registry.
import Foundation
import YAMLSupport

struct TopLevelChecker {
    /// The recipe file as given (its stem is the default name).
    let file: String
    var diagnostics: [Diagnostic] = []

    static let keys = ["recipe", "name", "description", "extends", "vars", "seed", "backend", "models",
                       "datasets", "stages", "executor", "slurm"]
    static let schemaVersion = 1

    init(file: String) { self.file = file }

    mutating func check(_ document: YAMLNode, files: [String]) -> Recipe? {
        guard let pairs = document.pairs else {
            diagnostics.append(.error("a recipe must be a mapping of keys (recipe, name, stages, …), got "
                                      + document.typeDescription, at: document.mark))
            return nil
        }
        for pair in pairs {
            guard case .scalar(let key, _) = pair.key.value else {
                diagnostics.append(.error("top-level keys must be names, got \(pair.key.typeDescription)",
                                          at: pair.key.mark))
                continue
            }
            if key == "extends" {
                diagnostics.append(.error("'extends' can only be written in a recipe file, not set with --set",
                                          at: pair.key.mark))
            } else if !Self.keys.contains(key) {
                diagnostics.append(.error("unknown top-level key '\(key)'", at: pair.key.mark,
                                          hint: Suggest.hint(for: key, in: Self.keys)
                                              ?? "top-level keys are " + Self.keys.joined(separator: ", ")))
            }
        }

        let schemaVersion = checkSchemaVersion(document)
        let name = checkName(document)
        let description = optionalString("description", in: document)
        let seed = checkSeed(document)
        let backend = checkBackend(document)
        let vars = checkVars(document)
        let models = declarations("models", singular: "model", in: document)
        let datasets = declarations("datasets", singular: "dataset", in: document)
        let stages = checkStages(document)
        checkUniqueNames(models: models, datasets: datasets, stages: stages)
        let executor = checkExecutor(document)
        let slurm = document["slurm"].flatMap { SlurmSettings.parse($0, context: "slurm", diagnostics: &diagnostics) }

        var recipe = Recipe(file: file, schemaVersion: schemaVersion, name: name, description: description, seed: seed,
                            backend: backend, vars: vars, models: models, datasets: datasets, stages: stages,
                            document: document, files: files)
        recipe.executor = executor
        recipe.slurm = slurm ?? SlurmSettings()
        return recipe
    }

    // MARK: Scalars

    private mutating func checkSchemaVersion(_ document: YAMLNode) -> Int {
        guard let node = document["recipe"] else {
            diagnostics.append(.error("missing required key 'recipe' (the schema version)", at: document.mark,
                                      hint: "add 'recipe: \(Self.schemaVersion)' as the first line"))
            return Self.schemaVersion
        }
        guard let version = node.int else {
            diagnostics.append(expected("an integer (the schema version, \(Self.schemaVersion))", "recipe", node))
            return Self.schemaVersion
        }
        if version != Self.schemaVersion {
            diagnostics.append(.error("unsupported recipe schema version \(version)", at: node.mark,
                                      hint: "this hprune reads 'recipe: \(Self.schemaVersion)'"))
        }
        return version
    }

    private mutating func checkName(_ document: YAMLNode) -> String {
        let stem = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        guard let node = document["name"] else { return stem }
        guard node.isScalar, let name = node.string, !name.isEmpty else {
            diagnostics.append(expected("a non-empty string", "name", node))
            return stem
        }
        return name
    }

    private mutating func optionalString(_ key: String, in document: YAMLNode) -> String? {
        guard let node = document[key], !node.isNull else { return nil }
        guard node.isScalar, let text = node.string else {
            diagnostics.append(expected("a string", key, node))
            return nil
        }
        return text
    }

    private mutating func checkSeed(_ document: YAMLNode) -> Int {
        guard let node = document["seed"] else { return 0 }
        guard let seed = node.int else {
            diagnostics.append(expected("an integer ≥ 0", "seed", node))
            return 0
        }
        if seed < 0 {
            diagnostics.append(.error("'seed' must be ≥ 0, got \(seed)", at: node.mark))
            return 0
        }
        return seed
    }

    private mutating func checkBackend(_ document: YAMLNode) -> BackendSelection {
        guard let node = document["backend"] else { return .auto }
        guard node.isScalar, let text = node.string, node.typeDescription == "a string" else {
            diagnostics.append(expected("one of " + BackendSelection.names.joined(separator: ", "), "backend", node))
            return .auto
        }
        do { return try BackendSelection.parse(text) } catch {
            diagnostics.append(.error("unknown backend '\(text)'", at: node.mark,
                                      hint: error.suggestion ?? "use " + BackendSelection.names.joined(separator: ", ")))
            return .auto
        }
    }

    private mutating func checkExecutor(_ document: YAMLNode) -> String {
        guard let node = document["executor"] else { return "local" }
        guard node.isScalar, let text = node.string, SlurmSettings.executors.contains(text) else {
            diagnostics.append(.error("'executor': expected local or slurm, got \(node.scalarText.map { "'\($0)'" } ?? node.typeDescription)",
                                      at: node.mark, hint: Suggest.hint(for: node.scalarText ?? "", in: SlurmSettings.executors)
                                          ?? "use 'executor: slurm' to submit each stage as a Slurm job"))
            return "local"
        }
        return text
    }

    // MARK: Mappings

    private mutating func checkVars(_ document: YAMLNode) -> [String: YAMLNode] {
        guard let node = document["vars"], !node.isNull else { return [:] }
        guard let pairs = node.pairs else {
            diagnostics.append(expected("a mapping of variable names to values", "vars", node))
            return [:]
        }
        var vars: [String: YAMLNode] = [:]
        vars.reserveCapacity(pairs.count)
        for pair in pairs {
            guard let name = identifier(pair.key, what: "variable") else { continue }
            vars[name] = pair.value
        }
        return vars
    }

    private mutating func declarations(_ key: String, singular: String, in document: YAMLNode) -> [Declaration] {
        guard let node = document[key], !node.isNull else { return [] }
        guard let pairs = node.pairs else {
            diagnostics.append(expected("a mapping of \(singular) names to their settings", key, node))
            return []
        }
        var out: [Declaration] = []
        for pair in pairs {
            guard let name = identifier(pair.key, what: singular) else { continue }
            guard pair.value.isMapping else {
                diagnostics.append(.error("\(singular) '\(name)' must be a mapping of settings, got "
                                          + pair.value.valueDescription, at: pair.value.mark,
                                          hint: key == "models" ? "e.g. '\(name): { format: diffusers, path: … }'"
                                              : "e.g. '\(name): { embeddings: data/x.safetensors }'"))
                continue
            }
            out.append(Declaration(name: name, mark: pair.key.mark, body: pair.value))
        }
        return out
    }

    private mutating func checkStages(_ document: YAMLNode) -> [StageDeclaration] {
        guard let node = document["stages"] else {
            diagnostics.append(.error("missing required key 'stages'", at: document.mark,
                                      hint: "add a 'stages:' mapping of stage names to { kind: …, … }"))
            return []
        }
        guard let pairs = node.pairs else {
            diagnostics.append(expected("a mapping of stage names to stages", "stages", node))
            return []
        }
        if pairs.isEmpty {
            diagnostics.append(.error("'stages' is empty; a recipe needs at least one stage", at: node.mark))
        }
        var out: [StageDeclaration] = []
        for pair in pairs {
            guard let name = identifier(pair.key, what: "stage") else { continue }
            guard pair.value.isMapping else {
                diagnostics.append(.error("stage '\(name)' must be a mapping with a 'kind', got "
                                          + pair.value.valueDescription, at: pair.value.mark,
                                          hint: "e.g. '\(name): { kind: command, run: [echo, hi] }'"))
                continue
            }
            var kind = ""
            var kindMark = pair.key.mark
            if let kindNode = pair.value["kind"] {
                kindMark = kindNode.mark
                if kindNode.isScalar, let text = kindNode.string, kindNode.typeDescription == "a string" {
                    kind = text
                } else {
                    diagnostics.append(.error("stage '\(name)': 'kind' must be a string (the stage kind), got "
                                              + kindNode.valueDescription, at: kindNode.mark))
                }
            } else {
                diagnostics.append(.error("stage '\(name)' has no 'kind'", at: pair.key.mark,
                                          hint: "add 'kind: <stage kind>', e.g. 'kind: command'"))
            }
            let slurm = pair.value["slurm"].flatMap {
                SlurmSettings.parse($0, context: "stage '\(name)': slurm", diagnostics: &diagnostics)
            }
            out.append(StageDeclaration(name: name, mark: pair.key.mark, kind: kind, kindMark: kindMark,
                                        body: pair.value, slurm: slurm))
        }
        return out
    }

    /// Names share one namespace: a reference must mean exactly one thing.
    private mutating func checkUniqueNames(models: [Declaration], datasets: [Declaration],
                                           stages: [StageDeclaration]) {
        var first: [String: (what: String, mark: SourceMark)] = [:]
        let all = models.map { ("model", $0.name, $0.mark) } + datasets.map { ("dataset", $0.name, $0.mark) }
            + stages.map { ("stage", $0.name, $0.mark) }
        for (what, name, mark) in all {
            if let earlier = first[name] {
                diagnostics.append(Diagnostic(
                    .error, "\(what) name '\(name)' is already used by a \(earlier.what)", at: mark,
                    hint: "names must be unique across models, datasets and stages; rename one",
                    notes: [Diagnostic(.note, "the \(earlier.what) '\(name)' is declared here", at: earlier.mark)]))
            } else {
                first[name] = (what, mark)
            }
        }
    }

    // MARK: Helpers

    /// The key's text if it is a valid identifier (`[A-Za-z_][A-Za-z0-9_-]*`), else nil after reporting.
    private mutating func identifier(_ key: YAMLNode, what: String) -> String? {
        guard case .scalar(let text, _) = key.value else {
            diagnostics.append(.error("\(what) names must be strings, got \(key.typeDescription)", at: key.mark))
            return nil
        }
        guard Self.isIdentifier(text) else {
            diagnostics.append(.error("\(what) name '\(text)' is not a valid name", at: key.mark,
                                      hint: "use letters, digits, '_' and '-', starting with a letter or '_'"))
            return nil
        }
        return text
    }

    static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first.isASCIILetter || first == "_" else { return false }
        return s.unicodeScalars.allSatisfy { $0.isASCIILetter || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    private func expected(_ what: String, _ key: String, _ node: YAMLNode) -> Diagnostic {
        .error("'\(key)': expected \(what), got \(node.valueDescription)", at: node.mark)
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
}
