// Markdown reference for the stage kinds, generated from their schemas so the docs cannot drift.
import Foundation
import StageGraph

public enum KindDocs {
    public static func markdown(_ kinds: [any StageKindDescription]) -> String {
        var out = ""
        for k in kinds.sorted(by: { $0.name < $1.name }) {
            out += "### `\(k.name)` (version \(k.version))\n\n\(k.summary)\n\n"
            out += "| key | type | default | meaning |\n|---|---|---|---|\n"
            for f in CommonStageKeys.fields + k.schema.fields {
                let def = f.required ? "required" : f.defaultValue.map { "`\($0.display)`" } ?? "—"
                out += "| `\(f.name)` | \(f.type.summary) | \(def) | \(f.doc.replacingOccurrences(of: "|", with: "\\|")) |\n"
                if case .object(let sub) = f.type {
                    for g in sub.fields {
                        let d = g.required ? "required" : g.defaultValue.map { "`\($0.display)`" } ?? "—"
                        out += "| `\(f.name).\(g.name)` | \(g.type.summary) | \(d) | \(g.doc.replacingOccurrences(of: "|", with: "\\|")) |\n"
                    }
                }
            }
            let example = k.outputs(params: .map([]))
            if !example.isEmpty {
                out += "\nOutputs: " + example.map { "`\($0.name)` (\($0.type.rawValue))" }.joined(separator: ", ") + "\n"
            }
            out += "\n"
        }
        return out
    }
}
