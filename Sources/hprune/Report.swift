// `hprune report RUN…`: the `evaluate` metrics of several runs side by side as a Markdown table (Docs/results.md).
import ArgumentParser
import ArtifactStore
import Foundation
import Stages

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render the evaluate metrics of runs side by side as a Markdown table.",
        discussion: """
            Each RUN is a run id (or unique prefix); rows are labelled with the run's recipe name. The first model
            of each evaluate stage (its reference, e.g. the teacher) is shown for the first run only.
            Example:
              hprune report r-20261121-2210-ab12 r-20261121-2215-cd34 --store recipes/digits/.hprune
            """)

    @Argument(help: "Run ids (or unique prefixes), in the order of the rows.") var runs: [String]
    @OptionGroup var storeOptions: StoreOptions
    @Option(help: "The evaluate stage's name.") var stage = "evaluate"
    @Flag(help: "Show every run's reference model, not only the first run's.") var allReferences = false

    func run() async throws {
        let store = try storeOptions.openStandalone()
        var out: [ResultsTable.Run] = []
        for ref in runs {
            let record: RunRecord
            do { record = try store.ledger.run(id: ref) } catch {
                Terminal.err("error: no run '\(ref)' in the store (\(error)); list them with `hprune runs`")
                throw ExitCode(2)
            }
            out.append(ResultsTable.Run(label: record.start.recipeName, id: record.id.rawValue,
                                        metrics: try store.ledger.metrics(of: record.id)))
        }
        print(ResultsTable.markdown(out, stage: stage, referenceOnce: !allReferences), terminator: "")
    }
}
