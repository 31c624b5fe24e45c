// Hostile input straight into YAMLParser: each case must fail with a real file:line:col, fast, never crash.
// Time bounds are on thread CPU time (stable when other processes load the machine) plus a generous wall bound.
import Testing
import TestSupport
import YAMLSupport

@Suite struct HostileYAMLTests {
    /// Parses `bytes`, expects the first diagnostic at `line:column`, and returns it. Fails if the parse
    /// takes more than `seconds` of CPU (generous; most cases take milliseconds).
    @discardableResult
    func expectFailure(_ bytes: [UInt8], line: Int, column: Int, seconds: Double = 4,
                       limits: YAMLLimits = .default, sourceLocation: SourceLocation = #_sourceLocation) -> Diagnostic? {
        let ((ds, cpu), wall) = timed { cpuTimed { parseDiagnostics(bytes, file: "h.yaml", limits: limits) } }
        #expect(cpu < seconds, "CPU \(cpu) s", sourceLocation: sourceLocation)
        #expect(wall < 10 * seconds, "wall \(wall) s", sourceLocation: sourceLocation)
        #expect(ds.first?.mark == SourceMark(file: "h.yaml", line: line, column: column),
                "\(ds.map(\.description))", sourceLocation: sourceLocation)
        return ds.first
    }

    @Test func binaryGarbage() {
        // An ELF header: 0x7F is a control character libyaml refuses.
        let elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x01, 0x00] + (0..<200).map { UInt8(($0 * 37) & 0xFF) }
        let d = expectFailure(elf, line: 1, column: 1)
        #expect(d?.message.hasPrefix("cannot read YAML: control characters are not allowed") == true)
        #expect(d?.hint == "the file is not UTF-8 text; is it a binary file?")
    }

    @Test func invalidUTF8AfterText() {
        let d = expectFailure(Array("ok: 1\nbad: ".utf8) + [0xFF, 0xFE, 0x41], line: 2, column: 6)
        #expect(d?.message.contains("invalid leading UTF-8 octet") == true)
    }

    @Test func nulByte() {
        let d = expectFailure(Array("a: 1\nb: x\u{0}y\n".utf8), line: 2, column: 5)
        #expect(d?.hint == "the file contains a NUL byte; it is not a text file")
    }

    @Test func tabIndentation() {
        let d = expectFailure(Array("stages:\n  a:\n\tkind: x\n".utf8), line: 3, column: 1)
        #expect(d?.hint == "YAML indentation must use spaces, not tabs")
        let d2 = expectFailure(Array("a:\n  b: 1\n\tc: 2\n".utf8), line: 3, column: 1)
        #expect(d2?.hint == "YAML indentation must use spaces, not tabs")
    }

    @Test func deepFlowNesting() {
        let deep = String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000)
        let d = expectFailure(Array(deep.utf8), line: 1, column: 513)
        #expect(d?.message == "YAML nesting is deeper than 512 levels")
    }

    @Test func deepBlockNesting() {
        // 20,000 levels of `- ` on one line: block sequences nested in block sequences.
        let deep = String(repeating: "- ", count: 20_000) + "x\n"
        expectFailure(Array(deep.utf8), line: 1, column: 2 * 512 + 1)
        // Mapping nesting, one level per line, deeper than a small limit.
        var text = ""
        for i in 0..<100 { text += String(repeating: " ", count: i) + "k:\n" }
        expectFailure(Array(text.utf8), line: 11, column: 11, limits: YAMLLimits(maxDepth: 10))
    }

    @Test func aliasDepthCountsTowardsTheLimit() {
        // Each anchor wraps the previous one in one more list: the alias would make the tree too deep.
        var text = "a0: &a0 [x]\n"
        for i in 1...12 { text += "a\(i): &a\(i) [*a\(i - 1)]\n" }
        expectFailure(Array(text.utf8), line: 9, column: 10, limits: YAMLLimits(maxDepth: 10))
    }

    @Test func billionLaughs() {
        var text = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        for (prev, name) in zip(names, names.dropFirst()) {
            text += "\(name): &\(name) [" + Array(repeating: "*\(prev)", count: 9).joined(separator: ",") + "]\n"
        }
        // 9^6 nodes are copied by line 6 (f); the budget of 1,000,000 stops it at the first alias there.
        let (ds, cpu) = cpuTimed { parseDiagnostics(Array(text.utf8), file: "h.yaml") }
        #expect(cpu < 2)
        let d = ds.first
        #expect(d?.message.contains("expands the document beyond 1000000 nodes") == true)
        #expect(d?.mark?.file == "h.yaml")
        #expect((d?.mark?.line ?? 0) >= 6 && (d?.mark?.line ?? 0) <= 8)
    }

    @Test func inputSizeLimit() {
        let d = expectFailure(Array(repeating: UInt8(ascii: "a"), count: 2_000), line: 1, column: 1,
                              limits: YAMLLimits(maxBytes: 1_000))
        #expect(d?.message.contains("larger than the 1000-byte limit") == true)
    }

    @Test func tenMegabytesWithAnErrorAtTheEnd() {
        var text = "recipe: 1\nvars:\n"
        var i = 0
        while text.utf8.count < 10_000_000 {
            text += "  v\(i): { a: [1, 2, 3], b: \"some text here\" }\n"
            i += 1
        }
        text += "  broken: [1, 2\n"
        let lines = text.split(separator: "\n").count
        let d = expectFailure(Array(text.utf8), line: lines + 1, column: 1)
        #expect(d?.message.hasPrefix("YAML syntax error") == true)
    }

    @Test func tenMegabytesParseFast() throws {
        var text = "stages:\n"
        var i = 0
        while text.utf8.count < 10_000_000 {
            text += "  s\(i): { kind: command, run: [echo, \"\(i)\"] }\n"
            i += 1
        }
        let ((root, cpu), wall) = try timed { try cpuTimed { try YAMLParser.parse(text, file: "big.yaml") } }
        #expect(cpu < 4, "CPU \(cpu) s")   // linear-time guard (~0.8 s idle), not a speed goal
        #expect(wall < 20, "wall \(wall) s")
        #expect(root["stages"]?.pairs?.count == i)
    }
}
