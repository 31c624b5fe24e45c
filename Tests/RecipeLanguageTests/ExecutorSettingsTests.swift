// `executor:` and `slurm:` blocks: parsed values, stage overrides over recipe defaults, sbatch arguments one per
// option, and located errors for bad values.
import Testing
import RecipeLanguage
import YAMLSupport

@Suite struct ExecutorSettingsTests {
    @Test func recipeDefaultsAndStageOverridesMerge() throws {
        let ws = Workspace(["r.yaml": """
            recipe: 1
            executor: slurm
            slurm: { partition: gpu, time: "2:00:00", cpus: 8, mem: 16G, account: lab, retries: 2, extra: ["--qos=high"] }
            stages:
              a: { kind: command, run: [echo, hi], slurm: { time: "1-00:00:00", gres: "gpu:a100:2", extra: ["--constraint=a100"] } }
              b: { kind: command, run: [echo, hi] }
            """])
        let result = ws.load("r.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.lines(relativeTo: ws))")
        let recipe = try #require(result.recipe)
        #expect(recipe.executor == "slurm")
        #expect(recipe.slurmSettings(forStage: "a").sbatchArguments == [
            "--partition=gpu", "--time=1-00:00:00", "--cpus-per-task=8", "--mem=16G", "--gres=gpu:a100:2",
            "--account=lab", "--qos=high", "--constraint=a100"])
        #expect(recipe.slurmSettings(forStage: "b").sbatchArguments == [
            "--partition=gpu", "--time=2:00:00", "--cpus-per-task=8", "--mem=16G", "--account=lab", "--qos=high"])
        #expect(recipe.slurmSettings(forStage: "a").retries == 2)
    }

    @Test func executorDefaultsToLocal() throws {
        let ws = Workspace(["r.yaml": "recipe: 1\n" + minimalStages])
        let recipe = try #require(ws.load("r.yaml").recipe)
        #expect(recipe.executor == "local")
        #expect(recipe.slurmSettings(forStage: "hello").sbatchArguments.isEmpty)
    }

    @Test func badValuesAreReportedWhereTheyAre() {
        let ws = Workspace(["r.yaml": """
            recipe: 1
            executor: slrum
            slurm: { time: soon, cpus: 0, mem: lots, partiton: x }
            stages:
              a: { kind: command, run: [echo], slurm: { extra: ["--wrap=rm -rf /", "qos=high"], gres: "gpu:" } }
            """])
        let lines = ws.load("r.yaml").lines(relativeTo: ws)
        #expect(lines.contains { $0.hasPrefix("r.yaml:2:11: error: 'executor': expected local or slurm, got 'slrum'") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("r.yaml:3:16: error: 'slurm.time': 'soon' is not a Slurm time limit") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("r.yaml:3:28: error: 'slurm.cpus': expected an integer ≥ 1, got 0") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("r.yaml:3:36: error: 'slurm.mem': 'lots' is not a memory size") }, "\(lines)")
        #expect(lines.contains { $0.contains("'slurm': unknown key 'partiton'") && $0.contains("partition") }, "\(lines)")
        #expect(lines.contains { $0.contains("stage 'a': slurm.extra': '--wrap=rm -rf /' is set by hprune") }, "\(lines)")
        #expect(lines.contains { $0.contains("each item must be one sbatch option starting with '--', got 'qos=high'") }, "\(lines)")
        #expect(lines.contains { $0.contains("'stage 'a': slurm.gres': 'gpu:' is not a generic resource") }, "\(lines)")
    }
}
