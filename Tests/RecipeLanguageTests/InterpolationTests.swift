// `${vars.x}` / `${env.X}` interpolation: whole-value substitution keeps types, splicing makes strings,
// `$${` escapes, variables use env and each other, cycles and unknown names are reported at the use.
import Testing
import RecipeLanguage
import YAMLSupport

@Suite struct InterpolationTests {
    func load(_ body: String, env: [String: String] = [:], overrides: [String] = []) -> (RecipeLoadResult, Workspace) {
        let ws = Workspace(["r.yaml": "recipe: 1\n" + body], environment: env)
        return (ws.load("r.yaml", overrides: overrides), ws)
    }

    @Test func wholeValueKeepsTheVariablesType() throws {
        let (result, ws) = load("""
            vars:
              budget: 0.2
              steps: 4
              on: true
              parts: [block, attn]
              opt: { lr: 1.0e-4 }
            stages:
              s:
                kind: x
                a: ${vars.budget}
                b: "${vars.steps}"
                c: ${vars.on}
                d: ${vars.parts}
                e: ${vars.opt}
                f: ${vars.opt.lr}
                g: ${vars.parts.1}
            """)
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let s = try #require(result.recipe?.stages.first?.body)
        #expect(s["a"]?.double == 0.2)
        #expect(s["b"]?.int == 4)
        #expect(s["c"]?.bool == true)
        #expect(s["d"]?.items?.compactMap(\.string) == ["block", "attn"])
        #expect(s["e"]?["lr"]?.double == 1.0e-4)
        #expect(s["f"]?.double == 1.0e-4)
        #expect(s["g"]?.string == "attn")
        // The substituted value sits where it is used: errors about it point at the use.
        #expect(s["a"]?.mark == SourceMark(file: ws.path("r.yaml"), line: 11, column: 8))
        #expect(s["b"]?.mark == SourceMark(file: ws.path("r.yaml"), line: 12, column: 8))
    }

    @Test func splicingMakesStrings() throws {
        let (result, _) = load("""
            vars: { n: 3, dir: out }
            stages:
              s: { kind: x, path: "${env.HOME_DIR}/${vars.dir}/run-${vars.n}", count: "${vars.n}${vars.n}" }
            """, env: ["HOME_DIR": "/h"])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let s = try #require(result.recipe?.stages.first?.body)
        #expect(s["path"]?.string == "/h/out/run-3")
        #expect(s["count"]?.value == .scalar("33", .doubleQuoted))
        #expect(s["count"]?.int == nil)
    }

    @Test func envWholeValueIsTypedLikeAPlainScalar() throws {
        let (result, _) = load("seed: ${env.SEED}\nname: \"${env.NAME}\"\n" + minimalStages,
                               env: ["SEED": "42", "NAME": "n1"])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        #expect(result.recipe?.seed == 42)
        #expect(result.recipe?.name == "n1")
    }

    @Test func dollarDollarEscapes() throws {
        let (result, _) = load("""
            stages:
              s: { kind: x, a: "$${vars.x}", b: "cost: $${env.P} is ${env.P}", c: "$$5" }
            """, env: ["P": "9"])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let s = try #require(result.recipe?.stages.first?.body)
        #expect(s["a"]?.string == "${vars.x}")
        #expect(s["b"]?.string == "cost: ${env.P} is 9")
        #expect(s["c"]?.string == "$$5")
    }

    @Test func variablesUseEnvAndEachOther() throws {
        let (result, _) = load("""
            vars:
              root: ${env.ROOT}
              model: ${vars.root}/model
              all: ["${vars.model}", "${vars.root}"]
            stages:
              s: { kind: x, m: "${vars.all}" }
            """, env: ["ROOT": "/r"])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        #expect(result.recipe?.vars["model"]?.string == "/r/model")
        #expect(result.recipe?.stages.first?.body["m"]?.items?.compactMap(\.string) == ["/r/model", "/r"])
        #expect(result.recipe?.document["vars"]?["model"]?.string == "/r/model")
    }

    @Test func unsetEnvIsAnErrorAtTheUse() {
        let (result, ws) = load("models:\n  t: { path: \"${env.SD35_DIR}/transformer\" }\n" + minimalStages)
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:3:14: error: environment variable 'SD35_DIR' is not set (used as ${env.SD35_DIR}) "
                + "(set it, e.g. 'export SD35_DIR=…', or override this value with --set)",
        ])
        #expect(result.recipe != nil)
    }

    @Test func unknownVariableSuggests() {
        let (result, ws) = load("vars: { budget: 1 }\nstages:\n  s:\n    kind: x\n    p: \"${vars.budgt}\"\n    q: ${vars.nope}\n")
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:6:8: error: unknown variable 'budgt' in ${vars.budgt} (did you mean 'budget'?)",
            "r.yaml:7:8: error: unknown variable 'nope' in ${vars.nope} (defined variables: budget)",
        ])
    }

    @Test func badReferences() {
        let (result, ws) = load("""
            vars: { m: { a: 1 } }
            stages:
              s: { kind: x, a: "${var.m}", b: "${vars.m.b}", c: "x-${vars.m}", d: "${vars.m" }
            """)
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:4:20: error: cannot interpolate '${var.m}' (did you mean '${vars.m}'?)",
            "r.yaml:4:35: error: ${vars.m.b}: 'vars.m' (a mapping) has no 'b' (did you mean 'a'?)",
            "r.yaml:4:53: error: ${vars.m} is a mapping and cannot be put inside a longer string "
                + "(use it as the whole value, e.g. 'key: ${vars.m}')",
            "r.yaml:4:71: error: unterminated '${' in \"${vars.m\" (close it with '}', or write '$${' for a literal '${')",
        ])
    }

    @Test func variableCycle() {
        let (result, ws) = load("""
            vars:
              a: ${vars.b}
              b: ["${vars.c}"]
              c: "x${vars.a}"
            """ + "\n" + minimalStages)
        #expect(result.lines(relativeTo: ws) == [
            "r.yaml:5:6: error: variable cycle: vars.a → vars.b → vars.c → vars.a "
                + "(a variable cannot use itself, directly or through other variables)",
        ])
    }

    @Test func variableExpansionIsBounded() {
        // Each variable lists the previous one nine times: 9^10 nodes if copied out.
        var body = "vars:\n  v0: [a, a, a, a, a, a, a, a, a]\n"
        for i in 1...10 {
            body += "  v\(i): [" + Array(repeating: "\"${vars.v\(i - 1)}\"", count: 9).joined(separator: ", ") + "]\n"
        }
        let (result, _) = load(body + minimalStages)
        #expect(result.diagnostics.count == 1)
        #expect(result.diagnostics.first?.message.contains("makes the document larger than 1000000 copied nodes") == true)
    }

    @Test func blockStylePlainScalarsNeedNoQuotes() throws {
        let (result, _) = load("""
            vars:
              root: ${env.ROOT}
            stages:
              s:
                kind: command
                path: ${vars.root}/x
                run: [sh, -c, 'echo $${HOME} "$HPRUNE_OUT"']
            """, env: ["ROOT": "/r"])
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let s = try #require(result.recipe?.stages.first?.body)
        #expect(s["path"]?.string == "/r/x")
        #expect(s["run"]?.items?.last?.string == "echo ${HOME} \"$HPRUNE_OUT\"")
    }

    @Test func keysAreNotInterpolated() throws {
        let (result, _) = load("vars: { k: v }\nstages:\n  s: { kind: x, env: { \"${vars.k}\": 1 } }\n")
        #expect(result.diagnostics.isEmpty)
        #expect(result.recipe?.stages.first?.body["env"]?["${vars.k}"]?.int == 1)
    }
}
