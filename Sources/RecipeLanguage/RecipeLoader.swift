// Loads a recipe file into a `Recipe`: parse (libyaml), resolve `extends:` (deep merge), apply `--set`
// overrides, interpolate `${vars.x}` / `${env.X}`, and check the top-level keys. Every problem found is
// returned at once; stage bodies are left to the stage-kind registry in StageGraph.
import Foundation
import YAMLSupport

/// What loading produced: the recipe whenever one could be built (so later checks can still run and report
/// everything at once), and every diagnostic found on the way.
public struct RecipeLoadResult: Sendable {
    public var recipe: Recipe?
    public var diagnostics: [Diagnostic]

    public init(recipe: Recipe?, diagnostics: [Diagnostic]) {
        self.recipe = recipe
        self.diagnostics = diagnostics
    }

    /// True if any diagnostic is an error (the recipe is invalid: exit code 2).
    public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }
}

/// Reads recipes.
///
/// ```swift
/// let loader = RecipeLoader()                       // process environment, fresh SourceCache
/// let result = loader.load(path: "recipes/quickstart.yaml", overrides: ["vars.budget=0.3"])
/// if result.hasErrors {
///     print(DiagnosticRenderer(sources: loader.sources).render(result.diagnostics))
/// }
/// ```
/// Order of work: parse each file → merge `extends` (bases in list order, then this file; maps merge, lists
/// and scalars replace) → `--set` overrides → interpolation → top-level checks. Every node keeps the mark of
/// the file (or `--set` argument) it came from.
public struct RecipeLoader: Sendable {
    /// Values for `${env.NAME}`.
    public var environment: [String: String]
    /// Every text the loader parsed is registered here, so a `DiagnosticRenderer` shows exactly what was read.
    public var sources: SourceCache
    public var limits: YAMLLimits
    /// The longest chain of `extends` followed before giving up.
    public var maxExtendsDepth = 32
    /// Whether `extends` may name files outside the recipe's folder tree (`--allow-extends-outside`). By default
    /// every extended file must lie, with symbolic links resolved, in the folder that holds the top-level recipe
    /// (as its path is written, links resolved) or below it.
    public var allowExtendsOutside = false

    public init(environment: [String: String] = ProcessInfo.processInfo.environment,
                sources: SourceCache = SourceCache(), limits: YAMLLimits = .default) {
        self.environment = environment
        self.sources = sources
        self.limits = limits
    }

    /// Loads the recipe at `path`. `overrides` are `--set` arguments without the flag: `dotted.path=value`.
    public func load(path: String, overrides: [String] = []) -> RecipeLoadResult {
        var session = LoadSession(loader: self, recipeFile: path)
        let document = session.loadFile(display: path, referencedAt: nil, chain: [])
        return session.finish(document, file: path, overrides: overrides)
    }

    /// Loads a recipe from bytes already in memory (`file` names it in marks; `extends` is relative to it).
    public func load(bytes: [UInt8], file: String, overrides: [String] = []) -> RecipeLoadResult {
        var session = LoadSession(loader: self, recipeFile: file)
        let document = session.loadBytes(bytes, display: file,
                                          chain: [ExtendsLink(absolute: Self.absolutePath(file), display: file)])
        return session.finish(document, file: file, overrides: overrides)
    }

    /// The absolute path with symbolic links resolved; for a path that does not exist, its folder's.
    static func absolutePath(_ path: String) -> String {
        if let real = realPath(path) { return real }
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if let dir = realPath(url.deletingLastPathComponent().path) {
            return (dir == "/" ? "" : dir) + "/" + url.lastPathComponent
        }
        return url.path
    }

    /// The canonical absolute path (every symbolic link resolved, as `realpath(3)`), or nil if it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// One file on the way from the loaded recipe to the file being read, for `extends` loop detection.
struct ExtendsLink {
    var absolute: String
    var display: String
}

/// The state of one `load` call: diagnostics so far and the files read.
struct LoadSession {
    let loader: RecipeLoader
    var diagnostics: [Diagnostic] = []
    var files: [String] = []
    /// The folder tree `extends` is confined to: the top-level recipe's folder, symbolic links resolved.
    let extendsRoot: String
    /// Variables `--set` created that the file did not define, checked for a use once all overrides are in.
    var newVariables: [(name: String, mark: SourceMark, label: String, defined: [String])] = []

    init(loader: RecipeLoader, recipeFile: String) {
        self.loader = loader
        let dir = (recipeFile as NSString).deletingLastPathComponent
        extendsRoot = RecipeLoader.absolutePath(dir.isEmpty ? "." : dir)
    }

    mutating func finish(_ document: YAMLNode?, file: String, overrides: [String]) -> RecipeLoadResult {
        guard var document else { return RecipeLoadResult(recipe: nil, diagnostics: diagnostics) }
        for (i, arg) in overrides.enumerated() {
            applyOverride(arg, index: i + 1, to: &document)
        }
        checkNewVariables(in: document)
        var interpolator = Interpolator(environment: loader.environment, maxDepth: loader.limits.maxDepth,
                                        maxSubstitutedNodes: loader.limits.maxAliasNodes)
        interpolator.run(&document)
        diagnostics += interpolator.diagnostics
        var checker = TopLevelChecker(file: file)
        let recipe = checker.check(document, files: files)
        diagnostics += checker.diagnostics
        return RecipeLoadResult(recipe: recipe, diagnostics: diagnostics)
    }

    // MARK: Files and extends

    /// Reads, parses and merges one file with what it extends; nil (with diagnostics) if it cannot be used.
    /// `chain` holds the absolute paths of the files that led here, for loop detection.
    mutating func loadFile(display: String, referencedAt: SourceMark?, chain: [ExtendsLink]) -> YAMLNode? {
        let absolute = RecipeLoader.absolutePath(display)
        let at = referencedAt ?? .synthetic(display)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: display, isDirectory: &isDirectory) else {
            diagnostics.append(.error(referencedAt == nil ? "recipe file '\(display)' does not exist"
                                                          : "extended file '\(display)' does not exist",
                                      at: at, hint: referencedAt == nil ? nil
                                          : "paths in 'extends' are relative to the file that writes them"))
            return nil
        }
        if isDirectory.boolValue {
            diagnostics.append(.error("'\(display)' is a directory, not a recipe file", at: at))
            return nil
        }
        // Read at most one byte past the limit, so /dev/zero or a huge file cannot exhaust memory.
        guard let handle = FileHandle(forReadingAtPath: display) else {
            diagnostics.append(.error("cannot read '\(display)'", at: at, hint: "check its permissions"))
            return nil
        }
        defer { try? handle.close() }
        var bytes: [UInt8] = []
        do {
            while bytes.count <= loader.limits.maxBytes,
                  let chunk = try handle.read(upToCount: min(1 << 20, loader.limits.maxBytes + 1 - bytes.count)),
                  !chunk.isEmpty {
                bytes += chunk
            }
        } catch {
            diagnostics.append(.error("cannot read '\(display)': \(error.localizedDescription)", at: at))
            return nil
        }
        if bytes.count > loader.limits.maxBytes {
            diagnostics.append(.error("'\(display)' is larger than the \(loader.limits.maxBytes)-byte limit for recipes",
                                      at: at, hint: "recipes are small text files; is this the right file?"))
            return nil
        }
        return loadBytes(bytes, display: display, chain: chain + [ExtendsLink(absolute: absolute, display: display)])
    }

    mutating func loadBytes(_ bytes: [UInt8], display: String, chain: [ExtendsLink]) -> YAMLNode? {
        files.append(display)
        loader.sources.register(bytes: bytes, for: display)
        let root: YAMLNode
        do {
            root = try YAMLParser.parse(bytes, file: display, limits: loader.limits)
        } catch {
            diagnostics += error.diagnostics
            return nil
        }
        guard case .mapping(var pairs) = root.value else {
            diagnostics.append(.error("a recipe must be a mapping of keys (recipe, name, stages, …), got "
                                      + root.typeDescription, at: root.mark,
                                      hint: "start the file with 'recipe: 1' and add a 'stages:' mapping"))
            return nil
        }
        guard let index = pairs.firstIndex(where: { $0.key.scalarText == "extends" }) else { return root }
        let extendsNode = pairs.remove(at: index).value
        var merged: YAMLNode?
        for (target, mark) in extendsTargets(extendsNode) {
            guard let base = loadExtended(target, at: mark, from: display, chain: chain) else { continue }
            merged = merged.map { DeepMerge.merge($0, base) } ?? base
        }
        let own = YAMLNode(.mapping(pairs), mark: root.mark, tag: root.tag)
        return merged.map { DeepMerge.merge($0, own) } ?? own
    }

    /// The paths an `extends:` value names, with their marks; reports values of the wrong type.
    mutating func extendsTargets(_ node: YAMLNode) -> [(String, SourceMark)] {
        func one(_ n: YAMLNode) -> (String, SourceMark)? {
            if case .scalar(let s, _) = n.value, !n.isNull, !s.isEmpty { return (s, n.mark) }
            diagnostics.append(.error("'extends' takes a file path or a list of file paths, got \(n.typeDescription)",
                                      at: n.mark, hint: "e.g. 'extends: base/sd35.yaml'"))
            return nil
        }
        if let items = node.items { return items.compactMap(one) }
        return one(node).map { [$0] } ?? []
    }

    mutating func loadExtended(_ target: String, at mark: SourceMark, from parent: String,
                               chain: [ExtendsLink]) -> YAMLNode? {
        let display: String
        if target.hasPrefix("/") {
            display = target
        } else {
            let dir = (parent as NSString).deletingLastPathComponent
            display = Self.tidy(dir.isEmpty ? target : (dir as NSString).appendingPathComponent(target))
        }
        let absolute = RecipeLoader.absolutePath(display)
        // Confinement is checked before the file is even looked at, so nothing outside the tree is read or probed.
        if !loader.allowExtendsOutside, absolute != extendsRoot, !absolute.hasPrefix(extendsRoot == "/" ? "/" : extendsRoot + "/") {
            let resolved = absolute == display ? "" : " (it resolves to \(absolute))"
            diagnostics.append(.error("extended file '\(display)' is outside the recipe's folder \(extendsRoot)\(resolved)",
                                      at: mark, hint: "extends may name files in the recipe's folder and below; move "
                                          + "the file there, or pass --allow-extends-outside"))
            return nil
        }
        let ext = (display as NSString).pathExtension.lowercased()
        guard ext == "yaml" || ext == "yml" else {
            diagnostics.append(.error("extended file '\(display)' is not a recipe: its name does not end in .yaml or .yml",
                                      at: mark, hint: "extends names other recipe files (YAML); the file was not read"))
            return nil
        }
        if let loopStart = chain.firstIndex(where: { $0.absolute == absolute }) {
            let names = chain[loopStart...].map(\.display) + [display]
            diagnostics.append(.error("extends loop: " + names.joined(separator: " → "), at: mark,
                                      hint: "a recipe cannot extend itself, directly or through other files"))
            return nil
        }
        if chain.count >= loader.maxExtendsDepth {
            diagnostics.append(.error("'extends' chain is longer than \(loader.maxExtendsDepth) files", at: mark))
            return nil
        }
        return loadFile(display: display, referencedAt: mark, chain: chain)
    }

    /// `a/./b/../c.yaml` → `a/c.yaml`, keeping the path relative if it was.
    static func tidy(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            parts.append(part)
        }
        let joined = parts.joined(separator: "/")
        if path.hasPrefix("/") { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }
}

/// `extends` merging: maps merge key by key, everything else (lists, scalars, type changes) is replaced by the
/// overriding side. The winning node keeps its own mark, so errors point into the file the value came from.
enum DeepMerge {
    static func merge(_ base: YAMLNode, _ over: YAMLNode) -> YAMLNode {
        guard case .mapping(var result) = base.value, case .mapping(let overPairs) = over.value else { return over }
        var index: [String: Int] = [:]
        for (i, pair) in result.enumerated() {
            if let k = pair.key.scalarText { index[k] = i }
        }
        for pair in overPairs {
            if let k = pair.key.scalarText, let i = index[k] {
                result[i] = YAMLPair(key: pair.key, value: merge(result[i].value, pair.value))
            } else {
                if let k = pair.key.scalarText { index[k] = result.count }
                result.append(pair)
            }
        }
        return YAMLNode(.mapping(result), mark: over.mark, tag: over.tag)
    }
}
