// Progress for people: per-stage lines with durations, and a bar with ETA that long stages drive.
// On a terminal the bar redraws in place; otherwise it prints a plain line at most every few seconds.
import Foundation

/// Where a stage sends its progress; the scheduler gives each stage one.
public struct ProgressSink: Sendable {
    let emit: @Sendable (String) -> Void
    let isTerminal: Bool
    let stage: String

    public init(stage: String, isTerminal: Bool, emit: @escaping @Sendable (String) -> Void) {
        self.stage = stage
        self.isTerminal = isTerminal
        self.emit = emit
    }

    /// A free-form line, prefixed with the stage name.
    public func log(_ message: String) { emit("  \(stage): \(message)") }

    /// A line as it is (one another process of this stage already rendered, e.g. a data-parallel rank's bar).
    public func line(_ text: String) { emit(text) }

    /// A progress bar over `total` units of work (steps, components, samples).
    public func bar(total: Int, unit: String = "") -> ProgressBar {
        ProgressBar(label: stage, total: total, unit: unit, isTerminal: isTerminal, emit: emit)
    }

    /// A sink that discards everything (tests, `--quiet`).
    public static let silent = ProgressSink(stage: "", isTerminal: false, emit: { _ in })
}

/// `advance` as work completes; the ETA is the mean time per unit so far times the units left.
public final class ProgressBar: @unchecked Sendable {
    private let lock = NSLock()
    private let label: String
    private let total: Int
    private let unit: String
    private let isTerminal: Bool
    private let emit: @Sendable (String) -> Void
    private let start = Date()
    private var done = 0
    private var lastPrint = Date.distantPast
    private var lastMessage = ""

    init(label: String, total: Int, unit: String, isTerminal: Bool, emit: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.isTerminal = isTerminal
        self.emit = emit
    }

    public var completed: Int { lock.withLock { done } }

    /// Marks `units` more as done; `message` (e.g. "loss 0.0123") is shown beside the bar.
    public func advance(by units: Int = 1, message: String = "") {
        let line: String? = lock.withLock {
            done = min(total, done + units)
            lastMessage = message
            let now = Date()
            let interval: TimeInterval = isTerminal ? 0.1 : 5
            guard done == total || now.timeIntervalSince(lastPrint) >= interval else { return nil }
            lastPrint = now
            return render(now: now)
        }
        if let line { emit(line) }
    }

    /// The current line (for tests and final output).
    public func render(now: Date = Date()) -> String {
        let elapsed = now.timeIntervalSince(start)
        let fraction = Double(done) / Double(total)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : .nan
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let etaText = eta.isNaN ? "--" : Self.duration(eta)
        var s = "  \(label) [\(bar)] \(done)/\(total)\(unit.isEmpty ? "" : " " + unit) \(Int(fraction * 100))% "
        s += "elapsed \(Self.duration(elapsed)) eta \(etaText)"
        if !lastMessage.isEmpty { s += "  \(lastMessage)" }
        return isTerminal ? "\r\u{1B}[2K" + s + (done == total ? "\n" : "") : s
    }

    public static func duration(_ seconds: TimeInterval) -> String {
        if seconds < 1 { return String(format: "%.0fms", seconds * 1000) }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        let s = Int(seconds.rounded())
        return s < 3600 ? String(format: "%dm%02ds", s / 60, s % 60) : String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}
