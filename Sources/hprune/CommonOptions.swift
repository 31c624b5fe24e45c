// Options and helpers shared by the subcommands that read a recipe or a store.
import ArgumentParser
import ArtifactStore
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import Stages
import YAMLSupport

struct RecipeOptions: ParsableArguments {
    @Argument(help: "The recipe file (YAML).", completion: .file(extensions: ["yaml", "yml"]))
    var recipe: String

    @Option(name: .customLong("set"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Override a value: dotted.path=value, the value parsed as YAML (repeatable).",
                               valueName: "path=value"))
    var overrides: [String] = []

    @Flag(name: .customLong("allow-extends-outside"),
          help: "Let 'extends' name recipe files outside the recipe's folder tree (default: refused).")
    var allowExtendsOutside = false
}

struct StoreOptions: ParsableArguments {
    @Option(help: "The artifact store (default: $HPRUNE_STORE, else .hprune/ beside the recipe or in the current folder).",
            completion: .directory)
    var store: String?
}

enum Terminal {
    static let stdoutIsTTY = isatty(STDOUT_FILENO) == 1
    static let stderrIsTTY = isatty(STDERR_FILENO) == 1
    static let environment = ProcessInfo.processInfo.environment

    /// One message on stderr. Control, bidi and other invisible characters are escaped (line breaks kept), so
    /// names and values quoted from input files cannot rewrite the terminal.
    static func err(_ s: String) { FileHandle.standardError.write(Data((TerminalText.escape(s, keepNewlines: true) + "\n").utf8)) }
    static func errRaw(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    /// Prints diagnostics like a compiler, with source lines and carets.
    static func report(_ diagnostics: [Diagnostic], sources: SourceCache = SourceCache()) {
        let renderer = DiagnosticRenderer(sources: sources, color: stderrIsTTY && environment["NO_COLOR"] == nil)
        if !diagnostics.isEmpty { errRaw(renderer.render(diagnostics)) }
        let errors = diagnostics.filter { $0.severity == .error }.count
        if errors > 1 { err("\(errors) errors") }
    }

    /// Stable JSON on stdout: sorted keys, no escaped slashes.
    static func printJSON(_ value: Any) {
        precondition(JSONSerialization.isValidJSONObject(value), "internal: not JSON-serialisable: \(value)")
        let data = (try? JSONSerialization.data(withJSONObject: value,
                                                options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data("null".utf8)
        print(String(decoding: data, as: UTF8.self))
    }
}

extension RecipeOptions {
    /// Loads and checks the recipe; on problems prints them all and exits 2.
    func workspace() throws -> Workspace {
        let sources = SourceCache()
        do {
            return try Workspace.load(path: recipe, overrides: overrides, environment: Terminal.environment,
                                      registry: StageKinds.registry, sources: sources,
                                      allowExtendsOutside: allowExtendsOutside)
        } catch {
            Terminal.report(error.diagnostics, sources: sources)
            throw Exit.invalid
        }
    }
}

extension StoreOptions {
    /// The store for a recipe: --store, $HPRUNE_STORE, else beside the recipe.
    func open(for workspace: Workspace) throws -> ArtifactStore {
        try openStore(workspace.storeURL(override: store, environment: Terminal.environment))
    }

    /// The store without a recipe: --store, $HPRUNE_STORE, else ./.hprune (which must exist).
    func openStandalone(recipeHint: String? = nil) throws -> ArtifactStore {
        if let store, !store.isEmpty { return try openStore(URL(fileURLWithPath: store)) }
        if let env = Terminal.environment["HPRUNE_STORE"], !env.isEmpty { return try openStore(URL(fileURLWithPath: env)) }
        if let recipeHint {
            return try openStore(URL(fileURLWithPath: recipeHint).deletingLastPathComponent().appendingPathComponent(".hprune"))
        }
        let local = URL(fileURLWithPath: ".hprune")
        guard FileManager.default.fileExists(atPath: local.path) else {
            Terminal.err("error: no store at ./.hprune (pass --store DIR, set HPRUNE_STORE, or run from the recipe's folder)")
            throw Exit.invalid
        }
        return try openStore(local)
    }

    private func openStore(_ url: URL) throws -> ArtifactStore {
        do {
            return try ArtifactStore(root: url, onWarning: { Terminal.err("warning: \($0)") })
        } catch {
            Terminal.err("error: cannot open the store at \(url.path): \(PlainError.describe(error))")
            throw Exit.failed
        }
    }
}

/// Which compute backend a run uses: `--backend` or the recipe's `backend:`; `auto` picks CUDA when usable.
enum BackendChoice {
    static func resolve(requested: String, recipe: Recipe) throws -> String {
        switch requested {
        case "cpu": return "cpu"
        case "cuda":
            Terminal.err("error: backend 'cuda' is not available: \(CUDAProbe.info().reason ?? "") (see `hprune backends`); use `--backend cpu` or `backend: auto`")
            throw Exit.invalid
        default:
            Terminal.err("note: backend auto: using cpu (cuda: \(CUDAProbe.info().reason ?? "unavailable"))")
            return "cpu"
        }
    }
}
