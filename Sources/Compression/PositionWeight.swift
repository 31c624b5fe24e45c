// Position weighting of sensitivity scores (HierarchicalPrune, METHOD.md §5):
// W_pos(i) = exp(rate · (i − |B|) / |B|) for block i of |B| blocks, or 1 for every block.

import Foundation

/// How much a block's position scales its quality drop when ranking components for removal.
///
/// ```swift
/// let w = PositionWeight(form: .exponential, rate: 1)
/// w.weight(block: 37, blockCount: 38)   // exp(-1/38) ≈ 0.974
/// w.weight(block: 0, blockCount: 38)    // exp(-1) ≈ 0.368
/// ```
/// The paper's notes write `W_pos(i) = exp((i − |B|)/|B|)` and call it "exponential decay", yet it grows with i.
/// hprune keeps the formula as written (rate 1) and exposes `rate`: a negative rate makes early blocks weigh more.
public struct PositionWeight: Codable, Sendable, Hashable {
    public enum Form: String, Codable, Sendable, CaseIterable {
        /// exp(rate · (i − |B|) / |B|).
        case exponential
        /// 1 for every block.
        case none
    }

    public var form: Form
    public var rate: Double

    public init(form: Form = .exponential, rate: Double = 1) {
        self.form = form
        self.rate = rate
    }

    /// W_pos(i) for global block index `i` of `n` blocks.
    public func weight(block i: Int, blockCount n: Int) -> Double {
        precondition(n > 0 && i >= 0 && i < n, "block \(i) outside 0..<\(n)")
        switch form {
        case .none: return 1
        case .exponential: return exp(rate * Double(i - n) / Double(n))
        }
    }

    /// W_pos for every block: [n].
    public func weights(blockCount n: Int) -> [Double] {
        (0..<n).map { weight(block: $0, blockCount: n) }
    }
}
