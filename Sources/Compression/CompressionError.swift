// Errors of the compression maths (selection, freezing, scaling): what was asked, why it cannot be done, and
// how to fix it. Stages prefix them with the stage name and recipe location.

/// A compression request that cannot be satisfied, with the fix.
public struct CompressionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The parameter or input the problem is about (`target.params`, `remove[2]`, `blocks`).
    public var subject: String
    public var message: String
    public var fix: String

    public init(_ subject: String, _ message: String, fix: String) {
        self.subject = subject
        self.message = message
        self.fix = fix
    }

    public var description: String { "\(subject): \(message); \(fix)" }
}
