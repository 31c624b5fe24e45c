// `--set dotted.path=value`: YAML values, new keys, list indexes, applied before interpolation; bad
// overrides name the argument and point into it.
import Testing
import RecipeLanguage
import YAMLSupport

@Suite struct OverrideTests {
    let ws = Workspace(["r.yaml": """
        recipe: 1
        vars: { budget: 0.2 }
        stages:
          prune: { kind: prune, target: { params: "${vars.budget}" }, skip: [a, b] }
        """])

    @Test func setsValuesParsedAsYAML() throws {
        let result = ws.load("r.yaml", overrides: [
            "vars.budget=0.3", "stages.prune.skip.1=z", "stages.prune.opts={ lr: 1e-3 }", "seed=5", "backend=cpu",
        ])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let recipe = try #require(result.recipe)
        #expect(recipe.vars["budget"]?.double == 0.3)
        let prune = try #require(recipe.stages.first?.body)
        #expect(prune["target"]?["params"]?.double == 0.3)   // overrides apply before interpolation
        #expect(prune["skip"]?.items?.compactMap(\.string) == ["a", "z"])
        #expect(prune["opts"]?["lr"]?.double == 1e-3)
        #expect(recipe.seed == 5)
        #expect(recipe.backend == .cpu)
        // The value's mark points into the argument: `--set stages.prune.opts={ lr: 1e-3 }`.
        #expect(prune["opts"]?["lr"]?.mark == SourceMark(file: "<--set 3>", line: 1, column: 31))
    }

    @Test func createsMissingKeysAndNullIsEmpty() throws {
        let ws = Workspace(["r.yaml": "recipe: 1\nvars:\nname: \"n${vars.new.deep}\"\n" + minimalStages])
        let result = ws.load("r.yaml", overrides: ["vars.new.deep=1", "description="])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        #expect(result.recipe?.vars["new"]?["deep"]?.int == 1)
        #expect(result.recipe?.name == "n1")
        #expect(result.recipe?.description == nil)
    }

    @Test func aNewVariableNothingUsesIsAnError() {
        let ws = Workspace(["r.yaml": "recipe: 1\nvars: { budget: 0.2, steps: 3 }\n" + minimalStages])
        #expect(ws.load("r.yaml", overrides: ["vars.budgte=0.3"]).lines(relativeTo: ws) == [
            "<--set 1>:1:12: error: --set vars.budgte=0.3: there is no variable 'budgte' in the recipe, and nothing "
                + "uses ${vars.budgte} (did you mean 'budget'?)",
        ])
        #expect(ws.load("r.yaml", overrides: ["vars.nope.deep=1"]).lines(relativeTo: ws) == [
            "<--set 1>:1:12: error: --set vars.nope.deep=1: there is no variable 'nope' in the recipe, and nothing "
                + "uses ${vars.nope} (defined variables: budget, steps)",
        ])
        // A use in another override counts; so does a use with spaces inside the braces.
        #expect(ws.load("r.yaml", overrides: ["vars.x=1", "description=x${ vars.x }"]).diagnostics.isEmpty)
        #expect(ws.load("r.yaml", overrides: ["vars.budget=0.5", "vars.steps=4"]).diagnostics.isEmpty)
    }

    @Test func unknownKeyFromOverrideIsCheckedLikeTheFile() {
        let result = ws.load("r.yaml", overrides: ["sede=3"])
        #expect(result.lines(relativeTo: ws) == ["<--set 1>:1:7: error: unknown top-level key 'sede' (did you mean 'seed'?)"])
    }

    @Test func badOverrides() {
        let result = ws.load("r.yaml", overrides: [
            "novalue", "stages..prune=1", "stages.prune.skip.7=x", "stages.prune.kind.x=1", "vars.budget=[1",
        ])
        #expect(result.lines(relativeTo: ws) == [
            "<--set 1>:1:7: error: --set novalue: expected dotted.path=value (e.g. --set stages.prune.target.params=0.3)",
            "<--set 2>:1:14: error: --set stages..prune=1: the path has an empty segment "
                + "(write keys separated by single dots, e.g. vars.budget)",
            "<--set 3>:1:25: error: --set stages.prune.skip.7=x: 'stages.prune.skip' is a list with 2 items; "
                + "'7' is not an index into it (use an index from 0 to 1)",
            "<--set 4>:1:25: error: --set stages.prune.kind.x=1: 'stages.prune.kind' is a string, not a mapping, "
                + "so it has no key 'x' (set 'stages.prune.kind' itself, or check the path)",
            "<--set 5>:1:21: error: --set vars.budget=[1: YAML syntax error: did not find expected ',' or ']' "
                + "(a flow collection ('[...]' or '{...}') is not closed, or an item lacks a comma)",
        ])
        // The failed overrides change nothing.
        #expect(result.recipe?.vars["budget"]?.double == 0.2)
    }

    @Test func overrideIsRenderedWithACaretIntoTheArgument() {
        let loader = RecipeLoader(environment: [:])
        let result = loader.load(path: ws.path("r.yaml"), overrides: ["stages.prune.kind.x=1"])
        let text = DiagnosticRenderer(sources: loader.sources).render(result.diagnostics)
        #expect(text == """
            <--set 1>:1:25: error: --set stages.prune.kind.x=1: 'stages.prune.kind' is a string, not a mapping, \
            so it has no key 'x' (set 'stages.prune.kind' itself, or check the path)
             1 | --set stages.prune.kind.x=1
               |                         ^
            \(ws.path("r.yaml")):4:18: note: 'stages.prune.kind' is written here
             4 |   prune: { kind: prune, target: { params: "${vars.budget}" }, skip: [a, b] }
               |                  ^

            """)
    }
}
