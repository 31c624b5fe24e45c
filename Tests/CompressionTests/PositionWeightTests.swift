// W_pos and the Sensitivity artifact: formula, JSON stability and validation against a model.

import Compression
import Foundation
import ModelSpec
import Testing

@Suite struct PositionWeightTests {
    @Test func exponentialAsWritten() {
        let w = PositionWeight()
        #expect(w.form == .exponential && w.rate == 1)
        #expect(abs(w.weight(block: 0, blockCount: 38) - exp(-1)) < 1e-15)
        #expect(abs(w.weight(block: 37, blockCount: 38) - exp(-1.0 / 38)) < 1e-15)
        let ws = w.weights(blockCount: 38)
        #expect(zip(ws, ws.dropFirst()).allSatisfy { $0 < $1 })  // grows with i, as written
        let flipped = PositionWeight(form: .exponential, rate: -2).weights(blockCount: 10)
        #expect(zip(flipped, flipped.dropFirst()).allSatisfy { $0 > $1 })
        #expect(PositionWeight(form: .none).weights(blockCount: 5) == [1, 1, 1, 1, 1])
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
