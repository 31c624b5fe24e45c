// A pruned model on disk (config.json `hprune_removed`, removed tensors absent, sharded bf16 weights) loads and
// reproduces the removal fixture: removed tensors are never needed.

import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite("Pruned folders")
struct PrunedFolderTests {
    @Test("a folder without the removed tensors, sharded, reproduces the removal fixture", arguments: ["sd35_tiny", "flux_tiny"])
    func prunedFolder(_ name: String) throws {
        let be = CPUBackend()
        let fx = try Fixture(name, backend: be)
        let (list, ref) = try #require(try fx.removals().first)
        let src = try DiffusersFolder(path: fx.dir)
        let full = try loadTransformer(path: fx.dir, backend: be)
        let gone = try full.structure.removedTensorNames(try Removal(parsing: list, in: full.structure))
        #expect(!gone.isEmpty)
        let kept = try src.tensors.filter { !gone.contains($0.name) }.map { t in
            TensorPayload(name: t.name, shape: t.shape, floats: try src.floats(t.name))
        }
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fx.dir + "/config.json"))) as? [String: Any])
        config["hprune_removed"] = list
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-pruned-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DiffusersFolder.write(config: try JSONSerialization.data(withJSONObject: config), tensors: kept, to: dir, maxShardBytes: 20_000)
        #expect(FileManager.default.fileExists(atPath: dir + "/" + DiffusersFolder.indexName))

        let pruned = try loadTransformer(path: dir, backend: be)
        #expect(Set(pruned.removal.strings) == Set(list))
        #expect(relativeError(try be.floats(try pruned.forward(fx.inputs)), ref) <= 1e-4)
    }
}
