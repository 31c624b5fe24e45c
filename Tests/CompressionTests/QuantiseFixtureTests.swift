// `LinearQuantiser` against bitsandbytes: every Linear weight of the sd3_tiny fixture, four configurations
// (nf4/64, fp4/64 + double quant, nf4/4096 + double quant = partial blocks, fp4/128), byte for byte with what
// bitsandbytes 0.50 saved (Tests/Fixtures/compression/generate.py).

import TensorFiles
import Compression
import Foundation
import TensorCore
import Testing

@Suite struct QuantiseFixtureTests {
    static let configs: [(String, String, Int, Bool)] = [
        ("bnb_nf4_64.safetensors", "nf4", 64, false), ("bnb_fp4_64_dq.safetensors", "fp4", 64, true),
        ("bnb_nf4_4096_dq.safetensors", "nf4", 4096, true), ("bnb_fp4_128.safetensors", "fp4", 128, false),
    ]

    @Test(arguments: 0..<4) func matchesBitsandbytesByteForByte(_ i: Int) throws {
        let (file, type, block, dq) = Self.configs[i]
        let model = try DiffusersFolder(path: fixturesRoot + "/models/sd3_tiny")
        let expected = try SafetensorsFile(path: fixturesRoot + "/compression/" + file)
        let options = QuantiseOptions(spec: try #require(QuantSpec(name: type, blockSize: block)), doubleQuant: dq)
        var produced: [String: EncodedTensor] = [:]
        var linear = 0
        for info in model.tensors where LinearQuantiser.shouldQuantise(name: info.name, shape: info.shape, options: options) {
            linear += 1
            let out = try LinearQuantiser.quantise(name: info.name, weights: try model.floats(info.name), shape: info.shape,
                                                   sourceDType: info.dtype, options: options)
            produced.merge(out) { a, _ in a }
        }
        #expect(linear == 32)
        #expect(Set(produced.keys) == Set(expected.names), "\(file): key sets differ")
        for name in expected.names {
            guard let ours = produced[name] else { continue }
            let info = try expected.info(name)
            #expect(ours.dtype == info.dtype && ours.shape == info.shape, "\(file) \(name): \(ours.dtype) \(ours.shape) vs \(info.dtype) \(info.shape)")
            #expect(ours.data == (try expected.bytes(name)), "\(file) \(name): bytes differ")
        }
    }

    @Test func keepPatternsAndSelection() {
        let o = QuantiseOptions(spec: .nf4(blockSize: 64), keep: ["proj_out", "transformer_blocks.1.*", "*.ff.net.2"])
        #expect(!LinearQuantiser.shouldQuantise(name: "proj_out.weight", shape: [16, 16], options: o))
        #expect(!LinearQuantiser.shouldQuantise(name: "transformer_blocks.1.attn.to_q.weight", shape: [16, 16], options: o))
        #expect(!LinearQuantiser.shouldQuantise(name: "transformer_blocks.0.ff.net.2.weight", shape: [16, 64], options: o))
        #expect(LinearQuantiser.shouldQuantise(name: "transformer_blocks.0.attn.to_q.weight", shape: [16, 16], options: o))
        #expect(!LinearQuantiser.shouldQuantise(name: "transformer_blocks.0.attn.to_q.bias", shape: [16], options: o))
        #expect(!LinearQuantiser.shouldQuantise(name: "pos_embed.proj.weight", shape: [16, 4, 2, 2], options: o))
        #expect(LinearQuantiser.unmatchedKeepPatterns(["proj_out", "nothing_here", "x.*"], names: ["proj_out.weight"]) == ["nothing_here", "x.*"])
    }

    @Test func int4AndInt8Layouts() throws {
        let w: [Float] = (0..<96).map { Float($0 % 13) - 6 }
        let a = try LinearQuantiser.quantise(name: "l.weight", weights: w, shape: [6, 16], sourceDType: .f32,
                                             options: QuantiseOptions(spec: .int4(.asymmetric, blockSize: 32)))
        #expect(Set(a.keys) == ["l.weight", "l.weight.scales", "l.weight.zeros", "l.weight.quant_state.hprune__int4"])
        #expect(a["l.weight"]?.data.count == 48 && a["l.weight.scales"]?.shape == [3])
        let b = try LinearQuantiser.quantise(name: "l.weight", weights: w, shape: [6, 16], sourceDType: .bf16,
                                             options: QuantiseOptions(spec: .int8))
        #expect(b["l.weight"]?.dtype == .i8 && b["l.weight"]?.shape == [6, 16] && b["l.weight.SCB"]?.shape == [6])
        #expect(LinearQuantiser.diffusersQuantizationConfig(QuantiseOptions(spec: .int8)) == nil)
        #expect(LinearQuantiser.diffusersQuantizationConfig(QuantiseOptions(spec: .fp4(blockSize: 64), doubleQuant: true))?["bnb_4bit_use_double_quant"] == .bool(true))
    }
}
