// `hprune forward` and `hprune inspect` end to end: the real binary on a committed diffusers fixture.
import Checkpoint
import Foundation
import Testing
import TestSupport

@Suite("hprune forward / inspect")
struct ForwardCLITests {
    let models = repositoryRoot().appendingPathComponent("Tests/Fixtures/models").path

    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-fwd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test("forward reproduces the diffusers output of sd35_tiny within 1e-4 relative")
    func forwardParity() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = models + "/sd35_tiny", out = dir + "/out.safetensors"
        let r = try CLI.run(["forward", model, "--inputs", model + "/io.safetensors", "--output", out])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try SafetensorsFile(path: out).floats("sample")
        let ref = try SafetensorsFile(path: model + "/io.safetensors").floats("sample")
        #expect(ours.count == ref.count)
        let m = ref.map(abs).max() ?? 1
        let d = zip(ours, ref).map { abs($0 - $1) }.max() ?? .infinity
        #expect(d <= 1e-4 * m)
    }

    @Test("forward: a bad inputs file exits 2 naming the file and tensor")
    func forwardBadInput() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bad = dir + "/in.safetensors"
        try SafetensorsWriter.write([TensorPayload(name: "hidden_states", shape: [1, 4, 8, 8], floats: .init(repeating: 0, count: 256))], to: bad)
        let r = try CLI.run(["forward", models + "/sd3_tiny", "--inputs", bad, "--output", dir + "/o.safetensors"])
        #expect(r.status == 2)
        #expect(r.stderr.contains(bad) && r.stderr.contains("encoder_hidden_states"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/o.safetensors"))
    }

    @Test("inspect: text and JSON for a fixture; a hostile file is refused")
    func inspect() throws {
        let r = try CLI.run(["inspect", models + "/flux_tiny", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try #require(jsonObject(r.stdout))
        #expect(obj["architecture"] as? String == "FluxTransformer2DModel")
        #expect(obj["parameters"] as? Int == 38256)
        let text = try CLI.run(["inspect", models + "/sd3_tiny"])
        #expect(text.status == 0 && text.stdout.contains("SD3Transformer2DModel"))

        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var bytes = Data(count: 8)
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(1) << 40, as: UInt64.self) }   // header claims 1 TB
        bytes.append(Data("{}".utf8))
        try bytes.write(to: URL(fileURLWithPath: dir + "/evil.safetensors"))
        let bad = try CLI.run(["inspect", dir + "/evil.safetensors"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("evil.safetensors"), "\(bad.stderr)")
    }
}
