// Shared helpers for the recipe-language tests: write recipes into a temp dir and load them for real.
import Foundation
import RecipeLanguage
import TestSupport
import YAMLSupport

/// A temp dir of recipe files and a loader with a fixed environment.
struct Workspace {
    let dir = TemporaryDirectory(prefix: "hprune-recipe")
    var environment: [String: String] = [:]

    init(_ files: [String: String] = [:], environment: [String: String] = [:]) {
        for (name, text) in files { dir.write(name, text) }
        self.environment = environment
    }

    func path(_ name: String) -> String { dir.path + "/" + name }

    func load(_ name: String, overrides: [String] = [], allowExtendsOutside: Bool = false) -> RecipeLoadResult {
        var loader = RecipeLoader(environment: environment)
        loader.allowExtendsOutside = allowExtendsOutside
        return loader.load(path: path(name), overrides: overrides)
    }
}

extension RecipeLoadResult {
    /// Diagnostics as one-line strings with the temp dir prefix removed, for readable expectations.
    func lines(relativeTo ws: Workspace) -> [String] {
        diagnostics.map { $0.description.replacingOccurrences(of: ws.dir.path + "/", with: "") }
    }
}

let minimalStages = """
    stages:
      hello: { kind: command, run: [echo, hi] }
    """
