// `hprune forward` and `hprune inspect` end to end: the real binary on a committed diffusers fixture.
import TensorFiles
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

@Suite("hprune bench model (arguments)")
struct BenchModelCLITests {
    @Test("invalid iteration count is a usage error (exit 2)")
    func badIterations() throws {
        let r = try CLI.run(["bench", "model", "--iterations", "0"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--iterations"), "\(r.stderr)")
    }
}

@Suite("hprune bench model --preset / --weights, hprune backends kernel report")
struct BenchPresetAndBackendsCLITests {
    let models = repositoryRoot().appendingPathComponent("Tests/Fixtures/models").path

    @Test("bench model --weights DIR loads the folder and times it (sd3_tiny, f32, one iteration)")
    func weightsFolder() throws {
        let r = try CLI.run(["bench", "model", "--weights", models + "/sd3_tiny", "--preset", "sd35-large", "--dtype", "f32",
                             "--iterations", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(obj?["weights"] as? String == models + "/sd3_tiny")
        #expect(obj?["preset"] as? String == "sd35-large")
        #expect(obj?["latent"] as? Int == 8)             // capped at the folder's sample_size
        #expect(obj?["text_tokens"] as? Int == 77)
        #expect((obj?["hprune_f32_ms"] as? Double ?? 0) > 0 && (obj?["hprune_load_f32_ms"] as? Double ?? 0) > 0)
        #expect((obj?["config"] as? [String: Any])?["num_layers"] as? Int == 2)   // the folder's config, not the preset's
    }

    @Test("unknown preset and a folder without config.json are usage errors (exit 2) naming the option")
    func badArguments() throws {
        let p = try CLI.run(["bench", "model", "--preset", "sd4"])
        #expect(p.status == 2 && p.stderr.contains("--preset"), "\(p.stderr)")
        let w = try CLI.run(["bench", "model", "--weights", "/nonexistent/dir"])
        #expect(w.status == 2 && w.stderr.contains("/nonexistent/dir"), "\(w.stderr)")
    }

    @Test("backends prints the kernel family per op and marks AMX as unmeasured or unavailable")
    func backendsKernelReport() throws {
        let r = try CLI.run(["backends"])
        #expect(r.status == 0)
        for op in ["gemm_f32", "gemm_bf16", "attention_bf16", "w4a16_m>16", "amx_emu"] { #expect(r.stdout.contains(op), "\(op): \(r.stdout)") }
        #expect(r.stdout.contains("unmeasured") || r.stdout.contains("amx          unavailable"), "\(r.stdout)")
        let forced = try CLI.run(["backends"], environment: ["HPRUNE_ISA": "amx_emu"])
        #expect(forced.stdout.contains("cpu kernels: family amx_emu"), "\(forced.stdout)")
        let bad = try CLI.run(["backends"], environment: ["HPRUNE_ISA": "avx9000"])
        #expect(bad.status == 0 && bad.stderr.contains("HPRUNE_ISA=avx9000"), "\(bad.stderr)")
    }
}
