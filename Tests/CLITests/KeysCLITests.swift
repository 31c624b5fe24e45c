// Honest keys through the real binary: the CPU kernel family in use (HPRUNE_ISA) is part of a backend stage's key —
// another family re-runs it instead of reusing results computed by other kernels — while a command stage keeps its
// key; `plan --why` and `diff` name what changed (a param, an input digest, a family's numerics); `--backend` and a
// recipe's `backend:` reject unknown names with a did-you-mean; and a store written by the previous layout opens,
// verifies clean and runs on (Tests/Fixtures/store-v1).
import Foundation
import Testing
import TestSupport

private let storeV1 = repositoryRoot().appendingPathComponent("Tests/Fixtures/store-v1").path
private let shapes = repositoryRoot().appendingPathComponent("recipes/quickstart/shapes.safetensors").path

/// A command stage, a 2-step teacher (the tiny config of store-v1) and a command reading the teacher.
private func keysRecipe(_ dir: TemporaryDirectory, backend: String = "cpu", file: String = "r.yaml") -> String {
    dir.write(file, """
        recipe: 1
        name: keys
        seed: 0
        backend: \(backend)
        datasets:
          shapes: { path: \(shapes), format: safetensors }
        stages:
          hello: { kind: command, run: [sh, -c, 'echo hello > "$HPRUNE_OUT/hello.txt"'], outputs: [hello.txt] }
          teacher:
            kind: train
            init: { config: \(storeV1)/config.json, seed: 0 }
            data: shapes
            steps: 2
            batch: 4
            optimizer: { adamw: { lr: 2.0e-3 } }
          after: { kind: command, run: [sh, -c, 'ls "$HPRUNE_IN_MODEL" > "$HPRUNE_OUT/ls.txt"'], inputs: { model: teacher }, outputs: [ls.txt] }
        """)
}

private func stages(_ r: CLIResult) -> [String: [String: Any]] {
    let list = (jsonObject(r.stdout)?["stages"] as? [[String: Any]]) ?? []
    return Dictionary(list.map { ($0["name"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
}

private func field(_ r: CLIResult, _ stage: String, _ name: String) -> Any? { stages(r)[stage]?[name] }

/// The CPU kernel family `auto` picks here.
private func selectedFamily() throws -> String {
    let r = try CLI.run(["backends", "--json"])
    let list = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]] ?? []
    let cpu = list.first { $0["name"] as? String == "cpu" }
    return ((cpu?["kernels"] as? [String: Any])?["selected"] as? String) ?? ""
}

@Suite("CLI: honest keys")
struct KeysCLITests {
    @Test func anotherKernelFamilyRerunsBackendStagesAndKeepsCommandKeys() throws {
        let dir = TemporaryDirectory()
        let recipe = keysRecipe(dir)
        let store = dir.path + "/s"
        let a = try selectedFamily()
        try #require(!a.isEmpty)
        let b = a == "scalar" ? "amx_emu" : "scalar"   // both run on every CPU
        let onA = ["HPRUNE_ISA": a], onB = ["HPRUNE_ISA": b]

        let planA = try CLI.run(["plan", recipe, "--store", store, "--json"], environment: onA)
        let planB = try CLI.run(["plan", recipe, "--store", store, "--json"], environment: onB)
        #expect(planA.status == 0 && planB.status == 0, "\(planA.stderr)\(planB.stderr)")
        let numericsA = jsonObject(planA.stdout)?["numerics"] as? [String: Int]
        #expect(numericsA?["cpu.\(a)"] != nil && numericsA?["cpu.\(b)"] == nil && numericsA?["tensorcore"] != nil, "\(planA.stdout)")
        #expect((jsonObject(planB.stdout)?["numerics"] as? [String: Int])?["cpu.\(b)"] != nil, "\(planB.stdout)")
        #expect(field(planA, "hello", "key") as? String == field(planB, "hello", "key") as? String)
        #expect(field(planA, "teacher", "key") as? String != field(planB, "teacher", "key") as? String)

        let first = try CLI.run(["run", recipe, "--store", store, "--json"], environment: onA, timeout: 300)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(stages(first).values.allSatisfy { $0["status"] as? String == "ran" }, "\(first.stdout)")
        let again = try CLI.run(["run", recipe, "--store", store, "--json"], environment: onA, timeout: 300)
        #expect(stages(again).values.allSatisfy { $0["status"] as? String == "cached" }, "\(again.stdout)")

        // On the other family: the plan says why the teacher is not cached; the command before it is.
        let why = try CLI.run(["plan", recipe, "--store", store, "--why", "--json"], environment: onB)
        #expect(field(why, "hello", "cached") as? Bool == true)
        #expect(field(why, "teacher", "cached") as? Bool == false)
        let teacherWhy = field(why, "teacher", "why") as? [String] ?? []
        #expect(teacherWhy.contains("numerics cpu.\(b): (absent) → 1"), "\(why.stdout)")
        // (amx_emu runs on the best plain family, so on a scalar-only CPU the scalar family stays in use.)
        #expect(a == "scalar" || teacherWhy.contains("numerics cpu.\(a): 1 → (absent)"), "\(why.stdout)")
        let afterWhy = field(why, "after", "why") as? [String] ?? []
        #expect(afterWhy.contains { $0.hasPrefix("input inputs.model: sha256:") && $0.hasSuffix("→ (after teacher runs)") }, "\(why.stdout)")
        let text = try CLI.run(["plan", recipe, "--store", store, "--why"], environment: onB)
        #expect(text.stdout.contains("why: numerics cpu.\(b): (absent) → 1"), "\(text.stdout)")

        // And the run computes it on that family instead of reusing the other family's weights.
        let onOther = try CLI.run(["run", recipe, "--store", store, "--json"], environment: onB, timeout: 300)
        #expect(onOther.status == 0, "\(onOther.stderr)")
        #expect(field(onOther, "hello", "status") as? String == "cached")
        #expect(field(onOther, "teacher", "status") as? String == "ran", "\(onOther.stdout)")
        #expect(field(onOther, "teacher", "key") as? String == field(planB, "teacher", "key") as? String)
    }

    @Test func planWhyAndDiffNameTheChangedParamAndInput() throws {
        let dir = TemporaryDirectory()
        let recipe = keysRecipe(dir)
        let store = dir.path + "/s"
        let first = try CLI.run(["run", recipe, "--store", store, "--json"], timeout: 300)
        #expect(first.status == 0, "\(first.stderr)")
        let lr = ["--set", "stages.teacher.optimizer.adamw.lr=0.003"]
        let why = try CLI.run(["plan", recipe, "--store", store, "--why", "--json"] + lr)
        #expect(field(why, "teacher", "why") as? [String] == ["params.optimizer.adamw.lr: 0.002 → 0.003"], "\(why.stdout)")
        #expect(field(why, "teacher", "since_run") as? String == jsonObject(first.stdout)?["run"] as? String)
        #expect(field(why, "hello", "why") as? [String] == [])

        let second = try CLI.run(["run", recipe, "--store", store, "--json"] + lr, timeout: 300)
        #expect(second.status == 0, "\(second.stderr)")
        let runA = try #require(jsonObject(first.stdout)?["run"] as? String), runB = try #require(jsonObject(second.stdout)?["run"] as? String)
        let diff = try CLI.run(["diff", runA, runB, "--store", store, "--json"])
        #expect(diff.status == 0, "\(diff.stderr)")
        let reasons = jsonObject(diff.stdout)?["why"] as? [String: [String]] ?? [:]
        #expect(reasons["teacher"] == ["params.optimizer.adamw.lr: 0.002 → 0.003"], "\(diff.stdout)")
        #expect(reasons["after"]?.count == 1 && reasons["after"]?.first?.hasPrefix("input inputs.model: sha256:") == true, "\(diff.stdout)")
        #expect(reasons["hello"] == nil)
        let plain = try CLI.run(["diff", runA, runB, "--store", store])
        #expect(plain.stdout.contains("  teacher: params.optimizer.adamw.lr: 0.002 → 0.003"), "\(plain.stdout)")

        // Two recipes (the same file, B with an override): the definitions are compared.
        let recipes = try CLI.run(["diff", recipe, recipe, "--store", store, "--set", "stages.teacher.steps=3", "--json"])
        let r = jsonObject(recipes.stdout)?["why"] as? [String: [String]] ?? [:]
        #expect(r["teacher"] == ["params.steps: 2 → 3"], "\(recipes.stdout)")
        #expect(r["after"]?.first?.hasPrefix("input inputs.model: teacher.model (def ") == true, "\(recipes.stdout)")
    }

    @Test func unknownBackendsAreRejectedWithADidYouMean() throws {
        let dir = TemporaryDirectory()
        let recipe = keysRecipe(dir)
        let store = dir.path + "/s"
        let banana = try CLI.run(["run", recipe, "--store", store, "--backend", "banana"])
        #expect(banana.status == 2, "\(banana.stderr)")
        #expect(banana.stderr.contains("unknown backend 'banana'; choose one of auto, cpu, cuda, reference"), "\(banana.stderr)")
        #expect(!FileManager.default.fileExists(atPath: store), "nothing ran, not even the store was opened")
        let typo = try CLI.run(["plan", recipe, "--store", store, "--backend", "cdua"])
        #expect(typo.status == 2 && typo.stderr.contains("unknown backend 'cdua' (did you mean 'cuda'?)"), "\(typo.stderr)")

        let inRecipe = keysRecipe(dir, backend: "refrence", file: "bad.yaml")
        let r = try CLI.run(["run", inRecipe, "--store", store])
        #expect(r.status == 2)
        #expect(r.stderr.contains("bad.yaml:4:10: error: unknown backend 'refrence' (did you mean 'reference'?)"), "\(r.stderr)")

        // `reference` is a backend like the others, with its own numerics in the key.
        let ref = try CLI.run(["plan", recipe, "--store", store, "--backend", "reference", "--json"])
        let cpu = try CLI.run(["plan", recipe, "--store", store, "--json"])
        #expect(ref.status == 0, "\(ref.stderr)")
        #expect(jsonObject(ref.stdout)?["backend"] as? String == "reference")
        #expect(jsonObject(ref.stdout)?["numerics"] as? [String: Int] == ["reference": 1, "tensorcore": 1])
        #expect(field(ref, "hello", "key") as? String == field(cpu, "hello", "key") as? String)
        #expect(field(ref, "teacher", "key") as? String != field(cpu, "teacher", "key") as? String)
    }

    /// The store of the previous layout: verify is clean; the command's key is unchanged (cached), the backend
    /// stages' old keys miss and `plan --why` says their records predate recorded inputs; the run goes on, and `gc`
    /// drops the old pseudo-action records of score parts and checkpoints.
    @Test func aStoreOfThePreviousLayoutOpensVerifiesAndRunsOn() throws {
        let dir = TemporaryDirectory()
        let store = dir.path + "/store"
        try FileManager.default.copyItem(atPath: storeV1 + "/store", toPath: store)
        try FileManager.default.copyItem(atPath: storeV1 + "/config.json", toPath: dir.path + "/config.json")
        let text = try String(contentsOfFile: storeV1 + "/recipe.yaml", encoding: .utf8).replacingOccurrences(of: "@SHAPES@", with: shapes)
        let recipe = dir.write("recipe.yaml", text)

        let verify = try CLI.run(["cache", "verify", "--store", store])
        #expect(verify.status == 0 && verify.stdout.contains("store is intact"), "\(verify.stdout)\(verify.stderr)")
        let why = try CLI.run(["plan", recipe, "--store", store, "--why", "--json"])
        #expect(why.status == 0, "\(why.stderr)")
        #expect(field(why, "hello", "cached") as? Bool == true)
        #expect(field(why, "teacher", "cached") as? Bool == false)
        #expect((field(why, "teacher", "why") as? [String])?.first?.contains("recorded without its inputs (by an older hprune)") == true,
                "\(why.stdout)")
        let run = try CLI.run(["run", recipe, "--store", store, "--json"], timeout: 300)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(stages(run).mapValues { $0["status"] as? String ?? "" } == ["hello": "cached", "teacher": "ran", "score": "ran"], "\(run.stdout)")
        let gc = try CLI.run(["cache", "gc", "--store", store, "--json"])
        let removed = (jsonObject(gc.stdout)?["removed_actions"] as? [String]) ?? []
        #expect(removed.filter { $0.hasPrefix("ckpt-") }.count == 1 && removed.filter { $0.hasPrefix("score-") }.count == 2, "\(gc.stdout)")
        #expect(removed.count == 3, "\(gc.stdout)")
        let after = try CLI.run(["cache", "verify", "--store", store, "--json"])
        #expect(after.status == 0 && (jsonObject(after.stdout)?["partials_checked"] as? Int ?? 0) > 0, "\(after.stdout)")
    }
}
