// Drawing the stage graph for `hprune graph`: an indented text tree, Graphviz dot, or Mermaid.
import Foundation

public enum GraphFormat: String, Sendable, CaseIterable { case text, dot, mermaid }

extension Graph {
    public func render(_ format: GraphFormat) -> String {
        switch format {
        case .text: return renderText()
        case .dot: return renderDot()
        case .mermaid: return renderMermaid()
        }
    }

    private func edges() -> [(from: String, to: String, label: String)] {
        stages.flatMap { s in
            s.bindings.map { b -> (String, String, String) in
                switch b.source {
                case .source(let n): return (n, s.name, b.path)
                case .stage(let n, let port): return (n, s.name, port == s.kind.defaultOutput(params: s.params) ? b.path : "\(port) → \(b.path)")
                }
            }
        }
    }

    private func renderText() -> String {
        var lines: [String] = []
        for src in sources { lines.append("\(src.role.rawValue) \(src.name)  (\(src.params["path"]?.display ?? ""))") }
        for s in stages {
            let inputs = s.bindings.map { "\($0.path) ← \($0.source)" }
            lines.append("stage \(s.name) [\(s.kind.name)]" + (inputs.isEmpty ? "" : "  " + inputs.joined(separator: ", ")))
            let outs = s.outputs.map { "\($0.name): \($0.type.rawValue)" }
            if !outs.isEmpty { lines.append("    → " + outs.joined(separator: ", ")) }
        }
        return lines.joined(separator: "\n")
    }

    private static func quote(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    private func renderDot() -> String {
        var out = ["digraph recipe {", "  rankdir=LR;", "  node [fontname=\"Helvetica\"];"]
        for src in sources { out.append("  \(Self.quote(src.name)) [shape=cylinder, label=\(Self.quote("\(src.name)\n\(src.role.rawValue)"))];") }
        for s in stages { out.append("  \(Self.quote(s.name)) [shape=box, label=\(Self.quote("\(s.name)\n[\(s.kind.name)]"))];") }
        for e in edges() { out.append("  \(Self.quote(e.from)) -> \(Self.quote(e.to)) [label=\(Self.quote(e.label))];") }
        out.append("}")
        return out.joined(separator: "\n")
    }

    private func renderMermaid() -> String {
        func id(_ s: String) -> String { "n_" + s.map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() }
        func text(_ s: String) -> String { s.replacingOccurrences(of: "\"", with: "#quot;") }
        var out = ["flowchart LR"]
        for src in sources { out.append("  \(id(src.name))[(\"\(text(src.name))<br/>\(src.role.rawValue)\")]") }
        for s in stages { out.append("  \(id(s.name))[\"\(text(s.name))<br/>[\(s.kind.name)]\"]") }
        for e in edges() { out.append("  \(id(e.from)) -->|\"\(text(e.label))\"| \(id(e.to))") }
        return out.joined(separator: "\n")
    }
}
