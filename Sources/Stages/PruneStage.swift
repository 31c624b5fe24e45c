// The `prune` stage kind: removes blocks / sub-components from a Model, greedily by position-weighted
// sensitivity to a parameter or memory budget, or from an explicit list in the official recipe syntax. The
// pruned Model's manifest names the teacher's tensor objects, so pruning adds no tensor bytes to the store.

import ArtifactStore
import Compression
import Foundation
import ModelSpec
import ModelStore
import Scheduler
import StageGraph
import YAMLSupport

public struct PruneStage: TypedStageKind {
    public init() {}
    public let name = "prune"
    public let version = 1
    public let summary = "Remove blocks or sub-components (HierarchicalPrune) to a budget, or an explicit list."
    public var usesBackend: Bool { false }

    public let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "The model to prune (a `models:` entry or a stage's model)."),
        Field("scores", .reference(.sensitivity),
              doc: "Sensitivity (ΔP per block and sub-component) from a `score` stage. Required with `target`; not allowed with `remove`."),
        Field("target", .object(Schema([
            Field("params", .number(min: 0, max: 1, exclusive: true),
                  doc: "Fraction of the parameters to remove: `0.2` removes at least 20 % (keeps ≤ 80 %). The official code stops at the first removal that crosses the budget."),
            Field("memory_gb", .number(min: 0, exclusive: true),
                  doc: "Remove until the stored weights take at most this many GB (10⁹ bytes), counted in their stored dtypes."),
        ])), doc: "The budget: exactly one of `params` or `memory_gb`. Components go in order of least position-weighted quality drop (|ΔP|·W_pos, see `ranking`)."),
        Field("remove", .string,
              doc: "Explicit removal instead of a budget, in the official recipe syntax: comma-separated END-EXCLUSIVE block ranges (`\"25-29,31-35\"` = blocks 25–28 and 31–34), single blocks (`7`) and addresses (`blocks.12.ff`)."),
        Field("granularity", .choice(of: PruneRequest.Granularity.self), default: .string(PruneRequest.Granularity.block.rawValue),
              doc: "What competes in the ranking: `block` (whole blocks), `component` (sub-components: attn, ff, ff_context, norm1, …), or `mixed` (both in one ranking, as the official code)."),
        Field("blocks", .string,
              doc: "Candidate block range in the official syntax (`\"10-38\"`, end-exclusive); blocks outside it are never touched. Default: every block."),
        Field("protect_first", .integer(min: 0), default: .int(0), doc: "The first N blocks are never touched."),
        Field("components", .list(.choice(of: SubComponent.self), minCount: 1),
              doc: "Only these sub-component kinds compete (e.g. `[attn, ff]`). A kind no candidate block has is an error."),
        Field("ranking", .choice(of: Sensitivity.Ranking.self), default: .string(Sensitivity.Ranking.absolute.rawValue),
              doc: "`absolute`: remove by |ΔP|·W_pos ascending (the paper's score −|ΔP|·W_pos). `signed`: by ΔP·W_pos, so removals that improve quality go first (the official code's order)."),
    ])

    public struct Params: Decodable {
        var model: String
        var scores: String?
        /// The budget (`check`: exactly one of its fields); nil with `remove`.
        var target: Target?
        var remove: String?
        var granularity: PruneRequest.Granularity
        var blocks: String?
        var protectFirst: Int
        var components: [SubComponent]?
        var ranking: Sensitivity.Ranking

        /// `target: {params}` or `target: {memory_gb}`.
        struct Target: Decodable {
            var value: PruneRequest.Target

            enum CodingKeys: String, CodingKey { case params, memoryGb }

            init(from decoder: Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                switch (try c.decodeIfPresent(Double.self, forKey: .params), try c.decodeIfPresent(Double.self, forKey: .memoryGb)) {
                case (let f?, nil): value = .params(f)
                case (nil, let gb?): value = .memoryGB(gb)
                case (_?, _?), (nil, nil):
                    throw ParamDecodingError(path: "target", message: "needs exactly one of 'params' or 'memory_gb'")
                }
            }
        }
    }

    public func outputs(params: ParamValue) -> [PortSpec] {
        [PortSpec("model", .model, doc: "the pruned model (shares the input's tensor objects)")]
    }
    public func defaultOutput(params: ParamValue) -> String { "model" }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        let hasTarget = params["target"] != nil, hasRemove = params["remove"] != nil, hasScores = params["scores"] != nil
        if hasTarget && hasRemove {
            checker.error("give either 'target' (a budget) or 'remove' (an explicit list), not both", node["remove"]?.mark ?? node.mark)
        } else if !hasTarget && !hasRemove {
            checker.error("missing 'target' or 'remove'", node.mark,
                          hint: "add `target: {params: 0.2}` (with `scores:`) or `remove: \"25-29,31-35\"`")
        }
        if hasTarget && !hasScores {
            checker.error("'target' needs 'scores' (a Sensitivity from a score stage)", node["target"]?.mark ?? node.mark,
                          hint: "add `scores: <score stage>`, or use `remove:` for an explicit list")
        }
        if hasRemove && hasScores {
            checker.error("'scores' is not used with an explicit 'remove' list", node["scores"]?.mark ?? node.mark)
        }
        if let t = params["target"] {
            let n = (t["params"] != nil ? 1 : 0) + (t["memory_gb"] != nil ? 1 : 0)
            if n != 1 {
                checker.error("'target' needs exactly one of 'params' or 'memory_gb'", node["target"]?.mark ?? node.mark)
            }
        }
        if let r = params["remove"]?.string {
            for p in RangeSyntax.problems(r, allowAddresses: true) { checker.error("'remove': \(p)", node["remove"]?.mark ?? node.mark) }
        }
        if let b = params["blocks"]?.string {
            for p in RangeSyntax.problems(b, allowAddresses: false) { checker.error("'blocks': \(p)", node["blocks"]?.mark ?? node.mark) }
        }
        if hasRemove {
            for k in ["blocks", "components"] where node[k] != nil {
                checker.error("'\(k)' applies to a budget ('target'), not to an explicit 'remove' list", node[k]?.mark ?? node.mark)
            }
        }
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let p = try params(ctx)
        let m = try ctx.loadModel("model")
        let bytes = Self.tensorBytes(m)
        let outcome: PruneOutcome
        do {
            if let text = p.remove {
                var removal = try PruneSelection.explicit([text], structure: m.structure)
                for a in m.removal.addresses { try removal.insert(a, in: m.structure) }
                let collapsed = removal.collapseFullyRemovedBlocks(in: m.structure)
                if !collapsed.isEmpty {
                    ctx.recorder.log("every sub-component of block\(collapsed.count == 1 ? "" : "s") \(collapsed.map(String.init).joined(separator: ", ")) is removed: removed as whole block\(collapsed.count == 1 ? "" : "s") (the official code's rule)\n")
                }
                outcome = try PruneSelection.outcome(of: removal, structure: m.structure, tensorBytes: bytes)
            } else {
                guard m.removal.isEmpty else {
                    throw CompressionError("model", "the input is already pruned (\(m.removal.strings.joined(separator: ", "))); a budget is measured on an unpruned model",
                                           fix: "prune the unpruned model with one budget, or use `remove:` to add to this one")
                }
                guard let sref = ctx.input("scores") else { throw ctx.failure("'scores' is not bound") }
                guard let target = p.target?.value else { throw ctx.failure("missing 'target' or 'remove'") }
                let sens = try Sensitivity.decode(try ctx.store.data(sref.digest), source: "scores", structure: m.structure)
                let candidates = try p.blocks.map { Set(try PruneSelection.blockRanges($0, blockCount: m.structure.blocks.count)) }
                let request = PruneRequest(target: target, granularity: p.granularity, candidateBlocks: candidates,
                                           protectFirst: p.protectFirst, components: p.components.map(Set.init), ranking: p.ranking)
                outcome = try PruneSelection.select(request, sensitivity: sens, structure: m.structure, tensorBytes: bytes)
            }
        } catch let e as CompressionError {
            throw ctx.failure("'\(e.subject)': \(e.message)", log: "fix: \(e.fix)")
        } catch let e as StageFailure {
            throw e
        } catch {
            throw ctx.failure("\(error)")
        }
        let frozen = Set(m.manifest.structure.frozenBlocks)
        if let clash = outcome.removal.addresses.first(where: { frozen.contains($0.block) }) {
            throw ctx.failure("'\(clash)' is in a frozen block; prune before freezing")
        }
        var manifest = m.manifest
        let gone: Set<String>
        do { gone = try m.structure.removedTensorNames(outcome.removal) } catch { throw ctx.failure("\(error)") }
        for n in gone { manifest.tensors.removeValue(forKey: n) }
        manifest.structure.removed = outcome.removal.strings
        let digest = try ctx.putModel(manifest)

        ctx.recorder.metric("params_original", Double(outcome.parametersOriginal))
        ctx.recorder.metric("params", Double(outcome.parametersAfter))
        ctx.recorder.metric("params_removed_fraction", outcome.removedFraction)
        ctx.recorder.metric("weight_bytes", Double(outcome.weightBytesAfter), unit: "B")
        var log = "removed: \(outcome.removal.strings.joined(separator: ", "))\n"
        log += String(format: "parameters: %d -> %d (%.3f %% removed)\n", outcome.parametersOriginal, outcome.parametersAfter, outcome.removedFraction * 100)
        for s in outcome.steps {
            log += "  \(s.address)  key \(s.key.map { String(format: "%.6g", $0) } ?? "-")  kept \(String(format: "%.4f", s.keptFraction))\n"
        }
        ctx.recorder.log(log)
        return ["model": digest]
    }

    /// Stored bytes per tensor name (a quantised weight counts its companions), for memory budgets.
    static func tensorBytes(_ m: LoadedModel) -> [String: Int] {
        var out: [String: Int] = [:]
        for (n, t) in m.manifest.tensors { out[n] = t.objects.reduce(0) { $0 + $1.bytes } }
        return out
    }
}
