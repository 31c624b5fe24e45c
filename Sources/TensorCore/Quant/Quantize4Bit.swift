// NF4 / FP4 quantisation bit-identical to bitsandbytes 0.50 `quantize_4bit` on CPU, with optional double
// quantisation of the absmax (`compress_statistics=True`), and the matching `dequantize_4bit`.
// Legend: n = numel, B = blockSize, nb = ceil(n / B), nn = ceil(nb / 256). Layout: `FourBitLayout`.

/// The dtype bitsandbytes records for the original weight (`quant_state.dtype`); values reach the quantiser as
/// float32 either way (bitsandbytes calls `.float()` first), so bf16 / fp16 weights must already be rounded.
public enum SourceDType: String, Hashable, Sendable, CaseIterable {
    case float32
    case bfloat16
    case float16
}

/// Double-quantised absmax (bitsandbytes `compress_statistics=True`): absmax - offset, blockwise 8-bit.
public struct NestedAbsmax: Hashable, Sendable {
    /// Block size of the nested quantisation (bitsandbytes hard-codes 256).
    public static let blockSize = 256
    /// codes: [nb] 8-bit codes of (absmax - offset); saved as `X.weight.absmax` (uint8).
    public var codes: [UInt8]
    /// absmax: [nn] fp32 absmax of each 256-block of (absmax - offset); saved as `X.weight.nested_absmax`.
    public var absmax: [Float]
    /// offset: float32 mean of the fp32 absmax vector (PyTorch's summation order); `nested_offset` in the JSON.
    public var offset: Float
    /// The 256-entry table the codes index; saved as `X.weight.nested_quant_map`.
    public var codeTable: [Float]

    public init(codes: [UInt8], absmax: [Float], offset: Float, codeTable: [Float] = DynamicMap8.signed) {
        self.codes = codes
        self.absmax = absmax
        self.offset = offset
        self.codeTable = codeTable
    }

    /// Restores fp32 absmax as bitsandbytes does: codeTable[code] * nestedAbsmax[i / 256], then + offset.
    public func decode() -> [Float] {
        var out = [Float](repeating: 0, count: codes.count)
        for i in 0..<codes.count {
            let v = codeTable[Int(codes[i])] * absmax[i / NestedAbsmax.blockSize]
            out[i] = v + offset
        }
        return out
    }
}

/// Per-block scales of a 4-bit weight: plain fp32, or double-quantised.
public enum Absmax4Bit: Hashable, Sendable {
    /// [nb] fp32 absmax.
    case plain([Float])
    /// [nb] 8-bit codes + [nn] fp32 + offset.
    case nested(NestedAbsmax)
}

/// A weight quantised to NF4 or FP4 in bitsandbytes' layout (`FourBitLayout`).
public struct Quantized4Bit: Hashable, Sendable {
    /// NF4 or FP4.
    public var type: FourBitType
    /// Shape of the original weight, e.g. [out, in] for a Linear (saved in the quant_state JSON).
    public var shape: [Int]
    /// B.
    public var blockSize: Int
    /// packed: [ceil(n/2)] `PackedNibbles` bytes of the row-major flattened weight.
    public var packed: [UInt8]
    /// Per-block absmax, plain or nested.
    public var absmax: Absmax4Bit
    /// The original dtype recorded in the quant_state.
    public var sourceDType: SourceDType

    public init(type: FourBitType, shape: [Int], blockSize: Int, packed: [UInt8], absmax: Absmax4Bit,
                sourceDType: SourceDType) {
        self.type = type
        self.shape = shape
        self.blockSize = blockSize
        self.packed = packed
        self.absmax = absmax
        self.sourceDType = sourceDType
    }

    /// n: number of weight elements.
    public var count: Int { shape.reduce(1, *) }
    /// The byte layout.
    public var layout: FourBitLayout { FourBitLayout(count: count, blockSize: blockSize) }
    /// Whether the absmax is double-quantised.
    public var isNested: Bool { if case .nested = absmax { return true } else { return false } }

    /// [nb] fp32 absmax as `dequantize_4bit` uses it (decoded when nested).
    public func blockAbsmax() -> [Float] {
        switch absmax {
        case .plain(let a): return a
        case .nested(let n): return n.decode()
        }
    }
}

/// Quantises a float32 weight to NF4/FP4, bit-identical to bitsandbytes 0.50 `quantize_4bit` on CPU.
///
/// ```swift
/// let q = try quantize4bit(w, shape: [2432, 9728], format: .nf4, blockSize: 64, doubleQuant: true)
/// ```
/// Exactly as bitsandbytes' CPU path (`backends/default/ops.py`):
/// - blocks of B consecutive elements of the flattened weight; nb - 1 full blocks and a partial last block;
/// - full block: absmax = max|x| (stored as is, NaN if the block has a NaN), s = x * (1 / max(absmax, 1e-38));
/// - partial last block: absmax = max(max|x|, 1e-38) (so an all-zero tail stores 9.99999935e-39), s = x / absmax
///   (a true division there, a reciprocal multiply in full blocks: results can differ in the last bit);
/// - code = `FourBitCodebook.code(ofScaled:)` (ties go to the lower sorted code; NaN, and x = ±inf where
///   s = inf * 0, to the top code: NF4 15, FP4 3); packing per `PackedNibbles`, odd n padded with s = 0.
/// With `doubleQuant`: offset = float32 mean of the absmax vector in PyTorch's summation order (`reduction`),
/// then `quantizeBlockwise8(absmax - offset, blockSize: 256)`. Weights holding NaN or ±inf make the offset NaN
/// or inf, as in bitsandbytes; such results are well defined but useless.
/// - Throws: `QuantError` when `shape` does not match `w.count`, B is not one bitsandbytes accepts, or a
///   `.bfloat16` source holds values that are not bf16-representable.
public func quantize4bit(
    _ w: UnsafeBufferPointer<Float>, shape: [Int]? = nil, format: FourBitType, blockSize: Int = 64,
    doubleQuant: Bool = false, sourceDType: SourceDType = .float32,
    reduction: TorchReductionConfig = .reference
) throws -> Quantized4Bit {
    let shape = shape ?? [w.count]
    guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == w.count else {
        throw QuantError.shapeMismatch(name: nil, shape: shape, count: w.count)
    }
    guard bitsandbytesBlockSizes.contains(blockSize) else {
        throw QuantError.invalidBlockSize(blockSize, allowed: bitsandbytesBlockSizes)
    }
    if sourceDType == .bfloat16, let i = w.firstIndex(where: { $0.bitPattern & 0xFFFF != 0 }) {
        throw QuantError.notRepresentable(index: i, value: w[i], dtype: sourceDType)
    }
    let layout = FourBitLayout(count: w.count, blockSize: blockSize)
    var packed = [UInt8](repeating: 0, count: layout.packedByteCount)
    var absmax = [Float](repeating: 0, count: layout.blockCount)
    packed.withUnsafeMutableBufferPointer { out in
        absmax.withUnsafeMutableBufferPointer { am in
            FourBitKernel.quantize(w, format.codebook, blockSize, out, am)
        }
    }
    let scales: Absmax4Bit
    if doubleQuant {
        let offset = absmax.withUnsafeBufferPointer { torchFloatMean($0, config: reduction) }
        let centred = absmax.map { $0 - offset }
        let q8 = centred.withUnsafeBufferPointer { quantizeBlockwise8($0, blockSize: NestedAbsmax.blockSize) }
        scales = .nested(NestedAbsmax(codes: q8.codes, absmax: q8.absmax, offset: offset))
    } else {
        scales = .plain(absmax)
    }
    return Quantized4Bit(type: format, shape: shape, blockSize: blockSize, packed: packed, absmax: scales,
                         sourceDType: sourceDType)
}

/// Convenience overload of `quantize4bit` for arrays.
public func quantize4bit(
    _ w: [Float], shape: [Int]? = nil, format: FourBitType, blockSize: Int = 64, doubleQuant: Bool = false,
    sourceDType: SourceDType = .float32, reduction: TorchReductionConfig = .reference
) throws -> Quantized4Bit {
    try w.withUnsafeBufferPointer {
        try quantize4bit($0, shape: shape, format: format, blockSize: blockSize, doubleQuant: doubleQuant,
                         sourceDType: sourceDType, reduction: reduction)
    }
}

/// Dequantises into `out` ([n] fp32): out[i] = values[code_i] * absmax[i / B] (bitsandbytes `dequantize_4bit`).
public func dequantize4bit(_ q: Quantized4Bit, into out: UnsafeMutableBufferPointer<Float>) {
    precondition(out.count == q.count, "dequantize4bit: output holds \(out.count) floats, weight has \(q.count)")
    let absmax = q.blockAbsmax()
    let values = q.type.codebook.values
    let n = q.count
    let bs = q.blockSize
    values.withUnsafeBufferPointer { lut in
        q.packed.withUnsafeBufferPointer { packed in
            for blk in 0..<absmax.count {
                let scale = absmax[blk]
                let start = blk * bs
                let end = min(start + bs, n)
                var i = start  // B is even: blocks start on a byte boundary
                while i + 1 < end {
                    let byte = packed[i >> 1]
                    out[i] = lut[Int(byte >> 4)] * scale
                    out[i + 1] = lut[Int(byte & 0x0F)] * scale
                    i += 2
                }
                if i < end { out[i] = lut[Int(packed[i >> 1] >> 4)] * scale }
            }
        }
    }
}

/// Dequantises to a new [n] fp32 array (row-major, shape `q.shape`).
public func dequantize4bit(_ q: Quantized4Bit) -> [Float] {
    var out = [Float](repeating: 0, count: q.count)
    out.withUnsafeMutableBufferPointer { dequantize4bit(q, into: $0) }
    return out
}

enum FourBitKernel {
    /// 1e-38 as float32 (a subnormal): the clamp bitsandbytes applies before dividing by absmax.
    static let absmaxFloor = Float(bitPattern: 0x006c_e3ee)

    /// Fills `packed` ([ceil(n/2)]) and `absmax` ([nb]) for `w` ([n]).
    static func quantize(
        _ w: UnsafeBufferPointer<Float>, _ book: FourBitCodebook, _ blockSize: Int,
        _ packed: UnsafeMutableBufferPointer<UInt8>, _ absmax: UnsafeMutableBufferPointer<Float>
    ) {
        let n = w.count
        let fullBlocks = n / blockSize
        // bounds (15) and the sorted-position -> code map (16), in raw memory for the hot loop.
        let b = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        let map = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
        defer { b.deallocate(); map.deallocate() }
        for i in 0..<15 { b[i] = book.bounds[i] }
        b[15] = .infinity  // never read: the search below touches indices 0...14 only
        for i in 0..<16 { map[i] = book.sortedToCode[i] }

        // The code of s: its sorted position p = #{ i : !(bounds[i] >= s) } (bounds ascending, so a branch-free
        // 4-step binary search finds it; NaN fails every test and lands on 15), mapped to the stored code.
        @inline(__always) func code(_ s: Float) -> UInt8 {
            var p = b[7] >= s ? 0 : 8
            p += b[p + 3] >= s ? 0 : 4
            p += b[p + 1] >= s ? 0 : 2
            p += b[p] >= s ? 0 : 1
            return map[p]
        }
        let padCode = code(0)

        // Absmax with torch.max semantics: NaN anywhere in the block gives NaN.
        @inline(__always) func blockMax(_ start: Int, _ end: Int) -> Float {
            var m: Float = 0
            var nanCount = 0
            for i in start..<end {
                let a = abs(w[i])
                m = a > m ? a : m
                nanCount &+= a.isNaN ? 1 : 0
            }
            return nanCount > 0 ? .nan : m
        }

        for blk in 0..<fullBlocks {
            let start = blk * blockSize
            let m = blockMax(start, start + blockSize)
            absmax[blk] = m
            let inv = 1 / (m.isNaN ? m : max(m, absmaxFloor))
            // B is even, so a full block covers whole bytes.
            var j = start
            while j < start + blockSize {
                packed[j >> 1] = (code(w[j] * inv) << 4) | code(w[j + 1] * inv)
                j += 2
            }
        }
        let start = fullBlocks * blockSize
        if start < n {
            let raw = blockMax(start, n)
            let m = raw.isNaN ? raw : max(raw, absmaxFloor)
            absmax[fullBlocks] = m
            var j = start
            while j < n {
                let hi = code(w[j] / m)
                let lo = j + 1 < n ? code(w[j + 1] / m) : padCode
                packed[j >> 1] = (hi << 4) | lo
                j += 2
            }
        }
    }
}
