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
        // Header. Everything that may come from the input is escaped (TerminalText), here and in the excerpt.
        if let mark = d.mark { out += paint(TerminalText.escape("\(mark)") + ": ", Self.bold) }
        let severityColor: String
        switch d.severity {
        case .error: severityColor = Self.red
        case .warning: severityColor = Self.yellow
        case .note: severityColor = Self.cyan
        }
        out += paint("\(d.severity.rawValue):", Self.bold + severityColor) + " "
            + paint(TerminalText.escape(d.message), Self.bold)
        if let hint = d.hint { out += " (\(TerminalText.escape(hint)))" }
        out += "\n"

        // Source excerpt.
        guard let mark = d.mark, mark.line > 0, let line = sources.lineBytes(mark.line, of: mark.file) else { return }
        let (shown, caretOffset) = excerpt(line, column: mark.column)
        let number = String(mark.line)
        let gutter = String(repeating: " ", count: number.count + 1)
        out += paint(" \(number) | ", Self.blue) + shown + "\n"
        out += paint("\(gutter) | ", Self.blue) + String(repeating: " ", count: caretOffset)
            + paint("^", Self.bold + Self.green) + "\n"
    }

    /// The displayed line and the display column of the caret in it. Each character (or invalid UTF-8 byte) is
    /// one cell: tabs become 4 spaces, control, bidi and other invisible characters and invalid bytes their
    /// escapes (`\u{202E}`, `\xFF`), wide characters count two columns; lines wider than `maxLineWidth` are cut
    /// to a window around the column, marked with "...".
    private func excerpt(_ line: ArraySlice<UInt8>, column: Int) -> (String, Int) {
        let cells = TerminalText.cells(line)
        let index = max(0, min(column - 1, cells.count))
        var from = 0, to = cells.count
        var prefix = "", suffix = ""
        let width = cells.reduce(0) { $0 + $1.width }
        if width > maxLineWidth {
            // Walk back from the column a third of the width, then forward up to the full width.
            var w = 0
            from = index
            while from > 0 && w + cells[from - 1].width <= maxLineWidth / 3 { from -= 1; w += cells[from].width }
            w = 0
            to = from
            while to < cells.count && w + cells[to].width <= maxLineWidth { w += cells[to].width; to += 1 }
            to = max(to, min(index + 1, cells.count))
            if from > 0 { prefix = "..." }
            if to < cells.count { suffix = "..." }
        }
        let caret = prefix.count + cells[from..<index].reduce(0) { $0 + $1.width }
        return (prefix + cells[from..<to].map(\.text).joined() + suffix, caret)
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
