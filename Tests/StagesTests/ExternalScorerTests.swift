// `metric: external` with a `scorer`: hprune samples the baseline and every removal, hands each variant's final
// latents to a real program (a POSIX sh + od + awk script, no Python) and turns its P into ΔP = P_baseline − P —
// checked against the same samples drawn here; resume after an interruption re-scores nothing already kept;
// scorer failures are located; the official code's contribution JSON imports with its `<tab>` keys.

import CPUBackend
import TensorFiles
import Compression
import Foundation
import ModelSpec
import Models
import Scheduler
@testable import Stages
import TestSupport
import Testing

@Suite struct ExternalScorerTests {
    /// P = −mean(x²) over every latent of the samples file: a real reading of the file hprune wrote (the header
    /// length, then the f32 data). Logs each variant to variants.log and keeps the baseline's samples file.
    static let script = """
        #!/bin/sh
        set -e
        f="$HPRUNE_SAMPLES"
        echo "$HPRUNE_VARIANT" >> variants.log
        if [ "$HPRUNE_VARIANT" = baseline ]; then cp "$f" baseline-samples.safetensors; fi
        n=$(od -A n -t u8 -N 8 "$f" | tr -d ' ')
        od -A n -v -t f4 -j $((8 + n)) "$f" | awk '{ for (i = 1; i <= NF; i++) { s += $i * $i; c++ } } END { printf "{\\"score\\": %.10g}\\n", -s / c }' > "$HPRUNE_OUT/score.json"
        """

    static func recipe(_ teacher: String, _ data: String, scorer: String = "[./score.sh]") -> String {
        """
        recipe: 1
        name: x
        seed: 7
        models: { teacher: { path: \(teacher) } }
        datasets: { calib: { path: \(data), format: safetensors } }
        stages:
          score: { kind: score, model: teacher, data: calib, batch: 2, sampling: { steps: 2 }, components: [block, ff],
                   metric: external, scorer: { run: \(scorer), deps: [score.sh] } }
        """
    }

    static func writeScorer(_ dir: TemporaryDirectory, _ text: String = script) throws {
        let path = dir.write("score.sh", text)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    /// P of the samples drawn here as the stage draws them (same noise, sampler, batches).
    static func expectedP(_ dir: TemporaryDirectory, removing: [String]) throws -> Double {
        let be = CPUBackend()
        let cfg = try ModelConfig.load(path: dir.path + "/teacher/config.json")
        let model = try loadTransformer(path: dir.path + "/teacher", backend: be)
        let ds = try PromptDataset.open(path: dir.path + "/calib.safetensors", source: "calib")
        let shape = Array(try ds.latentShape(for: cfg, batch: 1).dropFirst())
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 3)), steps: 2)
        let removal = try Removal(parsing: removing, in: ModelStructure(cfg))
        var s = 0.0, c = 0
        for range in ds.batches(size: 2) {
            let noise = try PromptDataset.noise(range, sampleShape: shape, seed: 7, backend: be)
            let x = try be.floats(try sampler.sample(model, from: noise, cond: try ds.conditioning(range, backend: be), removing: removal))
            for v in x { s += Double(v) * Double(v); c += 1 }
        }
        return -s / Double(c)
    }

    @Test func theScorerGetsEveryVariantAndDeltaPIsBaselineMinusP() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12, metadata: ["prompts": "a red cube\ntwo dogs\na photo of a cat"])
        try Self.writeScorer(dir)
        let run = try await runRecipe(dir, Self.recipe(teacher, data))
        let s = try scores(run)
        let base = try Self.expectedP(dir, removing: [])
        let tol = 1e-5 * abs(base)
        #expect(abs((s.baseline ?? .nan) - base) <= tol, "baseline \(s.baseline ?? .nan) vs \(base)")
        #expect(s.metric == "external")
        let scored = s.entries.filter { $0.deltaP != nil }
        #expect(Set(scored.map(\.address)) == ["blocks.0", "blocks.1", "blocks.0.ff", "blocks.1.ff"])
        for e in scored {
            let want = base - (try Self.expectedP(dir, removing: [e.address]))
            #expect(abs((e.deltaP ?? .nan) - want) <= tol, "\(e.address): \(e.deltaP ?? .nan) vs \(want)")
        }
        #expect(scored.contains { abs($0.deltaP ?? 0) > 100 * tol })   // the removals change P: not a vacuous match

        // One call per variant, the baseline first.
        let log = try String(contentsOfFile: dir.path + "/variants.log", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(log.first == "baseline" && log.count == 5 && Set(log) == ["baseline", "blocks.0", "blocks.1", "blocks.0.ff", "blocks.1.ff"])
        // What the scorer read: latents [N, C, H, W] with the layout and the prompts.
        let f = try SafetensorsFile(path: dir.path + "/baseline-samples.safetensors")
        #expect(try f.info("latents").shape == [3, 4, 8, 8])
        #expect(f.metadata["layout"] == "sd3-nchw" && f.metadata["variant"] == "baseline" && f.metadata["prompts"] == "a red cube\ntwo dogs\na photo of a cat")
        #expect(metric(run.result("score"), "components_computed") == 4)
    }

    @Test func fluxSamplesArePackedWithTheirTokenGrid() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("flux_tiny", into: dir)
        let data = try writeDataset(dir, n: 2, j: 24, p: 12, metadata: ["latent_height": "2", "latent_width": "3"])
        try Self.writeScorer(dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: f
            seed: 7
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              score: { kind: score, model: teacher, data: calib, components: [block], sampling: { steps: 1, shift: 1.0, guidance: 3.5 },
                       metric: external, scorer: { run: [./score.sh], deps: [score.sh] } }
            """)
        let s = try scores(run)
        #expect(s.entries.filter { $0.deltaP != nil }.count == 4)   // 2 double + 2 single blocks
        let f = try SafetensorsFile(path: dir.path + "/baseline-samples.safetensors")
        #expect(try f.info("latents").shape == [2, 6, 16])
        #expect(f.metadata["layout"] == "flux-packed-2x2" && f.metadata["latent_height"] == "2" && f.metadata["latent_width"] == "3"
                && f.metadata["architecture"] != nil)
    }

    @Test func anInterruptedRunResumesWithoutReScoring() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12)
        try Self.writeScorer(dir)
        let yaml = Self.recipe(teacher, data)
        let first = try await runRecipe(dir, yaml, replacing: [ScoreStage(interruptAfter: 2)])
        #expect(first.result("score")?.status != .ran)
        let second = try await runRecipe(dir, yaml)
        let s = try scores(second)
        #expect(metric(second.result("score"), "components_resumed") == 2)
        #expect(metric(second.result("score"), "components_computed") == 2)
        // baseline + 2 before the interruption, 2 after: nothing scored twice.
        let log = try String(contentsOfFile: dir.path + "/variants.log", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(log.count == 5 && Set(log).count == 5, "\(log)")

        let other = TemporaryDirectory()
        _ = try copyModel("sd3_tiny", into: other)
        _ = try writeDataset(other, j: 24, p: 12)
        try Self.writeScorer(other)
        let fresh = try scores(try await runRecipe(other, yaml))
        #expect(fresh.entries.map(\.deltaP) == s.entries.map(\.deltaP) && fresh.baseline == s.baseline)

        // Editing the scorer (a dep) re-scores: its kept values belong to the old script.
        try Self.writeScorer(other, Self.script + "\n# edited\n")
        let edited = try await runRecipe(other, yaml)
        #expect(metric(edited.result("score"), "components_computed") == 4)
    }

    @Test func scorerFailuresNameTheVariantAndTheStage() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, n: 1, j: 24, p: 12)
        try Self.writeScorer(dir, "#!/bin/sh\necho 'no GPU here' >&2\nexit 3\n")
        let r1 = try #require(try await runRecipe(dir, Self.recipe(teacher, data)).result("score"))
        #expect(r1.status == .failed)
        let m1 = r1.error ?? ""
        #expect(m1.contains("stage 'score' (") && m1.contains("r.yaml:") && m1.contains("variant baseline") && m1.contains("status 3") && m1.contains("no GPU here"), "\(m1)")

        try Self.writeScorer(dir, "#!/bin/sh\necho 'great' > \"$HPRUNE_OUT/score.json\"\n")
        let m2 = try await runRecipe(dir, Self.recipe(teacher, data)).result("score")?.error ?? ""
        #expect(m2.contains("score.json holds 'great'"), "\(m2)")

        let m3 = try await runRecipe(dir, Self.recipe(teacher, data, scorer: "[./no-such-scorer]")).result("score")?.error ?? ""
        #expect(m3.contains("stage 'score' (") && m3.contains("'./no-such-scorer' not found"), "\(m3)")
    }

    @Test func theOfficialContributionJSONImports() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        // The official files' shape: "<block><tab><component>": P with it removed; `all` = the block. sd3_tiny's
        // block 1 is context_pre_only (no ff_context): skipped, as the official SD3.5 file's block 37 entry.
        _ = dir.write("official.json", #"{"0<tab>all": 12.5, "1<tab>ff": 29, "1<tab>ff_context": 28.5, "0<tab>attn": 30.5, "0\tw_norm1_context": 29.75}"#)
        func yaml(_ imp: String) -> String {
            """
            recipe: 1
            name: i
            models: { teacher: { path: \(teacher) } }
            stages:
              score: { kind: score, model: teacher, components: [block, attn, ff, w_norm1_context], metric: external, import: \(imp) }
            """
        }
        let run = try await runRecipe(dir, yaml("{ path: official.json, baseline: 30 }"))
        let s = try scores(run)
        func d(_ a: String) -> Double? { s.entries.first { $0.address == a }?.deltaP }
        #expect(s.baseline == 30 && d("blocks.0") == 17.5 && d("blocks.1.ff") == 1 && d("blocks.0.attn") == -0.5 && d("blocks.0.w_norm1_context") == 0.25)
        #expect(d("blocks.1") == nil)

        // No baseline: refused at check time with the format given, at run time when detected from the content.
        let check = Self.problems(yaml("{ path: official.json, format: hierarchicalprune }"), dir)
        #expect(check.contains("import.baseline") && check.contains("r.yaml:"), "\(check)")
        let m = try await runRecipe(dir, yaml("{ path: official.json }")).result("score")?.error ?? ""
        #expect(m.contains("import 'official.json'") && m.contains("no baseline"), "\(m)")
        // A file of another model: its block numbers are out of range.
        _ = dir.write("big.json", #"{"31<tab>ff": 30.79}"#)
        let m2 = try await runRecipe(dir, yaml("{ path: big.json, baseline: 30.29 }")).result("score")?.error ?? ""
        #expect(m2.contains("block 31 does not exist"), "\(m2)")
    }

    @Test func evaluateWritesEachModelsLatentsForCommandScorers() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12, metadata: ["prompts": "a\nb\nc"])
        let run = try await runRecipe(dir, """
            recipe: 1
            name: e
            seed: 7
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              prune: { kind: prune, model: teacher, remove: "blocks.0.ff" }
              evaluate: { kind: evaluate, models: { original: teacher, pruned: prune }, data: calib, batch: 2, metrics: [memory],
                          latents: true, sampling: { steps: 2 } }
            """)
        let r = try #require(run.result("evaluate"))
        #expect(r.status == .ran, "\(r.error ?? "")")
        let tree = try run.store.readTree(try #require(r.outputs["latents"]))
        #expect(Set(tree.entries.map(\.path)) == ["original.safetensors", "pruned.safetensors"])
        for (name, removed) in [("original", [String]()), ("pruned", ["blocks.0.ff"])] {
            let entry = try #require(tree.entries.first { $0.path == "\(name).safetensors" })
            let path = dir.write("\(name)-copy.safetensors", bytes: [UInt8](try run.store.data(entry.digest)))
            let f = try SafetensorsFile(path: path)
            #expect(try f.info("latents").shape == [3, 4, 8, 8])
            #expect(f.metadata["variant"] == name && f.metadata["layout"] == "sd3-nchw" && f.metadata["prompts"] == "a\nb\nc")
            // The same samples as drawn here: −mean(x²) of the file equals expectedP of that removal.
            let x = try f.floats("latents")
            let p = -x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(x.count)
            let want = try Self.expectedP(dir, removing: removed)
            #expect(abs(p - want) <= 1e-5 * abs(want), "\(name): \(p) vs \(want)")
        }
    }

    @Test func externalSourcesAreCheckedAtValidation() throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        func yaml(_ extra: String) -> String {
            """
            recipe: 1
            name: c
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: calib.safetensors, format: safetensors } }
            stages:
              score: { kind: score, model: teacher\(extra) }
            """
        }
        _ = try writeDataset(dir, j: 24, p: 12)
        #expect(Self.problems(yaml(", data: calib, metric: external"), dir).contains("needs 'scorer'"))
        #expect(Self.problems(yaml(", data: calib, metric: external, scorer: { run: [x] }, import: { path: a.json }"), dir).contains("give one of"))
        #expect(Self.problems(yaml(", data: calib, scorer: { run: [x] }"), dir).contains("only used with 'metric: external'"))
        #expect(Self.problems(yaml(", metric: external, scorer: { run: [x] }"), dir).contains("missing 'data'"))
    }

    /// The diagnostics `validate` reports for `yaml` (empty when it is valid).
    static func problems(_ yaml: String, _ dir: TemporaryDirectory) -> String {
        let path = dir.write("r.yaml", yaml)
        do {
            _ = try Workspace.load(path: path, environment: [:], registry: StageKinds.registry)
            return ""
        } catch {
            return "\(error)"
        }
    }
}
