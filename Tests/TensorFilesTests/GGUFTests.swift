// GGML block encodings byte for byte against gguf-py (Tests/Fixtures/export/gguf_quants.safetensors), GGUF files
// written by gguf-py read back by our reader, our writer re-writing them byte-identically, and hostile files.
import TensorFiles
import Foundation
import Testing

private let exportFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/export").path

@Suite("GGUF")
struct GGUFTests {
    @Test("bf16, q8_0, q5_1, q5_0, q4_1, q4_0 blocks byte-identical to gguf.quants.quantize", arguments: ["bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"])
    func quantsMatchGGUFPy(_ name: String) throws {
        let f = try SafetensorsFile(path: exportFixtures + "/gguf_quants.safetensors")
        let x = try f.floats("input")
        let type = try #require(GGMLType(cliName: name))
        let ours = GGMLQuants.quantize(x, as: type)
        let theirs = [UInt8](try f.bytes(name))
        #expect(ours.count == theirs.count)
        let firstDiff = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(ours == theirs, "\(name): first differing byte \(firstDiff.map(String.init) ?? "-") (block \(firstDiff.map { $0 / type.typeSize } ?? -1))")
        // Dequantised values are within half a step of the input (and exact for bf16 of bf16-representable values).
        let back = GGMLQuants.dequantize(ours, as: type, count: x.count)
        for b in 0..<(x.count / 32) {
            let blk = Array(x[(b * 32)..<(b * 32 + 32)]), got = Array(back[(b * 32)..<(b * 32 + 32)])
            let range = (blk.max()! - blk.min()!), amax = blk.map(abs).max()!
            let tol: Float = switch type {
            case .bf16: amax / 128
            case .q8_0: amax / 127 * 0.5 + amax * 1e-3 + 1e-6   // half a step, plus d rounded to f16
            case .q5_0: amax / 16 * 1.01 + 1e-6
            case .q5_1: range / 31 * 0.51 + range * 1e-3 + 1e-6
            case .q4_0: amax / 8 * 1.01 + 1e-6
            default: range / 15 * 0.51 + range * 1e-3 + 1e-6
            }
            let err = zip(blk, got).map { abs($0 - $1) }.max()!
            #expect(err <= tol, "\(name) block \(b): max error \(err) > \(tol)")
        }
    }

    @Test("files written by gguf-py: our reader reads them, and our writer writes the same bytes back",
          arguments: ["gguf_sd3.gguf", "gguf_sd35.gguf", "gguf_flux.gguf", "gguf_flux_q5_1.gguf"])
    func readAndRewrite(_ file: String) throws {
        let path = exportFixtures + "/" + file
        let g = try GGUFFile(path: path)
        guard case .string(let arch) = g.value("general.architecture") else { Issue.record("no architecture"); return }
        #expect(arch == (file.contains("flux") ? "flux" : "sd3"))
        #expect(g.value("general.quantization_version") == .uint32(2))
        #expect(!g.tensors.isEmpty && g.tensors.map(\.name) == g.tensors.map(\.name).sorted())
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-gguf-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try GGUF.write(to: tmp, metadata: g.metadata, tensors: g.tensors) { try g.bytes($0.name) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: tmp)) == (try Data(contentsOf: URL(fileURLWithPath: path))))
        // Every tensor decodes; F32 ones exactly round-trip through quantize.
        for t in g.tensors {
            let v = try g.floats(t.name)
            #expect(v.count == t.elementCount && v.allSatisfy(\.isFinite), "\(t.name)")
            if t.type == .f32 || t.type == .f16 || t.type == .bf16 { #expect(GGMLQuants.quantize(v, as: t.type) == (try g.bytes(t.name)), "\(t.name)") }
        }
    }

    @Test("a failed GGUF write leaves nothing behind")
    func failedWriteLeavesNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-gguf-w-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.gguf").path
        let infos = [GGUFTensorInfo(name: "a", shape: [32], type: .f32), GGUFTensorInfo(name: "b", shape: [64], type: .q8_0)]
        #expect(throws: GGUFError.self) {
            try GGUF.write(to: path, metadata: [("general.architecture", .string("flux"))], tensors: infos) { t in
                if t.name == "b" { return [1, 2, 3] }   // wrong length: refused mid-file
                return [UInt8](repeating: 0, count: t.byteCount)
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test("hostile GGUF files are refused with the offset")
    func hostile() throws {
        let src = try Data(contentsOf: URL(fileURLWithPath: exportFixtures + "/gguf_flux.gguf"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-gguf-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func refused(_ bytes: Data, _ needle: String) throws {
            let p = dir.appendingPathComponent("x.gguf").path
            try bytes.write(to: URL(fileURLWithPath: p))
            do { _ = try GGUFFile(path: p); Issue.record("accepted a file that should fail with '\(needle)'") } catch let e as GGUFError {
                #expect(e.description.contains(needle) && e.description.contains(p), "\(e)")
            }
        }
        try refused(src.prefix(src.count - 100), "runs past the end")
        try refused(src.prefix(40), "truncated")
        var magic = src
        magic[0] = 0x58
        try refused(magic, "bad magic")
        var count = src
        count.replaceSubrange(8..<16, with: [UInt8](repeating: 0xFF, count: 8))
        try refused(count, "implausible counts")
    }
}
