// prune / freeze / quantise as stages of real recipes: outputs, store economy (a pruned model adds only its
// manifest), caching and re-import, and the bad-input errors (stage name + recipe location, store intact).

import ArtifactStore
import TensorFiles
import Compression
import Foundation
import ModelSpec
import ModelStore
import Scheduler
import StageGraph
import Stages
import TensorCore
import TestSupport
import Testing
import YAMLSupport

@Suite struct ModelStageTests {
    @Test func explicitPruneSharesTheTeachersObjects() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_large_turbo_layout", into: dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: t
            models: { teacher: { path: \(teacher), format: diffusers } }
            stages:
              prune: { kind: prune, model: teacher, remove: "25-29,31-35" }
              freeze: { kind: freeze, model: prune }
            """)
        #expect(run.results.allSatisfy { $0.status == .ran }, "\(run.results.map { "\($0.name): \($0.error ?? "")" })")
        let pruned = try run.model("prune")
        #expect(pruned.structure.removed == ["blocks.25", "blocks.26", "blocks.27", "blocks.28", "blocks.31", "blocks.32", "blocks.33", "blocks.34"])
        #expect(!pruned.tensors.keys.contains { $0.hasPrefix("transformer_blocks.25.") })
        #expect(pruned.tensors["transformer_blocks.29.attn.to_q.weight"] != nil)
        let frozen = try run.model("freeze")
        #expect(frozen.structure.frozenBlocks == Array(0..<25) && frozen.structure.frozenPrefixes.contains("pos_embed."))
        #expect(frozen.tensors == pruned.tensors)
        let removed = try #require(run.result("prune")?.metrics.first { $0.name == "params_removed_fraction" }?.value)
        #expect(removed > 0.19 && removed < 0.215)

        // Store economy: teacher tensors (one object each) + 3 manifests (import, prune, freeze), nothing else.
        let folder = try DiffusersFolder(path: dir.path + "/" + teacher)
        let tensorObjects = Set(try folder.tensors.map { info in Digest.of(try folder.withBytes(info.name) { Data($0) }) })
        let objects = Set(try run.store.list().map(\.digest))
        #expect(tensorObjects.isSubset(of: objects))
        #expect(objects.count == tensorObjects.count + 3)

        // Re-running: everything cached, nothing re-hashed or re-imported.
        let again = try await runRecipe(dir, """
            recipe: 1
            name: t
            models: { teacher: { path: \(teacher), format: diffusers } }
            stages:
              prune: { kind: prune, model: teacher, remove: "25-29,31-35" }
              freeze: { kind: freeze, model: prune }
            """)
        #expect(again.results.allSatisfy { $0.status == .cached })
        #expect(again.store.sourceFilesHashed == 0)
    }

    @Test func greedyPruneFromScoresThenQuantise() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_large_turbo_layout", into: dir)
        let s = ModelStructure(try ModelConfig.load(path: dir.path + "/\(teacher)/config.json"))
        var d: [ComponentAddress: Double] = [:]
        for a in s.allAddresses where a.component == .block { d[a] = a.block == 30 ? 0.001 : 1 + Double(37 - a.block) }
        _ = dir.write("scores.json", String(decoding: try Sensitivity(deltas: d, structure: s, positionWeight: PositionWeight(form: .none), metric: "test").encoded(), as: UTF8.self))
        let run = try await runRecipe(dir, """
            recipe: 1
            name: t
            models: { teacher: { path: \(teacher) } }
            stages:
              score: { kind: test-scores, path: scores.json }
              prune: { kind: prune, model: teacher, scores: score, target: { params: 0.1 }, protect_first: 4 }
              quantise: { kind: quantise, model: prune, format: nf4, keep: [proj_out] }
              int8: { kind: quantise, model: prune, format: int8 }
            """)
        #expect(run.results.allSatisfy { $0.status == .ran }, "\(run.results.map { "\($0.name): \($0.error ?? "")" })")
        let pruned = try run.model("prune")
        #expect(pruned.structure.removed.first == "blocks.30")
        #expect(pruned.structure.removed.contains("blocks.37"))
        let q = try run.model("quantise")
        // double_quant defaults to true for nf4/fp4, as the official Linear4bit (compress_statistics=True) …
        #expect(q.quantisation?.format == .nf4 && q.quantisation?.doubleQuant == true)
        // … and does not apply to int8.
        #expect(try run.model("int8").quantisation?.doubleQuant == false)
        let t = try #require(q.tensors["transformer_blocks.0.attn.to_q.weight"])
        #expect(t.object.dtype == .u8 && t.quantisation?.originalDType == .bf16)
        #expect(Set(t.quantisation?.companions.keys.map { $0 } ?? []) == [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__nf4"])
        #expect(q.tensors["proj_out.weight"]?.quantisation == nil)
        #expect(q.tensors["transformer_blocks.0.attn.to_q.bias"]?.object == pruned.tensors["transformer_blocks.0.attn.to_q.bias"]?.object)
        // Packed codes: n/2 bytes for n bf16 weights (2n bytes). (At these tiny dims the companions dominate.)
        let before = try #require(pruned.tensors["transformer_blocks.0.attn.to_q.weight"]?.object.bytes)
        #expect(t.object.bytes * 4 == before)
    }

    /// Every bad input fails its stage with the stage name and recipe location, and leaves the store intact.
    @Test(arguments: [
        ("prune: { kind: prune, model: teacher, remove: \"blocks.1.ff_context\" }", "prune", "matches nothing"),
        ("prune: { kind: prune, model: teacher, scores: score, target: { params: 0.5 }, blocks: \"1-2\" }", "prune", "cannot be met"),
        ("prune: { kind: prune, model: teacher, scores: score, target: { params: 0.1 }, granularity: component, components: [attn2x] }", "", ""),
        ("prune: { kind: prune, model: teacher, remove: \"1-2\" }\n  freeze: { kind: freeze, model: prune, policy: blocks, blocks: \"0-2\" }", "freeze", "cannot freeze pruned block blocks.1"),
        ("q1: { kind: quantise, model: teacher }\n  q2: { kind: quantise, model: q1, format: fp4 }", "q2", "already quantised"),
        ("q1: { kind: quantise, model: teacher, keep: [no_such_layer] }", "q1", "matches no tensor"),
    ])
    func badInputsFailClearly(_ stages: String, _ failing: String, _ text: String) async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)   // 2 blocks; block 1 is context_pre_only
        let s = ModelStructure(try ModelConfig.load(path: dir.path + "/\(teacher)/config.json"))
        let sens = try Sensitivity(deltas: Dictionary(uniqueKeysWithValues: s.allAddresses.map { ($0, 1.0) }), structure: s, metric: "test")
        _ = dir.write("scores.json", String(decoding: sens.encoded(), as: UTF8.self))
        let yaml = """
            recipe: 1
            name: t
            models: { teacher: { path: \(teacher) } }
            stages:
              score: { kind: test-scores, path: scores.json }
              \(stages)
            """
        if failing.isEmpty {
            // A schema problem: reported at check time with its location, nothing runs.
            #expect(throws: (any Error).self) { _ = try Workspace.load(path: dir.write("r.yaml", yaml), environment: [:], registry: StageRegistry(StageKinds.all + [TestScoresStage()])) }
            return
        }
        let run = try await runRecipe(dir, yaml)
        let r = try #require(run.result(failing))
        #expect(r.status == .failed)
        let message = r.error ?? ""
        #expect(message.contains("stage '\(failing)' (") && message.contains("r.yaml:"), "\(message)")
        #expect(message.contains(text), "\(message)")
        #expect(try run.store.verify().isClean)
        for ok in run.results where ok.status == .ran {
            for d in ok.outputs.values { #expect(run.store.contains(d)) }
        }
    }

    @Test func planTimeChecksOfPruneFreezeQuantise() throws {
        let dir = TemporaryDirectory()
        let yaml = """
            recipe: 1
            name: t
            models: { teacher: { path: m } }
            stages:
              a: { kind: prune, model: teacher, remove: "30-20" }
              b: { kind: prune, model: teacher, target: { params: 0.2 } }
              c: { kind: prune, model: teacher, remove: "1-3", target: { params: 0.2 } }
              d: { kind: freeze, model: a, policy: first-fraction }
              e: { kind: quantise, model: a, format: nf4, block_size: 100 }
              f: { kind: quantise, model: a, format: int8, double_quant: true }
            """
        let path = dir.write("r.yaml", yaml)
        do {
            _ = try Workspace.load(path: path, environment: [:], registry: StageKinds.registry)
            Issue.record("expected diagnostics")
        } catch {
            let text = error.diagnostics.map { "\($0.mark?.description ?? ""): \($0.message)" }.joined(separator: "\n")
            #expect(text.contains("stage 'a'") && text.contains("empty range"), "\(text)")
            #expect(text.contains("stage 'b'") && text.contains("'target' needs 'scores'"), "\(text)")
            #expect(text.contains("stage 'c'") && text.contains("not both"), "\(text)")
            #expect(text.contains("stage 'd'") && text.contains("needs 'fraction'"), "\(text)")
            #expect(text.contains("stage 'e'") && text.contains("block_size"), "\(text)")
            #expect(text.contains("stage 'f'") && text.contains("double_quant"), "\(text)")
            #expect(text.contains("r.yaml:5:"), "\(text)")
        }
    }
}
