// The `command` kind's own checks (output names, input names), through the real recipe loader and graph builder.
import Foundation
import RecipeLanguage
import StageGraph
import Stages
import Testing
import TestSupport
import YAMLSupport

private func diagnostics(_ text: String) -> [Diagnostic] {
    let dir = TemporaryDirectory()
    let loaded = RecipeLoader(environment: [:]).load(path: dir.write("r.yaml", text))
    guard let recipe = loaded.recipe else { return loaded.diagnostics }
    return loaded.diagnostics + GraphBuilder.build(recipe, registry: StageKinds.registry).diagnostics
}

@Test func commandOutputNamesAreChecked() {
    let diags = diagnostics("""
        recipe: 1
        stages:
          a: { kind: command, run: [x], outputs: [ok.txt, a/b, ok.txt, files], inputs: { "bad name": a } }
          b: { kind: command }
          d: { kind: command, run: "echo", timeout: -1 }
        """)
    #expect(contains(diags, "'outputs[1]': 'a/b' must be a plain file name"))
    #expect(contains(diags, "'outputs[2]': 'ok.txt' is declared twice"))
    #expect(contains(diags, "'outputs[3]': 'files' must be a plain file name"))
    #expect(contains(diags, "input name 'bad name'"))
    #expect(contains(diags, "r.yaml:4:", "missing required key 'run'"))
    #expect(contains(diags, "r.yaml:5:", "'run' expected list of string, got a string \"echo\""))
    #expect(contains(diags, "r.yaml:5:", "'timeout' must be > 0, got -1"))
}
