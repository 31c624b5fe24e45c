// User-facing problems with the input: one message, where it came from, and how to fix it.
// Every pipeline module reports through `Diagnostic`; `DiagnosticRenderer` prints them like a compiler.

public struct Diagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable { case error, warning, note }

    public var severity: Severity
    public var message: String
    public var mark: SourceMark?
    /// A fix or suggestion, e.g. "did you mean 'ratio'?". Printed after the message.
    public var hint: String?
    /// Further marks that help (e.g. the other half of a duplicate), rendered as notes.
    public var notes: [Diagnostic]

    public init(_ severity: Severity = .error, _ message: String, at mark: SourceMark? = nil,
                hint: String? = nil, notes: [Diagnostic] = []) {
        self.severity = severity
        self.message = message
        self.mark = mark
        self.hint = hint
        self.notes = notes
    }

    public static func error(_ message: String, at mark: SourceMark?, hint: String? = nil) -> Diagnostic {
        Diagnostic(.error, message, at: mark, hint: hint)
    }

    /// One line: `file:line:col: error: message (hint)`, with control, bidi and other invisible characters
    /// escaped (`TerminalText.escape`) so that input cannot break the line or rewrite the terminal.
    public var description: String {
        var s = ""
        if let mark { s += "\(mark): " }
        s += "\(severity.rawValue): \(message)"
        if let hint { s += " (\(hint))" }
        return TerminalText.escape(s)
    }
}

/// Problems collected by a checking pass; checks keep going after the first so a user sees them all at once.
public struct DiagnosticError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    public init(_ diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
