// Checkpoints checked against their config (missing tensors, shape mismatches, pruned models
// recorded in `hprune_removed`) and the `inspect` report.

import TensorFiles
import Foundation
import ModelSpec
import Testing

/// Copies a fixture model folder, optionally rewriting config.json and the weights.
func copyFixture(_ model: String, config edit: ((inout [String: Any]) -> Void)? = nil,
                 tensors filter: ((inout [TensorPayload]) -> Void)? = nil) throws -> String {
    let src = DiffusersFolder.init
    let folder = try src(fixtures + "/" + model)
    var payloads = try folder.tensors.map { TensorPayload(name: $0.name, dtype: $0.dtype, shape: $0.shape, data: try folder.withBytes($0.name) { Data($0) }) }
    filter?(&payloads)
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder.configPath))) as! [String: Any]
    edit?(&config)
    let dir = try tempDir() + "/" + model
    try DiffusersFolder.write(config: try JSONSerialization.data(withJSONObject: config), tensors: payloads, to: dir)
    return dir
}

@Suite struct CheckpointValidation {
    @Test(arguments: fixtureModels)
    func fixturesValidate(model: String) throws {
        let c = try ModelCheckpoint(path: fixtures + "/" + model)
        #expect(c.unexpectedTensors.isEmpty && c.uncheckedTensors.isEmpty && c.removal.isEmpty)
    }

    @Test func missingTensorTheConfigNeedsIsNamed() throws {
        let dir = try copyFixture("sd35_tiny", tensors: { $0.removeAll { $0.name == "transformer_blocks.1.attn2.to_k.weight" } })
        let e = try #require(throws: TensorFileError.self) { try ModelCheckpoint(path: dir) }
        #expect(e.kind == .missingTensor)
        #expect(e.tensor == "transformer_blocks.1.attn2.to_k.weight")
        #expect(e.file == dir && e.message.contains("[32, 32]"))
    }

    @Test func shapeMismatchNamesBothShapes() throws {
        let dir = try copyFixture("sd3_tiny", tensors: { ts in
            let i = ts.firstIndex { $0.name == "context_embedder.weight" }!
            ts[i] = TensorPayload(name: "context_embedder.weight", shape: [16, 23], floats: Array(repeating: 0, count: 16 * 23))
        })
        // A tensor outside the blocks that holds a config dimension is checked first, naming the key.
        let e = try #require(throws: ModelSpecError.self) { try ModelCheckpoint(path: dir) }
        #expect(e.subject == "joint_attention_dim" && e.source.hasSuffix("config.json"))
        #expect(e.message.contains("context_embedder.weight") && e.message.contains("[16, 23]") && e.message.contains("is 24"))
        // Inside a block: the shape mismatch names the tensor, both shapes and the offset.
        let inner = try copyFixture("sd3_tiny", tensors: { ts in
            let i = ts.firstIndex { $0.name == "transformer_blocks.0.attn.to_q.weight" }!
            ts[i] = TensorPayload(name: ts[i].name, shape: [16, 15], floats: Array(repeating: 0, count: 16 * 15))
        })
        let m = try #require(throws: TensorFileError.self) { try ModelCheckpoint(path: inner) }
        #expect(m.kind == .shapeMismatch && m.tensor == "transformer_blocks.0.attn.to_q.weight")
        #expect(m.message.contains("[16, 15]") && m.message.contains("[16, 16]"))
        #expect(m.offset != nil && m.file.hasSuffix(DiffusersFolder.weightsName))
    }

    @Test func extraTensorsAreReportedNotFatal() throws {
        let dir = try copyFixture("sd3_tiny", tensors: { $0.append(TensorPayload(name: "lora.A", shape: [1], floats: [0])) })
        #expect(try ModelCheckpoint(path: dir).unexpectedTensors == ["lora.A"])
    }

    @Test func prunedModelRecordsItsRemoval() throws {
        let removed = ["blocks.1", "blocks.0.ff", "blocks.2.w_norm1_context"]
        let structure = ModelStructure(try ModelConfig.load(path: fixtures + "/sd35_tiny/config.json"))
        let gone = try structure.removedTensorNames(Removal(parsing: removed, in: structure))
        #expect(gone.contains("transformer_blocks.2.norm1_context.linear.weight"))
        let dir = try copyFixture("sd35_tiny", config: { $0["hprune_removed"] = removed }, tensors: { $0.removeAll { gone.contains($0.name) } })
        let c = try ModelCheckpoint(path: dir)
        #expect(c.removal.strings == ["blocks.0.ff", "blocks.1", "blocks.2.w_norm1_context"])
        let report = try inspect(path: dir)
        #expect(report.parameters == (try structure.parameterCount(after: c.removal)))
        #expect(report.parameters < report.parametersFull)
        #expect(report.blocks[1].removed && report.blocks[0].components.first { $0.name == "ff" }!.removed)

        // The same weights without the record: the block with no tensors is an error naming num_layers.
        let bare = try copyFixture("sd35_tiny", tensors: { $0.removeAll { gone.contains($0.name) } })
        let n = try #require(throws: ModelSpecError.self) { try ModelCheckpoint(path: bare) }
        #expect(n.subject == "num_layers" && n.message.contains("block transformer_blocks.1 has no tensors"), "\(n)")
        // Only block 0's ff recorded: block 0 misses tensors the config needs.
        let partial = try copyFixture("sd35_tiny", config: { $0["hprune_removed"] = ["blocks.1"] },
                                      tensors: { $0.removeAll { gone.contains($0.name) } })
        #expect(throws: TensorFileError.self) { try ModelCheckpoint(path: partial) }
        // A bad record names config.json.
        let bad = try copyFixture("sd35_tiny", config: { $0["hprune_removed"] = ["blocks.9"] })
        let e = try #require(throws: ModelSpecError.self) { try ModelCheckpoint(path: bad) }
        #expect(e.source.contains("config.json"))
    }

    @Test func nanWeightsAreListedByInspect() throws {
        let dir = try copyFixture("sd3_tiny", tensors: { ts in
            let i = ts.firstIndex { $0.name == "proj_out.bias" }!
            ts[i] = TensorPayload(name: "proj_out.bias", shape: ts[i].shape, floats: [Float](repeating: .nan, count: ts[i].shape[0]))
        })
        #expect(try inspect(path: dir).nonFiniteTensors == ["proj_out.bias"])
        #expect(try inspect(path: dir, scanNonFinite: false).nonFiniteTensors.isEmpty)
    }
}

@Suite struct Inspect {
    @Test func layoutModelReport() throws {
        let r = try inspect(path: fixtures + "/sd35_large_turbo_layout")
        #expect(r.architecture == "SD3Transformer2DModel" && r.blocks.count == 38)
        #expect(r.bytesByDType.keys.sorted() == ["BF16"])
        #expect(r.totalBytes == 2 * (r.parametersFull + r.bufferElements))
        #expect(r.blocks[37].contextPreOnly && !r.blocks[37].components.contains { $0.name == "ff_context" })
        #expect(r.blocks.reduce(0) { $0 + $1.parameters } < r.parametersFull)
        let text = r.renderText()
        #expect(text.contains("SD3Transformer2DModel, 38 blocks, D=8"))
        #expect(text.contains("context_pre_only"))
        #expect(text.contains("storage: ") && text.contains("BF16"))
        // JSON round trip.
        let back = try JSONDecoder().decode(InspectReport.self, from: JSONEncoder().encode(r))
        #expect(back == r)
    }

    @Test func componentCountsAddUpToTheBlock() throws {
        let r = try inspect(path: fixtures + "/flux_tiny")
        for b in r.blocks {
            let parts = b.components.filter { !$0.name.hasPrefix("w_") }.reduce(0) { $0 + $1.parameters }
            #expect(parts == b.parameters, "block \(b.index)")
        }
    }

    @Test func hostileFileIsRefusedByInspect() throws {
        let dir = try copyFixture("sd3_tiny")
        let w = dir + "/" + DiffusersFolder.weightsName
        let data = try Data(contentsOf: URL(fileURLWithPath: w))
        try data.dropLast(3).write(to: URL(fileURLWithPath: w))
        let e = try #require(throws: TensorFileError.self) { try inspect(path: dir) }
        #expect(e.kind == .offsetsOutOfBounds && e.file == w)
    }
}

@Suite struct FullSizeLayout {
    /// A full-size SD3.5 Large Turbo checkpoint layout (bf16, 16 GB logical) as a sparse file:
    /// opening and validating it reads only the header, never the weights.
    @Test func sd35LargeTurboSparseCheckpointValidatesFromTheHeader() throws {
        let config = #"{"_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 2432, "in_channels": 16, "joint_attention_dim": 4096, "num_attention_heads": 38, "num_layers": 38, "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 192, "qk_norm": "rms_norm", "sample_size": 128}"#
        guard case .success(let v) = JSONValue.parse(Data(config.utf8)), let o = v.objectValue else { Issue.record(); return }
        let s = ModelStructure(try ModelConfig.parse(o, file: "config.json"))
        let (head, layout) = try SafetensorsWriter.header(for: s.tensors.map { TensorEntry(name: $0.name, dtype: .bf16, shape: $0.shape) },
                                                          metadata: ["format": "pt"])
        let dir = try tempDir()
        try Data(config.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let weights = dir + "/" + DiffusersFolder.weightsName
        try head.write(to: URL(fileURLWithPath: weights))
        let total = head.count + layout.last!.dataOffsets.upperBound
        let h = try #require(FileHandle(forWritingAtPath: weights))
        try h.truncate(atOffset: UInt64(total))
        try h.close()
        #expect(total > 16_000_000_000)

        let clock = ContinuousClock()
        let start = clock.now
        let c = try ModelCheckpoint(path: dir)
        let elapsed = clock.now - start
        #expect(c.folder.tensors.count == s.tensors.count)
        #expect(try s.parameterCount(after: c.removal) == 8_056_627_520)
        #expect(elapsed < .seconds(15), "open + validate took \(elapsed)")   // header-only guard (reading 16 GB would take minutes), not a speed goal
        print("SD3.5 Large Turbo layout (\(s.tensors.count) tensors, header \(head.count) B): open + validate in \(elapsed)")
        try? FileManager.default.removeItem(atPath: dir)
    }
}

@Suite struct InspectFiles {
    @Test func bareSafetensorsFile() throws {
        let r = try inspect(path: fixtures + "/compat/python_written.safetensors")
        #expect(r.architecture == "safetensors" && r.blocks.isEmpty && r.tensorCount == 13)
        #expect(r.config["format"] == .string("pt"))
        #expect(Set(r.nonFiniteTensors) == ["x_nan", "x_inf16"])
        #expect(r.renderText().hasPrefix(fixtures + "/compat/python_written.safetensors: safetensors, 13 tensors"))
    }

    @Test func weightsFileInsideAFolderIsInspectedAsTheModel() throws {
        let r = try inspect(path: fixtures + "/sd3_tiny/" + DiffusersFolder.weightsName)
        #expect(r.architecture == "SD3Transformer2DModel" && r.blocks.count == 2)
    }

    @Test func hostileBareFileIsRefused() throws {
        let path = try tempDir() + "/h.safetensors"
        var bytes = [UInt8](repeating: 0, count: 8)
        bytes[5] = 1  // header length 2^40
        try Data(bytes + Array("{}".utf8)).write(to: URL(fileURLWithPath: path))
        let e = try #require(throws: TensorFileError.self) { try inspect(path: path) }
        #expect(e.kind == .headerLengthTooLarge && e.file == path)
        #expect(throws: TensorFileError.self) { try inspect(path: "/nonexistent/file.safetensors") }
    }
}
