// The `freeze` stage kind (PWP, Positional Weight Preservation): marks blocks whose parameters `distill`
// must not update. Only the manifest changes; the tensors are the input's.

import ArtifactStore
import Compression
import Foundation
import ModelSpec
import ModelStore
import Scheduler
import StageGraph
import YAMLSupport

public struct FreezeStage: TypedStageKind {
    public init() {}
    public let name = "freeze"
    public let version = 1
    public let summary = "Freeze blocks for distillation (PWP): before the first pruned block, a first fraction, or a list."
    public var usesBackend: Bool { false }

    public let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "The (usually pruned) model."),
        Field("policy", .choice(of: FreezePolicy.Kind.self), default: .string(FreezePolicy.Kind.beforeFirstPruned.rawValue),
              doc: "`before-first-pruned`: freeze every block before the first removed block, and the input embedders (the official code). `first-fraction`: the first ⌊fraction·|B|⌋ blocks (and the embedders). `blocks`: exactly the listed blocks."),
        Field("fraction", .number(min: 0, max: 1), doc: "For `first-fraction`: the fraction of blocks to freeze."),
        Field("blocks", .string,
              doc: "For `blocks`: block ranges in the official syntax, END-EXCLUSIVE (`\"0-10,12\"` = blocks 0–9 and 12)."),
    ])

    public struct Params: Decodable {
        var model: String
        var policy: FreezePolicy.Kind
        /// For `first-fraction` (required there, `check`).
        var fraction: Double?
        /// For `blocks` (required there, `check`).
        var blocks: String?
    }

    public func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("model", .model, doc: "the model with frozen blocks recorded")] }
    public func defaultOutput(params: ParamValue) -> String { "model" }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        guard let p = try? decodeParams(params) else { return }
        if p.policy == .firstFraction, p.fraction == nil {
            checker.error("policy first-fraction needs 'fraction'", node["policy"]?.mark ?? node.mark, hint: "add `fraction: 0.5`")
        }
        if p.policy == .blocks, p.blocks == nil {
            checker.error("policy blocks needs 'blocks'", node["policy"]?.mark ?? node.mark, hint: "add `blocks: \"0-10\"`")
        }
        if p.policy != .firstFraction, node["fraction"] != nil {
            checker.error("'fraction' is only used with policy first-fraction", node["fraction"]?.mark ?? node.mark)
        }
        if p.policy != .blocks, node["blocks"] != nil {
            checker.error("'blocks' is only used with policy blocks", node["blocks"]?.mark ?? node.mark)
        }
        if let b = p.blocks {
            for problem in RangeSyntax.problems(b, allowAddresses: false) { checker.error("'blocks': \(problem)", node["blocks"]?.mark ?? node.mark) }
        }
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let p = try params(ctx)
        let m = try ctx.loadModel("model")
        let decision: FreezeDecision
        do {
            let policy: FreezePolicy
            switch p.policy {
            case .beforeFirstPruned:
                policy = .beforeFirstPruned
            case .firstFraction:
                guard let f = p.fraction else { throw ctx.failure("policy first-fraction needs 'fraction'") }
                policy = .firstFraction(f)
            case .blocks:
                guard let b = p.blocks else { throw ctx.failure("policy blocks needs 'blocks'") }
                policy = .blocks(try PruneSelection.blockRanges(b, blockCount: m.structure.blocks.count))
            }
            decision = try policy.decide(structure: m.structure, removal: m.removal)
        } catch let e as CompressionError {
            throw ctx.failure("'\(e.subject)': \(e.message)", log: "fix: \(e.fix)")
        }
        var manifest = m.manifest
        manifest.structure.frozenBlocks = decision.blocks
        manifest.structure.frozenPrefixes = decision.prefixes
        let frozenParams = m.structure.tensors.filter { !$0.isBuffer && manifest.tensors[$0.name] != nil && decision.isFrozen($0.name, structure: m.structure) }
            .reduce(0) { $0 + $1.elementCount }
        ctx.recorder.metric("frozen_blocks", Double(decision.blocks.count))
        ctx.recorder.metric("frozen_params", Double(frozenParams))
        ctx.recorder.log("frozen blocks: \(decision.blocks.map(String.init).joined(separator: ","))\nfrozen modules: \(decision.prefixes.joined(separator: ", "))\n")
        return ["model": try ctx.putModel(manifest)]
    }
}
