// Holds the bitsandbytes key layout (names, dtypes, shapes, bytes, packed quant_state JSON) to what
// bitsandbytes' QuantState.as_dict(packed=True) wrote for the fixtures, and the reader to round trips and errors.
import Testing
import TensorCore

struct SerializationTests {
    static let fx = QuantFixtures.shared

    @Test("bitsandbytesTensors writes exactly bitsandbytes' keys, dtypes, shapes and bytes")
    func keysMatch() throws {
        for c in Self.fx.cases {
            for r in c["results"] as! [[String: Any]] {
                let q = try Quantize4BitTests.quantise(c, r)
                let name = "transformer_blocks.0.attn.to_q.weight"
                let t = q.bitsandbytesTensors(weightName: name)
                let keys = r["keys"] as! [String: [String: Any]]
                #expect(Set(t.keys) == Set([name] + keys.keys.map { name + "." + $0 }))
                #expect(q.bitsandbytesKeySuffixes.map { name + $0 }.sorted() == t.keys.sorted())
                #expect(t[name]?.dtype == .uint8 && t[name]?.shape == r["packed_shape"] as? [Int])
                #expect(t[name]?.bytes == Self.fx.bytes(r["packed"]))
                for (k, info) in keys {
                    let mine = try #require(t[name + "." + k])
                    let dtype: SerializedDType = (info["dtype"] as! String) == "uint8" ? .uint8 : .float32
                    #expect(mine.dtype == dtype, "\(k) dtype")
                    #expect(mine.shape == info["shape"] as! [Int], "\(k) shape")
                    #expect(mine.bytes.count == mine.count * dtype.size)
                }
                #expect(t[name + ".absmax"]?.bytes == Self.fx.bytes(r["absmax"]))
                #expect(t[name + ".quant_map"]?.bytes == Self.fx.bytes(r["quant_map"]))
                let stateKey = name + ".quant_state.bitsandbytes__" + (r["quant_type"] as! String)
                #expect(t[stateKey]?.bytes == Self.fx.bytes(r["quant_state"]))
                if r["nested"] as! Bool {
                    #expect(t[name + ".nested_absmax"]?.bytes == Self.fx.bytes(r["nested_absmax"]))
                    #expect(t[name + ".nested_quant_map"]?.bytes == Self.fx.bytes(r["nested_quant_map"]))
                }
                // And back.
                let back = try Quantized4Bit(bitsandbytesTensors: t, weightName: name)
                #expect(back.packed == q.packed && back.shape == q.shape && back.blockSize == q.blockSize)
                #expect(back.type == q.type && back.sourceDType == q.sourceDType)
                #expect(bits(back.blockAbsmax().map { $0.isNaN ? .nan : $0 })
                        == bits(q.blockAbsmax().map { $0.isNaN ? .nan : $0 }))
            }
        }
    }

    @Test("reading a bitsandbytes weight: missing or malformed tensors are clear errors")
    func readerErrors() throws {
        let q = try quantize4bit((0..<256).map { Float($0) / 100 - 1 }, shape: [4, 64], format: .nf4, doubleQuant: true)
        let name = "x.weight"
        let good = q.bitsandbytesTensors(weightName: name)

        var t = good
        t[name + ".nested_absmax"] = nil
        #expect(throws: QuantError.missingKey(name + ".nested_absmax")) {
            try Quantized4Bit(bitsandbytesTensors: t, weightName: name)
        }
        t = good
        t[name + ".quant_state.bitsandbytes__nf4"] = SerializedTensor(uint8: Array("{not json".utf8))
        #expect(throws: QuantError.self) { try Quantized4Bit(bitsandbytesTensors: t, weightName: name) }
        t = good
        t[name] = SerializedTensor(uint8: [1, 2, 3], shape: [3, 1])
        do {
            _ = try Quantized4Bit(bitsandbytesTensors: t, weightName: name)
            Issue.record("a short packed tensor was accepted")
        } catch let e as QuantError {
            #expect(e.description.contains("x.weight") && e.description.contains("128 elements"))
        }
        #expect(throws: QuantError.missingKey("y.weight.quant_state.bitsandbytes__nf4")) {
            try Quantized4Bit(bitsandbytesTensors: good, weightName: "y.weight")
        }
    }

    @Test("pythonFloatRepr prints what json.dumps prints", arguments: [
        (1e-05, "1e-05"), (0.0001, "0.0001"), (1e+16, "1e+16"), (1234567890123456.0, "1234567890123456.0"),
        (0.1, "0.1"), (1.5, "1.5"), (100.0, "100.0"), (-2.5e-10, "-2.5e-10"),
        (1.7728103399276733, "1.7728103399276733"), (Double.leastNonzeroMagnitude, "5e-324"),
        (1.2345678901234567e+300, "1.2345678901234567e+300"), (0.012299999594688416, "0.012299999594688416"),
        (3.3000000598804036e-07, "3.3000000598804036e-07"), (-9.999999350456404e-39, "-9.999999350456404e-39"),
        (0.0, "0.0"), (-0.0, "-0.0"), (123456.789, "123456.789"), (1.152921504606847e+18, "1.152921504606847e+18"),
        (1000000000000000.0, "1000000000000000.0"), (0.00012, "0.00012"), (Double.nan, "NaN"),
        (-Double.infinity, "-Infinity"),
    ])
    func pythonRepr(_ v: Double, _ expected: String) {
        #expect(pythonFloatRepr(v) == expected)
    }
}
