// `extends:`: paths relative to the extending file, deep merge (maps merge, lists replace, this file wins),
// marks from the file each value came from, loops and missing files reported at the `extends` value.
import Foundation
import Testing
import RecipeLanguage
import YAMLSupport

@Suite struct ExtendsTests {
    @Test func deepMergeMapsMergeListsReplace() throws {
        let ws = Workspace([
            "base/common.yaml": """
                recipe: 1
                seed: 3
                vars: { budget: 0.2, steps: 100 }
                models:
                  teacher: { format: diffusers, path: /m/teacher }
                stages:
                  prune: { kind: prune, model: teacher, target: { params: 0.2, granularity: block }, skip: [a, b] }
                """,
            "recipes/r.yaml": """
                extends: ../base/common.yaml
                vars: { budget: 0.3 }
                stages:
                  prune: { target: { params: 0.5 }, skip: [c] }
                  extra: { kind: command }
                """,
        ])
        // ../base is outside recipes/, the folder tree extends is confined to: refused unless allowed.
        #expect(ws.load("recipes/r.yaml").lines(relativeTo: ws).first?.hasPrefix(
            "recipes/r.yaml:1:10: error: extended file 'base/common.yaml' is outside the recipe's folder ") == true)
        let result = ws.load("recipes/r.yaml", allowExtendsOutside: true)
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let recipe = try #require(result.recipe)
        #expect(recipe.seed == 3)
        #expect(recipe.vars["budget"]?.double == 0.3)
        #expect(recipe.vars["steps"]?.int == 100)
        #expect(recipe.stages.map(\.name) == ["prune", "extra"])
        let prune = recipe.stages[0].body
        #expect(prune["kind"]?.string == "prune")
        #expect(prune["target"]?["params"]?.double == 0.5)
        #expect(prune["target"]?["granularity"]?.string == "block")
        #expect(prune["skip"]?.items?.compactMap(\.string) == ["c"])
        // Each value keeps the mark of the file it came from; the extended file is named relative to ours.
        let base = ws.path("base/common.yaml")
        #expect(prune["kind"]?.mark == SourceMark(file: base, line: 7, column: 18))
        #expect(prune["target"]?["params"]?.mark.file == ws.path("recipes/r.yaml"))
        #expect(recipe.models.first?.mark == SourceMark(file: base, line: 5, column: 3))
        #expect(recipe.files == [ws.path("recipes/r.yaml"), base])
        #expect(recipe.document["extends"] == nil)
    }

    @Test func confinementIsTheRecipesFolderWithLinksResolved() throws {
        let ws = Workspace([
            "top/r.yaml": "extends: [sub/a.yaml, ./b.yaml, sub/../c.yaml]\n" + minimalStages + "\nrecipe: 1\n",
            "top/sub/a.yaml": "seed: 1\n",
            "top/b.yaml": "seed: 2\n",
            "top/c.yaml": "seed: 3\n",
            "outside.yaml": "seed: 9\n",
            "top/escape.yaml": "extends: sub/../../outside.yaml\nrecipe: 1\n" + minimalStages,
            "top/viaLink.yaml": "extends: linked/x.yaml\nrecipe: 1\n" + minimalStages,
            "elsewhere/x.yaml": "seed: 8\n",
            "top/inner/lnk.yaml": "extends: ../b.yaml\nrecipe: 1\n" + minimalStages,
        ])
        #expect(ws.load("top/r.yaml").recipe?.seed == 3)
        #expect(ws.load("top/escape.yaml").lines(relativeTo: ws).first?.contains("is outside the recipe's folder") == true)
        // A link inside the tree to a folder outside it: the link's target is what counts.
        symlink(ws.path("elsewhere"), ws.path("top/linked"))
        let link = ws.load("top/viaLink.yaml").lines(relativeTo: ws)
        #expect(link.first?.contains("is outside the recipe's folder") == true && link.first?.contains("resolves to") == true, "\(link)")
        // The tree is that of the top-level recipe: a recipe in a subfolder may not reach up, even to its parent.
        #expect(ws.load("top/inner/lnk.yaml").lines(relativeTo: ws).first?.contains("is outside") == true)
        // A link to the tree's folder from elsewhere is resolved, so the same files are inside.
        symlink(ws.path("top"), ws.path("alias"))
        #expect(ws.load("alias/r.yaml").recipe?.seed == 3)
    }

    @Test func listOfBasesLaterWins() throws {
        let ws = Workspace([
            "a.yaml": "recipe: 1\nseed: 1\nbackend: cpu\n",
            "b.yaml": "seed: 2\n",
            "r.yaml": "extends: [a.yaml, b.yaml]\n" + minimalStages,
        ])
        let recipe = try #require(ws.load("r.yaml").recipe)
        #expect(recipe.seed == 2)
        #expect(recipe.backend == .cpu)
    }

    @Test func errorsInAnExtendedFilePointIntoIt() {
        let ws = Workspace([
            "base.yaml": "recipe: 1\nbakend: cpu\n",
            "r.yaml": "extends: base.yaml\n" + minimalStages,
        ])
        #expect(ws.load("r.yaml").lines(relativeTo: ws) == [
            "base.yaml:2:1: error: unknown top-level key 'bakend' (did you mean 'backend'?)",
        ])
    }

    @Test func loopIsReportedWithTheChain() {
        let ws = Workspace([
            "a.yaml": "recipe: 1\nextends: b.yaml\n" + minimalStages,
            "b.yaml": "extends: sub/c.yaml\n",
            "sub/c.yaml": "extends: ../a.yaml\n",
        ])
        let (result, seconds) = timedLoad(ws, "a.yaml")
        #expect(seconds < 2)
        #expect(result.lines(relativeTo: ws) == [
            "sub/c.yaml:1:10: error: extends loop: a.yaml → b.yaml → sub/c.yaml → a.yaml "
                + "(a recipe cannot extend itself, directly or through other files)",
        ])
        #expect(result.recipe != nil)
    }

    @Test func selfExtension() {
        let ws = Workspace(["a.yaml": "recipe: 1\nextends: ./a.yaml\n" + minimalStages])
        #expect(ws.load("a.yaml").lines(relativeTo: ws) == [
            "a.yaml:2:10: error: extends loop: a.yaml → a.yaml "
                + "(a recipe cannot extend itself, directly or through other files)",
        ])
    }

    @Test func missingExtendedFile() {
        let ws = Workspace(["r.yaml": "recipe: 1\nextends: [base/nope.yaml]\n" + minimalStages])
        #expect(ws.load("r.yaml").lines(relativeTo: ws) == [
            "r.yaml:2:11: error: extended file 'base/nope.yaml' does not exist "
                + "(paths in 'extends' are relative to the file that writes them)",
        ])
    }

    @Test func badExtendsValue() {
        let ws = Workspace(["r.yaml": "recipe: 1\nextends: { a: b }\n" + minimalStages])
        #expect(ws.load("r.yaml").lines(relativeTo: ws) == [
            "r.yaml:2:10: error: 'extends' takes a file path or a list of file paths, got a mapping "
                + "(e.g. 'extends: base/sd35.yaml')",
        ])
    }

    @Test func extendedFileMustBeAMappingAndParse() {
        let ws = Workspace([
            "list.yaml": "- 1\n",
            "broken.yaml": "a: [1\n",
            "r.yaml": "recipe: 1\nextends: [list.yaml, broken.yaml]\n" + minimalStages,
        ])
        let lines = ws.load("r.yaml").lines(relativeTo: ws)
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("list.yaml:1:1: error: a recipe must be a mapping") == true)
        #expect(lines.last?.hasPrefix("broken.yaml:2:1: error: YAML syntax error") == true)
    }

    func timedLoad(_ ws: Workspace, _ name: String) -> (RecipeLoadResult, Double) {
        let clock = ContinuousClock()
        var result: RecipeLoadResult?
        let d = clock.measure { result = ws.load(name) }
        return (result!, Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }
}
