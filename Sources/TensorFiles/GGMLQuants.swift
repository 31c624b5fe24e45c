// GGML tensor types and their block encodings (F32, F16, BF16, Q8_0, Q5_1, Q5_0, Q4_1, Q4_0), byte-identical to
// gguf-py's `gguf.quants.quantize` (itself bit-exact with ggml-quants.c's reference quantisers), and their
// dequantisation. Scalar code: one block of 32 values at a time, in f32 arithmetic as numpy does it.

/// A GGML tensor element type (the values GGUF stores in a tensor info).
public enum GGMLType: UInt32, Sendable, Hashable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, bf16 = 30

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: 32
        }
    }

    /// Bytes per block.
    public var typeSize: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        }
    }

    /// gguf-py's name (`Q4_0`, `BF16`, …).
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        }
    }

    /// From a lower-case CLI name (`q4_0`, `bf16`, …).
    public init?(cliName: String) {
        guard let t = GGMLType.allCases.first(where: { $0.name.lowercased() == cliName.lowercased() }) else { return nil }
        self = t
    }

    /// llama.cpp's `general.file_type` (LlamaFileType) for a file whose main type is this.
    public var fileType: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q5_0: 8
        case .q5_1: 9
        case .bf16: 32
        }
    }

    /// Bytes of `count` elements (count a multiple of the block size).
    public func byteCount(_ count: Int) -> Int { count / blockSize * typeSize }
}

/// Quantisation to and from GGML blocks.
public enum GGMLQuants {
    /// Encodes `x` ([n], n a multiple of `type.blockSize`; for quantised types, of each row's length) as `type`.
    public static func quantize(_ x: [Float], as type: GGMLType) -> [UInt8] {
        precondition(x.count % type.blockSize == 0, "GGML \(type.name): \(x.count) elements is not a whole number of blocks")
        var out = [UInt8]()
        out.reserveCapacity(type.byteCount(x.count))
        switch type {
        case .f32:
            for v in x { append32(v.bitPattern, to: &out) }
        case .f16:
            for v in x { append16(Float16(v).bitPattern, to: &out) }
        case .bf16:
            for v in x { append16(bf16Bits(v), to: &out) }
        default:
            x.withUnsafeBufferPointer { p in
                var b = 0
                while b < x.count {
                    let blk = UnsafeBufferPointer(rebasing: p[b..<(b + 32)])
                    switch type {
                    case .q8_0: q8_0(blk, &out)
                    case .q4_0: q4_0(blk, &out)
                    case .q4_1: q4_1(blk, &out)
                    case .q5_0: q5_0(blk, &out)
                    case .q5_1: q5_1(blk, &out)
                    default: preconditionFailure()
                    }
                    b += 32
                }
            }
        }
        return out
    }

    /// Decodes `count` elements of `type` from `bytes` (as gguf-py's `dequantize`).
    public static func dequantize(_ bytes: [UInt8], as type: GGMLType, count: Int) -> [Float] {
        precondition(bytes.count >= type.byteCount(count))
        var out = [Float](repeating: 0, count: count)
        func u16(_ i: Int) -> UInt16 { UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8 }
        func h(_ i: Int) -> Float { Float(Float16(bitPattern: u16(i))) }
        switch type {
        case .f32:
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(bytes[4 * i]) | UInt32(bytes[4 * i + 1]) << 8 | UInt32(bytes[4 * i + 2]) << 16 | UInt32(bytes[4 * i + 3]) << 24)
            }
        case .f16: for i in 0..<count { out[i] = h(2 * i) }
        case .bf16: for i in 0..<count { out[i] = Float(bitPattern: UInt32(u16(2 * i)) << 16) }
        default:
            for blk in 0..<(count / 32) {
                let o = blk * type.typeSize
                for j in 0..<32 {
                    let nib = j < 16 ? bytes[o + type.typeSize - 16 + j] & 0x0F : bytes[o + type.typeSize - 16 + j - 16] >> 4
                    let v: Float
                    switch type {
                    case .q8_0: v = h(o) * Float(Int8(bitPattern: bytes[o + 2 + j]))
                    case .q4_0: v = h(o) * Float(Int(nib) - 8)
                    case .q4_1: v = h(o) * Float(nib) + h(o + 2)
                    case .q5_0, .q5_1:
                        let qhOff = o + (type == .q5_0 ? 2 : 4)
                        let qh = UInt32(bytes[qhOff]) | UInt32(bytes[qhOff + 1]) << 8 | UInt32(bytes[qhOff + 2]) << 16 | UInt32(bytes[qhOff + 3]) << 24
                        let q = Int(nib) | Int((qh >> UInt32(j)) & 1) << 4
                        v = type == .q5_0 ? h(o) * Float(q - 16) : h(o) * Float(q) + h(o + 2)
                    default: preconditionFailure()
                    }
                    out[blk * 32 + j] = v
                }
            }
        }
        return out
    }

    // MARK: Blocks (32 values each)

    /// ggml_compute_fp32_to_bf16: quiet NaNs, round to nearest even.
    static func bf16Bits(_ v: Float) -> UInt16 {
        var n = v.bitPattern
        if n & 0x7fff_ffff > 0x7f80_0000 { n = (n & 0xffff_0000) | (64 << 16) }
        return UInt16(truncatingIfNeeded: (UInt64(n) + UInt64(0x7fff + ((n >> 16) & 1))) >> 16)
    }

    static func append16(_ u: UInt16, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: u)); out.append(UInt8(truncatingIfNeeded: u >> 8))
    }

    static func append32(_ u: UInt32, to out: inout [UInt8]) {
        for s in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: u >> UInt32(s))) }
    }

    /// numpy `where(d == 0, 0, 1 / d)` in f32.
    static func inverse(_ d: Float) -> Float { d == 0 ? 0 : 1 / d }

    /// The signed value of largest magnitude (first one on ties), as `take_along_axis(x, argmax(abs(x)))`.
    static func signedAbsMax(_ x: UnsafeBufferPointer<Float>) -> Float {
        var best = x[0]
        for v in x.dropFirst() where abs(v) > abs(best) { best = v }
        return best
    }

    /// trunc(v) as numpy's `.astype(np.uint8).clip(0, hi)` sees it (v is in [0, 256) here).
    static func truncClip(_ v: Float, _ hi: Int) -> Int { min(max(Int(v.rounded(.towardZero)), 0), hi) }

    /// Packs 32 codes: low nibbles of codes 0..<16 with the low nibbles of 16..<32 in the high half.
    static func appendNibbles(_ q: [Int], to out: inout [UInt8]) {
        for j in 0..<16 { out.append(UInt8(q[j] & 0x0F) | UInt8(truncatingIfNeeded: q[j + 16] << 4)) }
    }

    /// Bit j = bit 4 of code j (numpy packbits, little bit order).
    static func appendHighBits(_ q: [Int], to out: inout [UInt8]) {
        var qh: UInt32 = 0
        for j in 0..<32 where q[j] >> 4 != 0 { qh |= 1 << UInt32(j) }
        append32(qh, to: &out)
    }

    static func q8_0(_ x: UnsafeBufferPointer<Float>, _ out: inout [UInt8]) {
        var amax: Float = 0
        for v in x { amax = max(amax, abs(v)) }
        let d = amax / 127
        let id = inverse(d)
        append16(Float16(d).bitPattern, to: &out)
        // np_roundf: round half away from zero.
        for v in x { out.append(UInt8(bitPattern: Int8((v * id).rounded(.toNearestOrAwayFromZero)))) }
    }

    static func q4_0(_ x: UnsafeBufferPointer<Float>, _ out: inout [UInt8]) {
        let d = signedAbsMax(x) / -8
        let id = inverse(d)
        append16(Float16(d).bitPattern, to: &out)
        appendNibbles(x.map { truncClip($0 * id + 8.5, 15) }, to: &out)
    }

    static func q4_1(_ x: UnsafeBufferPointer<Float>, _ out: inout [UInt8]) {
        let hi = x.max()!, lo = x.min()!
        let d = (hi - lo) / 15
        let id = inverse(d)
        append16(Float16(d).bitPattern, to: &out)
        append16(Float16(lo).bitPattern, to: &out)
        appendNibbles(x.map { truncClip(($0 - lo) * id + 0.5, 15) }, to: &out)
    }

    static func q5_0(_ x: UnsafeBufferPointer<Float>, _ out: inout [UInt8]) {
        let d = signedAbsMax(x) / -16
        let id = inverse(d)
        let q = x.map { truncClip($0 * id + 16.5, 31) }
        append16(Float16(d).bitPattern, to: &out)
        appendHighBits(q, to: &out)
        appendNibbles(q, to: &out)
    }

    static func q5_1(_ x: UnsafeBufferPointer<Float>, _ out: inout [UInt8]) {
        let hi = x.max()!, lo = x.min()!
        let d = (hi - lo) / 31
        let id = inverse(d)
        let q = x.map { truncClip(($0 - lo) * id + 0.5, 31) }
        append16(Float16(d).bitPattern, to: &out)
        append16(Float16(lo).bitPattern, to: &out)
        appendHighBits(q, to: &out)
        appendNibbles(q, to: &out)
    }
}
