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

    @Test func inverseClampsTinyDeltasAndZeroesFrozenBlocks() throws {
        let s = try fixtureStructure("sd35_large_turbo_layout")
        let sens = try sensitivity(s) { a in a.component == .block ? (a.block == 30 ? 0 : (a.block == 31 ? -2 : 1)) : nil }
        let r = try PruneSelection.explicit(["36-38"], structure: s)
        let m = try #require(try SGDistillScaling(form: .inverse, threshold: 0.1, epsilon: 0.01)
            .multipliers(structure: s, removal: r, frozen: Set(0..<10), compressionRatio: 0.5, sensitivity: sens))
        #expect(m[0..<10].allSatisfy { $0 == 0 } && m[36] == 0 && m[37] == 0)
        let trainable: [Double] = Array(m[10..<36])
        let mean: Double = trainable.reduce(0, +) / Double(trainable.count)
        #expect(abs(mean - 1) < 1e-12)
        // ΔP 0 clamps to ε·max|ΔP| = 0.02 → 100× the multiplier of |ΔP| = 2, 50× that of |ΔP| = 1.
        let r1: Double = m[30] / m[31], r2: Double = m[30] / m[12]
        #expect(abs(r1 - 100) < 1e-9)
        #expect(abs(r2 - 50) < 1e-9)
        #expect(throws: CompressionError.self) {
            try SGDistillScaling(form: .inverse, threshold: 0).multipliers(structure: s, removal: r, frozen: [], compressionRatio: 0.5, sensitivity: nil)
        }
    }
}
