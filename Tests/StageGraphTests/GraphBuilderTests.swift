// The stage checker: schemas, references, port types, cycles — every problem at once, each with a mark.
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import Stages
import Testing
import TestSupport
import YAMLSupport

/// A kind with typed ports, to test port-type checking (the `command` kind accepts anything).
struct ConsumeModel: StageKindDescription {
    let name = "consume-model"
    let version = 1
    let summary = "test kind: reads a model"
    let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "a model"),
        Field("ratio", .number(min: 0, max: 1, exclusive: true), default: .double(0.2), doc: "a ratio"),
    ])
    func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("report", .report)] }
    func defaultOutput(params: ParamValue) -> String { "report" }
}

func registry() -> StageRegistry {
    var r = StageKinds.registry
    r.register(ConsumeModel())
    return r
}

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
          c: { kind: command, run: [cat], inputs: { a: b, d: d } }
          b: { kind: command, run: [echo], inputs: { x: a.out.txt } }
          a: { kind: command, run: [echo], outputs: [out.txt] }
        """)
    #expect(diags.isEmpty, "\(diags)")
    let g = try #require(graph)
    #expect(g.stages.map(\.name) == ["a", "b", "c"])
    #expect(g.stage("b")?.bindings.first?.source == .stage("a", port: "out.txt"))
    #expect(g.stage("c")?.dependencies == ["b"])
    #expect(g.stage("c")?.params["timeout"] == nil)
}

@Test func reportsEveryProblemAtOnceWithMarks() {
    let (_, diags) = build("""
        recipe: 1
        models: { m: { path: data.txt } }
        stages:
          a: { kind: comand, run: [x] }
          b: { kind: command, run: [x], ouputs: [f] }
          c: { kind: command }
          d: { kind: command, run: "echo", timeout: -1 }
          e: { kind: command, run: [x], inputs: { i: bb } }
          f: { kind: consume-model, model: e, ratio: 1.5 }
          g: { kind: command, run: [x], inputs: { i: b.nope } }
        """)
    #expect(contains(diags, "r.yaml:4:", "unknown stage kind 'comand'", "did you mean 'command'?"))
    #expect(contains(diags, "r.yaml:5:", "unknown key 'ouputs'", "did you mean 'outputs'?"))
    #expect(contains(diags, "r.yaml:6:", "missing required key 'run'"))
    #expect(contains(diags, "r.yaml:7:", "'run' expected list of string, got a string \"echo\""))
    #expect(contains(diags, "r.yaml:7:", "'timeout' must be > 0, got -1"))
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
          a: { kind: command, run: [x], inputs: { i: c } }
          b: { kind: command, run: [x], inputs: { i: a } }
          c: { kind: command, run: [x], inputs: { i: b } }
          d: { kind: command, run: [x] }
        """)
    #expect(graph == nil)
    #expect(contains(diags, "stages form a cycle: a → b → c → a"))
}

@Test func selfReferenceIsACycle() {
    let (_, diags) = build("""
        recipe: 1
        stages:
          a: { kind: command, run: [x], inputs: { i: a } }
        """)
    #expect(contains(diags, "cycle: a → a"))
}

@Test func commandOutputNamesAreChecked() {
    let (_, diags) = build("""
        recipe: 1
        stages:
          a: { kind: command, run: [x], outputs: [ok.txt, a/b, ok.txt, files], inputs: { "bad name": a } }
        """)
    #expect(contains(diags, "'outputs[1]': 'a/b' must be a plain file name"))
    #expect(contains(diags, "'outputs[2]': 'ok.txt' is declared twice"))
    #expect(contains(diags, "'outputs[3]': 'files' must be a plain file name"))
    #expect(contains(diags, "input name 'bad name'"))
}

@Test func thousandStageChainPlansUnderOneSecond() throws {
    var text = "recipe: 1\nstages:\n  s0: { kind: command, run: [true] }\n"
    for i in 1..<1000 { text += "  s\(i): { kind: command, run: [true], inputs: { p: s\(i - 1) } }\n" }
    let start = ContinuousClock.now
    let (graph, diags) = build(text)
    let g = try #require(graph, "\(diags.prefix(3))")
    let plan = Planner.plan(g, sourceDigests: [:], context: KeyContext(seed: 0, backendClass: "cpu", numerics: [:])) { _ in nil }
    let elapsed = ContinuousClock.now - start
    #expect(plan.entries.count == 1000)
    #expect(plan.entries[0].key != nil)
    #expect(plan.entries[1].key == nil) // waits for s0's outputs
    #expect(elapsed < .seconds(1), "took \(elapsed)")
}
