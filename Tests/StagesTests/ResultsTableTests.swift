// Tests of `ResultsTable`, the Markdown rendering behind `hprune report`.

import ArtifactStore
import Testing
@testable import Stages

@Test func resultsTableShowsEachRunsModelsAndTheReferenceOnce() {
    func m(_ run: String, _ stage: String, _ name: String, _ v: Double) -> Metric {
        Metric(run: RunID(run), stage: stage, name: name, value: v)
    }
    let a = ResultsTable.Run(label: "hpp20", id: "r-a", metrics: [
        m("r-a", "distill", "loss_last", 0.1),
        m("r-a", "evaluate", "teacher.params", 1000), m("r-a", "evaluate", "teacher.prompt_accuracy", 0.9),
        m("r-a", "evaluate", "student.params", 800), m("r-a", "evaluate", "student.prompt_accuracy", 0.72),
        m("r-a", "evaluate", "student.degradation", 20), m("r-a", "evaluate", "classifier.heldout_accuracy", 0.975),
    ])
    let b = ResultsTable.Run(label: "hpp30", id: "r-b", metrics: [
        m("r-b", "evaluate", "teacher.params", 1000), m("r-b", "evaluate", "teacher.prompt_accuracy", 0.9),
        m("r-b", "evaluate", "student.params", 700), m("r-b", "evaluate", "student.prompt_accuracy", 0.45),
    ])
    let md = ResultsTable.markdown([a, b])
    let lines = md.split(separator: "\n").map(String.init)
    #expect(lines[0] == "| run | model | params | prompt accuracy | degradation (%) |")
    #expect(lines[2] == "| hpp20 | teacher | 1000 | 0.900 |  |")
    #expect(lines[3] == "| hpp20 | student | 800 | 0.720 | 20.0 |")
    #expect(lines[4] == "| hpp30 | student | 700 | 0.450 |  |")
    #expect(lines.count == 6 && lines[5] == "Classifier held-out accuracy: 0.975 (run r-a).")
    #expect(ResultsTable.markdown([a, b], referenceOnce: false).contains("| hpp30 | teacher | 1000 | 0.900 |  |"))
}

@Test func resultsTableGroupColumnsAndMeanOverSeeds() {
    func m(_ run: String, _ name: String, _ v: Double) -> Metric { Metric(run: RunID(run), stage: "evaluate", name: name, value: v) }
    func run(_ id: String, _ label: String, teacher: Double, student: Double, unseen: Double) -> ResultsTable.Run {
        ResultsTable.Run(label: label, id: id, metrics: [
            m(id, "teacher.prompt_accuracy", teacher), m(id, "teacher.prompt_accuracy.unseen", teacher),
            m(id, "student.prompt_accuracy", student), m(id, "student.prompt_accuracy.unseen", unseen),
            m(id, "student.frechet.unseen", 10 * unseen),
        ])
    }
    // Group metrics become columns after the fixed ones, headed by metric and group.
    let one = ResultsTable.markdown([run("r-1", "hpp", teacher: 0.9, student: 0.8, unseen: 0.5)])
    let lines = one.split(separator: "\n").map(String.init)
    #expect(lines[0] == "| run | model | prompt accuracy | prompt accuracy, unseen | Fréchet, unseen |")
    #expect(lines[3] == "| hpp | student | 0.800 | 0.500 | 5.00 |")
    // --mean: three seeds of "hpp" and one of "pwp" → one row per (recipe, model); mean ± sample sd (n − 1).
    let runs = [run("r-1", "hpp", teacher: 0.9, student: 0.8, unseen: 0.5), run("r-2", "hpp", teacher: 0.9, student: 0.7, unseen: 0.4),
                run("r-3", "hpp", teacher: 0.9, student: 0.6, unseen: 0.3), run("r-4", "pwp", teacher: 0.9, student: 0.75, unseen: 0.6)]
    let mean = ResultsTable.meanMarkdown(runs).split(separator: "\n").map(String.init)
    #expect(mean[0] == "| run | model | runs | prompt accuracy | prompt accuracy, unseen | Fréchet, unseen |")
    #expect(mean[2] == "| hpp | teacher | 3 | 0.900 ± 0.000 | 0.900 ± 0.000 |  |")
    #expect(mean[3] == "| hpp | student | 3 | 0.700 ± 0.100 | 0.400 ± 0.100 | 4.00 ± 1.00 |")
    #expect(mean[4] == "| pwp | student | 1 | 0.750 | 0.600 | 6.00 |")
    #expect(mean.count == 5)
    #expect(ResultsTable.meanMarkdown(runs, referenceOnce: false).contains("| pwp | teacher | 1 | 0.900 | 0.900 |  |"))
    #expect(ResultsTable.meanAndSD([]) == nil)
}
