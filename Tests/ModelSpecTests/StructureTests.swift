// The expected tensors, block structure, sub-component ownership and parameter counts against
// the diffusers-written fixtures (names, shapes and counts computed by PyTorch in generate.py).

import TensorFiles
import Foundation
import ModelSpec
import Testing

/// Tests/Fixtures/models.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/models").path

let fixtureModels = ["sd3_tiny", "sd35_tiny", "flux_tiny", "flux_tiny_noguid", "sd35_large_turbo_layout"]

/// manifest.json written by generate.py.
func manifest() throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/manifest.json"))) as! [String: Any]
}

func tempDir() throws -> String {
    let p = NSTemporaryDirectory() + "hprune-spec-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

@Suite struct StructureAgainstDiffusers {
    @Test(arguments: fixtureModels)
    func expectedTensorsMatchTheStateDict(model: String) throws {
        let folder = try DiffusersFolder(path: fixtures + "/" + model)
        let structure = ModelStructure(try ModelConfig.parse(folder.config, file: folder.configPath))
        let stored = Dictionary(uniqueKeysWithValues: folder.tensors.map { ($0.name, $0.shape) })
        #expect(Set(structure.tensors.map(\.name)) == Set(stored.keys))
        for t in structure.tensors {
            #expect(stored[t.name] == t.shape, "\(model): \(t.name)")
        }
        #expect(structure.tensors.filter(\.isBuffer).map(\.name) == (model.hasPrefix("flux") ? [] : ["pos_embed.pos_embed"]))
    }

    @Test(arguments: fixtureModels)
    func parameterCountsMatchPyTorch(model: String) throws {
        let entry = try #require(try manifest()[model] as? [String: Any])
        let structure = ModelStructure(try ModelConfig.load(path: fixtures + "/\(model)/config.json"))
        #expect(structure.parameterCount == entry["parameters"] as! Int)
        guard let perAddress = entry["address_parameters"] as? [String: Int] else { return }
        #expect(Set(structure.allAddresses.map(\.description)) == Set(perAddress.keys))
        for (text, n) in perAddress {
            #expect(try structure.parameterCount(of: ComponentAddress(parsing: text)) == n, "\(model): \(text)")
        }
        for r in entry["removals"] as! [[String: Any]] {
            let removal = try Removal(parsing: r["removed"] as! [String], in: structure)
            #expect(try structure.parameterCount(after: removal) == r["parameters_after"] as! Int, "\(model): \(r["removed"]!)")
        }
    }

    @Test func layoutModelIsSD35LargeTurboShaped() throws {
        let s = ModelStructure(try ModelConfig.load(path: fixtures + "/sd35_large_turbo_layout/config.json"))
        #expect(s.blocks.count == 38)
        #expect(s.blocks.last!.contextPreOnly && !s.blocks[36].contextPreOnly)
        #expect(!s.blocks.last!.components.contains(.ff_context))
        #expect(s.blocks.allSatisfy { !$0.dualAttention })
        guard case .sd3(let c) = s.config else { Issue.record("not SD3"); return }
        #expect(c.qkNorm == "rms_norm")
    }

    @Test func fluxBlocksAreIndexedGlobally() throws {
        let s = ModelStructure(try ModelConfig.load(path: fixtures + "/flux_tiny/config.json"))
        #expect(s.blocks.map(\.kind) == [.double, .double, .single, .single])
        #expect(s.blocks[2].prefix == "single_transformer_blocks.0")
        #expect(try s.tensorNames(of: ComponentAddress(parsing: "blocks.3.proj_mlp_out")).sorted() ==
                ["single_transformer_blocks.1.proj_mlp.bias", "single_transformer_blocks.1.proj_mlp.weight",
                 "single_transformer_blocks.1.proj_out.bias", "single_transformer_blocks.1.proj_out.weight"])
        // FLUX.1 proportions: double 0...18, single from 19.
        var c = FluxConfig()
        c.numAttentionHeads = 2; c.attentionHeadDim = 8; c.axesDimsRope = [2, 2, 4]
        let full = ModelStructure(.flux(c))
        #expect(full.blocks.count == 57 && full.blocks[19].kind == .single && full.blocks[19].prefix == "single_transformer_blocks.0")
    }

    @Test func attnOwnsAttn2AndContextProjections() throws {
        let s = ModelStructure(try ModelConfig.load(path: fixtures + "/sd35_tiny/config.json"))
        let names = try s.tensorNames(of: ComponentAddress(parsing: "blocks.0.attn"))
        #expect(names.contains("transformer_blocks.0.attn2.to_q.weight"))
        #expect(names.contains("transformer_blocks.0.attn.add_q_proj.weight"))
        #expect(names.contains("transformer_blocks.0.attn.norm_added_k.weight"))
        #expect(!names.contains { $0.contains("norm1") || $0.contains(".ff") })
        #expect(try s.tensorNames(of: ComponentAddress(parsing: "blocks.1.norm1")) == s.tensorNames(of: ComponentAddress(parsing: "blocks.1.w_norm1")))
    }
}

@Suite struct Addresses {
    let sd35 = ModelStructure(try! ModelConfig.load(path: fixtures + "/sd35_tiny/config.json"))

    @Test func parseAndPrint() throws {
        #expect(try ComponentAddress(parsing: "blocks.12.ff") == ComponentAddress(block: 12, component: .ff))
        #expect(try ComponentAddress(parsing: "blocks.3") == ComponentAddress(block: 3, component: .block))
        #expect(try ComponentAddress(parsing: "blocks.3.all").description == "blocks.3")
        #expect(try ComponentAddress(parsing: "blocks.3.block").description == "blocks.3")
        #expect(ComponentAddress(block: 4, component: .w_norm1_context).description == "blocks.4.w_norm1_context")
        for bad in ["block.1", "blocks", "blocks.x.ff", "blocks.-1", "blocks.1.fff", "blocks.1.ff.x", ""] {
            #expect(throws: ModelSpecError.self, "\(bad)") { try ComponentAddress(parsing: bad) }
        }
    }

    @Test func invalidAddressesAreRejected() throws {
        let noFF = try #require(throws: ModelSpecError.self) { try Removal(parsing: ["blocks.2.ff_context"], in: sd35) }
        #expect(noFF.message.contains("context_pre_only"))
        #expect(throws: ModelSpecError.self) { try Removal(parsing: ["blocks.3"], in: sd35) }
        #expect(throws: ModelSpecError.self) { try Removal(parsing: ["blocks.0.proj_mlp_out"], in: sd35) }
        let conflict = try #require(throws: ModelSpecError.self) { try Removal(parsing: ["blocks.1.norm1", "blocks.1.w_norm1"], in: sd35) }
        #expect(conflict.message.contains("same norm module"))
    }

    @Test func removalQueries() throws {
        let r = try Removal(parsing: ["blocks.2.ff", "blocks.1", "blocks.2.ff"], in: sd35)
        #expect(r.strings == ["blocks.1", "blocks.2.ff"])
        #expect(r.isRemoved(block: 1, .attn) && r.isRemoved(block: 2, .ff) && !r.isRemoved(block: 2, .attn))
        #expect(r.firstAffectedBlock == 1)
        // Whole-block removal makes sub-component entries redundant: the count does not change.
        let r2 = try Removal(parsing: ["blocks.1", "blocks.1.ff"], in: sd35)
        #expect(try sd35.parameterCount(after: r2) == sd35.parameterCount(after: Removal(parsing: ["blocks.1"], in: sd35)))
    }
}

@Suite struct Configs {
    func parse(_ json: String) throws -> ModelConfig {
        guard case .success(let v) = JSONValue.parse(Data(json.utf8)), let o = v.objectValue else { throw CancellationError() }
        return try ModelConfig.parse(o, file: "config.json")
    }

    @Test func defaultsFollowDiffusers() throws {
        guard case .sd3(let c) = try parse(#"{"_class_name": "SD3Transformer2DModel", "caption_projection_dim": 1152}"#) else { Issue.record(); return }
        #expect(c.numLayers == 18 && c.innerDim == 1152 && c.posEmbedMaxSize == 96 && c.qkNorm == nil && c.outChannels == 16)
        guard case .flux(let f) = try parse(#"{"_class_name": "FluxTransformer2DModel", "out_channels": null}"#) else { Issue.record(); return }
        #expect(f.numLayers == 19 && f.numSingleLayers == 38 && f.innerDim == 3072 && f.outChannels == 64 && !f.guidanceEmbeds)
    }

    @Test func sd35LargeTurboConfigParses() throws {
        let json = #"{"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.31.0.dev0", "attention_head_dim": 64, "caption_projection_dim": 2432, "in_channels": 16, "joint_attention_dim": 4096, "num_attention_heads": 38, "num_layers": 38, "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 192, "qk_norm": "rms_norm", "sample_size": 128}"#
        let s = ModelStructure(try parse(json))
        #expect(s.config.innerDim == 2432)
        // Counted by PyTorch on diffusers 0.42 (meta device): sum(p.numel() for p in model.parameters()).
        #expect(s.parameterCount == 8_056_627_520)
        let medium = #"{"_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 1536, "num_attention_heads": 24, "num_layers": 24, "pos_embed_max_size": 384, "qk_norm": "rms_norm", "dual_attention_layers": [0,1,2,3,4,5,6,7,8,9,10,11,12]}"#
        #expect(ModelStructure(try parse(medium)).parameterCount == 2_243_171_520)
        #expect(ModelStructure(try parse(#"{"_class_name": "FluxTransformer2DModel"}"#)).parameterCount == 11_891_178_560)
        #expect(ModelStructure(try parse(#"{"_class_name": "FluxTransformer2DModel", "guidance_embeds": true}"#)).parameterCount == 11_901_408_320)
    }

    @Test func badConfigsNameTheKey() throws {
        let unknown = try #require(throws: ModelSpecError.self) { try parse(#"{"_class_name": "UNet2DConditionModel"}"#) }
        #expect(unknown.subject == "_class_name" && unknown.message.contains("UNet2DConditionModel"))
        #expect(throws: ModelSpecError.self) { try parse(#"{"num_layers": 2}"#) }
        let wrongType = try #require(throws: ModelSpecError.self) { try parse(#"{"_class_name": "SD3Transformer2DModel", "num_layers": "two"}"#) }
        #expect(wrongType.subject == "num_layers" && wrongType.description.contains("config.json"))
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "SD3Transformer2DModel", "num_layers": 2.5}"#) }
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "SD3Transformer2DModel", "num_layers": -1}"#) }
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "SD3Transformer2DModel", "qk_norm": "l2"}"#) }
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "SD3Transformer2DModel", "caption_projection_dim": 64}"#) }
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "SD3Transformer2DModel", "caption_projection_dim": 1152, "dual_attention_layers": [18]}"#) }
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "FluxTransformer2DModel", "axes_dims_rope": [16, 56, 50]}"#) }
        #expect(throws: ModelSpecError.self) { try parse(#"{"_class_name": "FluxTransformer2DModel", "guidance_embeds": 1}"#) }
    }
}

/// The parity fixtures the forward/backward will be held to are complete and consistent with
/// the structure (inputs named as diffusers' forward args, a gradient for every parameter).
@Suite struct FixtureInventory {
    @Test(arguments: ["sd3_tiny", "sd35_tiny", "flux_tiny", "flux_tiny_noguid"])
    func ioFixtureHasInputsAndSample(model: String) throws {
        let io = try SafetensorsFile(path: fixtures + "/\(model)/io.safetensors")
        var want: Set = ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "sample"]
        if model.hasPrefix("flux") { want.formUnion(["img_ids", "txt_ids"]) }
        if model == "flux_tiny" { want.insert("guidance") }
        #expect(Set(io.names) == want)
        #expect(io.tensors.allSatisfy { $0.dtype == .f32 })
        #expect(try io.info("sample").shape == io.info("hidden_states").shape)
        #expect(try io.info("hidden_states").shape[0] == 2)
        let entry = try #require(try manifest()[model] as? [String: Any])
        for r in entry["removals"] as! [[String: Any]] {
            let f = try SafetensorsFile(path: fixtures + "/" + (r["file"] as! String))
            #expect(f.metadata["removed"] == (r["removed"] as! [String]).joined(separator: ","))
            #expect(try f.info("sample").shape == io.info("sample").shape)
        }
    }

    @Test(arguments: ["sd35_tiny", "flux_tiny"])
    func trainFixtureHasEveryGradient(model: String) throws {
        let train = try SafetensorsFile(path: fixtures + "/\(model)/train.safetensors")
        let s = ModelStructure(try ModelConfig.load(path: fixtures + "/\(model)/config.json"))
        let params = s.tensors.filter { !$0.isBuffer }
        #expect(Set(train.names) == Set(params.map { "grad." + $0.name } + ["target", "loss"]))
        for p in params { #expect(try train.info("grad." + p.name).shape == p.shape) }
        #expect(try train.info("loss").shape == [])
        #expect(train.nonFiniteTensors().isEmpty)
    }
}
