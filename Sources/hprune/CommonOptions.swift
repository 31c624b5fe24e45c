// Options and helpers shared by the subcommands that read a recipe or a store.
import ArgumentParser
import ArtifactStore
import CUDABackend
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import TensorCore
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
    /// The store for a recipe: --store, $HPRUNE_STORE, else beside the recipe. `writesLedger: false` for the
    /// processes a driver starts (jobs, ranks): they only read the ledger.
    func open(for workspace: Workspace, writesLedger: Bool = true) throws -> ArtifactStore {
        try openStore(workspace.storeURL(override: store, environment: Terminal.environment), writesLedger: writesLedger)
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

    private func openStore(_ url: URL, writesLedger: Bool = true) throws -> ArtifactStore {
        do {
            return try ArtifactStore(root: url, onWarning: { Terminal.err("warning: \($0)") }, writesLedger: writesLedger)
        } catch {
            Terminal.err("error: cannot open the store at \(url.path): \(PlainError.describe(error))")
            throw Exit.failed
        }
    }
}

/// The backend a run computes with, resolved (never `auto`), and the kernel families it uses in this process with
/// their numerics versions: what enters the action key of every stage that uses the backend.
struct ResolvedBackend {
    var name: String
    var numerics: [NumericsFamily]
    /// identity → version, as `KeyContext.numerics` takes it.
    var versions: [String: Int] { numerics.versions }

    /// `name` with the numerics of its provider here (`HPRUNE_ISA` and the CPU's features choose the CPU family).
    static func named(_ name: String) throws -> ResolvedBackend {
        do { return ResolvedBackend(name: name, numerics: try BackendRegistry.all.numerics(name)) } catch {
            Terminal.err("error: backend '\(name)': \(error)")
            throw Exit.invalid
        }
    }
}

extension BackendSelection {
    /// `--backend NAME` (`@Option(transform: BackendSelection.argument)`): an unknown name is a usage error with a
    /// did-you-mean, printed by ArgumentParser before anything runs.
    static func argument(_ text: String) throws -> BackendSelection {
        do { return try BackendSelection.parse(text) } catch { throw ValidationError("\(error)") }
    }

    static let optionHelp = ArgumentHelp("auto | cpu | cuda | reference (default: the recipe's `backend:`).", valueName: "backend")
}

/// Which compute backend a run uses: `--backend` or the recipe's `backend:`; `auto` picks CUDA when it opens and
/// passed its start-up self-check for every op the recipe's stages need. Decided before planning, so a recipe that
/// needs an op the GPU failed stops here with the stage's location.
enum BackendChoice {
    static func resolve(requested: BackendSelection, recipe: Recipe) throws -> ResolvedBackend {
        try ResolvedBackend.named(try resolveName(requested: requested, recipe: recipe))
    }

    static func resolveName(requested: BackendSelection, recipe: Recipe) throws -> String {
        switch requested {
        case .cpu: return "cpu"
        case .reference: return "reference"
        case .cuda:
            let info = CUDABackendProvider().info()
            guard info.available else {
                Terminal.err("error: backend 'cuda' is not available: \(info.reason ?? "") (see `hprune backends`); use `--backend cpu` or `backend: auto`")
                throw Exit.invalid
            }
            if let problem = missingOps(recipe).first {
                Terminal.err("error: \(problem); use `--backend cpu` (see `hprune selftest --backend cuda`)")
                throw Exit.invalid
            }
            return "cuda"
        case .auto:
            let info = CUDABackendProvider().info()
            if info.available, missingOps(recipe).isEmpty {
                Terminal.err("note: backend auto: using cuda (\(info.features.joined(separator: " ")))")
                return "cuda"
            }
            let why = info.available ? (missingOps(recipe).first ?? "") : (info.reason ?? "unavailable")
            Terminal.err("note: backend auto: using cpu (cuda: \(why))")
            return "cpu"
        }
    }

    /// Ops the stages compute with: every op for training stages, the forward ops for the others, none for `command`.
    static func requiredOps(kind: String) -> [Op] {
        let backwardOnly: Set<Op> = [.geluBackward, .siluBackward, .modulateBackward, .gateResidualBackward,
                                     .layerNormBackward, .rmsNormBackward, .softmaxBackward, .mseBackward,
                                     .attentionBackward, .adamw, .clipGradNorm]
        switch kind {
        case "command": return []
        case "distill", "train": return Op.allCases
        default: return Op.allCases.filter { !backwardOnly.contains($0) }
        }
    }

    /// One message per stage that needs an op the CUDA self-check disabled ("file:line:col: stage 'x' …").
    static func missingOps(_ recipe: Recipe) -> [String] {
        guard case .success(let o) = CUDARuntime.open() else { return [] }
        return recipe.stages.compactMap { st in
            guard let op = requiredOps(kind: st.kind).first(where: { o.report.failures[$0] != nil }) else { return nil }
            return "\(st.kindMark): stage '\(st.name)' (kind \(st.kind)) needs op \(op), which failed the CUDA start-up self-check: \(o.report.failures[op]!)"
        }
    }
}
