// End to end through the real binary: caching, overrides, diff, failures, keep-going, interruption,
// crashes and concurrent runs on one store.
import Foundation
import Testing
import TestSupport

/// A three-stage recipe: `a` uses vars.x, `b` does not, `c` reads both.
func chainRecipe(_ dir: TemporaryDirectory, sleep: String = "0") -> String {
    dir.write("in.txt", "input\n")
    return dir.write("r.yaml", """
        recipe: 1
        name: chain
        vars: { x: 1 }
        datasets: { data: { path: in.txt } }
        stages:
          a:
            kind: command
            run: [sh, -c, 'sleep \(sleep); echo "x=${vars.x}" > "$HPRUNE_OUT/a.txt"']
            outputs: [a.txt]
          b:
            kind: command
            run: [sh, -c, 'cat "$HPRUNE_IN_D/in.txt" > "$HPRUNE_OUT/b.txt"']
            inputs: { d: data }
            outputs: [b.txt]
          c:
            kind: command
            run: [sh, -c, 'cat "$HPRUNE_IN_A/a.txt" "$HPRUNE_IN_B/b.txt" > "$HPRUNE_OUT/c.txt"']
            inputs: { a: a, b: b.b.txt }
            outputs: [c.txt]
        """)
}

func statuses(_ r: CLIResult) -> [String: String] {
    let stages = (jsonObject(r.stdout)?["stages"] as? [[String: Any]]) ?? []
    return Dictionary(uniqueKeysWithValues: stages.map { ($0["name"] as! String, $0["status"] as! String) })
}

@Test func secondRunIsCachedAndSetRerunsOnlyDependents() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir)
    let first = try CLI.run(["run", recipe, "--json"])
    #expect(first.status == 0, "\(first.stderr)")
    #expect(statuses(first) == ["a": "ran", "b": "ran", "c": "ran"])

    let second = try CLI.run(["run", recipe, "--json"])
    #expect(statuses(second) == ["a": "cached", "b": "cached", "c": "cached"])

    let changed = try CLI.run(["run", recipe, "--json", "--set", "vars.x=2"])
    #expect(statuses(changed) == ["a": "ran", "b": "cached", "c": "ran"])
    // The store beside the recipe holds the ledger with three runs.
    let runs = try CLI.run(["runs", recipe, "--json"])
    #expect(((try? JSONSerialization.jsonObject(with: Data(runs.stdout.utf8))) as? [Any])?.count == 3)
}

@Test func forceRerunsOneStage() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir)
    try CLI.run(["run", recipe])
    let forced = try CLI.run(["run", recipe, "--json", "--force", "b"])
    // b re-ran with identical output, so c (keyed by content) stays cached.
    #expect(statuses(forced) == ["a": "cached", "b": "ran", "c": "cached"])
    let bad = try CLI.run(["run", recipe, "--force", "bb"])
    #expect(bad.status == 2)
    #expect(bad.stderr.contains("no stage named 'bb'"))
    #expect(bad.stderr.contains("did you mean 'b'?"))
}

@Test func diffOfRecipesNamesTheVarAndTheStagesThatWouldRerun() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir)
    let other = dir.write("r2.yaml", try String(contentsOfFile: recipe, encoding: .utf8).replacingOccurrences(of: "x: 1", with: "x: 7"))
    let r = try CLI.run(["diff", recipe, other, "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let json = try #require(jsonObject(r.stdout))
    let params = (json["params"] as? [[String: Any]]) ?? []
    #expect(params.contains { ($0["path"] as? String) == "vars.x" && "\($0["a"]!)" == "1" && "\($0["b"]!)" == "7" })
    #expect(json["rerun"] as? [String] == ["a", "c"])
    // The same with --set on one recipe.
    let s = try CLI.run(["diff", recipe, recipe, "--set", "vars.x=7", "--json"])
    #expect(jsonObject(s.stdout)?["rerun"] as? [String] == ["a", "c"])
    // Identical recipes: nothing would re-run.
    let same = try CLI.run(["diff", recipe, recipe, "--json"])
    #expect(jsonObject(same.stdout)?["rerun"] as? [String] == [])
    #expect((jsonObject(same.stdout)?["params"] as? [Any])?.isEmpty == true)
}

@Test func diffOfRunsShowsReranStagesAndParams() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir)
    let r1 = try CLI.run(["run", recipe, "--json"])
    let r2 = try CLI.run(["run", recipe, "--json", "--set", "vars.x=3"])
    let id1 = try #require(jsonObject(r1.stdout)?["run"] as? String)
    let id2 = try #require(jsonObject(r2.stdout)?["run"] as? String)
    let d = try CLI.run(["diff", id1, id2, "--json", "--store", dir.path + "/.hprune"])
    #expect(d.status == 0, "\(d.stderr)")
    let json = try #require(jsonObject(d.stdout))
    #expect(json["rerun"] as? [String] == ["a", "c"])
    #expect((json["params"] as? [[String: Any]])?.contains { ($0["path"] as? String) == "vars.x" } == true)
    let show = try CLI.run(["show", String(id2.prefix(20)), "--store", dir.path + "/.hprune"])
    #expect(show.status == 0)
    #expect(show.stdout.contains("ran"))
}

@Test func failingCommandExitsOneWithStderrTailAndKeepGoingRunsTheRest() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write("f.yaml", """
        recipe: 1
        stages:
          bad: { kind: command, run: [sh, -c, 'echo "something broke" >&2; exit 3'] }
          after: { kind: command, run: [sh, -c, 'true'], inputs: { i: bad } }
          other: { kind: command, run: [sh, -c, 'echo ok > "$HPRUNE_OUT/o.txt"'], outputs: [o.txt] }
          lazy: { kind: command, run: [sh, -c, 'true'], outputs: [missing.txt] }
        """)
    let r = try CLI.run(["run", recipe, "--json", "--keep-going", "--jobs", "1"])
    #expect(r.status == 1)
    let s = statuses(r)
    #expect(s["bad"] == "failed")
    #expect(s["after"] == "skipped")
    #expect(s["other"] == "ran")
    #expect(s["lazy"] == "failed")
    #expect(r.stderr.contains("exited with status 3"))
    #expect(r.stderr.contains("something broke"))
    #expect(r.stderr.contains("did not write declared output 'missing.txt'"))
}

@Test func sigintCancelsCleanly() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir, sleep: "30")
    let running = try CLI.start(["run", recipe])
    // Wait until the slow stage has started.
    let store = dir.path + "/.hprune"
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
        let tmp = (try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []
        if tmp.contains(where: { $0.hasPrefix("stage-") }) { break }
        usleep(20_000)
    }
    usleep(200_000)
    kill(running.process.processIdentifier, SIGINT)
    let start = Date()
    running.process.waitUntilExit()
    let r = running.result()
    #expect(r.status == 130, "\(r.stderr)")
    #expect(Date().timeIntervalSince(start) < 10)
    #expect(r.stderr.contains("interrupted"))
    // Nothing half-written: no scratch folders left, and the store verifies.
    let left = ((try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []).filter { $0.hasPrefix("stage-") }
    #expect(left.isEmpty, "\(left)")
    let verify = try CLI.run(["cache", "verify", "--store", store])
    #expect(verify.status == 0, "\(verify.stdout)")
}

@Test func killNineLeavesAStoreThatVerifiesAndTheNextRunFinishes() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir, sleep: "0.3")
    let running = try CLI.start(["run", recipe, "--jobs", "1"])
    usleep(450_000)
    kill(running.process.processIdentifier, SIGKILL)
    running.process.waitUntilExit()
    _ = running.result()
    let store = dir.path + "/.hprune"
    let verify = try CLI.run(["cache", "verify", "--store", store])
    #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    let next = try CLI.run(["run", recipe, "--json"])
    #expect(next.status == 0, "\(next.stderr)")
    #expect(Set(statuses(next).values).isSubset(of: ["ran", "cached"]))
}

@Test func twoRunsOnOneStoreAtOnceAgree() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir, sleep: "0.2")
    let one = try CLI.start(["run", recipe, "--json"])
    let two = try CLI.start(["run", recipe, "--json"])
    one.process.waitUntilExit()
    two.process.waitUntilExit()
    let r1 = one.result(), r2 = two.result()
    #expect(r1.status == 0, "\(r1.stderr)")
    #expect(r2.status == 0, "\(r2.stderr)")
    func outputs(_ r: CLIResult) -> [String: [String: String]] {
        let stages = (jsonObject(r.stdout)?["stages"] as? [[String: Any]]) ?? []
        return Dictionary(uniqueKeysWithValues: stages.map { ($0["name"] as! String, $0["outputs"] as! [String: String]) })
    }
    #expect(outputs(r1) == outputs(r2))
    #expect(outputs(r1).count == 3)
    let verify = try CLI.run(["cache", "verify", "--store", dir.path + "/.hprune"])
    #expect(verify.status == 0, "\(verify.stdout)")
}

@Test func planJSONHasTheDocumentedShape() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir)
    let plan = try CLI.run(["plan", recipe, "--json"])
    #expect(plan.status == 0, "\(plan.stderr)")
    let stages = try #require(jsonObject(plan.stdout)?["stages"] as? [[String: Any]])
    #expect(stages.map { $0["name"] as? String } == ["a", "b", "c"])
    #expect(Set(stages[0].keys) == ["name", "kind", "key", "cached", "inputs"])
    #expect(stages[2]["key"] is NSNull) // c waits for a and b
    try CLI.run(["run", recipe])
    let again = try #require(jsonObject(try CLI.run(["plan", recipe, "--json"]).stdout)?["stages"] as? [[String: Any]])
    #expect(again.allSatisfy { $0["cached"] as? Bool == true })
}

@Test func graphFormats() throws {
    let dir = TemporaryDirectory()
    let recipe = chainRecipe(dir)
    let dot = try CLI.run(["graph", recipe, "--format", "dot"])
    #expect(dot.stdout.hasPrefix("digraph recipe {"))
    #expect(dot.stdout.contains("\"a\" -> \"c\""))
    let mermaid = try CLI.run(["graph", recipe, "--format", "mermaid"])
    #expect(mermaid.stdout.hasPrefix("flowchart LR"))
    let bad = try CLI.run(["graph", recipe, "--format", "png"])
    #expect(bad.status == 2)
}

@Test func usageErrorsExitTwo() throws {
    #expect(try CLI.run(["frobnicate"]).status == 2)
    #expect(try CLI.run(["run"]).status == 2)
    let missing = try CLI.run(["validate", "/nonexistent/recipe.yaml"])
    #expect(missing.status == 2)
    #expect(missing.stderr.contains("/nonexistent/recipe.yaml"))
}

@Test func missingSourceFileIsAnInputError() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write("m.yaml", """
        recipe: 1
        models: { teacher: { path: nowhere/transformer } }
        stages:
          a: { kind: command, run: [ls], inputs: { m: teacher } }
        """)
    let r = try CLI.run(["plan", recipe])
    #expect(r.status == 2)
    #expect(r.stderr.contains("m.yaml:2:"))
    #expect(r.stderr.contains("model 'teacher': path 'nowhere/transformer' does not exist"))
}

@Test func sha256PinIsChecked() throws {
    let dir = TemporaryDirectory()
    dir.write("w.bin", "weights")
    let recipe = dir.write("p.yaml", """
        recipe: 1
        models: { m: { path: w.bin, format: file, sha256: "\(String(repeating: "0", count: 64))" } }
        stages:
          a: { kind: command, run: [true], inputs: { m: m } }
        """)
    let r = try CLI.run(["run", recipe])
    #expect(r.status == 2)
    #expect(r.stderr.contains("but the recipe pins 0000"))
}

@Test func depsEnterTheKeyEnvIsPassedAndTimeoutStops() throws {
    let dir = TemporaryDirectory()
    dir.write("script.sh", "echo \"$GREETING\" > \"$HPRUNE_OUT/g.txt\"\n")
    let recipe = dir.write("d.yaml", """
        recipe: 1
        stages:
          s:
            kind: command
            run: [sh, script.sh]
            deps: [script.sh]
            env: { GREETING: hi }
            outputs: [g.txt]
        """)
    #expect(statuses(try CLI.run(["run", recipe, "--json"])) == ["s": "ran"])
    #expect(statuses(try CLI.run(["run", recipe, "--json"])) == ["s": "cached"])
    dir.write("script.sh", "echo \"$GREETING!\" > \"$HPRUNE_OUT/g.txt\"\n")
    #expect(statuses(try CLI.run(["run", recipe, "--json"])) == ["s": "ran"])

    let slow = dir.write("t.yaml", """
        recipe: 1
        stages:
          s: { kind: command, run: [sleep, "20"], timeout: 0.3 }
        """)
    let r = try CLI.run(["run", slow])
    #expect(r.status == 1)
    #expect(r.stderr.contains("timed out after 0.3s"), "\(r.stderr)")
    #expect(r.seconds < 8)
}

@Test func independentStagesRunConcurrently() throws {
    // Each stage records when it started and ended; with --jobs 3 the three intervals overlap, with --jobs 1
    // they do not. Overlap, not wall time, so a busy machine cannot make this flaky; and a separate process,
    // so other tests cannot starve the scheduler's threads.
    let stamp = "date +%s.%N > \"$HPRUNE_OUT/start\"; sleep 0.4; date +%s.%N > \"$HPRUNE_OUT/end\""
    let dir = TemporaryDirectory()
    let recipe = dir.write("j.yaml", """
        recipe: 1
        stages:
          a: { kind: command, run: [sh, -c, '\(stamp)'], outputs: [start, end] }
          b: { kind: command, run: [sh, -c, '\(stamp)'], outputs: [start, end] }
          c: { kind: command, run: [sh, -c, '\(stamp)'], outputs: [start, end] }
        """)
    let objects = dir.path + "/.hprune/objects/sha256/"
    func object(_ hex: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: objects + hex.prefix(2) + "/" + hex.dropFirst(2)))
    }
    func intervals(jobs: Int) throws -> [(Double, Double)] {
        let r = try CLI.run(["run", recipe, "--json", "--jobs", "\(jobs)", "--force", "a", "--force", "b", "--force", "c"])
        #expect(r.status == 0, "\(r.stderr)")
        let stages = try #require(jsonObject(r.stdout)?["stages"] as? [[String: Any]])
        return try stages.map { s in
            let outputs = try #require(s["outputs"] as? [String: String])
            func time(_ port: String) throws -> Double {
                let treeDigest = try #require(outputs[port])
                let tree = try #require(try JSONSerialization.jsonObject(with: object(treeDigest)) as? [String: Any])
                let entry = try #require((tree["entries"] as? [[String: Any]])?.first)
                let fileDigest = try #require(entry["digest"] as? String)
                let text = String(decoding: try object(fileDigest), as: UTF8.self)
                return try #require(Double(text.trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            return (try time("start"), try time("end"))
        }
    }
    let serial = try intervals(jobs: 1).sorted { $0.0 < $1.0 }
    for (x, y) in zip(serial, serial.dropFirst()) { #expect(x.1 <= y.0, "jobs 1 overlapped: \(serial)") }
    let parallel = try intervals(jobs: 3)
    #expect(parallel.count == 3)
    #expect(parallel.map(\.0).max()! < parallel.map(\.1).min()!, "jobs 3 did not overlap: \(parallel)")
}
