// Greedy budgets, explicit lists (official end-exclusive ranges), and the errors of `prune`'s selection.

import Compression
import Foundation
import ModelSpec
import Testing

@Suite struct PruneSelectionTests {
    @Test func officialRecipeRemoves25to28and31to34() throws {
        #expect(try PruneSelection.blockRanges("25-29,31-35", blockCount: 38) == [25, 26, 27, 28, 31, 32, 33, 34])
        for s in [try fixtureStructure("sd35_large_turbo_layout"), try sd35LargeStructure()] {
            let r = try PruneSelection.explicit(["25-29,31-35"], structure: s)
            #expect(r.strings == ["blocks.25", "blocks.26", "blocks.27", "blocks.28", "blocks.31", "blocks.32", "blocks.33", "blocks.34"])
            let o = try PruneSelection.outcome(of: r, structure: s)
            // 8 of 38 blocks; the paper reports about 21 % for SD3.5 Large Turbo.
            #expect(o.removedFraction > 0.19 && o.removedFraction < 0.215, "removed \(o.removedFraction)")
        }
        let full = try PruneSelection.outcome(of: try PruneSelection.explicit(["25-29,31-35"], structure: try sd35LargeStructure()),
                                              structure: try sd35LargeStructure())
        // Each SD3.5 Large block (not the last) holds 36·D² + 30·D + 4·64 (q/k RMSNorm scales) parameters.
        let perBlock = 36 * 2432 * 2432 + 30 * 2432 + 4 * 64
        #expect(full.parametersOriginal - full.parametersAfter == 8 * perBlock)
    }

    @Test func explicitListsMixRangesBlocksAndAddresses() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["3-5", "7", "blocks.12.ff", "blocks.13.attn, blocks.14"], structure: s)
        #expect(r.strings == ["blocks.3", "blocks.4", "blocks.7", "blocks.12.ff", "blocks.13.attn", "blocks.14"])
        #expect(try PruneSelection.explicit(["37-38"], structure: s).strings == ["blocks.37"])
    }

    @Test func explicitListErrorsNameTheItem() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let cases: [([String], String, String)] = [
            (["25-25"], "remove", "empty range"),
            (["30-20"], "remove", "empty range"),
            (["36-39"], "remove", "reaches block 38"),
            (["1-2", "x-3"], "remove[1]", "cannot read 'x-3'"),
            (["blocks.37.ff_context"], "remove", "matches nothing"),   // last SD3 block has no ff_context
            (["blocks.3.fff"], "remove", "not an address"),
            (["blocks.40"], "remove", "matches nothing"),
            (["blocks.3.norm1, blocks.3.w_norm1"], "remove", "conflicts"),
            ([], "remove", "empty"),
        ]
        for (items, subject, text) in cases {
            let e = try #require(throws: CompressionError.self) { try PruneSelection.explicit(items, structure: s) }
            #expect(e.subject == subject, "\(items): \(e)")
            #expect(e.message.contains(text), "\(items): \(e)")
        }
    }

    @Test func greedyRemovesLeastSensitiveBlocksUntilBudget() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        // ΔP of block i = 100 - i except block 20 (very low): order 20, 37, 36, 35, …
        let sens = try sensitivity(s) { a in a.component == .block ? (a.block == 20 ? 0.5 : Double(100 - a.block)) : 1000 }
        let o = try PruneSelection.select(PruneRequest(target: .params(0.2)), sensitivity: sens, structure: s)
        #expect(o.removedFraction >= 0.2)
        #expect(o.steps.first?.address == ComponentAddress(block: 20, component: .block))
        #expect(o.steps.dropFirst().map(\.address.block) == Array((38 - o.steps.count + 1)...37).reversed())
        // Stops as soon as the budget is met: one step fewer would not be enough.
        let before = try PruneSelection.outcome(of: try Removal(o.steps.dropLast().map(\.address), in: s), structure: s)
        #expect(before.removedFraction < 0.2)
        // The kept fraction recorded per step decreases.
        #expect(zip(o.steps, o.steps.dropFirst()).allSatisfy { $0.keptFraction > $1.keptFraction })
    }

    @Test func candidateRangeAndProtectFirst() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let sens = try sensitivity(s) { a in a.component == .block ? Double(a.block) : nil }  // early blocks cheapest
        let o = try PruneSelection.select(PruneRequest(target: .params(0.1), protectFirst: 10), sensitivity: sens, structure: s)
        #expect(o.removal.addresses.allSatisfy { $0.block >= 10 })
        #expect(o.removal.addresses.first?.block == 10)
        let ranged = try PruneSelection.select(PruneRequest(target: .params(0.1), candidateBlocks: Set(25..<35)),
                                               sensitivity: sens, structure: s)
        #expect(ranged.removal.addresses.allSatisfy { (25..<35).contains($0.block) })
    }

    @Test func positionWeightChangesTheOrder() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        // Equal ΔP everywhere: by default W_pos decays with depth, so the LAST blocks have the smallest |ΔP|·W_pos.
        let sens = try sensitivity(s, form: .exponential) { a in a.component == .block ? 1 : nil }
        let o = try PruneSelection.select(PruneRequest(target: .params(0.05), protectFirst: 2), sensitivity: sens, structure: s)
        #expect(o.steps.first?.address == ComponentAddress(block: 37, component: .block))
        // The formula as the paper's notes write it (rate +1) grows with i: the earliest unprotected block goes first.
        var d: [ComponentAddress: Double] = [:]
        for b in 0..<s.blocks.count { d[ComponentAddress(block: b, component: .block)] = 1 }
        let asWritten = try Sensitivity(deltas: d, structure: s, positionWeight: PositionWeight(form: .exponential, rate: 1), metric: "test")
        let w = try PruneSelection.select(PruneRequest(target: .params(0.05), protectFirst: 2), sensitivity: asWritten, structure: s)
        #expect(w.steps.first?.address == ComponentAddress(block: 2, component: .block))
    }

    /// `model/builder.py`: once every component of a block is replaced, the block becomes an identity block.
    @Test func aBlockWithEveryComponentRemovedBecomesARemovedBlock() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        // Block 30's components are the cheapest (w_norm1 cheaper than norm1: one norm slot, filled once).
        let sens = try sensitivity(s) { a in
            switch (a.block, a.component) {
            case (_, .block): return nil
            case (30, .w_norm1): return 0.05
            case (30, _): return 0.1
            default: return 10 + Double(a.block)
            }
        }
        let o = try PruneSelection.select(PruneRequest(target: .params(0.03), granularity: .component), sensitivity: sens, structure: s)
        #expect(o.removal.addresses.contains(ComponentAddress(block: 30, component: .block)))
        #expect(!o.removal.addresses.contains { $0.block == 30 && $0.component != .block })
        // Parameter accounting is unchanged by the collapse: every tensor of the block belonged to a component.
        let components = try Removal([.w_norm1, .norm1_context, .attn, .ff, .ff_context].map { ComponentAddress(block: 30, component: $0) }, in: s)
        #expect(try s.parameterCount(after: components) == (try s.parameterCount(after: try Removal([ComponentAddress(block: 30, component: .block)], in: s))))
        // The same rule for explicit lists, and a partial block stays partial; the last SD3 block has no ff_context.
        var r = try PruneSelection.explicit(["blocks.37.norm1, blocks.37.norm1_context, blocks.37.attn, blocks.37.ff", "blocks.36.attn"], structure: s)
        #expect(r.collapseFullyRemovedBlocks(in: s) == [37])
        #expect(r.strings == ["blocks.36.attn", "blocks.37"])
        let flux = try fixtureStructure("flux_tiny")
        let single = try #require(flux.blocks.first { $0.kind == .single }).index
        var f = try Removal([.w_norm, .attn, .proj_mlp_out].map { ComponentAddress(block: single, component: $0) }, in: flux)
        #expect(f.collapseFullyRemovedBlocks(in: flux) == [single] && f.isBlockRemoved(single))
    }

    @Test func componentGranularitySkipsConflictsAndSignedRanking() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        // norm1 and w_norm1 of block 30 are the two cheapest; only one of them can go.
        let sens = try sensitivity(s) { a in
            switch a.component {
            case .block: return 0
            case .norm1: return a.block == 30 ? -5 : 50
            case .w_norm1: return a.block == 30 ? -4 : 50
            default: return Double(40 - a.block)
            }
        }
        let o = try PruneSelection.select(PruneRequest(target: .params(0.05), granularity: .component, ranking: .signed),
                                          sensitivity: sens, structure: s)
        #expect(o.removal.addresses.first == ComponentAddress(block: 30, component: .norm1))
        #expect(!o.removal.addresses.contains(ComponentAddress(block: 30, component: .w_norm1)))
        #expect(o.removal.addresses.allSatisfy { $0.component != .block })
        let only = try PruneSelection.select(PruneRequest(target: .params(0.05), granularity: .component, components: [.ff]),
                                             sensitivity: sens, structure: s)
        #expect(only.removal.addresses.allSatisfy { $0.component == .ff })
    }

    @Test func memoryBudget() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let sens = try sensitivity(s) { a in a.component == .block ? Double(a.block) : nil }
        let bytes = Dictionary(uniqueKeysWithValues: s.tensors.map { ($0.name, $0.elementCount * 2) })  // bf16
        let total = bytes.values.reduce(0, +)
        let goal = Double(total) * 0.7 / 1e9
        let o = try PruneSelection.select(PruneRequest(target: .memoryGB(goal)), sensitivity: sens, structure: s, tensorBytes: bytes)
        #expect(Double(o.weightBytesAfter) <= goal * 1e9 && o.weightBytesOriginal == total)
        let e = try #require(throws: CompressionError.self) {
            try PruneSelection.select(PruneRequest(target: .memoryGB(1)), sensitivity: sens, structure: s, tensorBytes: bytes)
        }
        #expect(e.message.contains("already fits"))
    }

    @Test func unmeetableBudgetAndEmptyFilters() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let sens = try sensitivity(s) { a in a.component == .block ? 1 : nil }
        let e = try #require(throws: CompressionError.self) {
            try PruneSelection.select(PruneRequest(target: .params(0.5), candidateBlocks: Set(30..<34)), sensitivity: sens, structure: s)
        }
        #expect(e.subject == "target.params" && e.message.contains("cannot be met") && e.message.contains("30-34"))
        let flux = try fixtureStructure("flux_tiny")
        let fsens = try sensitivity(flux) { _ in 1 }
        let c = try #require(throws: CompressionError.self) {
            try PruneSelection.select(PruneRequest(target: .params(0.1), granularity: .component, candidateBlocks: [2, 3],
                                                   components: [.ff_context]), sensitivity: fsens, structure: flux)
        }
        #expect(c.subject == "components" && c.message.contains("'ff_context' matches no component"))
        let g = try #require(throws: CompressionError.self) {
            try PruneSelection.select(PruneRequest(target: .params(0.1), granularity: .block, components: [.ff]), sensitivity: fsens, structure: flux)
        }
        #expect(g.message.contains("not a block-level"))
        let unscored = try sensitivity(s) { _ in nil }
        #expect(throws: CompressionError.self) { try PruneSelection.select(PruneRequest(target: .params(0.1)), sensitivity: unscored, structure: s) }
        #expect(throws: CompressionError.self) { try PruneSelection.select(PruneRequest(target: .params(1.5)), sensitivity: sens, structure: s) }
    }
}
