// Score tables written outside hprune (ImportedScores.swift): hprune's own JSON and the official code's
// contribution files, on the sd3_tiny structure.

import Compression
import Foundation
import ModelSpec
import Testing

@Suite("Imported score tables")
struct ImportedScoresTests {
    func json(_ s: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])
    }

    @Test("hprune JSON: scores with a baseline, or ΔP directly; the format by content")
    func hprune() throws {
        let st = try fixtureStructure("sd3_tiny")
        let scores = try json(#"{"baseline": 30, "scores": {"blocks.0": 12.5, "blocks.1.ff": 29}}"#)
        #expect(ScoreFileFormat(guessing: scores) == .hprune)
        let (d, base) = try ImportedScores.hprune(scores, structure: st)
        #expect(base == 30 && d == [ComponentAddress(block: 0, component: .block): 17.5, ComponentAddress(block: 1, component: .ff): 1])
        let (dp, none) = try ImportedScores.hprune(try json(#"{"delta_p": {"blocks.1": 0.25}}"#), structure: st)
        #expect(none == nil && dp == [ComponentAddress(block: 1, component: .block): 0.25])
        #expect(throws: ImportedScores.Problem.self) { try ImportedScores.hprune(try json(#"{"scores": {"blocks.0": 1}}"#), structure: st) }
        #expect(throws: ImportedScores.Problem.self) { try ImportedScores.hprune(try json(#"{"delta_p": {"blocks.9": 1}}"#), structure: st) }
    }

    @Test("official contribution files: <block><tab><component>, `all` = the block, entries the model lacks skipped")
    func official() throws {
        let st = try fixtureStructure("sd3_tiny")
        // sd3_tiny's block 1 is context_pre_only: it has no ff_context.
        let obj = try json(#"{"0<tab>all": 28, "1\tff": 29.5, "1<tab>ff_context": 29}"#)
        #expect(ScoreFileFormat(guessing: obj) == .hierarchicalprune)
        let (d, skipped) = try ImportedScores.official(obj, baseline: 30, structure: st)
        #expect(d == [ComponentAddress(block: 0, component: .block): 2, ComponentAddress(block: 1, component: .ff): 0.5])
        #expect(skipped == ["1<tab>ff_context"])
        #expect(throws: ImportedScores.Problem.self) { try ImportedScores.official(obj, baseline: nil, structure: st) }
        #expect(throws: ImportedScores.Problem.self) { try ImportedScores.official(try json(#"{"0<tab>w_norm1+ff": 1}"#), baseline: 30, structure: st) }
    }
}
