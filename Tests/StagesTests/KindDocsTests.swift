// The recipe reference's stage-kind section is generated from the schemas; this keeps it current.
// To update: `hprune kinds --markdown` and paste between the markers (or run with HPRUNE_RECORD=1).
import Foundation
import Stages
import Testing
import TestSupport

@Test func recipeReferenceListsEveryKindAsGenerated() throws {
    let url = repositoryRoot().appendingPathComponent("Docs/recipe-reference.md")
    let doc = try String(contentsOf: url, encoding: .utf8)
    let begin = "<!-- BEGIN GENERATED: hprune kinds --markdown -->\n", end = "<!-- END GENERATED -->"
    let a = try #require(doc.range(of: begin)), b = try #require(doc.range(of: end))
    let generated = KindDocs.markdown(StageKinds.all)
    if ProcessInfo.processInfo.environment["HPRUNE_RECORD"] == "1" {
        try (String(doc[..<a.upperBound]) + generated + String(doc[b.lowerBound...])).write(to: url, atomically: true, encoding: .utf8)
    }
    #expect(String(doc[a.upperBound..<b.lowerBound]) == generated,
            "Docs/recipe-reference.md is out of date: run `HPRUNE_RECORD=1 swift test --filter recipeReferenceListsEveryKindAsGenerated`")
    for kind in StageKinds.all {
        #expect(doc.contains("### `\(kind.name)`"))
        for field in kind.schema.fields { #expect(doc.contains("| `\(field.name)` |"), "\(kind.name).\(field.name)") }
    }
}
