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
