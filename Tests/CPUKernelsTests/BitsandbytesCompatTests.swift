// Bit compatibility with bitsandbytes: a weight quantised by bitsandbytes (Tests/Fixtures/kernels, made by
// generate.py there) must give the same packed bytes and absmax with hp_quantize_4bit, dequantise to exactly
// bitsandbytes' values, and multiply like its dequantised weight.
import CPUKernels
import Foundation
import Testing

/// The fixture file, found next to this source file (no bundle resources needed).
private func fixture() throws -> [String: Any] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/kernels/bnb_4bit.json")
    let data = try Data(contentsOf: url)
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

private func floats(_ any: Any?) throws -> [Float] {
    try #require(any as? [NSNumber]).map { Float($0.doubleValue) }
}

extension CPUKernelSuites {
@Suite struct BitsandbytesCompatTests {
    @Test(arguments: ["nf4", "fp4"]) func matchesBitsandbytes(_ kind: String) throws {
        let fx = try fixture()
        let n = try #require(fx["n"] as? Int), k = try #require(fx["k"] as? Int), block = try #require(fx["block"] as? Int)
        let w = try floats(fx["weight"])
        let q = try #require(fx[kind] as? [String: Any])
        let packed = try #require(q["packed"] as? [NSNumber]).map { UInt8($0.intValue) }
        let absmax = try floats(q["absmax"]), bnbCode = try floats(q["code"]), deq = try floats(q["dequantized"])
        let table = hp_code_table(kind == "nf4" ? HP_CODE_NF4 : HP_CODE_FP4)!
        // Code tables: exactly bitsandbytes'.
        #expect((0..<16).map { table[$0] } == bnbCode)
        // Quantising gives the same bytes and absmax.
        let ours = Q4(w, n: n, k: k, block: block, code: table)
        #expect(ours.data == packed)
        #expect(ours.scale == absmax)
        // Dequantising bitsandbytes' data gives exactly bitsandbytes' values (compared as values: the JSON
        // fixture does not keep the sign of -0).
        var bnbQ = ours
        bnbQ.data = packed
        bnbQ.scale = absmax
        var out = [Float](repeating: .nan, count: n * k)
        bnbQ.with { #expect(hp_dequantize_4bit_rows($0, 0, n, &out) == 0) }
        #expect(out == deq)
        // W4A16 on bitsandbytes' data equals an f32 GEMM with its dequantised weight (X · Wᵀ).
        var rng = Rand(41)
        for m in [1, 3, 20] {
            let x = rng.floats(m * k)
            var y = [Float](repeating: 0, count: m * n), want = y
            bnbQ.with { wp in #expect(hp_gemm_w4a16(m, x, HP_F32, k, wp, nil, HP_ACT_NONE, &y, HP_F32, n) == 0) }
            #expect(hp_gemm_f32_ref(0, 1, m, n, k, 1, x, k, deq, k, 0, &want, n, nil, HP_ACT_NONE) == 0)
            #expect(worstRatio(y, want, atol: 1e-4, rtol: 1e-5) <= 1, "M=\(m)")
        }
    }
}
}
