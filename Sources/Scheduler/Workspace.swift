// One recipe opened for work: loaded, checked into a graph, its store opened and its sources hashed.
// Every command that reads a recipe (validate, plan, graph, run, diff) goes through here, so they all
// accept the same `--set` overrides and report problems the same way.
import ArtifactStore
import Foundation
import RecipeLanguage
import StageGraph
import YAMLSupport

public struct Workspace: Sendable {
    public var recipe: Recipe
    public var graph: Graph
    public var recipeDirectory: URL

    /// Loads and checks a recipe; throws every problem found.
    /// `sources` collects the text of every file read, for rendering diagnostics with source lines.
    /// `allowExtendsOutside` lets `extends` name files outside the recipe's folder tree.
    public static func load(path: String, overrides: [String] = [], environment: [String: String],
                            registry: StageRegistry, sources: SourceCache = SourceCache(),
                            allowExtendsOutside: Bool = false) throws(DiagnosticError) -> Workspace {
        var loader = RecipeLoader(environment: environment, sources: sources)
        loader.allowExtendsOutside = allowExtendsOutside
        let loaded = loader.load(path: path, overrides: overrides)
        var diagnostics = loaded.diagnostics
        var graph: Graph?
        if let recipe = loaded.recipe {
            let built = GraphBuilder.build(recipe, registry: registry)
            diagnostics += built.diagnostics
            graph = built.graph
        }
        guard let recipe = loaded.recipe, let graph, !diagnostics.contains(where: { $0.severity == .error }) else {
            throw DiagnosticError(diagnostics)
        }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().standardizedFileURL
        return Workspace(recipe: recipe, graph: graph, recipeDirectory: dir)
    }

    /// The store: `--store`, else `HPRUNE_STORE`, else `.hprune/` beside the recipe.
    public func storeURL(override: String?, environment: [String: String]) -> URL {
        if let override, !override.isEmpty { return URL(fileURLWithPath: override).standardizedFileURL }
        if let env = environment["HPRUNE_STORE"], !env.isEmpty { return URL(fileURLWithPath: env).standardizedFileURL }
        return recipeDirectory.appendingPathComponent(".hprune")
    }

    /// What enters every action key besides the stage: the recipe's seed, the backend the run resolved (never
    /// `auto`) and the numerics versions of the kernel families it computes with (`BackendRegistry.numerics`).
    public func keyContext(backend: String, numerics: [String: Int]) -> KeyContext {
        KeyContext(seed: recipe.seed, backendClass: backend, numerics: numerics)
    }

    /// Hashes every model/dataset source (remembered by the store's ledger) and checks `sha256` pins.
    public func hashSources(store: ArtifactStore) throws(DiagnosticError) -> [String: ArtifactRef] {
        var out: [String: ArtifactRef] = [:]
        var diags: [Diagnostic] = []
        for src in graph.sources {
            let path = src.params["path"]?.string ?? ""
            let url = resolve(path)
            guard FileManager.default.fileExists(atPath: url.path) else {
                diags.append(.error("\(src.role.rawValue) '\(src.name)': path '\(path)' does not exist (looked at \(url.path))",
                                    at: src.mark, hint: "paths are relative to the recipe's folder"))
                continue
            }
            do {
                let digest = try store.hashSource(at: url)
                if let pin = src.params["sha256"]?.string, pin != digest.hex {
                    diags.append(.error("\(src.role.rawValue) '\(src.name)': content of '\(path)' has sha256 \(digest.hex), but the recipe pins \(pin)",
                                        at: src.mark, hint: "the file changed; update the pin if that is intended"))
                    continue
                }
                out[src.name] = ArtifactRef(type: src.artifactType, digest: digest, sourcePath: url)
            } catch {
                diags.append(.error("\(src.role.rawValue) '\(src.name)': cannot read '\(url.path)': \(error)", at: src.mark))
            }
        }
        if !diags.isEmpty { throw DiagnosticError(diags) }
        return out
    }

    /// Digests of the extra files each stage declared (`deps:` of a command), by stage.
    public func hashFileDependencies(store: ArtifactStore) throws(DiagnosticError) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var diags: [Diagnostic] = []
        for stage in graph.stages {
            let files = stage.kind.fileDependencies(params: stage.params)
            guard !files.isEmpty else { continue }
            var digests: [String: String] = [:]
            for f in files {
                let url = resolve(f)
                do { digests[f] = try store.hashSource(at: url).hex } catch {
                    diags.append(.error("stage '\(stage.name)': dependency '\(f)' cannot be read (\(url.path))", at: stage.mark,
                                        hint: "paths in `deps:` are relative to the recipe's folder"))
                }
            }
            out[stage.name] = digests
        }
        if !diags.isEmpty { throw DiagnosticError(diags) }
        return out
    }

    public func resolve(_ path: String) -> URL {
        path.hasPrefix("/") ? URL(fileURLWithPath: path) : recipeDirectory.appendingPathComponent(path).standardizedFileURL
    }

    /// The plan against `store`.
    public func plan(store: ArtifactStore, backend: String, numerics: [String: Int],
                     force: Set<String> = []) throws(DiagnosticError) -> Plan {
        let sources = try hashSources(store: store)
        let deps = try hashFileDependencies(store: store)
        return Planner.plan(graph, sourceDigests: sources.mapValues(\.digest),
                            context: keyContext(backend: backend, numerics: numerics),
                            fileDependencies: deps, force: force) { key in store.action(for: key)?.outputs }
    }
}
