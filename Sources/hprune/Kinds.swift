// `hprune kinds`: the stage kinds this build can run, with every parameter; `--markdown` writes the
// reference section that Docs/recipe-reference.md includes (a test keeps them in sync).
import ArgumentParser
import Foundation
import StageGraph
import Stages

struct Kinds: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the stage kinds and their parameters.",
        discussion: "Example: hprune kinds --markdown > kinds.md")

    @Flag(help: "Print Markdown (the recipe reference's stage-kind section).") var markdown = false
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let kinds = StageKinds.all
        if json {
            Terminal.printJSON(kinds.map { k -> [String: Any] in
                ["name": k.name, "version": k.version, "summary": k.summary,
                 "params": k.schema.fields.map { ["name": $0.name, "type": $0.type.summary, "required": $0.required,
                                                  "default": $0.defaultValue.map(jsonValue) ?? NSNull(), "doc": $0.doc] }]
            })
        } else if markdown {
            print(KindDocs.markdown(kinds), terminator: "")
        } else {
            for k in kinds {
                print("\(k.name) (v\(k.version)): \(k.summary)")
                for f in k.schema.fields {
                    let req = f.required ? " (required)" : f.defaultValue.map { " = \($0.display)" } ?? ""
                    print("    \(f.name): \(f.type.summary)\(req)")
                }
            }
        }
    }
}
