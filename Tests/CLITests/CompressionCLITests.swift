// `hprune quantise` and `hprune export` through the real binary: NF4/FP4 output byte for byte with
// bitsandbytes (Tests/Fixtures/compression), diffusers layout and config, export of a run's models.
import ArtifactStore
import TensorFiles
import Foundation
import ModelStore
import Testing
import TestSupport

private let fixtureDir = repositoryRoot().appendingPathComponent("Tests/Fixtures").path

/// Every tensor of `expected` is in `folder` with the same dtype, shape and bytes.
private func expectSameTensors(_ folder: DiffusersFolder, _ expected: SafetensorsFile, _ label: String) throws {
    for name in expected.names {
        guard folder.contains(name) else { Issue.record("\(label): missing \(name)"); continue }
        let a = try folder.info(name), b = try expected.info(name)
        #expect(a.dtype == b.dtype && a.shape == b.shape, "\(label) \(name)")
        #expect(try folder.withBytes(name) { Data($0) } == (try expected.bytes(name)), "\(label) \(name): bytes differ")
    }
}

@Test(arguments: [("nf4", 64, false, "bnb_nf4_64"), ("fp4", 64, true, "bnb_fp4_64_dq"),
                  ("nf4", 4096, true, "bnb_nf4_4096_dq"), ("fp4", 128, false, "bnb_fp4_128")])
func quantiseCommandMatchesBitsandbytes(_ format: String, _ block: Int, _ dq: Bool, _ reference: String) throws {
    let dir = TemporaryDirectory()
    let out = dir.path + "/q"
    var args = ["quantise", fixtureDir + "/models/sd3_tiny", "--format", format, "--block-size", String(block), "--out", out, "--json"]
    args.append(dq ? "--double-quant" : "--no-double-quant")
    let r = try CLI.run(args)
    #expect(r.status == 0, "\(r.stderr)")
    let folder = try DiffusersFolder(path: out)
    try expectSameTensors(folder, try SafetensorsFile(path: fixtureDir + "/compression/\(reference).safetensors"), reference)
    // Everything else is copied unchanged.
    let source = try DiffusersFolder(path: fixtureDir + "/models/sd3_tiny")
    for info in source.tensors where !(info.name.hasSuffix(".weight") && info.shape.count == 2) {
        #expect(try folder.withBytes(info.name) { Data($0) } == (try source.withBytes(info.name) { Data($0) }), "\(info.name)")
    }
    let q = try #require(folder.config["quantization_config"]?.objectValue)
    #expect(q["quant_method"] == .string("bitsandbytes") && q["bnb_4bit_quant_type"] == .string(format))
    #expect(q["bnb_4bit_use_double_quant"] == .bool(dq) && q["load_in_4bit"] == .bool(true))
    #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: out + "/config.json")), as: UTF8.self).contains("\"llm_int8_threshold\": 6.0"))
}

@Test func quantiseCommandRejectsBadInput() throws {
    let dir = TemporaryDirectory()
    let q = dir.path + "/q"
    #expect(try CLI.run(["quantise", fixtureDir + "/models/sd3_tiny", "--out", q]).status == 0)
    // nf4 double-quantises by default, as the official code's Linear4bit (compress_statistics=True).
    #expect(try DiffusersFolder(path: q).config["quantization_config"]?.objectValue?["bnb_4bit_use_double_quant"] == .bool(true))
    let int8DQ = try CLI.run(["quantise", fixtureDir + "/models/sd3_tiny", "--format", "int8", "--double-quant", "--out", dir.path + "/i8"])
    #expect(int8DQ.status == 2 && int8DQ.stderr.contains("nf4/fp4 only"), "\(int8DQ.stderr)")
    #expect(try CLI.run(["quantise", fixtureDir + "/models/sd3_tiny", "--format", "int8", "--out", dir.path + "/i8"]).status == 0)
    let twice = try CLI.run(["quantise", q, "--out", dir.path + "/q2"])
    #expect(twice.status == 2 && twice.stderr.contains("already quantised"), "\(twice.stderr)")
    let exists = try CLI.run(["quantise", fixtureDir + "/models/sd3_tiny", "--out", q])
    #expect(exists.status == 1 && exists.stderr.contains("already exists"), "\(exists.stderr)")
    let block = try CLI.run(["quantise", fixtureDir + "/models/sd3_tiny", "--block-size", "100", "--out", dir.path + "/x"])
    #expect(block.status == 2 && block.stderr.contains("--block-size 100"), "\(block.stderr)")
    let keep = try CLI.run(["quantise", fixtureDir + "/models/sd3_tiny", "--keep", "nope", "--out", dir.path + "/x"])
    #expect(keep.status == 2 && keep.stderr.contains("'nope' matches no tensor"), "\(keep.stderr)")
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/x"))
}

@Test func exportWritesARunsModels() throws {
    let dir = TemporaryDirectory()
    let teacher = dir.path + "/teacher"
    try FileManager.default.createDirectory(atPath: teacher, withIntermediateDirectories: true)
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        try FileManager.default.copyItem(atPath: fixtureDir + "/models/sd3_tiny/\(f)", toPath: teacher + "/" + f)
    }
    let recipe = dir.write("r.yaml", """
        recipe: 1
        name: export-test
        models: { teacher: { path: teacher } }
        stages:
          prune: { kind: prune, model: teacher, remove: "blocks.0.ff" }
          quantise: { kind: quantise, model: teacher, format: nf4, double_quant: false }   # compared with bnb_nf4_64
        """)
    let run = try CLI.run(["run", recipe])
    #expect(run.status == 0, "\(run.stderr)")
    let store = ["--store", dir.path + "/.hprune"]

    let q = dir.path + "/out-q"
    let e1 = try CLI.run(["export", "latest:quantise", "--format", "diffusers", "--out", q] + store)
    #expect(e1.status == 0, "\(e1.stderr)")
    try expectSameTensors(try DiffusersFolder(path: q), try SafetensorsFile(path: fixtureDir + "/compression/bnb_nf4_64.safetensors"), "export")

    let p = dir.path + "/out-p"
    let refused = try CLI.run(["export", "latest:prune", "--out", p] + store)
    #expect(refused.status == 2 && refused.stderr.contains("blocks.0.ff") && refused.stderr.contains("--layout loader"), "\(refused.stderr)")
    #expect(try CLI.run(["export", "latest:prune", "--layout", "loader", "--out", p] + store).status == 0)
    let pruned = try DiffusersFolder(path: p)
    #expect(pruned.config["hprune_removed"] == .array([.string("blocks.0.ff")]))
    #expect(!pruned.contains("transformer_blocks.0.ff.net.0.proj.weight") && pruned.contains("transformer_blocks.1.ff.net.0.proj.weight"))

    let s = dir.path + "/out-s"
    #expect(try CLI.run(["export", "latest:prune", "--format", "safetensors", "--out", s] + store).status == 0)
    let single = try SafetensorsFile(path: s + "/model.safetensors")
    #expect(single.metadata["hprune_structure"]?.contains("blocks.0.ff") == true && single.names.count == pruned.tensors.count)

    let bad = try CLI.run(["export", "latest:nosuch", "--out", dir.path + "/x"] + store)
    #expect(bad.status == 2 && bad.stderr.contains("has no stage 'nosuch'"), "\(bad.stderr)")
    let again = try CLI.run(["export", "latest:prune", "--layout", "loader", "--out", p] + store)
    #expect(again.status == 1 && again.stderr.contains("already exists"), "\(again.stderr)")
}

/// The official code's SD3.5 Large Turbo cut, on the synthetic layout model: blocks 25–28 and 31–34 removed, PWP
/// freezing blocks 0–24 and the embedders, NF4 with double quantisation.
@Test func officialRecipeReproducesTheOfficialCut() throws {
    let dir = TemporaryDirectory()
    let layouts = fixtureDir + "/layouts/sd35_large_turbo"
    let env = ["SD35_LARGE_TURBO": layouts, "SD35_CALIBRATION": layouts + "/calibration.safetensors"]
    let recipe = repositoryRoot().appendingPathComponent("recipes/sd35-large-turbo-official.yaml").path
    let r = try CLI.run(["run", recipe, "--store", dir.path + "/store", "--set", "vars.distill_steps=1", "--set", "vars.batch=1",
                         "--set", "stages.evaluate.metrics=[memory]", "--json"], environment: env)
    #expect(r.status == 0, "\(r.stderr)")
    let prune = try CLI.run(["show", "latest", "--store", dir.path + "/store", "--log", "prune"], environment: env)
    #expect(prune.stdout.contains("removed: blocks.25, blocks.26, blocks.27, blocks.28, blocks.31, blocks.32, blocks.33, blocks.34\n"), "\(prune.stdout)")
    let freeze = try CLI.run(["show", "latest", "--store", dir.path + "/store", "--log", "freeze"], environment: env)
    #expect(freeze.stdout.contains("frozen blocks: " + (0..<25).map(String.init).joined(separator: ",") + "\n"), "\(freeze.stdout)")
    #expect(freeze.stdout.contains("frozen modules: pos_embed., time_text_embed., context_embedder.\n"), "\(freeze.stdout)")
}
