// Prints diagnostics like a compiler: `file:line:col: error: message (hint)`, the source line with a gutter,
// and a caret under the column; notes follow in the same form. ANSI color only when asked for.

/// Renders `Diagnostic`s for people.
///
/// ```
/// recipes/x.yaml:12:5: error: unknown key 'ration' (did you mean 'ratio'?)
///  12 |     ration: 0.3
///     |     ^
/// ```
/// The first line is exactly `Diagnostic.description`, so one-line logs and rendered output agree.
public struct DiagnosticRenderer: Sendable {
    public var sources: SourceCache
    public var color: Bool
    /// Source lines longer than this are shown as a window around the column.
    public var maxLineWidth: Int

    public init(sources: SourceCache = SourceCache(), color: Bool = false, maxLineWidth: Int = 160) {
        self.sources = sources
        self.color = color
        self.maxLineWidth = maxLineWidth
    }

    /// One diagnostic and its notes; every line ends with "\n".
    public func render(_ diagnostic: Diagnostic) -> String {
        var out = ""
        append(diagnostic, to: &out)
        for note in diagnostic.notes { append(note, to: &out) }
        return out
    }

    /// Several diagnostics, one after the other.
    public func render(_ diagnostics: [Diagnostic]) -> String {
        diagnostics.map(render).joined()
    }

    private func append(_ d: Diagnostic, to out: inout String) {
        // Header.
        if let mark = d.mark { out += paint("\(mark): ", Self.bold) }
        let severityColor: String
        switch d.severity {
        case .error: severityColor = Self.red
        case .warning: severityColor = Self.yellow
        case .note: severityColor = Self.cyan
        }
        out += paint("\(d.severity.rawValue):", Self.bold + severityColor) + " " + paint(d.message, Self.bold)
        if let hint = d.hint { out += " (\(hint))" }
        out += "\n"

        // Source excerpt.
        guard let mark = d.mark, mark.line > 0, let line = sources.line(mark.line, of: mark.file) else { return }
        let (shown, caretOffset) = excerpt(line, column: mark.column)
        let number = String(mark.line)
        let gutter = String(repeating: " ", count: number.count + 1)
        out += paint(" \(number) | ", Self.blue) + shown + "\n"
        out += paint("\(gutter) | ", Self.blue) + String(repeating: " ", count: caretOffset)
            + paint("^", Self.bold + Self.green) + "\n"
    }

    /// The displayed line and where the caret goes in it. Tabs become 4 spaces, control characters U+FFFD,
    /// and lines wider than `maxLineWidth` are cut to a window around the column, marked with "...".
    private func excerpt(_ line: String, column: Int) -> (String, Int) {
        var cells: [String] = []   // one entry per source character (unicode scalar), as displayed
        for u in line.unicodeScalars {
            if u == "\t" {
                cells.append("    ")
            } else if u.value < 0x20 || u.value == 0x7F {
                cells.append("\u{FFFD}")
            } else {
                cells.append(String(u))
            }
        }
        let index = max(0, min(column - 1, cells.count))
        var from = 0, to = cells.count
        var prefix = "", suffix = ""
        let width = cells.reduce(0) { $0 + ($1 == "    " ? 4 : 1) }
        if width > maxLineWidth {
            from = max(0, index - maxLineWidth / 3)
            to = min(cells.count, from + maxLineWidth)
            if from > 0 { prefix = "..." }
            if to < cells.count { suffix = "..." }
        }
        let before = cells[from..<index]
        let caret = prefix.count + before.reduce(0) { $0 + ($1 == "    " ? 4 : 1) }
        return (prefix + cells[from..<to].joined() + suffix, caret)
    }

    private func paint(_ s: String, _ code: String) -> String {
        color ? code + s + Self.reset : s
    }

    private static let reset = "\u{1B}[0m"
    private static let bold = "\u{1B}[1m"
    private static let red = "\u{1B}[31m"
    private static let green = "\u{1B}[32m"
    private static let yellow = "\u{1B}[33m"
    private static let blue = "\u{1B}[34m"
    private static let cyan = "\u{1B}[36m"
}
