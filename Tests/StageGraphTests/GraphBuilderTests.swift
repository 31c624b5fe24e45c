// The stage checker: schemas, references, port types, cycles — every problem at once, each with a mark.
// The kinds are TestKinds' small `write` and `consume-model`; the real kinds' own checks are tested in StagesTests.
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import TestKinds
import Testing
import TestSupport
import YAMLSupport

func registry() -> StageRegistry { TestKinds.registry }

func build(_ text: String, file: String = "r.yaml") -> (Graph?, [Diagnostic]) {
    let dir = TemporaryDirectory()
    let path = dir.write(file, text)
    dir.write("data.txt", "x")
    let loaded = RecipeLoader(environment: [:]).load(path: path)
    guard let recipe = loaded.recipe else { return (nil, loaded.diagnostics) }
    let built = GraphBuilder.build(recipe, registry: registry())
    return (built.graph, loaded.diagnostics + built.diagnostics)
}

@Test func validRecipeBuildsOrderedGraph() throws {
    let (graph, diags) = build("""
        recipe: 1
        datasets: { d: { path: data.txt } }
        stages:
          c: { kind: write, text: c, inputs: { a: b, d: d } }
          b: { kind: write, text: b, inputs: { x: a.out.txt } }
          a: { kind: write, text: a, outputs: [out.txt] }
        """)
    #expect(diags.isEmpty, "\(diags)")
    let g = try #require(graph)
    #expect(g.stages.map(\.name) == ["a", "b", "c"])
    #expect(g.stage("b")?.bindings.first?.source == .stage("a", port: "out.txt"))
    #expect(g.stage("c")?.dependencies == ["b"])
    #expect(g.stage("c")?.params["repeat"] == .int(1))   // defaults filled in
}

@Test func reportsEveryProblemAtOnceWithMarks() {
    let (_, diags) = build("""
        recipe: 1
        models: { m: { path: data.txt } }
        stages:
          a: { kind: wrte, text: x }
          b: { kind: write, text: x, ouputs: [f] }
          c: { kind: write }
          d: { kind: write, text: [echo], repeat: 0 }
          e: { kind: write, text: x, inputs: { i: bb } }
          f: { kind: consume-model, model: e, ratio: 1.5 }
          g: { kind: write, text: x, inputs: { i: b.nope } }
        """)
    #expect(contains(diags, "r.yaml:4:", "unknown stage kind 'wrte'", "did you mean 'write'?"))
    #expect(contains(diags, "r.yaml:5:", "unknown key 'ouputs'", "did you mean 'outputs'?"))
    #expect(contains(diags, "r.yaml:6:", "missing required key 'text'"))
    #expect(contains(diags, "r.yaml:7:", "'text' expected string, got a list of 1 item"))
    #expect(contains(diags, "r.yaml:7:", "'repeat' must be ≥ 1, got 0"))
    #expect(contains(diags, "r.yaml:8:", "refers to unknown 'bb'", "did you mean 'b'?"))
    #expect(contains(diags, "r.yaml:9:", "'model' expects a model, but 'e.files' is a files"))
    #expect(contains(diags, "r.yaml:9:", "'ratio' must be in (0, 1), got 1.5"))
    #expect(contains(diags, "r.yaml:10:", "stage 'b' has no output 'nope'"))
    #expect(diags.count >= 9)
}

@Test func portTypeOfSourcesIsChecked() {
    let (_, diags) = build("""
        recipe: 1
        datasets: { d: { path: data.txt } }
        stages:
          f: { kind: consume-model, model: d }
        """)
    #expect(contains(diags, "r.yaml:4:", "'model' expects a model, but 'd' is a dataset"))
}

@Test func cycleIsPrinted() {
    let (graph, diags) = build("""
        recipe: 1
        stages:
          a: { kind: write, text: x, inputs: { i: c } }
          b: { kind: write, text: x, inputs: { i: a } }
          c: { kind: write, text: x, inputs: { i: b } }
          d: { kind: write, text: x }
        """)
    #expect(graph == nil)
    #expect(contains(diags, "stages form a cycle: a → b → c → a"))
}

@Test func selfReferenceIsACycle() {
    let (_, diags) = build("""
        recipe: 1
        stages:
          a: { kind: write, text: x, inputs: { i: a } }
        """)
    #expect(contains(diags, "cycle: a → a"))
}

@Test func thousandStageChainPlansInLinearTime() throws {
    var text = "recipe: 1\nstages:\n  s0: { kind: write, text: x }\n"
    for i in 1..<1000 { text += "  s\(i): { kind: write, text: x, inputs: { p: s\(i - 1) } }\n" }
    let start = ContinuousClock.now
    let (graph, diags) = build(text)
    let g = try #require(graph, "\(diags.prefix(3))")
    let plan = Planner.plan(g, sourceDigests: [:], context: KeyContext(seed: 0, backendClass: "cpu", numerics: [:])) { _ in nil }
    let elapsed = ContinuousClock.now - start
    #expect(plan.entries.count == 1000)
    #expect(plan.entries[0].key != nil)
    #expect(plan.entries[1].key == nil) // waits for s0's outputs
    #expect(elapsed < .seconds(10), "took \(elapsed)")   // a guard against quadratic planning, not a speed goal (~0.1 s idle; shared CI machines vary)
}
