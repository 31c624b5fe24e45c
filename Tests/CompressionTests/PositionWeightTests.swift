// W_pos and the Sensitivity artifact: formula, JSON stability and validation against a model.

import Compression
import Foundation
import ModelSpec
import Testing

@Suite struct PositionWeightTests {
    @Test func defaultDecaysWithDepth() {
        let w = PositionWeight()
        #expect(w.form == .exponential && w.rate == -1)
        #expect(abs(w.weight(block: 0, blockCount: 38) - exp(1)) < 1e-15)
        #expect(abs(w.weight(block: 37, blockCount: 38) - exp(1.0 / 38)) < 1e-15)
        let ws = w.weights(blockCount: 38)
        #expect(zip(ws, ws.dropFirst()).allSatisfy { $0 > $1 })  // early blocks weigh most: late ones go first
        let asWritten = PositionWeight(form: .exponential, rate: 1)     // the paper's notes, literally
        #expect(abs(asWritten.weight(block: 0, blockCount: 38) - exp(-1)) < 1e-15)
        let grows = asWritten.weights(blockCount: 38)
        #expect(zip(grows, grows.dropFirst()).allSatisfy { $0 < $1 })
        #expect(PositionWeight(form: .none).weights(blockCount: 5) == [1, 1, 1, 1, 1])
    }

    /// With the same ΔP everywhere, the position weight alone decides: the default removes the LAST blocks first
    /// (Hierarchical Position Pruning), `rate: 1` the first ones.
    @Test func flatDeltaPRemovesLateBlocksFirstByDefault() throws {
        let s = try sd35LargeStructure()   // 38 equal blocks
        func removed(_ pw: PositionWeight) throws -> [Int] {
            var d: [ComponentAddress: Double] = [:]
            for b in 0..<38 { d[ComponentAddress(block: b, component: .block)] = 0.5 }
            let sens = try Sensitivity(deltas: d, structure: s, positionWeight: pw, metric: "flat")
            let out = try PruneSelection.select(PruneRequest(target: .params(0.2)), sensitivity: sens, structure: s)
            return out.removal.addresses.map(\.block)
        }
        let byDefault = try removed(PositionWeight())
        #expect(!byDefault.isEmpty)
        #expect(byDefault == Array((38 - byDefault.count)..<38))   // a run of the last blocks
        let asWritten = try removed(PositionWeight(form: .exponential, rate: 1))
        #expect(asWritten == Array(0..<asWritten.count))             // the first blocks: the wrong end
    }

    /// The official code's rule: no position weight, raw ΔP, and a removal that RAISES the score (ΔP < 0) first.
    @Test func officialRuleSortsSignedRawDeltaP() throws {
        let s = try sd35LargeStructure()
        var d: [ComponentAddress: Double] = [:]
        for b in 0..<38 { d[ComponentAddress(block: b, component: .block)] = 1 + Double(b % 5) }
        d[ComponentAddress(block: 3, component: .block)] = -2      // removing block 3 helps: goes first
        d[ComponentAddress(block: 20, component: .block)] = 0.1
        let sens = try Sensitivity(deltas: d, structure: s, positionWeight: PositionWeight(form: .none), metric: "hpsv2")
        let out = try PruneSelection.select(PruneRequest(target: .params(0.05), ranking: .signed), sensitivity: sens, structure: s)
        #expect(out.steps.map(\.address.block).prefix(2) == [3, 20])
        let abs = try PruneSelection.select(PruneRequest(target: .params(0.05), ranking: .absolute), sensitivity: sens, structure: s)
        #expect(abs.steps.first?.address.block == 20)   // |−2| ranks after 0.1 when the sign is dropped
    }

    @Test func sensitivityJSONIsStableAndRoundTrips() throws {
        let s = try fixtureStructure("sd3_tiny")
        let sens = try Sensitivity(deltas: [ComponentAddress(block: 1, component: .ff): 0.5,
                                            ComponentAddress(block: 0, component: .block): -0.25,
                                            ComponentAddress(block: 0, component: .attn): .nan],
                                   structure: s, positionWeight: PositionWeight(), metric: "sample-mse", baseline: 1)
        let data = sens.encoded()
        #expect(data == sens.encoded())
        let back = try Sensitivity.decode(data, source: "t.json", structure: s)
        #expect(back.encoded() == data)
        #expect(back.entry(ComponentAddress(block: 1, component: .ff))?.deltaP == 0.5)
        #expect(back.entry(ComponentAddress(block: 0, component: .attn))?.eligible == false)  // NaN is never eligible
        #expect(back.entry(ComponentAddress(block: 1, component: .attn))?.deltaP == nil)       // unscored
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"block_count\" : 2") && text.contains("\"position_weight\""))
        #expect(back.blockDelta(0) == -0.25 && back.blockDelta(1) == 0.5)
    }

    @Test func sensitivityForAnotherModelIsRejected() throws {
        let sens = try sensitivity(try fixtureStructure("sd3_tiny")) { _ in 1 }
        let e = try #require(throws: CompressionError.self) {
            try Sensitivity.decode(sens.encoded(), source: "score", structure: try fixtureStructure("flux_tiny"))
        }
        #expect(e.message.contains("SD3Transformer2DModel with 2 blocks"))
        let bad = try #require(throws: CompressionError.self) { try Sensitivity.decode(Data("{}".utf8), source: "x.json") }
        #expect(bad.subject == "x.json")
    }
}
