// 8-bit quantisers: bitsandbytes' blockwise dynamic-map quantiser (`quantize_blockwise`, also the nested
// quantiser of 4-bit absmax) and per-row linear int8 (`int8_vectorwise_quant`), both bit-identical on CPU.
// Legend: n = elements, B = block size, nb = ceil(n / B), R x C = rows x cols of a 2-D weight.

/// A tensor quantised blockwise to 8-bit codes of a 256-entry sorted code table (bitsandbytes `quantize_blockwise`).
public struct Quantized8BitBlockwise: Hashable, Sendable {
    /// codes: [n], index into `codeTable`.
    public var codes: [UInt8]
    /// absmax: [nb] fp32, one per block of `blockSize` consecutive elements (last block may be partial).
    public var absmax: [Float]
    /// B.
    public var blockSize: Int
    /// The 256 sorted values the codes index (default `DynamicMap8.signed`).
    public var codeTable: [Float]

    public init(codes: [UInt8], absmax: [Float], blockSize: Int, codeTable: [Float] = DynamicMap8.signed) {
        self.codes = codes
        self.absmax = absmax
        self.blockSize = blockSize
        self.codeTable = codeTable
    }
}

/// The nearest-code lookup bitsandbytes' CPU library (`csrc/cpu_ops.cpp`, `quantize_cpu_impl`) uses.
///
/// It does NOT search the code table per value: it splits [-1, 1] into 65536 bins, precomputes each bin's code,
/// and maps a scaled value v to bin `uint16((v + 1) * 0.5 * 65535 + 0.5)`; the released library (GCC 11,
/// `-mfma`) fuses the last multiply-add, so it is computed here with one `fma`. Two values a bin apart can thus
/// get a code that is not strictly the nearest one; this is reproduced on purpose.
public struct Blockwise8LUT: Sendable {
    /// lut[bin] = code of the bin's left edge value.
    public let lut: [UInt8]

    /// Builds the table for a sorted 256-entry code table (`build_quantize_lut`).
    public init(codeTable: [Float]) {
        precondition(codeTable.count == 256, "an 8-bit code table has 256 entries")
        var mid = [Float](repeating: 0, count: 255)
        for i in 0..<255 { mid[i] = 0.5 * (codeTable[i] + codeTable[i + 1]) }
        var table = [UInt8](repeating: 0, count: 65536)
        var idx = 0
        for i in 0..<65536 {
            let fi = Float(i)
            let val = (fi + fi) / 65535 - 1
            while idx < 255 && mid[idx] < val { idx += 1 }
            table[i] = UInt8(idx)
        }
        lut = table
    }

    /// The signed dynamic map's table, built once.
    public static let dynamicSigned = Blockwise8LUT(codeTable: DynamicMap8.signed)

    /// The code of a value already multiplied by 1 / absmax.
    @inlinable public func code(ofScaled v: Float) -> UInt8 {
        let c = min(max(v, -1), 1)  // std::clamp; NaN stays NaN
        let f = (0.5 as Float).addingProduct((c + 1) * 0.5, 65535)
        // cvttss2si of NaN gives INT_MIN, whose low 16 bits are 0.
        guard f.isFinite else { return lut[0] }
        return lut[Int(UInt16(truncatingIfNeeded: Int32(f)))]
    }
}

/// Quantises `x` blockwise to 8-bit codes, bit-identical to bitsandbytes 0.50 `quantize_blockwise` on CPU (float32).
///
/// Per block: absmax = max |x| (NaN ignored, as `std::max` does); absmax == 0 gives all codes 0; otherwise
/// code = LUT(x * (1 / absmax)). Default table: `DynamicMap8.signed`; bitsandbytes' default block is 4096.
public func quantizeBlockwise8(
    _ x: UnsafeBufferPointer<Float>, blockSize: Int = 4096, lut: Blockwise8LUT = .dynamicSigned,
    codeTable: [Float] = DynamicMap8.signed
) -> Quantized8BitBlockwise {
    precondition(blockSize > 0, "blockSize must be positive")
    let n = x.count
    let nb = (n + blockSize - 1) / blockSize
    var codes = [UInt8](repeating: 0, count: n)
    var absmax = [Float](repeating: 0, count: nb)
    lut.lut.withUnsafeBufferPointer { table in
        codes.withUnsafeMutableBufferPointer { out in
            for b in 0..<nb {
                let start = b * blockSize
                let end = min(start + blockSize, n)
                var m: Float = 0
                for i in start..<end {
                    let a = abs(x[i])
                    if m < a { m = a }
                }
                absmax[b] = m
                if m == 0 { continue }  // codes already 0
                let inv = 1 / m
                for i in start..<end {
                    let c = min(max(x[i] * inv, -1), 1)
                    let f = (0.5 as Float).addingProduct((c + 1) * 0.5, 65535)
                    out[i] = f.isFinite ? table[Int(UInt16(truncatingIfNeeded: Int32(f)))] : table[0]
                }
            }
        }
    }
    return Quantized8BitBlockwise(codes: codes, absmax: absmax, blockSize: blockSize, codeTable: codeTable)
}

/// Convenience overload of `quantizeBlockwise8` for arrays.
public func quantizeBlockwise8(_ x: [Float], blockSize: Int = 4096) -> Quantized8BitBlockwise {
    x.withUnsafeBufferPointer { quantizeBlockwise8($0, blockSize: blockSize) }
}

/// Dequantises: out[i] = codeTable[codes[i]] * absmax[i / B] (bitsandbytes `dequantize_blockwise`, float32).
public func dequantizeBlockwise8(_ q: Quantized8BitBlockwise) -> [Float] {
    var out = [Float](repeating: 0, count: q.codes.count)
    for i in 0..<q.codes.count {
        out[i] = q.codeTable[Int(q.codes[i])] * q.absmax[i / q.blockSize]
    }
    return out
}

/// A 2-D weight quantised to linear int8 with one fp32 absmax per row (layout: `Int8RowLayout`).
public struct QuantizedInt8Rows: Hashable, Sendable {
    /// q: [R, C] row-major, each in -127...127.
    public var q: [Int8]
    /// rowAbsmax: [R] fp32 (bitsandbytes `SCB`).
    public var rowAbsmax: [Float]
    public var rows: Int
    public var cols: Int
}

/// Per-row int8, bit-identical to bitsandbytes 0.50 `int8_vectorwise_quant` (threshold 0) on float32 input:
/// q = round_half_even(x * ((1 / rowAbsmax) * 127)) (PyTorch evaluates `127.0 / t` as `t.reciprocal() * 127`). A row of zeros (where bitsandbytes computes 0 * inf = NaN and
/// casts it to int8, an undefined value) gets q = 0 here; NaN in a row is undefined there and gives 0 here.
public func quantizeInt8Rows(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int) throws -> QuantizedInt8Rows {
    guard rows >= 0, cols >= 0, rows * cols == w.count else {
        throw QuantError.shapeMismatch(name: nil, shape: [rows, cols], count: w.count)
    }
    var q = [Int8](repeating: 0, count: w.count)
    var stats = [Float](repeating: 0, count: rows)
    for r in 0..<rows {
        var m: Float = 0
        for c in 0..<cols { m = max(m, abs(w[r * cols + c])) }
        stats[r] = m
        guard m > 0, m.isFinite else { continue }
        let s: Float = (1 / m) * 127
        for c in 0..<cols {
            let v = (w[r * cols + c] * s).rounded(.toNearestOrEven)
            q[r * cols + c] = v.isNaN ? 0 : Int8(min(max(v, -128), 127))
        }
    }
    return QuantizedInt8Rows(q: q, rowAbsmax: stats, rows: rows, cols: cols)
}

/// Dequantises per-row int8: w = q * (rowAbsmax / 127).
public func dequantizeInt8Rows(_ q: QuantizedInt8Rows) -> [Float] {
    var out = [Float](repeating: 0, count: q.q.count)
    for r in 0..<q.rows {
        let s = q.rowAbsmax[r] / 127
        for c in 0..<q.cols { out[r * q.cols + c] = Float(q.q[r * q.cols + c]) * s }
    }
    return out
}
