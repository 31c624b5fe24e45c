// Position weighting of sensitivity scores (HierarchicalPrune, METHOD.md §5):
// W_pos(i) = exp(rate · (i − |B|) / |B|) for block i of |B| blocks, or 1 for every block. The default rate −1
// makes W_pos decay with depth, so that at equal |ΔP| later blocks are removed first (Hierarchical Position Pruning).

import Foundation

/// How much a block's position scales its quality drop when ranking components for removal.
///
/// ```swift
/// let w = PositionWeight()                  // form .exponential, rate −1
/// w.weight(block: 0, blockCount: 38)        // exp(1) ≈ 2.718: early blocks weigh most …
/// w.weight(block: 37, blockCount: 38)       // exp(1/38) ≈ 1.027: … late blocks least, so they go first
/// ```
/// `prune` removes the lowest |ΔP|·W_pos first. The paper's notes write `W_pos(i) = exp((i − |B|)/|B|)` (rate +1)
/// and call it "exponential decay", yet that grows with i and would remove *early* blocks first at equal ΔP — the
/// opposite of the method, whose point is that early blocks hold what distillation cannot rebuild (and of the
/// official SD3.5 recipe, which cuts blocks 25–34 of 38). hprune therefore defaults to the decaying direction,
/// rate −1; `rate: 1` gives the formula exactly as the notes write it.
public struct PositionWeight: Codable, Sendable, Hashable {
    public enum Form: String, Codable, Sendable, CaseIterable {
        /// exp(rate · (i − |B|) / |B|).
        case exponential
        /// 1 for every block.
        case none
    }

    public var form: Form
    public var rate: Double

    /// −1: W_pos decays with depth (later blocks more eligible for removal).
    public static let defaultRate: Double = -1

    public init(form: Form = .exponential, rate: Double = PositionWeight.defaultRate) {
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
