// Golden renderings of diagnostics: header line, source line with gutter, caret under the column, notes,
// tabs, long lines, color, and marks without a source.
import Testing
import TestSupport
import YAMLSupport

@Suite struct DiagnosticRendererTests {
    func renderer(_ files: [String: String]) -> DiagnosticRenderer {
        let sources = SourceCache()
        for (file, text) in files { sources.register(text, for: file) }
        return DiagnosticRenderer(sources: sources)
    }

    @Test func caretUnderTheColumnWithHintAndNote() {
        let r = renderer(["recipes/x.yaml": "recipe: 1\nstages:\n  prune:\n    kind: prune\n    ration: 0.3\n"])
        var d = Diagnostic.error("stage 'prune': unknown key 'ration'",
                                 at: SourceMark(file: "recipes/x.yaml", line: 5, column: 5),
                                 hint: "did you mean 'ratio'?")
        d.notes = [Diagnostic(.note, "stage 'prune' starts here", at: SourceMark(file: "recipes/x.yaml", line: 3, column: 3))]
        #expect(r.render(d) == """
            recipes/x.yaml:5:5: error: stage 'prune': unknown key 'ration' (did you mean 'ratio'?)
             5 |     ration: 0.3
               |     ^
            recipes/x.yaml:3:3: note: stage 'prune' starts here
             3 |   prune:
               |   ^

            """)
    }

    @Test func realParseErrorRendersAtLibyamlsPosition() {
        let text = "stages:\n  a: { kind: x\n  b: 2\n"
        let r = renderer(["r.yaml": text])
        let ds = parseDiagnostics(Array(text.utf8), file: "r.yaml")
        #expect(r.render(ds) == """
            r.yaml:3:4: error: YAML syntax error: did not find expected ',' or '}' \
            (a flow collection ('[...]' or '{...}') is not closed, or an item lacks a comma)
             3 |   b: 2
               |    ^
            r.yaml:2:6: note: while parsing a flow mapping, which starts here
             2 |   a: { kind: x
               |      ^

            """)
    }

    @Test func gutterWidensWithTheLineNumber() {
        let text = String(repeating: "a: 1\n", count: 120)
        let r = renderer(["f": text])
        #expect(r.render(.error("m", at: SourceMark(file: "f", line: 100, column: 4))) == """
            f:100:4: error: m
             100 | a: 1
                 |    ^

            """)
    }

    @Test func tabsExpandAndTheCaretFollows() {
        let r = renderer(["f": "a:\n\tb: 1\n"])
        #expect(r.render(.error("m", at: SourceMark(file: "f", line: 2, column: 2))) == """
            f:2:2: error: m
             2 |     b: 1
               |     ^

            """)
    }

    @Test func longLinesAreWindowedAroundTheColumn() {
        let line = String(repeating: "x", count: 500) + "HERE" + String(repeating: "y", count: 500)
        let r = DiagnosticRenderer(sources: { let s = SourceCache(); s.register(line, for: "f"); return s }(),
                                   maxLineWidth: 30)
        let out = r.render(.error("m", at: SourceMark(file: "f", line: 1, column: 501)))
        let lines = out.split(separator: "\n")
        #expect(lines[1] == " 1 | ...xxxxxxxxxxHEREyyyyyyyyyyyyyyyy...")
        #expect(lines[2] == "   |              ^")
    }

    @Test func markWithoutSourceHasNoExcerpt() {
        let r = renderer([:])
        #expect(r.render(.error("cannot read", at: .synthetic("missing.yaml"))) == "missing.yaml: error: cannot read\n")
        #expect(r.render(.error("no mark", at: nil)) == "error: no mark\n")
        #expect(r.render(.error("gone", at: SourceMark(file: "/nonexistent/x.yaml", line: 3, column: 1)))
                == "/nonexistent/x.yaml:3:1: error: gone\n")
    }

    @Test func colorOnlyWhenAsked() {
        let sources = SourceCache()
        sources.register("a: 1\n", for: "f")
        let d = Diagnostic.error("m", at: SourceMark(file: "f", line: 1, column: 1))
        #expect(!DiagnosticRenderer(sources: sources).render(d).contains("\u{1B}["))
        let colored = DiagnosticRenderer(sources: sources, color: true).render(d)
        #expect(colored.contains("\u{1B}[1m\u{1B}[31merror:\u{1B}[0m"))
        #expect(colored.contains("\u{1B}[1m\u{1B}[32m^\u{1B}[0m"))
    }

    @Test func controlBidiAndInvalidBytesAreEscapedAndTheCaretFollows() {
        let sources = SourceCache()
        // RLO, ESC, an invalid byte, a wide character, then the column the diagnostic points at ("X").
        sources.register(bytes: Array("a\u{202E}b\u{1B}c".utf8) + [0xFF] + Array("漢X\n".utf8), for: "f\u{202E}.yaml")
        let d = Diagnostic.error("bad \u{1B}[31mkey\u{2066}", at: SourceMark(file: "f\u{202E}.yaml", line: 1, column: 8),
                                 hint: "h\u{200F}\n")
        let out = DiagnosticRenderer(sources: sources).render(d)
        // The caret: a (1) + \u{202E} (8) + b (1) + \u{1B} (6) + c (1) + \xFF (4) + 漢 (2 columns) = 23.
        #expect(out == "f\\u{202E}.yaml:1:8: error: bad \\u{1B}[31mkey\\u{2066} (h\\u{200F}\\n)\n"
                + " 1 | a\\u{202E}b\\u{1B}c\\xFF漢X\n"
                + "   | " + String(repeating: " ", count: 23) + "^\n")
        #expect(out.split(separator: "\n").first.map(String.init) == d.description)
    }

    @Test func valueDescriptionsQuoteTheValue() throws {
        func node(_ text: String) throws -> YAMLNode { try #require(try YAMLParser.parse("v: " + text, file: "t")["v"]) }
        #expect(try node("-3").valueDescription == "an integer -3")
        #expect(try node(".inf").valueDescription == ".inf (infinity)")
        #expect(try node("-.inf").valueDescription == "-.inf (minus infinity)")
        #expect(try node(".nan").valueDescription == ".nan (not a number)")
        #expect(try node("0.5").valueDescription == "a number 0.5")
        #expect(try node("'3'").valueDescription == "a string \"3\"")
        #expect(try node("[1, 2]").valueDescription == "a list of 2 items")
        #expect(try node("~").valueDescription == "null")
        #expect(try node(String(repeating: "x", count: 100)).valueDescription == "a string \"" + String(repeating: "x", count: 39) + "…\"")
    }

    @Test func firstLineIsTheOneLineDescription() {
        let r = renderer(["f": "x\n"])
        let d = Diagnostic.error("m", at: SourceMark(file: "f", line: 1, column: 1), hint: "h")
        #expect(r.render(d).split(separator: "\n").first.map(String.init) == d.description)
    }
}

@Suite struct SourceCacheTests {
    @Test func readsFilesLazilyAndSplitsLines() {
        let dir = TemporaryDirectory()
        let path = dir.write("a.yaml", "one\r\ntwo\nthree")
        let cache = SourceCache()
        #expect(cache.line(1, of: path) == "one")
        #expect(cache.line(2, of: path) == "two")
        #expect(cache.line(3, of: path) == "three")
        #expect(cache.line(4, of: path) == nil)
        #expect(cache.line(0, of: path) == nil)
        // Registered text replaces what was read.
        cache.register("new\n", for: path)
        #expect(cache.line(1, of: path) == "new")
        #expect(cache.line(1, of: dir.path + "/missing.yaml") == nil)
    }

    @Test func invalidUTF8IsShownAsReplacement() {
        let cache = SourceCache()
        cache.register(bytes: [0x61, 0xFF, 0x62], for: "b")
        #expect(cache.line(1, of: "b") == "a\u{FFFD}b")
    }
}
