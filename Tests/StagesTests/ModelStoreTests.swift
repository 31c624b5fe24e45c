// The Model artifact on its own: deterministic manifests (a pinned digest), memoised re-import, quantised
// folders imported as quantised, export round trips, and damaged inputs.

import ArtifactStore
import TensorFiles
import Foundation
import ModelStore
import TensorCore
import TestSupport
import Testing

@Suite struct ModelStoreTests {
    func store(_ dir: TemporaryDirectory, _ name: String = ".hprune") throws -> ArtifactStore {
        try ArtifactStore(root: URL(fileURLWithPath: dir.path + "/" + name))
    }

    @Test func importIsDeterministicAndMemoised() throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let url = URL(fileURLWithPath: dir.path + "/" + teacher)
        let a = try store(dir, "a"), b = try store(dir, "b")
        let d1 = try ModelStore.importDiffusers(at: url, store: a)
        let d2 = try ModelStore.importDiffusers(at: url, store: b)
        #expect(d1 == d2)
        // Pinned: a change to the manifest format or the import changes every model digest (and cache key).
        #expect(d1.hex == "b3c5dc0bfb40f57b9b2b876431f7798f692db0cd906a26d5724565a319303f34")
        let m = try ModelStore.manifest(d1, store: a)
        #expect(m.tensors.count == 67 && m.structure.removed.isEmpty && m.quantisation == nil)
        #expect(m.config["num_layers"] == .int(2) && m.config["_class_name"] == .string("SD3Transformer2DModel"))
        // Second import: the source memo and the import memo answer; no file is hashed again.
        let hashed = a.sourceFilesHashed
        #expect(try ModelStore.importDiffusers(at: url, store: a) == d1)
        #expect(a.sourceFilesHashed == hashed)
    }

    @Test func quantisedFolderImportsAsQuantisedAndRoundTrips() throws {
        let dir = TemporaryDirectory()
        let s = try store(dir)
        // The committed bitsandbytes reference + the unquantised rest of sd3_tiny form a quantised diffusers folder.
        let q = dir.path + "/q"
        let model = try DiffusersFolder(path: repositoryRoot().appendingPathComponent("Tests/Fixtures/models/sd3_tiny").path)
        let ref = try SafetensorsFile(path: repositoryRoot().appendingPathComponent("Tests/Fixtures/compression/bnb_fp4_64_dq.safetensors").path)
        var payloads = try ref.names.map { TensorPayload(name: $0, dtype: try ref.info($0).dtype, shape: try ref.info($0).shape, data: try ref.bytes($0)) }
        for info in model.tensors where !ref.names.contains(info.name) {
            payloads.append(TensorPayload(name: info.name, dtype: info.dtype, shape: info.shape, data: try model.withBytes(info.name) { Data($0) }))
        }
        var config = model.config
        config["quantization_config"] = .object(["quant_method": .string("bitsandbytes"), "bnb_4bit_quant_type": .string("fp4"),
                                                 "bnb_4bit_use_double_quant": .bool(true), "load_in_4bit": .bool(true)])
        try DiffusersFolder.write(config: try ModelStore.configJSON(config), tensors: payloads, to: q)
        let d = try ModelStore.importDiffusers(at: URL(fileURLWithPath: q), store: s)
        let m = try ModelStore.manifest(d, store: s)
        #expect(m.isQuantised && m.quantisation?.format == .fp4 && m.quantisation?.doubleQuant == true)
        let w = try #require(m.tensors["proj_out.weight"]?.quantisation)
        #expect(w.format == .fp4 && w.blockSize == 64 && w.doubleQuant && w.originalDType == .f32)
        #expect(w.originalShape == (try model.info("proj_out.weight")).shape)
        #expect(Set(w.companions.keys) == [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__fp4"])
        #expect(m.tensors["proj_out.weight.absmax"] == nil)

        // Export gives back every tensor byte for byte.
        let out = dir.path + "/out"
        try ModelStore.exportDiffusers(m, store: s, to: URL(fileURLWithPath: out), quantizationConfig: config["quantization_config"]?.objectValue)
        let back = try DiffusersFolder(path: out)
        #expect(Set(back.tensors.map(\.name)) == Set(payloads.map(\.name)))
        for p in payloads { #expect(try back.withBytes(p.name) { Data($0) } == p.data, "\(p.name)") }
        // A second export into the same folder is refused; nothing half-written is left beside it.
        #expect(throws: ModelStoreError.self) { try ModelStore.exportDiffusers(m, store: s, to: URL(fileURLWithPath: out)) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }.isEmpty)
    }

    @Test func damagedInputsAreReported() throws {
        let dir = TemporaryDirectory()
        let s = try store(dir)
        let teacher = try copyModel("sd3_tiny", into: dir)
        // A config that contradicts itself: import fails naming the file and the key.
        let cfg = dir.path + "/\(teacher)/config.json"
        let text = try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: "\"num_attention_heads\": 2", with: "\"num_attention_heads\": 3")
        try text.write(toFile: cfg, atomically: true, encoding: .utf8)
        let e = try #require(throws: (any Error).self) { try ModelStore.importDiffusers(at: URL(fileURLWithPath: dir.path + "/" + teacher), store: s) }
        #expect("\(e)".contains("config.json") && "\(e)".contains("caption_projection_dim"), "\(e)")
        #expect(throws: ModelStoreError.self) { try ModelManifest.decode(Data("{\"kind\": \"x\"}".utf8), source: "m") }
    }
}
