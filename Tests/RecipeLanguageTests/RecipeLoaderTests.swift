// RecipeLoader on whole recipes: the design's example loads; defaults; top-level key and type checks;
// names; everything reported at once.
import Testing
import RecipeLanguage
import YAMLSupport

@Suite struct RecipeLoaderTests {
    @Test func designExampleLoads() throws {
        let ws = Workspace(["r.yaml": """
            recipe: 1
            name: sd35-large-turbo-hpp20-pwp-nf4
            description: HierarchicalPrune at 20%
            vars: { budget: 0.20 }
            seed: 7
            backend: cpu
            models:
              teacher: { format: diffusers, path: "${env.SD35_DIR}/transformer" }
            datasets:
              calibration: { embeddings: data/calib-embeds.safetensors, count: 64 }
            stages:
              score:    { kind: score, model: teacher, data: calibration }
              prune:    { kind: prune, model: teacher, scores: score, target: { params: "${vars.budget}" } }
            """], environment: ["SD35_DIR": "/models/sd35"])
        let result = ws.load("r.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let recipe = try #require(result.recipe)
        #expect(recipe.schemaVersion == 1)
        #expect(recipe.name == "sd35-large-turbo-hpp20-pwp-nf4")
        #expect(recipe.description == "HierarchicalPrune at 20%")
        #expect(recipe.seed == 7)
        #expect(recipe.backend == .cpu)
        #expect(recipe.vars["budget"]?.double == 0.2)
        #expect(recipe.models.map(\.name) == ["teacher"])
        #expect(recipe.models[0].body["path"]?.string == "/models/sd35/transformer")
        #expect(recipe.models[0].mark == SourceMark(file: ws.path("r.yaml"), line: 8, column: 3))
        #expect(recipe.datasets.map(\.name) == ["calibration"])
        #expect(recipe.stages.map(\.name) == ["score", "prune"])
        #expect(recipe.stages.map(\.kind) == ["score", "prune"])
        #expect(recipe.stages[1].kindMark == SourceMark(file: ws.path("r.yaml"), line: 13, column: 21))
        let params = try #require(recipe.stages[1].body["target"]?["params"])
        #expect(params.double == 0.2)
        #expect(params.mark == SourceMark(file: ws.path("r.yaml"), line: 13, column: 77))
        #expect(recipe.document["stages"]?["prune"]?["target"]?["params"]?.double == 0.2)
        #expect(recipe.files == [ws.path("r.yaml")])
        #expect(recipe.file == ws.path("r.yaml"))
    }

    @Test func defaults() throws {
        let ws = Workspace(["my-recipe.yaml": "recipe: 1\n" + minimalStages])
        let recipe = try #require(ws.load("my-recipe.yaml").recipe)
        #expect(recipe.name == "my-recipe")
        #expect(recipe.seed == 0)
        #expect(recipe.backend == .auto)
        #expect(recipe.description == nil)
        #expect(recipe.vars.isEmpty && recipe.models.isEmpty && recipe.datasets.isEmpty)
    }

    @Test func unknownKeysWithDidYouMean() {
        let ws = Workspace(["r.yaml": "recipe: 1\nsede: 3\nstagse: {}\n" + minimalStages])
        let result = ws.load("r.yaml")
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:2:1: error: unknown top-level key 'sede' (did you mean 'seed'?)",
            "r.yaml:3:1: error: unknown top-level key 'stagse' (did you mean 'stages'?)",
        ])
        #expect(result.recipe != nil)
    }

    @Test func wrongTypesAndRanges() {
        let ws = Workspace(["r.yaml": """
            recipe: "1"
            name: [a]
            seed: -1
            backend: cdua
            vars: [1, 2]
            models: { teacher: path/to/model }
            datasets: 3
            stages:
              a: { run: [x] }
              b: { kind: 12 }
              c: []
            """])
        let result = ws.load("r.yaml")
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:1:9: error: 'recipe': expected an integer (the schema version, 1), got a string \"1\"",
            "r.yaml:2:7: error: 'name': expected a non-empty string, got a list of 1 item",
            "r.yaml:3:7: error: 'seed' must be ≥ 0, got -1",
            "r.yaml:4:10: error: unknown backend 'cdua' (did you mean 'cuda'?)",
            "r.yaml:5:7: error: 'vars': expected a mapping of variable names to values, got a list of 2 items",
            "r.yaml:6:20: error: model 'teacher' must be a mapping of settings, got a string \"path/to/model\" "
                + "(e.g. 'teacher: { format: diffusers, path: … }')",
            "r.yaml:7:11: error: 'datasets': expected a mapping of dataset names to their settings, got an integer 3",
            "r.yaml:9:3: error: stage 'a' has no 'kind' (add 'kind: <stage kind>', e.g. 'kind: command')",
            "r.yaml:10:14: error: stage 'b': 'kind' must be a string (the stage kind), got an integer 12",
            "r.yaml:11:6: error: stage 'c' must be a mapping with a 'kind', got an empty list "
                + "(e.g. 'c: { kind: command, run: [echo, hi] }')",
        ])
        // A recipe is still built so stage-level checks can run too.
        #expect(result.recipe?.stages.map(\.name) == ["a", "b"])
        #expect(result.recipe?.stages.first?.kind == "")
    }

    @Test func missingRequiredKeysAndVersion() {
        let ws = Workspace(["a.yaml": "name: x\n", "b.yaml": "recipe: 2\nstages: {}\n"])
        #expect(ws.load("a.yaml").lines(relativeTo: ws) == [
            "a.yaml:1:1: error: missing required key 'recipe' (the schema version) (add 'recipe: 1' as the first line)",
            "a.yaml:1:1: error: missing required key 'stages' (add a 'stages:' mapping of stage names to { kind: …, … })",
        ])
        #expect(ws.load("b.yaml").lines(relativeTo: ws) == [
            "b.yaml:1:9: error: unsupported recipe schema version 2 (this hprune reads 'recipe: 1')",
            "b.yaml:2:9: error: 'stages' is empty; a recipe needs at least one stage",
        ])
    }

    @Test func namesAreIdentifiersAndUniqueAcrossSections() {
        let ws = Workspace(["r.yaml": """
            recipe: 1
            models: { teacher: { path: a }, "bad name": { path: b } }
            datasets: { calibration: { count: 1 } }
            stages:
              teacher: { kind: command }
              calibration: { kind: command }
              9lives: { kind: command }
              ok_name-2: { kind: command }
            """])
        let result = ws.load("r.yaml")
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:2:33: error: model name 'bad name' is not a valid name "
                + "(use letters, digits, '_' and '-', starting with a letter or '_')",
            "r.yaml:7:3: error: stage name '9lives' is not a valid name "
                + "(use letters, digits, '_' and '-', starting with a letter or '_')",
            "r.yaml:5:3: error: stage name 'teacher' is already used by a model "
                + "(names must be unique across models, datasets and stages; rename one)",
            "r.yaml:6:3: error: stage name 'calibration' is already used by a dataset "
                + "(names must be unique across models, datasets and stages; rename one)",
        ])
        #expect(result.diagnostics[2].notes.first?.mark == SourceMark(file: ws.path("r.yaml"), line: 2, column: 11))
        #expect(result.recipe?.stages.map(\.name) == ["teacher", "calibration", "ok_name-2"])
    }

    @Test func topLevelMustBeAMapping() {
        let ws = Workspace(["r.yaml": "- a\n- b\n"])
        let result = ws.load("r.yaml")
        #expect(result.recipe == nil)
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:1:1: error: a recipe must be a mapping of keys (recipe, name, stages, …), got a list "
                + "(start the file with 'recipe: 1' and add a 'stages:' mapping)",
        ])
    }

    @Test func missingFile() {
        let ws = Workspace()
        let result = ws.load("nope.yaml")
        #expect(result.recipe == nil)
        #expect(result.lines(relativeTo: ws) == ["nope.yaml: error: recipe file 'nope.yaml' does not exist"])
    }

    @Test func loadFromMemory() throws {
        let loader = RecipeLoader(environment: [:])
        let result = loader.load(bytes: Array(("recipe: 1\n" + minimalStages).utf8), file: "mem.yaml")
        #expect(result.diagnostics.isEmpty)
        #expect(try #require(result.recipe).name == "mem")
        #expect(loader.sources.line(1, of: "mem.yaml") == "recipe: 1")
    }

    @Test func anchorsAndMergeKeysInRecipes() throws {
        let ws = Workspace(["r.yaml": """
            recipe: 1
            vars:
              common: &common { kind: command, env: { A: "1" } }
            stages:
              a: { <<: *common, run: [echo, a] }
              b:
                <<: *common
                kind: command
                run: [echo, b]
            """])
        let result = ws.load("r.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let stages = try #require(result.recipe?.stages)
        #expect(stages.map(\.kind) == ["command", "command"])
        #expect(stages[0].body["env"]?["A"]?.string == "1")
        #expect(stages[1].body["run"]?.items?.last?.string == "b")
    }
}
