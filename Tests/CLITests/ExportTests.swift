// `hprune export` of block-pruned and sub-component-pruned models against diffusers references
// (Tests/Fixtures/export, written by its generate.py): renumbered native folders byte for byte, the SD3
// context_pre_only conversion, nf4 on top, the loader layout, and `hprune forward` on each export.
import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import ModelStore
import Testing
import TestSupport

private let fixtures = repositoryRoot().appendingPathComponent("Tests/Fixtures").path
private let exportFixtures = fixtures + "/export"

/// One case: a teacher fixture and the recipe's `remove` strings for the native and loader exports.
private struct ExportCase: Sendable, CustomStringConvertible {
    var name: String
    var teacher: String
    var native: String
    var loader: String
    var description: String { name }
}

private let cases = [
    ExportCase(name: "sd3", teacher: "sd3_tiny", native: "1", loader: "1,blocks.0.ff,blocks.0.ff_context"),
    ExportCase(name: "sd35", teacher: "sd35_tiny", native: "0,2",
               loader: "0,blocks.1.attn,blocks.1.ff_context,blocks.2.w_norm1,blocks.2.norm1_context"),
    ExportCase(name: "flux", teacher: "flux_tiny", native: "0,2", loader: "blocks.1.norm1,blocks.0.ff,2,blocks.3.proj_mlp_out"),
]

/// Runs a recipe with `native` / `loader` prune stages (and `nf4`, a quantise of `native`) on a copy of the teacher.
private func runPrunes(_ c: ExportCase, in dir: TemporaryDirectory, extra: String = "") throws -> [String] {
    let teacher = dir.path + "/teacher"
    try FileManager.default.createDirectory(atPath: teacher, withIntermediateDirectories: true)
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        try FileManager.default.copyItem(atPath: fixtures + "/models/\(c.teacher)/\(f)", toPath: teacher + "/" + f)
    }
    let recipe = dir.write("r.yaml", """
        recipe: 1
        name: export-\(c.name)
        models: { teacher: { path: teacher } }
        stages:
          native: { kind: prune, model: teacher, remove: "\(c.native)" }
          loader: { kind: prune, model: teacher, remove: "\(c.loader)" }
          nf4: { kind: quantise, model: native, format: nf4, double_quant: false }   # compared with bitsandbytes without nesting
        \(extra)
        """)
    let run = try CLI.run(["run", recipe])
    #expect(run.status == 0, "\(run.stderr)")
    return ["--store", dir.path + "/.hprune"]
}

/// Config as a comparable object, without diffusers' bookkeeping keys.
private func config(_ path: String) throws -> [String: JSONValue] {
    guard case .success(let v) = JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: path + "/config.json"))),
          var o = v.objectValue else { throw CocoaError(.fileReadCorruptFile) }
    for k in ["_diffusers_version", "_name_or_path"] { o.removeValue(forKey: k) }
    return o
}

/// `hprune forward` of `model` on the teacher's inputs against `expected` (max |Δ| ≤ 1e-5 · max |ref|).
private func expectForward(_ model: String, teacher: String, expected: String, _ label: String, dir: TemporaryDirectory) throws {
    let out = dir.path + "/\(label)-out.safetensors"
    let r = try CLI.run(["forward", model, "--inputs", fixtures + "/models/\(teacher)/io.safetensors", "--output", out])
    #expect(r.status == 0, "\(label): \(r.stderr)")
    guard r.status == 0 else { return }
    let ours = try SafetensorsFile(path: out).floats("sample")
    let ref = try SafetensorsFile(path: expected).floats("sample")
    #expect(ours.count == ref.count, "\(label)")
    let m = ref.map(abs).max() ?? 1
    let d = zip(ours, ref).map { abs($0 - $1) }.max() ?? .infinity
    #expect(d <= 1e-5 * m, "\(label): max rel err \(d / m)")
}

@Suite("hprune export: native diffusers and loader layouts")
struct ExportCLITests {
    @Test("block-pruned export is the renumbered diffusers model, byte for byte, and runs as diffusers does", arguments: cases)
    fileprivate func nativeExport(_ c: ExportCase) throws {
        let dir = TemporaryDirectory()
        let store = try runPrunes(c, in: dir)
        let out = dir.path + "/native"
        let e = try CLI.run(["export", "latest:native", "--out", out] + store)
        #expect(e.status == 0, "\(e.stderr)")
        let expected = exportFixtures + "/native_\(c.name)"
        #expect(try config(out) == (try config(expected)), "config.json")
        let ours = try DiffusersFolder(path: out), ref = try SafetensorsFile(path: expected + "/diffusion_pytorch_model.safetensors")
        #expect(Set(ours.tensors.map(\.name)) == Set(ref.names), "tensor names")
        for name in ref.names where ours.contains(name) {
            #expect(try ours.withBytes(name) { Data($0) } == (try ref.bytes(name)), "\(name): bytes differ")
        }
        try expectForward(out, teacher: c.teacher, expected: expected + "/sample.safetensors", "native-\(c.name)", dir: dir)
    }

    @Test("sub-component removals: --format diffusers exits 2 naming them and the loader; --layout loader matches hprune_diffusers.load",
          arguments: cases)
    fileprivate func loaderExport(_ c: ExportCase) throws {
        let dir = TemporaryDirectory()
        let store = try runPrunes(c, in: dir)
        let refused = try CLI.run(["export", "latest:loader", "--out", dir.path + "/x"] + store)
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr.contains("hprune_diffusers.py") && refused.stderr.contains("--layout loader"), "\(refused.stderr)")
        for a in c.loader.split(separator: ",") where a.split(separator: ".").count == 3 {
            #expect(refused.stderr.contains(String(a)), "names \(a): \(refused.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/x"))

        let out = dir.path + "/loader"
        let e = try CLI.run(["export", "latest:loader", "--layout", "loader", "--out", out] + store)
        #expect(e.status == 0, "\(e.stderr)")
        // Plain from_pretrained must refuse it: the weights are not under diffusers' file name.
        #expect(!FileManager.default.fileExists(atPath: out + "/diffusion_pytorch_model.safetensors"))
        #expect(FileManager.default.fileExists(atPath: out + "/hprune_loader.safetensors"))
        let expected = exportFixtures + "/loader_\(c.name)"
        #expect(try config(out) == (try config(expected)), "config.json")
        // Tensors: names, dtype, shape and SHA-256 as the reference folder had them.
        let want = try #require(jsonObject(String(decoding: try Data(contentsOf: URL(fileURLWithPath: expected + "/tensors.json")), as: UTF8.self)))
        let ours = try DiffusersFolder(path: out)
        #expect(Set(ours.tensors.map(\.name)) == Set(want.keys))
        for info in ours.tensors {
            guard let w = want[info.name] as? [String: Any] else { continue }
            #expect(info.shape == (w["shape"] as? [Int]) && info.dtype.rawValue == (w["dtype"] as? String), "\(info.name)")
            #expect(try ours.withBytes(info.name) { Digest.of($0) }.hex == (w["sha256"] as? String), "\(info.name): bytes differ")
        }
        try expectForward(out, teacher: c.teacher, expected: expected + "/sample.safetensors", "loader-\(c.name)", dir: dir)
    }

    @Test("nf4 on top of the renumbered SD3 model: the sliced context_pre_only norm byte-identical to bitsandbytes")
    func nf4Export() throws {
        let dir = TemporaryDirectory()
        let store = try runPrunes(cases[0], in: dir, extra: "  nf4dq: { kind: quantise, model: native, format: nf4, double_quant: true }")
        let out = dir.path + "/nf4"
        let e = try CLI.run(["export", "latest:nf4", "--out", out] + store)
        #expect(e.status == 0, "\(e.stderr)")
        let ours = try DiffusersFolder(path: out)
        let bnb = try SafetensorsFile(path: exportFixtures + "/native_sd3_nf4.safetensors")
        for name in bnb.names {
            guard ours.contains(name) else { Issue.record("missing \(name)"); continue }
            #expect(try ours.withBytes(name) { Data($0) } == (try bnb.bytes(name)), "\(name): bytes differ from bitsandbytes")
        }
        let plain = try SafetensorsFile(path: exportFixtures + "/native_sd3/diffusion_pytorch_model.safetensors")
        for name in plain.names where !bnb.names.contains(name) {
            #expect(try ours.withBytes(name) { Data($0) } == (try plain.bytes(name)), "\(name)")
        }
        #expect(ours.config["quantization_config"]?.objectValue?["bnb_4bit_quant_type"] == .string("nf4"))
        #expect(ours.config["num_layers"] == .int(1))

        // Double quant on D = 16: the 16-row chunk (256 elements) is not a whole nested group; refused, nothing written.
        let dq = try CLI.run(["export", "latest:nf4dq", "--out", dir.path + "/dq"] + store)
        #expect(dq.status == 2 && dq.stderr.contains("norm1_context.linear.weight") && dq.stderr.contains("export before quantising"), "\(dq.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/dq"))
    }

    @Test("GGUF export is byte-identical to gguf-py's GGUFWriter with ComfyUI-GGUF's layout (original keys, fused qkv)",
          arguments: [("sd3", "bf16", "gguf_sd3"), ("sd35", "q8_0", "gguf_sd35"), ("flux", "q4_0", "gguf_flux"), ("flux", "q5_1", "gguf_flux_q5_1")])
    fileprivate func ggufExport(_ name: String, _ quant: String, _ fixture: String) throws {
        let c = try #require(cases.first { $0.name == name })
        let dir = TemporaryDirectory()
        let store = try runPrunes(c, in: dir)
        let out = dir.path + "/out/model.gguf"
        let e = try CLI.run(["export", "latest:native", "--format", "gguf", "--quant", quant, "--out", out] + store)
        #expect(e.status == 0, "\(e.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == (try Data(contentsOf: URL(fileURLWithPath: exportFixtures + "/\(fixture).gguf"))))
        if name == "sd3" {
            let subs = try CLI.run(["export", "latest:loader", "--format", "gguf", "--out", dir.path + "/l.gguf"] + store)
            #expect(subs.status == 2 && subs.stderr.contains("blocks.0.ff"), "\(subs.stderr)")
            let q = try CLI.run(["export", "latest:nf4", "--format", "gguf", "--out", dir.path + "/q.gguf"] + store)
            #expect(q.status == 2 && q.stderr.contains("already quantised"), "\(q.stderr)")
            let again = try CLI.run(["export", "latest:native", "--format", "gguf", "--out", out] + store)
            #expect(again.status == 1 && again.stderr.contains("already exists"), "\(again.stderr)")
            let suffix = try CLI.run(["export", "latest:native", "--format", "gguf", "--out", dir.path + "/x"] + store)
            #expect(suffix.status != 0 && suffix.stderr.contains(".gguf"), "\(suffix.stderr)")
            let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".gguf") || $0.contains(".tmp-") }
            #expect(left.isEmpty, "\(left)")
        }
    }

    @Test("export → import round trips: a diffusers export keeps every digest; a GGUF export every F32 tensor's", arguments: cases)
    fileprivate func importRoundTrip(_ c: ExportCase) throws {
        let dir = TemporaryDirectory()
        let store = try runPrunes(c, in: dir)
        let folder = dir.path + "/native", gguf = dir.path + "/native.gguf"
        #expect(try CLI.run(["export", "latest:native", "--out", folder] + store).status == 0)
        #expect(try CLI.run(["export", "latest:native", "--format", "gguf", "--quant", "q8_0", "--out", gguf] + store).status == 0)
        func imported(_ path: String) throws -> [String: String] {
            let r = try CLI.run(["import", path, "--json"] + store)
            #expect(r.status == 0, "\(r.stderr)")
            return (jsonObject(r.stdout)?["tensors"] as? [String: String]) ?? [:]
        }
        let exported = try DiffusersFolder(path: folder)
        var digests: [String: String] = [:]
        for info in exported.tensors { digests[info.name] = try exported.withBytes(info.name) { Digest.of($0) }.hex }
        #expect(try imported(folder) == digests, "diffusers folder round trip")

        let g = try GGUFFile(path: gguf)
        let types = Dictionary(uniqueKeysWithValues: g.tensors.map { ($0.name, $0.type) })
        let config = try ModelConfig.parse(exported.config, file: folder)
        let layout = try ModelStore.originalLayout(config, names: Set(digests.keys))
        let fromGGUF = try imported(gguf)
        #expect(Set(fromGGUF.keys) == Set(digests.keys))
        var unchanged = 0
        for o in layout where types[o.name] == .f32 {
            for p in o.parts { #expect(fromGGUF[p] == digests[p], "\(p) (\(o.name), F32)"); unchanged += 1 }
        }
        #expect(unchanged > 0 && unchanged < digests.count)
        let again = try CLI.run(["import", dir.path + "/nope.gguf"] + store)
        #expect(again.status == 2 && again.stderr.contains("nope.gguf"), "\(again.stderr)")
    }

    @Test("lora-remap: renumbered keys, removed modules dropped and listed, context_pre_only rows cut; as the fixture script", arguments: ["native", "loader"])
    func loraRemap(_ layout: String) throws {
        let dir = TemporaryDirectory()
        let store = try runPrunes(cases[1], in: dir)
        let model = dir.path + "/model"
        #expect(try CLI.run(["export", "latest:\(layout)", "--layout", layout, "--out", model] + store).status == 0)
        let out = dir.path + "/lora"
        let r = try CLI.run(["lora-remap", exportFixtures + "/lora_sd35.safetensors", "--model", model, "--out", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try SafetensorsFile(path: out + "/lora_sd35.safetensors")
        let want = try SafetensorsFile(path: exportFixtures + "/lora_sd35_\(layout)/lora_sd35.safetensors")
        #expect(Set(ours.names) == Set(want.names))
        for n in want.names where ours.contains(n) { #expect(try ours.bytes(n) == (try want.bytes(n)), "\(n)") }
        let dropped = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exportFixtures + "/lora_sd35_\(layout)/dropped.json"))) as? [String])
        let report = try #require(jsonObject(r.stdout))
        #expect(((report["dropped"] as? [[String: String]]) ?? []).compactMap { $0["module"] } == dropped)
        #expect((report["sliced"] as? [String]) == (layout == "native" ? ["transformer_blocks.1.norm1_context.linear"] : []))

        let bad = dir.write("kohya.safetensors", "")
        try SafetensorsWriter.write([TensorPayload(name: "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight", shape: [2, 32], floats: .init(repeating: 0, count: 64))], to: bad)
        let k = try CLI.run(["lora-remap", bad, "--model", model, "--out", dir.path + "/k"])
        #expect(k.status == 2 && k.stderr.contains("lora_unet_joint_blocks_0") && k.stderr.contains("PEFT"), "\(k.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/k"))
    }

    @Test("import of a GGUF without hprune's config key: exit 2 asking for --config; with --config the same model")
    func importForeignGGUF() throws {
        let dir = TemporaryDirectory()
        let g = try GGUFFile(path: exportFixtures + "/gguf_flux.gguf")
        let foreign = dir.path + "/foreign.gguf"
        try GGUF.write(to: foreign, metadata: g.metadata.filter { $0.0 != ModelStore.ggufConfigKey }, tensors: g.tensors) { try g.bytes($0.name) }
        let store = ["--store", dir.path + "/.hprune"]
        let refused = try CLI.run(["import", foreign, "--json"] + store)
        #expect(refused.status == 2 && refused.stderr.contains("--config") && refused.stderr.contains("foreign.gguf"), "\(refused.stderr)")
        let a = try CLI.run(["import", foreign, "--config", exportFixtures + "/native_flux/config.json", "--json"] + store)
        let b = try CLI.run(["import", exportFixtures + "/gguf_flux.gguf", "--json"] + store)
        #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        let ta = jsonObject(a.stdout)?["tensors"] as? [String: String], tb = jsonObject(b.stdout)?["tensors"] as? [String: String]
        #expect(ta != nil && ta == tb)
    }

    @Test("export output folder: non-empty folder, a path under a file; nothing half-written")
    func hostileOutput() throws {
        let dir = TemporaryDirectory()
        let store = try runPrunes(cases[0], in: dir)
        let full = dir.path + "/full"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        _ = dir.write("full/keep.txt", "mine")
        let a = try CLI.run(["export", "latest:native", "--out", full] + store)
        #expect(a.status == 1 && a.stderr.contains("already exists"), "\(a.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: full) == ["keep.txt"])
        _ = dir.write("afile", "x")
        let b = try CLI.run(["export", "latest:native", "--out", dir.path + "/afile/sub/out"] + store)
        #expect(b.status == 1 && b.stderr.contains("is a file, not a folder") && !b.stderr.contains("NSCocoaErrorDomain"), "\(b.stderr)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}
