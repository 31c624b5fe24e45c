// The issue's hostile recipes, loaded for real from temp files: each must yield an error with a real
// file:line:col, quickly (bounded by thread CPU time, which machine load does not inflate, and by a
// generous wall-clock bound), and never crash.
import Testing
import RecipeLanguage
import TestSupport
import YAMLSupport

@Suite struct HostileRecipeTests {
    /// Loads `r.yaml` holding `bytes`; expects the first diagnostic at `line:column` of that file.
    @discardableResult
    func expectError(_ bytes: [UInt8], line: Int, column: Int, file: String = "r.yaml", cpuSeconds: Double = 2,
                     environment: [String: String] = [:], extra: [String: String] = [:],
                     sourceLocation: SourceLocation = #_sourceLocation) -> Diagnostic? {
        let ws = Workspace(extra, environment: environment)
        ws.dir.write("r.yaml", bytes: bytes)
        let ((result, cpu), wall) = timed { cpuTimed { ws.load("r.yaml") } }
        #expect(cpu < cpuSeconds, "CPU \(cpu) s", sourceLocation: sourceLocation)
        #expect(wall < 10 * cpuSeconds, "wall \(wall) s", sourceLocation: sourceLocation)
        #expect(result.hasErrors, sourceLocation: sourceLocation)
        let first = result.diagnostics.first
        #expect(first?.mark == SourceMark(file: ws.path(file), line: line, column: column),
                "\(result.diagnostics.map(\.description))", sourceLocation: sourceLocation)
        return first
    }

    @Test func emptyFile() {
        let d = expectError([], line: 1, column: 1)
        #expect(d?.message == "file is empty")
    }

    @Test func topLevelNotAMapping() {
        expectError(Array("just a string\n".utf8), line: 1, column: 1)
        expectError(Array("- recipe: 1\n".utf8), line: 1, column: 1)
    }

    @Test func binaryGarbage() {
        var bytes: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]   // a PNG header
        var x: UInt32 = 12345
        for _ in 0..<4096 { x = x &* 1103515245 &+ 12345; bytes.append(UInt8(truncatingIfNeeded: x >> 16)) }
        let d = expectError(bytes, line: 1, column: 1)
        #expect(d?.message.hasPrefix("cannot read YAML") == true)
    }

    @Test func tenMegabyteRecipeWithOneErrorAtTheEnd() {
        var text = "recipe: 1\nstages:\n"
        var i = 0
        while text.utf8.count < 10_000_000 {
            text += "  s\(i): { kind: command, run: [echo, \"\(i)\"], env: { K: \"v\" } }\n"
            i += 1
        }
        let lines = i + 2
        text += "sede: 1\n"
        // Linear work, not a speed goal: ~2 s of CPU in a debug build on an idle core; anything superlinear in 10 MB
        // would take minutes. The bound leaves room for a loaded machine.
        let d = expectError(Array(text.utf8), line: lines + 1, column: 1, cpuSeconds: 5)
        #expect(d?.message == "unknown top-level key 'sede'")
    }

    @Test func deepNesting() {
        let deep = "recipe: 1\nstages: " + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000)
        let d = expectError(Array(deep.utf8), line: 2, column: 9 + 511)
        #expect(d?.message == "YAML nesting is deeper than 512 levels")
    }

    @Test func aliasBomb() {
        var text = "recipe: 1\nvars:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        for (prev, name) in zip(names, names.dropFirst()) {
            text += "  \(name): &\(name) [" + Array(repeating: "*\(prev)", count: 10).joined(separator: ", ") + "]\n"
        }
        text += minimalStages
        // The budget of 10^6 copied nodes runs out at the 8th alias (`*e`, 111,111 nodes each) of `f` (line 8).
        let d = expectError(Array(text.utf8), line: 8, column: 10 + 4 * 7)
        #expect(d?.message.contains("expands the document beyond") == true)
    }

    @Test func tabIndentation() {
        let d = expectError(Array("recipe: 1\nstages:\n  a:\n\tkind: command\n".utf8), line: 4, column: 1)
        #expect(d?.hint == "YAML indentation must use spaces, not tabs")
    }

    @Test func duplicateKeys() {
        let d = expectError(Array("recipe: 1\nstages:\n  a: { kind: x }\n  a: { kind: y }\n".utf8), line: 4, column: 3)
        #expect(d?.message == "duplicate key 'a' in this mapping")
        #expect(d?.notes.first?.mark?.line == 3)
    }

    @Test func extendsLoop() {
        let d = expectError(Array("recipe: 1\nextends: other.yaml\nstages: { a: { kind: x } }\n".utf8),
                            line: 1, column: 10, file: "other.yaml", extra: ["other.yaml": "extends: r.yaml\n"])
        #expect(d?.message.hasPrefix("extends loop: ") == true)
        #expect(d?.message.hasSuffix("/r.yaml → \(d?.mark?.file ?? "") → " + (d?.message.split(separator: " ")[2] ?? "")) == true)
    }

    @Test func unsetEnv() {
        let d = expectError(Array("recipe: 1\nmodels:\n  m: { path: \"${env.HPRUNE_SURELY_UNSET}\" }\n".utf8)
                            + Array(minimalStages.utf8), line: 3, column: 14)
        #expect(d?.message == "environment variable 'HPRUNE_SURELY_UNSET' is not set (used as ${env.HPRUNE_SURELY_UNSET})")
    }
}

@Suite struct OversizedInputTests {
    @Test func endlessDeviceIsCutAtTheLimit() throws {
        var loader = RecipeLoader(environment: [:])
        loader.limits.maxBytes = 1 << 20
        let ((result, cpu), _) = timed { cpuTimed { loader.load(path: "/dev/zero") } }
        #expect(cpu < 2)
        #expect(result.recipe == nil)
        #expect(result.diagnostics.map(\.description) == [
            "/dev/zero: error: '/dev/zero' is larger than the 1048576-byte limit for recipes "
                + "(recipes are small text files; is this the right file?)",
        ])
    }

    @Test func directoryIsNotARecipe() {
        let ws = Workspace(["d/x.yaml": "a: 1\n"])
        let result = ws.load("d")
        #expect(result.recipe == nil)
        #expect(result.diagnostics.map(\.message) == ["'\(ws.path("d"))' is a directory, not a recipe file"])
    }
}
