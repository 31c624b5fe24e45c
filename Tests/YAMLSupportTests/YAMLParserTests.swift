// YAMLParser against real libyaml: values, styles, tags and marks; anchors, aliases and merge keys;
// duplicate keys and document-count errors.
import Testing
import TestSupport
import YAMLSupport

@Suite struct YAMLParserTests {
    @Test func scalarsStylesAndMarks() throws {
        let root = try YAMLParser.parse("""
            a: 1
            b: 'q'
            c: "d"
            list:
              - x
              - |
                lit
            tagged: !!str 12
            """, file: "f.yaml")
        #expect(root.mark == SourceMark(file: "f.yaml", line: 1, column: 1))
        #expect(root["a"]?.int == 1)
        #expect(root["a"]?.mark == SourceMark(file: "f.yaml", line: 1, column: 4))
        #expect(root.pair("b")?.key.mark == SourceMark(file: "f.yaml", line: 2, column: 1))
        #expect(root["b"]?.value == .scalar("q", .singleQuoted))
        #expect(root["c"]?.value == .scalar("d", .doubleQuoted))
        let items = try #require(root["list"]?.items)
        #expect(items.count == 2)
        #expect(items[0].mark == SourceMark(file: "f.yaml", line: 5, column: 5))
        #expect(items[1].value == .scalar("lit\n", .literal))
        #expect(root["tagged"]?.tag == "tag:yaml.org,2002:str")
        #expect(root["tagged"]?.int == nil)
        #expect(root["tagged"]?.string == "12")
    }

    @Test func flowCollections() throws {
        let root = try YAMLParser.parse("s: { kind: score, components: [block, attn] }\n", file: "f")
        #expect(root["s"]?["kind"]?.string == "score")
        #expect(root["s"]?["components"]?.items?.compactMap(\.string) == ["block", "attn"])
        #expect(root["s"]?["components"]?.mark == SourceMark(file: "f", line: 1, column: 31))
    }

    @Test func anchorsAndAliases() throws {
        let root = try YAMLParser.parse("""
            base: &b { lr: 1.0e-4, steps: 10 }
            copy: *b
            list: [&x 3, *x, *x]
            """, file: "f")
        #expect(root["copy"] == root["base"])
        #expect(root["copy"]?["lr"]?.double == 1.0e-4)
        #expect(root["list"]?.items?.compactMap(\.int) == [3, 3, 3])
    }

    @Test func mergeKeyExplicitKeysWin() throws {
        let root = try YAMLParser.parse("""
            defaults: &d { lr: 1, steps: 10, batch: 4 }
            stage:
              steps: 20
              <<: *d
            """, file: "f")
        let stage = try #require(root["stage"])
        #expect(stage.pairs?.compactMap(\.key.scalarText) == ["lr", "batch", "steps"])
        #expect(stage["steps"]?.int == 20)
        #expect(stage["lr"]?.int == 1)
        #expect(stage["<<"] == nil)
    }

    @Test func mergeKeyListEarlierWins() throws {
        let root = try YAMLParser.parse("""
            a: &a { x: 1, y: 1 }
            b: &b { y: 2, z: 2 }
            m:
              <<: [*a, *b]
              z: 3
            """, file: "f")
        let m = try #require(root["m"])
        #expect(m["x"]?.int == 1)
        #expect(m["y"]?.int == 1)
        #expect(m["z"]?.int == 3)
        #expect(m.pairs?.count == 3)
    }

    @Test func mergeKeyNeedsMappings() {
        let ds = parseDiagnostics(Array("a: &a 3\nm:\n  <<: *a\n".utf8), file: "f")
        #expect(ds.count == 1)
        #expect(ds.first?.message.contains("merge key '<<' needs a mapping") == true)
        #expect(ds.first?.mark == SourceMark(file: "f", line: 1, column: 4))
    }

    @Test func duplicateKeysPointAtBoth() {
        let ds = parseDiagnostics(Array("stages:\n  a: 1\n  b: 2\n  a: 3\nx: 1\nx: 2\n".utf8), file: "d.yaml")
        #expect(ds.count == 2)
        #expect(ds[0].description == "d.yaml:4:3: error: duplicate key 'a' in this mapping "
                + "(a key may appear once per mapping; remove or rename one of them)")
        #expect(ds[0].notes.first?.mark == SourceMark(file: "d.yaml", line: 2, column: 3))
        #expect(ds[1].mark == SourceMark(file: "d.yaml", line: 6, column: 1))
    }

    @Test func undefinedAlias() {
        let ds = parseDiagnostics(Array("base: &bse 1\nx: *base\n".utf8), file: "f")
        #expect(ds.first?.mark == SourceMark(file: "f", line: 2, column: 4))
        #expect(ds.first?.hint?.contains("did you mean 'bse'?") == true)
    }

    @Test func selfReferentialAliasIsUndefined() {
        let ds = parseDiagnostics(Array("a: &a [1, *a]\n".utf8), file: "f")
        #expect(ds.first?.mark == SourceMark(file: "f", line: 1, column: 11))
    }

    @Test func exactlyOneDocument() {
        let ds = parseDiagnostics(Array("a: 1\n---\nb: 2\n".utf8), file: "f")
        #expect(ds.count == 1)
        #expect(ds[0].mark == SourceMark(file: "f", line: 2, column: 1))
        #expect(ds[0].notes.first?.mark == SourceMark(file: "f", line: 1, column: 1))
    }

    @Test func emptyAndCommentOnlyFiles() {
        for text in ["", "# only a comment\n\n"] {
            let ds = parseDiagnostics(Array(text.utf8), file: "e.yaml")
            #expect(ds.count == 1)
            #expect(ds.first?.message == "file is empty")
            #expect(ds.first?.mark == SourceMark(file: "e.yaml", line: 1, column: 1))
        }
    }

    @Test func syntaxErrorsCarryLibyamlProblemAndHint() {
        let ds = parseDiagnostics(Array("a:\n  b: 1\n c: 2\n".utf8), file: "f")
        #expect(ds.first?.message == "YAML syntax error: did not find expected key")
        #expect(ds.first?.mark == SourceMark(file: "f", line: 3, column: 2))
        #expect(ds.first?.hint == "check the indentation of this line against the lines above")
        #expect(ds.first?.notes.first?.message == "while parsing a block mapping, which starts here")
    }

    @Test func stringInputEqualsBytes() throws {
        let text = "k: [1, 2]\n"
        #expect(try YAMLParser.parse(text, file: "f") == YAMLParser.parse(Array(text.utf8), file: "f"))
    }
}

@Suite struct SuggestTests {
    @Test func closestCandidate() {
        #expect(Suggest.hint(for: "ration", in: ["ratio", "steps"]) == "did you mean 'ratio'?")
        #expect(Suggest.hint(for: "cdua", in: ["cpu", "cuda", "auto"]) == "did you mean 'cuda'?")
        #expect(Suggest.hint(for: "zzzzzz", in: ["ratio"]) == nil)
        #expect(Suggest.distance("ab", "ba") == 1)
        #expect(Suggest.distance("kitten", "sitting") == 3)
    }
}
