// PWP freezing policies and SGDistill's per-block multipliers.

import Compression
import Foundation
import ModelSpec
import Testing

@Suite struct FreezeTests {
    @Test func beforeFirstPrunedIsTheOfficialRule() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["25-29,31-35"], structure: s)
        let d = try FreezePolicy.beforeFirstPruned.decide(structure: s, removal: r)
        #expect(d.blocks == Array(0..<25))
        #expect(d.prefixes == ["pos_embed.", "time_text_embed.", "context_embedder."])
        #expect(d.isFrozen("transformer_blocks.24.attn.to_q.weight", structure: s))
        #expect(!d.isFrozen("transformer_blocks.29.attn.to_q.weight", structure: s))
        #expect(!d.isFrozen("transformer_blocks.2.attn.to_q.weight", structure: s) == false)
        #expect(!d.isFrozen("proj_out.weight", structure: s))
        let e = try #require(throws: CompressionError.self) { try FreezePolicy.beforeFirstPruned.decide(structure: s, removal: Removal()) }
        #expect(e.message.contains("nothing is removed"))
    }

    /// The official code walks `named_modules()` and freezes until the first identity module: inside the first
    /// touched block, the modules registered before its first removed one stay frozen too.
    @Test func beforeFirstPrunedFreezesTheFirstTouchedBlocksEarlierModules() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["blocks.25.ff", "blocks.30.attn"], structure: s)
        let d = try FreezePolicy.beforeFirstPruned.decide(structure: s, removal: r)
        #expect(d.blocks == Array(0..<25))
        #expect(d.prefixes == ["pos_embed.", "time_text_embed.", "context_embedder.",
                               "transformer_blocks.25.norm1.", "transformer_blocks.25.norm1_context.", "transformer_blocks.25.attn."])
        #expect(d.isFrozen("transformer_blocks.25.attn.to_q.weight", structure: s))
        #expect(!d.isFrozen("transformer_blocks.25.ff_context.net.2.weight", structure: s))   // after ff: trainable
        #expect(!d.isFrozen("transformer_blocks.26.norm1.linear.weight", structure: s))
        // The first removed module is the block's first: nothing of it is frozen.
        let n = try FreezePolicy.beforeFirstPruned.decide(structure: s, removal: try PruneSelection.explicit(["blocks.25.w_norm1"], structure: s))
        #expect(n.prefixes == ["pos_embed.", "time_text_embed.", "context_embedder."])
        // Registration order, not address order: removing ff_context and norm1_context → frozen up to norm1_context.
        let c = try FreezePolicy.beforeFirstPruned.decide(structure: s, removal: try PruneSelection.explicit(["blocks.25.ff_context", "blocks.25.norm1_context"], structure: s))
        #expect(c.prefixes.last == "transformer_blocks.25.norm1.")
        // Removing block 0 still freezes the embedders (registered before it), as the code does.
        let z = try FreezePolicy.beforeFirstPruned.decide(structure: s, removal: try PruneSelection.explicit(["0"], structure: s))
        #expect(z.blocks.isEmpty && z.prefixes == ["pos_embed.", "time_text_embed.", "context_embedder."])
    }

    @Test func fluxSingleBlockOrderPutsAttentionLast() throws {
        let s = try fixtureStructure("flux_tiny")
        let single = try #require(s.blocks.first { $0.kind == .single })
        let r = try Removal([ComponentAddress(block: single.index, component: .attn)], in: s)
        let pre = FreezePolicy.modulesBeforeFirstRemoval(block: single.index, structure: s, removal: r)
        #expect(pre == [single.prefix + ".norm.", single.prefix + ".proj_mlp.", single.prefix + ".proj_out."])
    }

    @Test func firstFractionAndExplicit() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["blocks.30.ff"], structure: s)
        #expect(try FreezePolicy.firstFraction(0.5).decide(structure: s, removal: r).blocks == Array(0..<19))
        let ex = try FreezePolicy.blocks([5, 3, 3]).decide(structure: s, removal: r)
        #expect(ex.blocks == [3, 5] && ex.prefixes.isEmpty)
    }

    @Test func freezingAPrunedBlockIsAnError() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["10-12", "blocks.14.ff"], structure: s)
        let e = try #require(throws: CompressionError.self) { try FreezePolicy.blocks([9, 11, 14]).decide(structure: s, removal: r) }
        #expect(e.message.contains("blocks.11") && e.message.contains("blocks.14 (partly: ff)") && !e.message.contains("blocks.9"))
        #expect(throws: CompressionError.self) { try FreezePolicy.firstFraction(0.5).decide(structure: s, removal: r) }
        #expect(throws: CompressionError.self) { try FreezePolicy.blocks([38]).decide(structure: s, removal: r) }
    }
}

@Suite struct SGDistillScalingTests {
    @Test func binaryIsZeroBeforeTheFirstRemovedBlock() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["25-29,31-35"], structure: s)
        let m = try #require(try SGDistillScaling(form: .binary, threshold: 0.2)
            .multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.21, sensitivity: nil))
        #expect(m[0..<25].allSatisfy { $0 == 0 })
        #expect(m[25..<29].allSatisfy { $0 == 0 } && m[31..<35].allSatisfy { $0 == 0 })  // removed: nothing to scale
        #expect(m[29] == 1 && m[30] == 1 && m[35..<38].allSatisfy { $0 == 1 })
    }

    @Test func thresholdGatesScaling() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let r = try PruneSelection.explicit(["25-29,31-35"], structure: s)
        let g = SGDistillScaling(form: .binary)
        #expect(g.threshold == 0.25)
        #expect(try g.multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.21, sensitivity: nil) == nil)
        #expect(try g.multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.25, sensitivity: nil) == nil)
        #expect(try g.multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.3, sensitivity: nil) != nil)
    }

    @Test func inverseIsOneOverDeltaNormalisedToMeanOne() throws {
        let s = try fixtureStructure("sd3_tiny")   // 2 blocks
        let sens = try sensitivity(s) { a in a.component == .block ? (a.block == 0 ? 0.1 : 0.4) : nil }
        let m = try #require(try SGDistillScaling(form: .inverse, threshold: 0)
            .multipliers(structure: s, removal: Removal(), frozen: [], compressionRatio: 0.3, sensitivity: sens))
        // raw 10 and 2.5, mean 6.25 → 1.6 and 0.4
        let m0: Double = m[0], m1: Double = m[1]
        #expect(abs(m0 - 1.6) < 1e-12)
        #expect(abs(m1 - 0.4) < 1e-12)
    }

    @Test func inverseFloorsTinyAndNegativeDeltasAndZeroesFrozenBlocks() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        // ΔP 0 (removal changes nothing) and ΔP −2 (removal IMPROVES the score) are the least sensitive blocks.
        let sens = try sensitivity(s) { a in a.component == .block ? (a.block == 30 ? 0 : (a.block == 31 ? -2 : (a.block == 12 ? 0.5 : 1))) : nil }
        let r = try PruneSelection.explicit(["36-38"], structure: s)
        let m = try #require(try SGDistillScaling(form: .inverse, threshold: 0.1, epsilon: 0.01, cap: .infinity)
            .multipliers(structure: s, removal: r, frozen: Set(0..<10), compressionRatio: 0.5, sensitivity: sens))
        #expect(m[0..<10].allSatisfy { $0 == 0 } && m[36] == 0 && m[37] == 0)
        let trainable: [Double] = Array(m[10..<36])
        #expect(trainable.allSatisfy { $0 > 0 && $0.isFinite })
        let mean: Double = trainable.reduce(0, +) / Double(trainable.count)
        #expect(abs(mean - 1) < 1e-12)
        // Both floor at ε·max ΔP = 0.01: 100× the multiplier of ΔP = 1, 50× that of ΔP = 0.5; a negative ΔP is
        // never treated as sensitive (|−2| would have made block 31 the MOST protected).
        let r1: Double = m[30] / m[31], r2: Double = m[30] / m[13], r3: Double = m[12] / m[13]
        #expect(abs(r1 - 1) < 1e-12)
        #expect(abs(r2 - 100) < 1e-9)
        #expect(abs(r3 - 2) < 1e-9)
        #expect(m[31] > m[12] && m[12] > m[13])
        // The cap bounds the largest multiplier after normalisation.
        let capped = try #require(try SGDistillScaling(form: .inverse, threshold: 0.1, epsilon: 0.01)
            .multipliers(structure: s, removal: r, frozen: Set(0..<10), compressionRatio: 0.5, sensitivity: sens))
        #expect(SGDistillScaling.defaultCap == 4)
        #expect(capped[30] == 4 && capped[31] == 4 && abs(capped[13] - m[13]) < 1e-15)
        #expect(throws: CompressionError.self) {
            try SGDistillScaling(form: .inverse, threshold: 0).multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.5, sensitivity: nil)
        }
        // Only non-positive ΔP everywhere: nothing to scale by.
        let none = try sensitivity(s) { a in a.component == .block ? -1 : nil }
        #expect(throws: CompressionError.self) {
            try SGDistillScaling(form: .inverse, threshold: 0).multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.5, sensitivity: none)
        }
    }
}

@Suite struct DegradationTests {
    /// The paper's table: degradation is the mean of the relative drops of GenEval and HPSv2.
    @Test func meanOfRelativeDropsAsThePaper() throws {
        // "All" at 30 %: GenEval 0.71 → 0.62, HPSv2 30.29 → 26.29; the paper prints 13.3 % (from unrounded scores).
        let all = try #require(Degradation.percent(reference: ["geneval": 0.71, "hpsv2": 30.29], model: ["geneval": 0.62, "hpsv2": 26.29],
                                                   higherIsBetter: ["geneval": true, "hpsv2": true]))
        #expect(abs(all - 100 * ((0.71 - 0.62) / 0.71 + (30.29 - 26.29) / 30.29) / 2) < 1e-12)
        #expect(all > 12.5 && all < 13.5)
        // Lower-is-better metrics count a rise as a drop; missing or zero references are left out.
        let d = try #require(Degradation.percent(reference: [.promptAccuracy: 0.8, .frechet: 20], model: [.promptAccuracy: 0.6, .frechet: 30],
                                                 metrics: [.promptAccuracy, .frechet]))
        #expect(abs(d - 100 * (0.25 + 0.5) / 2) < 1e-12)
        #expect(Degradation.percent(reference: [.promptAccuracy: 0.8], model: [.promptAccuracy: 0.6], metrics: [.promptAccuracy]).map { abs($0 - 25) < 1e-12 } == true)
        #expect(Degradation.percent(reference: [.promptAccuracy: 0], model: [.promptAccuracy: 0.6], metrics: [.promptAccuracy]) == nil)
    }
}

@Suite struct SGDistillComponentTests {
    /// sd3_tiny: 2 blocks, the last one context_pre_only (no ff_context).
    @Test func componentUnitsAreOneOverTheirDeltaNormalisedOverUnits() throws {
        let s = try fixtureStructure("sd3_tiny")
        let values: [String: Double] = ["blocks.0": 0.4, "blocks.0.attn": 0.2, "blocks.0.ff": 0.05, "blocks.0.ff_context": 0.1,
                                        "blocks.1": 0.3, "blocks.1.attn": 0.1, "blocks.1.ff": -0.01]
        let sens = try sensitivity(s) { values[$0.description] }
        let g = SGDistillScaling(form: .inverse, threshold: 0)
        let u = try #require(try g.unitMultipliers(structure: s, removal: Removal(), frozen: [], compressionRatio: 0.3, sensitivity: sens))
        // Units 0.attn 0.2, 0.ff 0.05, 0.ff_context 0.1, 1.attn 0.1, 1.ff −0.01 → floored at ε·0.2 = 0.002.
        // raw 5, 20, 10, 10, 500; mean 109; 500/109 > 4 is capped.
        let mean = (5.0 + 20 + 10 + 10 + 500) / 5
        func c(_ a: String) throws -> Double { try #require(u.components[try ComponentAddress(parsing: a)]) }
        #expect(u.components.count == 5)
        let a0 = try c("blocks.0.attn"), f0 = try c("blocks.0.ff"), fc0 = try c("blocks.0.ff_context")
        let a1 = try c("blocks.1.attn"), f1 = try c("blocks.1.ff")
        #expect(abs(a0 - 5 / mean) < 1e-12 && abs(f0 - 20 / mean) < 1e-12)
        #expect(abs(fc0 - 10 / mean) < 1e-12 && abs(a1 - 10 / mean) < 1e-12)
        #expect(f1 == 4)
        // The blocks' other parameters: 1/ΔP_block on the same normalisation.
        #expect(abs(u.blocks[0] - 2.5 / mean) < 1e-12 && abs(u.blocks[1] - (1 / 0.3) / mean) < 1e-12)
    }

    @Test func blockOnlyScoresGiveExactlyTheBlockForm() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let sens = try sensitivity(s) { a in a.component == .block ? Double(a.block % 7) - 1 : nil }
        let r = try PruneSelection.explicit(["36-38"], structure: s)
        for g in [SGDistillScaling(form: .inverse, threshold: 0.1), SGDistillScaling(form: .binary, threshold: 0.1)] {
            let block = try g.multipliers(structure: s, removal: r, frozen: Set(0..<10), compressionRatio: 0.5, sensitivity: sens)
            let units = try g.unitMultipliers(structure: s, removal: r, frozen: Set(0..<10), compressionRatio: 0.5, sensitivity: sens)
            #expect(units?.blocks == block && units?.components.isEmpty == true)
            #expect(try g.unitMultipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.05, sensitivity: sens) == nil)
        }
    }

    @Test func noTrainableBlockMeansNothingToScale() throws {
        let s = try fixtureStructure("sd3_tiny")
        let sens = try sensitivity(s) { a in a.component == .block ? 0 : 0.1 }
        let r = try PruneSelection.explicit(["blocks.1"], structure: s)
        let g = SGDistillScaling(form: .inverse, threshold: 0)
        // Block 0 frozen, block 1 removed: all zero, not an error (the blocks' ΔP are irrelevant then).
        #expect(try g.multipliers(structure: s, removal: r, frozen: [0], compressionRatio: 0.5, sensitivity: sens) == [0, 0])
        let u = try #require(try g.unitMultipliers(structure: s, removal: r, frozen: [0], compressionRatio: 0.5, sensitivity: sens))
        #expect(u.blocks == [0, 0] && u.components.isEmpty)
        // A trainable block whose only ΔP is 0 is still an error.
        #expect(throws: CompressionError.self) { try g.multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.5, sensitivity: sens) }
    }

    @Test func removedFrozenAndUnscoredUnitsFollowTheBlockRules() throws {
        let s = try fixtureStructure("sd3_tiny")
        // Block 0 scores only attn and ff; ff is removed, and block 1 is frozen: block 0's attn is the one unit
        // with components, so it gets 1 (the mean over one unit), and its rest 1/ΔP_block relative to it.
        let values: [String: Double] = ["blocks.0.attn": 0.2, "blocks.0.ff": 0.05, "blocks.1.attn": 0.1]
        let sens = try sensitivity(s) { values[$0.description] }
        let r = try PruneSelection.explicit(["blocks.0.ff"], structure: s)
        let g = SGDistillScaling(form: .inverse, threshold: 0)
        let u = try #require(try g.unitMultipliers(structure: s, removal: r, frozen: [1], compressionRatio: 0.3, sensitivity: sens))
        #expect(u.components == [ComponentAddress(block: 0, component: .attn): 1])
        #expect(u.blocks[1] == 0)
        // blockDelta(0) = the largest component ΔP (0.2, the attn): the rest gets the attn's value.
        #expect(abs(u.blocks[0] - 1) < 1e-12)
        // Freezing the attn's tensors by prefix removes that unit: block 0 falls back to the block form.
        let prefix = s.blocks[0].prefix + ".attn."
        let v = try #require(try g.unitMultipliers(structure: s, removal: r, frozen: [1], frozenPrefixes: [prefix], compressionRatio: 0.3, sensitivity: sens))
        #expect(v.components.isEmpty && v.blocks == [1, 0])
    }
}
