// The `Sensitivity` artifact: ΔP (quality drop when one block or sub-component is removed) per address, the
// position weight of each block, and which addresses may be removed. Written by `score`, read by `prune`
// and `distill` (SGDistill). Stable JSON: sorted keys, entries in address order.

import Foundation
import ModelSpec

/// Quality drop per removable address of a model, with position weights and eligibility.
///
/// ```json
/// {"architecture": "SD3Transformer2DModel", "block_count": 38, "metric": "sample-mse", "baseline": 0.0,
///  "position_weight": {"form": "exponential", "rate": 1}, "schema": 1,
///  "entries": [{"address": "blocks.0", "delta_p": 0.41, "w_pos": 0.3679, "eligible": true}, …]}
/// ```
/// ΔP = P(original) − P(with the address removed): positive means removing it hurts. It may be negative.
public struct Sensitivity: Codable, Sendable, Hashable {
    public static let currentSchema = 1

    /// One scored address.
    public struct Entry: Codable, Sendable, Hashable {
        /// `blocks.N` or `blocks.N.component`.
        public var address: String
        /// ΔP(i, c); nil when the address was not scored (never eligible then).
        public var deltaP: Double?
        /// W_pos(i) of the address's block.
        public var wPos: Double
        /// Whether `prune` may remove it (scored, finite, and not excluded by the scorer).
        public var eligible: Bool

        public init(address: String, deltaP: Double?, wPos: Double, eligible: Bool) {
            self.address = address
            self.deltaP = deltaP
            self.wPos = wPos
            self.eligible = eligible
        }

        enum CodingKeys: String, CodingKey {
            case address, eligible
            case deltaP = "delta_p"
            case wPos = "w_pos"
        }
    }

    public var schema: Int
    /// diffusers `_class_name` of the scored model.
    public var architecture: String
    /// |B|: number of blocks (global indices).
    public var blockCount: Int
    /// What P measures (`sample-mse`, `hpsv2`, …), for people.
    public var metric: String
    /// P of the unpruned model, when the metric has one.
    public var baseline: Double?
    public var positionWeight: PositionWeight
    /// Sorted by address (block, then component in `SubComponent` order).
    public var entries: [Entry]

    enum CodingKeys: String, CodingKey {
        case schema, architecture, metric, baseline, entries
        case blockCount = "block_count"
        case positionWeight = "position_weight"
    }

    /// Builds the artifact from ΔP values; addresses of `structure` missing from `deltas` are listed as not
    /// eligible, non-finite ΔP values likewise.
    public init(deltas: [ComponentAddress: Double], structure: ModelStructure, positionWeight: PositionWeight = PositionWeight(),
                metric: String, baseline: Double? = nil) throws {
        for a in deltas.keys { try structure.validate(a) }
        let n = structure.blocks.count
        schema = Self.currentSchema
        architecture = structure.config.architecture.rawValue
        blockCount = n
        self.metric = metric
        self.baseline = baseline
        self.positionWeight = positionWeight
        entries = structure.allAddresses.map { a in
            let d = deltas[a]
            return Entry(address: a.description, deltaP: d.flatMap { $0.isFinite ? $0 : nil }, wPos: positionWeight.weight(block: a.block, blockCount: n),
                         eligible: d.map(\.isFinite) ?? false)
        }
    }

    /// The ranking key of an entry: |ΔP| · W_pos (`.absolute`, the paper) or ΔP · W_pos (`.signed`, which with
    /// `form: none` is the official code's order). Lower keys are removed first.
    public func rankingKey(_ e: Entry, ranking: Ranking) -> Double? {
        guard let d = e.deltaP, d.isFinite else { return nil }
        switch ranking {
        case .absolute: return abs(d) * e.wPos
        case .signed: return d * e.wPos
        }
    }

    /// How ΔP enters the ranking.
    public enum Ranking: String, Codable, Sendable, CaseIterable {
        /// score(i, c) = −|ΔP(i, c)| · W_pos(i), as the paper writes it.
        case absolute
        /// −ΔP(i, c) · W_pos(i): a removal that improves quality (ΔP < 0) goes first, as the official code sorts.
        case signed
    }

    /// The entry of `address`, if scored.
    public func entry(_ address: ComponentAddress) -> Entry? {
        let s = address.description
        return entries.first { $0.address == s }
    }

    /// ΔP of a whole block: its `blocks.N` entry, else the largest ΔP among its scored components.
    public func blockDelta(_ block: Int) -> Double? {
        if let d = entry(ComponentAddress(block: block, component: .block))?.deltaP, d.isFinite { return d }
        let prefix = "blocks.\(block)."
        return entries.filter { $0.address.hasPrefix(prefix) }.compactMap(\.deltaP).filter(\.isFinite).max()
    }

    /// Stable JSON (sorted keys, two-space indent, trailing newline): equal artifacts give equal bytes.
    public func encoded() -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        // Plain structs of strings, numbers (non-finite ones spelled as strings) and bools always encode.
        guard var data = try? enc.encode(self) else { preconditionFailure("Sensitivity is always encodable") }
        data.append(0x0A)
        return data
    }

    /// Decodes and checks the artifact against `structure` (when given): schema, architecture, block count,
    /// addresses, W_pos consistency are not re-derived (the scorer's choice stands).
    public static func decode(_ data: Data, source: String, structure: ModelStructure? = nil) throws -> Sensitivity {
        let s: Sensitivity
        do {
            let dec = JSONDecoder()
            dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            s = try dec.decode(Sensitivity.self, from: data)
        } catch {
            throw CompressionError(source, "not a Sensitivity JSON (\(error))",
                                   fix: "produce it with a `score` stage, or write {schema: 1, architecture, block_count, metric, position_weight, entries}")
        }
        guard s.schema == currentSchema else {
            throw CompressionError(source, "Sensitivity schema \(s.schema) is not supported (this hprune reads \(currentSchema))",
                                   fix: "re-run the `score` stage with this version of hprune")
        }
        guard let structure else { return s }
        let arch = structure.config.architecture.rawValue
        guard s.architecture == arch, s.blockCount == structure.blocks.count else {
            throw CompressionError(source, "scores are for a \(s.architecture) with \(s.blockCount) blocks, but the model is a \(arch) with \(structure.blocks.count) blocks",
                                   fix: "score the same model you prune")
        }
        for e in s.entries {
            do {
                try structure.validate(try ComponentAddress(parsing: e.address))
            } catch {
                throw CompressionError(source, "entry '\(e.address)' does not name a component of this model (\(error))",
                                       fix: "score the same model you prune")
            }
        }
        return s
    }
}
