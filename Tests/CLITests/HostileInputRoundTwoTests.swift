// Hostile inputs, round two, through the real binary: configs with absurd dimensions, `extends` outside the
// recipe's folder, control and bidi characters in recipes, outputs under regular files, unknown `--set vars`
// paths, messages that quote the bad value, and stores left by killed or concurrent runs.
import Foundation
import Testing
import TestSupport

private let modelFixtures = repositoryRoot().appendingPathComponent("Tests/Fixtures/models").path

/// A copy of fixture model `name` in `dir` with config keys replaced by `changes` (JSON text per key).
private func hostileModel(_ dir: TemporaryDirectory, _ name: String, _ changes: [String: String]) throws -> String {
    let folder = dir.path + "/" + name
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: modelFixtures + "/\(name)/diffusion_pytorch_model.safetensors",
                                     toPath: folder + "/diffusion_pytorch_model.safetensors")
    var config = try String(contentsOfFile: modelFixtures + "/\(name)/config.json", encoding: .utf8)
    for (key, value) in changes {
        let lines = config.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.contains("\"\(key)\":") else { return String(line) }
            return "  \"\(key)\": \(value)" + (line.hasSuffix(",") ? "," : "")
        }
        config = lines.joined(separator: "\n")
        if !config.contains("\"\(key)\":") { config = config.replacingOccurrences(of: "{\n", with: "{\n  \"\(key)\": \(value),\n") }
    }
    try config.write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
    return folder
}

struct HugeConfig: Sendable, CustomStringConvertible {
    var model: String
    var changes: [String: String]
    /// The key the error must name.
    var key: String
    var description: String { "\(model) \(changes)" }
}

@Test(arguments: [
    HugeConfig(model: "sd3_tiny", changes: ["num_layers": "1000000000"], key: "num_layers"),
    HugeConfig(model: "sd3_tiny", changes: ["num_layers": "1000"], key: "num_layers"),
    HugeConfig(model: "flux_tiny", changes: ["num_single_layers": "1000000000"], key: "num_single_layers"),
    HugeConfig(model: "sd3_tiny", changes: ["num_attention_heads": "1000000000", "caption_projection_dim": "8000000000"],
               key: "num_attention_heads"),
    HugeConfig(model: "sd3_tiny", changes: ["num_attention_heads": "4000", "caption_projection_dim": "32000"],
               key: "num_attention_heads"),
    HugeConfig(model: "sd3_tiny", changes: ["pos_embed_max_size": "16000"], key: "pos_embed_max_size"),
    HugeConfig(model: "sd3_tiny", changes: ["pooled_projection_dim": "999999"], key: "pooled_projection_dim"),
    HugeConfig(model: "sd3_tiny", changes: ["joint_attention_dim": "1048576"], key: "joint_attention_dim"),
    HugeConfig(model: "sd3_tiny", changes: ["sample_size": "1000000"], key: "sample_size"),
    HugeConfig(model: "flux_tiny", changes: ["in_channels": "9223372036854775807"], key: "in_channels"),
])
func hugeConfigDimensionsExitTwoNamingTheKey(_ c: HugeConfig) throws {
    let dir = TemporaryDirectory()
    let model = try hostileModel(dir, c.model, c.changes)
    let io = modelFixtures + "/\(c.model)/io.safetensors"
    let commands: [[String]] = [
        ["inspect", model, "--no-scan"], ["inspect", model, "--json"],
        ["forward", model, "--inputs", io, "--output", dir.path + "/o.safetensors"],
        ["quantise", model, "--format", "nf4", "--out", dir.path + "/q"],
    ]
    for args in commands {
        let r = try CLI.run(args, timeout: 30)
        #expect(r.status == 2, "\(args[0]): status \(r.status)\n\(r.stderr)")
        #expect(r.stderr.contains(model + "/config.json") && r.stderr.contains("'\(c.key)'"), "\(args[0]): \(r.stderr)")
        #expect(r.seconds < 10, "\(args[0]) took \(r.seconds)s")
    }
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/q"))
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/o.safetensors"))
}

@Test func configErrorsQuoteTheBadValue() throws {
    let dir = TemporaryDirectory()
    let negative = try hostileModel(dir, "sd3_tiny", ["num_layers": "-3"])
    let r = try CLI.run(["inspect", negative, "--no-scan"])
    #expect(r.status == 2 && r.stderr.contains("expected a positive integer, got an integer -3"), "\(r.stderr)")
    let other = TemporaryDirectory()
    let text = try hostileModel(other, "sd3_tiny", ["patch_size": "\"two\""])
    let t = try CLI.run(["inspect", text, "--no-scan"])
    #expect(t.status == 2 && t.stderr.contains("got a string \"two\""), "\(t.stderr)")
}

@Test func recipeErrorsQuoteTheBadValue() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write("r.yaml", """
        recipe: 1
        seed: many
        stages:
          a: { kind: command, run: [true], timeout: .inf }
          b: { kind: command, run: [true], timeout: -3 }
          c: { kind: command, run: true }
        """)
    let r = try CLI.run(["validate", recipe])
    #expect(r.status == 2)
    #expect(r.stderr.contains("'seed': expected an integer ≥ 0, got a string \"many\""), "\(r.stderr)")
    #expect(r.stderr.contains("'timeout' expected number > 0, got .inf (infinity)"), "\(r.stderr)")
    #expect(r.stderr.contains("'timeout' must be > 0, got -3"), "\(r.stderr)")
    #expect(r.stderr.contains("'run' expected list of string, got a boolean true"), "\(r.stderr)")
}

@Test func extendsIsConfinedToTheRecipesFolderTree() throws {
    let dir = TemporaryDirectory()
    dir.write("secret.yaml", "vars: { secret: TOPSECRET-LINE }\nbogus: TOPSECRET-KEY\n")
    dir.write("notes.txt", "TOPSECRET-NOTES\n")
    let stages = "recipe: 1\nstages: { s: { kind: command, run: [true] } }\n"
    let up = dir.write("proj/up.yaml", "extends: ../secret.yaml\n" + stages)
    let passwd = dir.write("proj/passwd.yaml", "extends: ../../../../../../../etc/passwd\n" + stages)
    let absolute = dir.write("proj/abs.yaml", "extends: /etc/passwd\n" + stages)
    symlink(dir.path + "/secret.yaml", dir.path + "/proj/link.yaml")
    let link = dir.write("proj/vialink.yaml", "extends: link.yaml\n" + stages)
    let text = dir.write("notes.yaml", "extends: notes.txt\n" + stages)
    dir.write("proj/base/inside.yaml", "seed: 4\n")
    let inside = dir.write("proj/ok.yaml", "extends: base/inside.yaml\n" + stages)

    for recipe in [up, passwd, absolute, link, text] {
        let r = try CLI.run(["validate", recipe])
        #expect(r.status == 2, "\(recipe): \(r.stderr)")
        #expect(hasLocatedError(r.stderr, recipe), "\(recipe): \(r.stderr)")
        #expect(!r.stderr.contains("TOPSECRET") && !r.stderr.contains("root:"), "\(recipe) echoed content: \(r.stderr)")
    }
    let u = try CLI.run(["validate", up])
    #expect(u.stderr.contains("outside the recipe's folder") && u.stderr.contains("--allow-extends-outside"), "\(u.stderr)")
    let l = try CLI.run(["validate", link])
    #expect(l.stderr.contains("resolves to") && l.stderr.contains("secret.yaml"), "\(l.stderr)")
    let t = try CLI.run(["validate", text])
    #expect(t.stderr.contains("is not a recipe"), "\(t.stderr)")
    #expect(try CLI.run(["validate", inside]).status == 0)
    // The flag lets a file outside be used (its own errors then point into it, as usual).
    let allowed = try CLI.run(["validate", up, "--allow-extends-outside"])
    #expect(allowed.status == 2 && allowed.stderr.contains("unknown top-level key 'bogus'"), "\(allowed.stderr)")
    let plan = try CLI.run(["plan", up, "--allow-extends-outside"])
    #expect(plan.stderr.contains("secret.yaml:2:1:"), "\(plan.stderr)")
    // Even with the flag a non-recipe file is never read.
    let passwdAllowed = try CLI.run(["validate", absolute, "--allow-extends-outside"])
    #expect(passwdAllowed.status == 2 && !passwdAllowed.stderr.contains("root:"), "\(passwdAllowed.stderr)")
}

@Test func controlAndBidiCharactersAreEscapedInDiagnostics() throws {
    let dir = TemporaryDirectory()
    let forbidden: [Unicode.Scalar] = ["\u{1B}", "\u{07}", "\u{202E}", "\u{2066}", "\u{200F}"]
    // A key holding bidi controls (libyaml accepts them), then a second bad key after it on the same line.
    let line = "  a: { kind: command, run: [true], \"x\u{202E}y\u{2066}z\u{200F}\": 1, bogus: 2 }"
    let recipe = dir.write("r.yaml", "recipe: 1\nstages:\n" + line + "\n")
    let r = try CLI.run(["validate", recipe])
    #expect(r.status == 2)
    #expect(!r.stderr.unicodeScalars.contains { forbidden.contains($0) }, "raw control or bidi character in \(r.stderr.debugDescription)")
    #expect(r.stderr.contains("unknown key 'x\\u{202E}y\\u{2066}z\\u{200F}'"), "\(r.stderr)")
    // The caret under `bogus` sits under its `b` in the escaped line.
    let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let header = try #require(lines.firstIndex { $0.contains("unknown key 'bogus'") })
    let shown = lines[header + 1], caret = lines[header + 2]
    let bar = try #require(shown.range(of: " | "))
    let text = shown[bar.upperBound...]
    let caretColumn = try #require(caret.firstIndex(of: "^")).utf16Offset(in: caret) - bar.upperBound.utf16Offset(in: shown)
    #expect(text.utf16.count > caretColumn && Array(text.utf16)[caretColumn] == UInt16(UInt8(ascii: "b")),
            "caret misplaced:\n\(shown)\n\(caret)")

    // Terminal escapes and a bell (libyaml refuses them: the syntax error shows the line escaped).
    let esc = dir.write("e.yaml", "recipe: 1\nname: \"a\u{1B}[2J\u{07}b\"\nstages: {}\n")
    let e = try CLI.run(["validate", esc])
    #expect(e.status == 2 && hasLocatedError(e.stderr, esc), "\(e.stderr)")
    #expect(!e.stderr.unicodeScalars.contains { forbidden.contains($0) }, "raw control character in \(e.stderr.debugDescription)")
    #expect(e.stderr.contains("\\u{1B}[2J\\u{7}"), "\(e.stderr)")

    // Invalid UTF-8: shown as \xFF, never as raw bytes.
    let bytes = Array("recipe: 1\nname: ab".utf8) + [0xFF, 0xFE] + Array("cd\nstages: {}\n".utf8)
    let binary = dir.write("b.yaml", bytes: bytes)
    let b = try CLI.run(["validate", binary])
    #expect(b.status == 2 && hasLocatedError(b.stderr, binary), "\(b.stderr)")
    #expect(b.stderr.contains("ab\\xFF\\xFEcd"), "\(b.stderr)")
}

@Test func exportUnderARegularFileIsAPlainMessage() throws {
    let dir = TemporaryDirectory()
    let teacher = dir.path + "/teacher"
    try FileManager.default.createDirectory(atPath: teacher, withIntermediateDirectories: true)
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        try FileManager.default.copyItem(atPath: modelFixtures + "/sd3_tiny/\(f)", toPath: teacher + "/" + f)
    }
    let recipe = dir.write("r.yaml", """
        recipe: 1
        models: { teacher: { path: teacher } }
        stages:
          prune: { kind: prune, model: teacher, remove: "0" }   # a whole block: diffusers can express it
        """)
    #expect(try CLI.run(["run", recipe]).status == 0)
    let file = dir.write("plain.txt", "x\n")
    for out in [file + "/out", file + "/deeper/out"] {
        let r = try CLI.run(["export", "latest:prune", "--out", out, "--store", dir.path + "/.hprune"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("error: cannot export to \(out): \(file) is a file, not a folder"), "\(r.stderr)")
        #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("Domain="), "\(r.stderr)")
    }
    let q = try CLI.run(["quantise", teacher, "--out", file + "/q"])
    #expect(q.stderr.contains("\(file) is a file, not a folder") && !q.stderr.contains("Domain="), "\(q.stderr)")
    #expect(try String(contentsOfFile: file, encoding: .utf8) == "x\n")
}

@Test func unknownSetVarsPathIsAnErrorWithASuggestion() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write("r.yaml", """
        recipe: 1
        vars: { budget: 0.2, sampling: { steps: 4 } }
        stages:
          a: { kind: command, run: [echo, "${vars.budget}", "${vars.sampling.steps}"] }
        """)
    let deep = try CLI.run(["validate", recipe, "--set", "vars.nope.deep=1"])
    #expect(deep.status == 2, "\(deep.stderr)")
    #expect(deep.stderr.contains("<--set 1>:1:12: error: --set vars.nope.deep=1: there is no variable 'nope'"), "\(deep.stderr)")
    #expect(deep.stderr.contains("defined variables: budget, sampling"), "\(deep.stderr)")
    let typo = try CLI.run(["validate", recipe, "--set", "vars.budgte=0.3"])
    #expect(typo.status == 2 && typo.stderr.contains("did you mean 'budget'?"), "\(typo.stderr)")
    // Existing variables, keys inside them, and new variables something uses are fine.
    #expect(try CLI.run(["validate", recipe, "--set", "vars.budget=0.3", "--set", "vars.sampling.guidance=0"]).status == 0)
    let used = try CLI.run(["validate", recipe, "--set", "vars.extra=1", "--set", "stages.a.run=[echo, \"${vars.extra}\"]"])
    #expect(used.status == 0, "\(used.stderr)")
    // Other paths: an unknown stage key or top-level key is caught by the checks, pointing into the argument.
    let key = try CLI.run(["validate", recipe, "--set", "stages.a.bogus=1"])
    #expect(key.status == 2 && key.stderr.contains("<--set 1>:1:16: error:") && key.stderr.contains("unknown key 'bogus'"), "\(key.stderr)")
    let top = try CLI.run(["validate", recipe, "--set", "sede=1"])
    #expect(top.status == 2 && top.stderr.contains("did you mean 'seed'?"), "\(top.stderr)")
}

/// Names of stage scratch folders under `store/tmp`.
private func stageFolders(_ store: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []).filter { $0.hasPrefix("stage-") && !$0.hasSuffix(".lock") }
}

@Test func killedRunsScratchFolderIsReportedByVerifyAndRemovedByGC() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write("r.yaml", """
        recipe: 1
        stages:
          slow: { kind: command, run: [sh, -c, 'echo started > "$HPRUNE_OUT/../started"; sleep 30'] }
        """)
    let store = dir.path + "/.hprune"
    let running = try CLI.start(["run", recipe])
    let deadline = Date().addingTimeInterval(30)
    while stageFolders(store).isEmpty && Date() < deadline { usleep(20_000) }
    let live = try #require(stageFolders(store).first)
    // While the stage runs, its folder is neither stale for verify nor removed by a dry-run gc.
    let busy = try CLI.run(["cache", "verify", "--store", store, "--json"])
    #expect((jsonObject(busy.stdout)?["stale_stage_folders"] as? [String]) == [], "\(busy.stdout)")
    let dry = try CLI.run(["cache", "gc", "--dry-run", "--store", store, "--json"])
    #expect((jsonObject(dry.stdout)?["stale_stage_folders"] as? [String]) == [], "\(dry.stdout)")
    #expect(stageFolders(store) == [live])

    kill(running.process.processIdentifier, SIGKILL)
    running.process.waitUntilExit()
    _ = running.result()
    #expect(stageFolders(store) == [live])
    let verify = try CLI.run(["cache", "verify", "--store", store])
    #expect(verify.status == 0, "\(verify.stdout)")
    #expect(verify.stdout.contains("stale stage folder (left by a killed run): \(store)/tmp/\(live)"), "\(verify.stdout)")
    #expect(stageFolders(store) == [live], "verify only reports")
    let gc = try CLI.run(["cache", "gc", "--store", store])
    #expect(gc.status == 0, "\(gc.stderr)")
    #expect(gc.stdout.contains("removed 1 stale stage folder(s)"), "\(gc.stdout)")
    #expect(stageFolders(store).isEmpty)
    #expect(((try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []).isEmpty)
}

@Test func concurrentRunsOfOneActionComputeItOnce() throws {
    let dir = TemporaryDirectory()
    let counter = dir.path + "/count"
    let recipe = dir.write("r.yaml", """
        recipe: 1
        stages:
          once:
            kind: command
            run: [sh, -c, 'echo ran >> "$COUNTER"; sleep 1.5; echo done > "$HPRUNE_OUT/x.txt"']
            outputs: [x.txt]
        """)
    let env = ["COUNTER": counter]
    let one = try CLI.start(["run", recipe, "--json"], environment: env)
    // Start the second once the first is inside the stage.
    let deadline = Date().addingTimeInterval(30)
    while !FileManager.default.fileExists(atPath: counter) && Date() < deadline { usleep(10_000) }
    let two = try CLI.start(["run", recipe], environment: env)
    one.process.waitUntilExit()
    two.process.waitUntilExit()
    let r1 = one.result(), r2 = two.result()
    #expect(r1.status == 0 && r2.status == 0, "\(r1.stderr)\n\(r2.stderr)")
    #expect(statuses(r1)["once"] == "ran")
    #expect(r2.stderr.contains("✓ once  cached"), "\(r2.stdout)\n\(r2.stderr)")
    #expect(r2.stderr.contains("which is running the same action"), "\(r2.stderr)")
    #expect(try String(contentsOfFile: counter, encoding: .utf8) == "ran\n")
}

@Test func runsTableKeepsAGapBetweenColumns() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write("r.yaml", """
        recipe: 1
        name: a-recipe-name-that-is-quite-long
        stages:
          a: { kind: command, run: [true] }
          b: { kind: command, run: [sh, -c, 'exit 3'] }
          d: { kind: command, run: [sh, -c, 'echo d'] }
        """)
    _ = try CLI.run(["run", recipe, "--keep-going"])
    _ = try CLI.run(["run", recipe, "--keep-going"])
    let r = try CLI.run(["runs", recipe])
    #expect(r.status == 0, "\(r.stderr)")
    let lines = r.stdout.split(separator: "\n").map(String.init)
    #expect(lines.count == 3)
    // Every column starts where its header does, after at least two spaces, and nothing is cut.
    let header = lines[0]
    let starts = ["STARTED", "STATUS", "DURATION", "STAGES", "RECIPE"].map { header.range(of: $0)!.lowerBound.utf16Offset(in: header) }
    for line in lines.dropFirst() {
        let u = Array(line.utf16)
        for s in starts {
            #expect(u.count > s && u[s] != 32 && u[s - 1] == 32 && u[s - 2] == 32, "column at \(s) in\n\(header)\n\(line)")
        }
        #expect(line.hasSuffix("a-recipe-name-that-is-quite-long"))
        #expect(line.contains("  1 failed, 2 ran  ") || line.contains("  2 cached, 1 failed  "), "\(line)")
    }
}
