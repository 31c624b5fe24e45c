// Which blocks / sub-components `prune` removes: greedily by least position-weighted quality drop within a
// candidate range until a parameter or weight-memory budget is met (the official code's
// `cut_transformer_block_component_range`), or an explicit list in the official recipe syntax.

import Foundation
import ModelSpec

/// What `prune` is asked to do when it ranks by sensitivity.
public struct PruneRequest: Sendable, Hashable {
    /// When to stop removing.
    public enum Target: Sendable, Hashable {
        /// Remove at least this fraction of the parameters (0.2 = remove 20 %, keep 80 %).
        case params(Double)
        /// Remove until the stored weights take at most this many GB (10⁹ bytes).
        case memoryGB(Double)
    }

    /// Which kinds of address compete in the ranking.
    public enum Granularity: String, Sendable, Hashable, CaseIterable, Decodable {
        /// Whole blocks only (`blocks.N`).
        case block
        /// Sub-components only (`blocks.N.attn`, …).
        case component
        /// Whole blocks and sub-components in one ranking (the official code's "all" among the components).
        case mixed
    }

    public var target: Target
    public var granularity: Granularity
    /// Global block indices that may be touched; nil = every block.
    public var candidateBlocks: Set<Int>?
    /// The first N blocks are never touched.
    public var protectFirst: Int
    /// Sub-component kinds allowed (nil = all the granularity allows).
    public var components: Set<SubComponent>?
    public var ranking: Sensitivity.Ranking

    public init(target: Target, granularity: Granularity = .block, candidateBlocks: Set<Int>? = nil, protectFirst: Int = 0,
                components: Set<SubComponent>? = nil, ranking: Sensitivity.Ranking = .absolute) {
        self.target = target
        self.granularity = granularity
        self.candidateBlocks = candidateBlocks
        self.protectFirst = protectFirst
        self.components = components
        self.ranking = ranking
    }
}

/// The removal chosen and what it costs / saves.
public struct PruneOutcome: Sendable, Hashable {
    /// One greedy step: the address removed, its ranking key, and the parameter fraction kept after it.
    public struct Step: Sendable, Hashable {
        public var address: ComponentAddress
        public var key: Double?
        public var keptFraction: Double
    }

    public var removal: Removal
    public var parametersOriginal: Int
    public var parametersAfter: Int
    /// Bytes of every stored tensor before / after (tensors of removed addresses dropped).
    public var weightBytesOriginal: Int
    public var weightBytesAfter: Int
    /// Greedy steps in order (empty for an explicit list).
    public var steps: [Step]

    /// 1 − parametersAfter / parametersOriginal.
    public var removedFraction: Double {
        parametersOriginal == 0 ? 0 : 1 - Double(parametersAfter) / Double(parametersOriginal)
    }
}

public enum PruneSelection {
    /// Accounts for `removal` on `structure`; `tensorBytes` (name → stored bytes) defaults to 4 bytes per element.
    public static func outcome(of removal: Removal, structure: ModelStructure, tensorBytes: [String: Int]? = nil,
                               steps: [PruneOutcome.Step] = []) throws -> PruneOutcome {
        let bytes = tensorBytes ?? Dictionary(uniqueKeysWithValues: structure.tensors.map { ($0.name, $0.elementCount * 4) })
        let gone = try structure.removedTensorNames(removal)
        let total = bytes.values.reduce(0, +)
        let removedBytes = gone.reduce(0) { $0 + (bytes[$1] ?? 0) }
        return PruneOutcome(removal: removal, parametersOriginal: structure.parameterCount,
                            parametersAfter: try structure.parameterCount(after: removal),
                            weightBytesOriginal: total, weightBytesAfter: total - removedBytes, steps: steps)
    }

    /// Greedy removal by sensitivity until `request.target` is met.
    ///
    /// Eligible addresses (scored, finite, `eligible`, in the candidate blocks, not protected, of an allowed kind)
    /// are sorted by `Sensitivity.rankingKey` ascending (ties: address order) and removed one by one, skipping an
    /// address whose block is already removed or that conflicts with an earlier removal (norm1 vs w_norm1), until
    /// the removed parameter fraction reaches the target (or the weight memory drops to the budget). A block whose
    /// every module slot has been removed becomes a whole-block removal (`Removal.collapseFullyRemovedBlocks`).
    /// - Throws: `CompressionError` when a filter matches nothing or the budget cannot be met.
    public static func select(_ request: PruneRequest, sensitivity: Sensitivity, structure: ModelStructure,
                              tensorBytes: [String: Int]? = nil) throws -> PruneOutcome {
        let n = structure.blocks.count
        switch request.target {
        case .params(let f) where !(f > 0 && f < 1):
            throw CompressionError("target.params", "must be in (0, 1) (the fraction of parameters to remove), got \(f)",
                                   fix: "e.g. `target: {params: 0.2}` removes 20 % of the parameters")
        case .memoryGB(let g) where !(g > 0):
            throw CompressionError("target.memory_gb", "must be > 0, got \(g)", fix: "give the weight memory to reach in GB")
        default: break
        }
        if let c = request.candidateBlocks, let bad = c.first(where: { $0 < 0 || $0 >= n }) {
            throw CompressionError("blocks", "block \(bad) does not exist; the model has blocks 0..\(n - 1)",
                                   fix: "use a candidate range within 0-\(n) (end-exclusive)")
        }
        let blocks = (0..<n).filter { $0 >= request.protectFirst && (request.candidateBlocks?.contains($0) ?? true) }
        if blocks.isEmpty {
            throw CompressionError("blocks", "no candidate block is left (protect_first \(request.protectFirst), \(n) blocks)",
                                   fix: "widen the candidate range or lower protect_first")
        }
        if let kinds = request.components {
            for k in kinds.sorted() {
                let allowedByGranularity = request.granularity == .mixed
                    || (request.granularity == .block) == (k == .block)
                if !allowedByGranularity {
                    throw CompressionError("components", "'\(k.rawValue)' is not a \(request.granularity.rawValue)-level address",
                                           fix: k == .block ? "use granularity: block or mixed" : "use granularity: component or mixed")
                }
                if !blocks.contains(where: { structure.blocks[$0].components.contains(k) }) {
                    throw CompressionError("components", "'\(k.rawValue)' matches no component of the candidate blocks (\(describe(blocks)))",
                                           fix: "candidate blocks have: " + Set(blocks.flatMap { structure.blocks[$0].components })
                                            .sorted().map(\.rawValue).joined(separator: ", "))
                }
            }
        }
        let blockSet = Set(blocks)
        var candidates: [(ComponentAddress, Double)] = []
        for e in sensitivity.entries where e.eligible {
            guard let a = try? ComponentAddress(parsing: e.address), blockSet.contains(a.block),
                  (try? structure.validate(a)) != nil, let key = sensitivity.rankingKey(e, ranking: request.ranking)
            else { continue }
            switch request.granularity {
            case .block where a.component != .block: continue
            case .component where a.component == .block: continue
            default: break
            }
            if let kinds = request.components, !kinds.contains(a.component) { continue }
            candidates.append((a, key))
        }
        if candidates.isEmpty {
            throw CompressionError("scores", "no scored, eligible \(request.granularity.rawValue)-level address in blocks \(describe(blocks))",
                                   fix: "score those blocks (and components) first, or change granularity / blocks")
        }
        candidates.sort { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }

        let bytes = tensorBytes ?? Dictionary(uniqueKeysWithValues: structure.tensors.map { ($0.name, $0.elementCount * 4) })
        let original = structure.parameterCount
        let totalBytes = bytes.values.reduce(0, +)
        func met(_ o: PruneOutcome) -> Bool {
            switch request.target {
            case .params(let f): return o.removedFraction >= f
            case .memoryGB(let g): return Double(o.weightBytesAfter) <= g * 1e9
            }
        }
        var removal = Removal()
        var steps: [PruneOutcome.Step] = []
        var current = try outcome(of: removal, structure: structure, tensorBytes: bytes)
        if met(current) {
            throw CompressionError("target.memory_gb", "the model already fits (\(gb(totalBytes)) GB); nothing to remove",
                                   fix: "lower memory_gb or drop the prune stage")
        }
        // Incremental accounting: tensors gone so far, and the parameters / bytes they held.
        let params = Dictionary(uniqueKeysWithValues: structure.tensors.map { ($0.name, $0.isBuffer ? 0 : $0.elementCount) })
        var gone = Set<String>()
        var removedParams = 0, removedBytes = 0
        for (a, key) in candidates {
            if removal.isBlockRemoved(a.block) { continue }
            var next = removal
            do { try next.insert(a, in: structure) } catch { continue }  // conflicting norm variant: skip
            next.collapseFullyRemovedBlocks(in: structure)              // nothing left of the block: remove it whole
            removal = next
            for n in try structure.tensorNames(of: a) where gone.insert(n).inserted {
                removedParams += params[n] ?? 0
                removedBytes += bytes[n] ?? 0
            }
            current = PruneOutcome(removal: removal, parametersOriginal: original, parametersAfter: original - removedParams,
                                   weightBytesOriginal: totalBytes, weightBytesAfter: totalBytes - removedBytes, steps: [])
            steps.append(.init(address: a, key: key, keptFraction: Double(current.parametersAfter) / Double(original)))
            if met(current) { return try outcome(of: removal, structure: structure, tensorBytes: bytes, steps: steps) }
        }
        let reached = "removing every eligible address in blocks \(describe(blocks)) removes \(percent(current.removedFraction)) of the parameters (weights \(gb(current.weightBytesAfter)) GB)"
        switch request.target {
        case .params(let f):
            throw CompressionError("target.params", "the budget cannot be met: asked to remove \(percent(f)), but \(reached)",
                                   fix: "lower target.params, widen the candidate blocks, lower protect_first, or allow more components")
        case .memoryGB(let g):
            throw CompressionError("target.memory_gb", "the budget cannot be met: asked for ≤ \(g) GB, but \(reached)",
                                   fix: "raise memory_gb, widen the candidate blocks, or quantise after pruning")
        }
    }

    /// Parses an explicit removal list: items are block ranges in the official recipe syntax (`"25-29,31-35"`,
    /// END-EXCLUSIVE: blocks 25-28 and 31-34), single blocks (`"7"`), or addresses (`blocks.12.ff`, `blocks.3`).
    /// An item may hold several comma-separated parts.
    /// - Throws: `CompressionError` naming the item (`remove[i]`) for bad syntax, empty ranges, or addresses the
    ///   model does not have.
    public static func explicit(_ items: [String], structure: ModelStructure) throws -> Removal {
        var removal = Removal()
        if items.isEmpty {
            throw CompressionError("remove", "the list is empty", fix: "e.g. `remove: \"25-29,31-35\"` or `remove: [blocks.12.ff]`")
        }
        for (i, item) in items.enumerated() {
            let parts = item.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            for part in parts {
                let subject = items.count == 1 ? "remove" : "remove[\(i)]"
                let addresses = try parsePart(part, subject: subject, structure: structure)
                for a in addresses {
                    do { try removal.insert(a, in: structure) } catch {
                        throw CompressionError(subject, "'\(part)': \(error)", fix: "name components the model has (`hprune inspect MODEL`)")
                    }
                }
            }
        }
        return removal
    }

    /// Block indices of an official range list (`"25-29,31-35"` → 25…28, 31…34); end-exclusive.
    public static func blockRanges(_ text: String, blockCount: Int) throws -> [Int] {
        var out: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            out += try rangeBlocks(part, subject: "blocks", blockCount: blockCount)
        }
        return out
    }

    static func parsePart(_ part: String, subject: String, structure: ModelStructure) throws -> [ComponentAddress] {
        if part.hasPrefix("blocks.") {
            let a: ComponentAddress
            do { a = try ComponentAddress(parsing: part) } catch {
                throw CompressionError(subject, "'\(part)' is not an address (\(error))", fix: "write blocks.N or blocks.N.COMPONENT")
            }
            do { try structure.validate(a) } catch {
                throw CompressionError(subject, "'\(part)' matches nothing in this model: \(error)",
                                       fix: "name components the model has (`hprune inspect MODEL`)")
            }
            return [a]
        }
        return try rangeBlocks(part, subject: subject, blockCount: structure.blocks.count)
            .map { ComponentAddress(block: $0, component: .block) }
    }

    static func rangeBlocks(_ part: String, subject: String, blockCount n: Int) throws -> [Int] {
        let fix = "write ranges as START-END with END exclusive (\"25-29\" = blocks 25..28), single blocks as N, or addresses as blocks.N.COMPONENT"
        let ends = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !part.isEmpty, ends.count <= 2, ends.allSatisfy({ $0 != nil }) else {
            throw CompressionError(subject, "cannot read '\(part)'", fix: fix)
        }
        let lo = ends[0]!, hi = ends.count == 2 ? ends[1]! : lo + 1
        guard lo >= 0, hi > lo else {
            throw CompressionError(subject, "'\(part)' is an empty range (the end is exclusive)", fix: fix)
        }
        guard hi <= n else {
            throw CompressionError(subject, "'\(part)' reaches block \(hi - 1), but the model has blocks 0..\(n - 1)",
                                   fix: "the end is exclusive: \"\(lo)-\(n)\" goes up to the last block")
        }
        return Array(lo..<hi)
    }

    static func describe(_ blocks: [Int]) -> String {
        guard let f = blocks.first, let l = blocks.last else { return "(none)" }
        return blocks.count == l - f + 1 ? "\(f)-\(l + 1) (end-exclusive)" : blocks.map(String.init).joined(separator: ",")
    }

    static func percent(_ x: Double) -> String { String(format: "%.2f %%", x * 100) }
    static func gb(_ b: Int) -> String { String(format: "%.4f", Double(b) / 1e9) }
}
