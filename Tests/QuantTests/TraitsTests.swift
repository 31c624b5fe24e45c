// The per-format traits (QuantTraits.swift): every stored format's tensors read back to the values its quantiser
// meant, the W4A16 preparation decodes to the same weight, layouts agree with the byte counts, and damaged inputs
// fail naming the tensor.
import Foundation
import TensorCore
import Testing

private let specs: [QuantSpec] = [.nf4(blockSize: 64), .fp4(blockSize: 32), .int4(.symmetric, blockSize: 64),
                                  .int4(.asymmetric, blockSize: 128), .int8]

/// A weight quantised to `spec` and read back as stored tensors, as a manifest would hold them.
private func stored(_ spec: QuantSpec, doubleQuant: Bool = false) throws -> (StoredQuantWeight, QuantizedWeight) {
    let shape = [24, 128]
    let w = lcgWeights(count: 24 * 128, seed: 5)
    let q = try quantizeWeight(w, shape: shape, format: spec, doubleQuant: doubleQuant)
    let tensors = q.storedTensors(name: "blocks.0.ff.weight", shape: shape, sourceDType: .float32)
    return (try StoredQuantWeight(name: "blocks.0.ff.weight", format: spec.format, blockSize: spec.blockSize, shape: shape,
                                  tensors: tensors), q)
}

/// `codebook[q]·scale (+ zero)` for every element: what the W4A16 kernel computes from the prepared parts.
private func kernelDecode(_ p: Prepared4BitWeight, count: Int) -> [Float] {
    let b = p.dtype.blockSize!
    return (0..<count).map { e in
        let byte = PackedNibbles(byte: p.packed[e / 2])
        let code = Int(e % 2 == 0 ? byte.high : byte.low)
        return p.codebook[code] * p.scale[e / b] + (p.zero?[e / b] ?? 0)
    }
}

@Suite struct QuantTraitsTests {
    @Test("stored tensors decode to the quantiser's own dequantisation, bit for bit", arguments: specs)
    func storedRoundTrip(_ spec: QuantSpec) throws {
        for dq in spec.format.bitsandbytesType != nil ? [false, true] : [false] {
            let (w, q) = try stored(spec, doubleQuant: dq)
            #expect(try w.dequantised() == q.dequantized(), "\(spec) double quant \(dq)")
            #expect(Set(w.format.traits.companions).isSubset(of: Set(w.companions.keys)), "\(spec): \(w.companions.keys.sorted())")
        }
    }

    @Test("the W4A16 parts decode to the reference values (int4-asym within 2 ulp: q·s − z·s)", arguments: specs)
    func preparedMatchesReference(_ spec: QuantSpec) throws {
        let (w, _) = try stored(spec)
        let traits = spec.format.traits
        guard traits.runsPacked else {
            #expect(spec.format == .int8)
            #expect(throws: QuantError.self) { try w.prepared4Bit() }
            return
        }
        let p = try w.prepared4Bit()
        #expect(p.codebook == traits.codebook)
        #expect(p.dtype.blockSize == spec.blockSize)
        let ref = try w.dequantised(), got = kernelDecode(p, count: w.count), b = spec.blockSize!
        for e in 0..<w.count {
            if spec.format == .int4Asym {
                // q·s and z·s each round once; both are at most 15·s.
                #expect(abs(got[e] - ref[e]) <= 2 * (15 * p.scale[e / b]).ulp, "element \(e): \(got[e]) vs \(ref[e])")
            } else {
                #expect(got[e] == ref[e], "element \(e)")
            }
        }
    }

    @Test("bytes per block agree with the layouts", arguments: QuantFormat.allCases)
    func bytesPerBlock(_ f: QuantFormat) {
        let t = f.traits
        #expect(t.format == f)
        switch f {
        case .nf4, .fp4, .int4:
            #expect(t.bytesPerBlock(64) * 10 == FourBitLayout(count: 640, blockSize: 64).storageBytes())
        case .int4Asym:
            #expect(t.bytesPerBlock(64) * 10 == FourBitLayout(count: 640, blockSize: 64).storageBytes(withZeroPoints: true))
        case .int8:
            #expect(!t.blockwise && t.bytesPerBlock(96) * 7 == Int8RowLayout(rows: 7, cols: 96).storageBytes)
        }
        #expect(t.codeBits == (f == .int8 ? 8 : 4))
        #expect(t.runsPacked == (f != .int8) && (t.codebook?.count ?? 16) == 16)
    }

    @Test("a missing companion, a short code tensor or a missing block size names the tensor")
    func damagedInputs() throws {
        var (w, _) = try stored(.int4(.asymmetric, blockSize: 128))
        var noZeros = w
        noZeros.companions[".zeros"] = nil
        #expect(throws: QuantError.missingCompanion(key: "blocks.0.ff.weight.zeros")) { try noZeros.dequantised() }
        var noBlock = w
        noBlock.blockSize = nil
        #expect { try noBlock.prepared4Bit() } throws: { "\($0)".contains("blocks.0.ff.weight") && "\($0)".contains("block size") }
        w.codes.bytes.removeLast()
        #expect { try w.dequantised() } throws: { "\($0)".contains("blocks.0.ff.weight") && "\($0)".contains("does not match") }
        // The manifest's format and the bitsandbytes quant state must agree.
        var (nf, _) = try stored(.nf4(blockSize: 64))
        nf.format = .fp4
        #expect { try nf.dequantised() } throws: { "\($0)".contains("quant state says nf4") }
    }

    @Test("formats encode as their names; an unknown name is rejected listing the known ones")
    func coding() throws {
        struct Box: Codable { var format: QuantFormat }
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        #expect(String(decoding: try enc.encode(Box(format: .int4Asym)), as: UTF8.self) == #"{"format":"int4-asym"}"#)
        for f in QuantFormat.allCases {
            #expect(try JSONDecoder().decode(Box.self, from: Data(#"{"format":"\#(f.rawValue)"}"#.utf8)).format == f)
        }
        #expect { try JSONDecoder().decode(Box.self, from: Data(#"{"format":"nf5"}"#.utf8)) } throws: {
            "\($0)".contains("unknown quantisation format 'nf5'") && "\($0)".contains("int4-asym")
        }
    }
}
