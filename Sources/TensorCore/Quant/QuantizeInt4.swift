// Group-wise linear int4 quantisation (no bitsandbytes counterpart; our own documented format).
// Same layout as NF4/FP4 (`FourBitLayout`): packed nibbles of the flattened weight, fp32 scale per group of B
// consecutive elements (last group partial), plus one zero-point byte per group for the asymmetric scheme.
// Legend: n = numel, B = group size, nb = ceil(n / B).

/// A weight quantised to group-wise int4.
public struct QuantizedInt4: Hashable, Sendable {
    public var scheme: Int4Scheme
    /// Shape of the original weight.
    public var shape: [Int]
    /// B: elements per group (any positive even size; 64 and 128 are the usual ones).
    public var groupSize: Int
    /// packed: [ceil(n/2)] `PackedNibbles` of the stored nibbles.
    public var packed: [UInt8]
    /// scales: [nb] fp32.
    public var scales: [Float]
    /// zeroPoints: [nb] in 0...15 for `.asymmetric`; empty for `.symmetric` (its zero is the nibble 8).
    public var zeroPoints: [UInt8]

    /// n.
    public var count: Int { shape.reduce(1, *) }
    /// The byte layout.
    public var layout: FourBitLayout { FourBitLayout(count: count, blockSize: groupSize) }
}

/// Quantises to group-wise int4.
///
/// - `.symmetric`: a = max|x| of the group, scale = a / 7, q = clamp(rint(x / scale), -8, 7) (ties to even),
///   stored nibble = q + 8; decode (nibble - 8) * scale. a == 0 gives scale 0 and nibble 8 (decodes to 0).
/// - `.asymmetric`: lo = min(min x, 0), hi = max(max x, 0) (the range always holds 0, so 0 is exact),
///   scale = (hi - lo) / 15, zero = clamp(rint(-lo / scale), 0, 15), nibble = clamp(rint(x / scale) + zero, 0, 15);
///   decode (nibble - zero) * scale. An all-zero group gives scale 0, zero 0, nibbles 0.
/// NaN elements encode as the group's zero (nibble 8 / the zero point) and are ignored by the range; ±inf
/// makes the group's scale inf (decodes to NaN), so check weights are finite first.
/// - Throws: `QuantError` when `shape` does not match or the group size is not a positive even number.
public func quantizeInt4(
    _ w: UnsafeBufferPointer<Float>, shape: [Int]? = nil, scheme: Int4Scheme, groupSize: Int = 64
) throws -> QuantizedInt4 {
    let shape = shape ?? [w.count]
    guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == w.count else {
        throw QuantError.shapeMismatch(name: nil, shape: shape, count: w.count)
    }
    guard groupSize > 0, groupSize % 2 == 0 else {
        throw QuantError.invalidBlockSize(groupSize, allowed: [32, 64, 128, 256])
    }
    let layout = FourBitLayout(count: w.count, blockSize: groupSize)
    let n = w.count
    var nibbles = [UInt8](repeating: 0, count: n + 1)  // +1: the pad nibble of odd n
    var scales = [Float](repeating: 0, count: layout.blockCount)
    var zeros = [UInt8](repeating: 0, count: scheme == .asymmetric ? layout.blockCount : 0)
    for g in 0..<layout.blockCount {
        let start = g * groupSize
        let end = min(start + groupSize, n)
        switch scheme {
        case .symmetric:
            var a: Float = 0
            for i in start..<end where abs(w[i]) > a { a = abs(w[i]) }
            let scale = a / 7
            scales[g] = scale
            for i in start..<end {
                let q = scale > 0 ? (w[i] / scale).rounded(.toNearestOrEven) : 0
                nibbles[i] = q.isNaN ? 8 : UInt8(Int(min(max(q, -8), 7)) + 8)
            }
            if end == n && n % 2 == 1 { nibbles[n] = 8 }
        case .asymmetric:
            var lo: Float = 0
            var hi: Float = 0
            for i in start..<end {
                if w[i] < lo { lo = w[i] }
                if w[i] > hi { hi = w[i] }
            }
            let scale = (hi - lo) / 15
            scales[g] = scale
            let zero: Float = scale > 0 ? min(max((-lo / scale).rounded(.toNearestOrEven), 0), 15) : 0
            zeros[g] = UInt8(zero)
            for i in start..<end {
                let q = scale > 0 ? (w[i] / scale).rounded(.toNearestOrEven) + zero : zero
                nibbles[i] = q.isNaN ? UInt8(zero) : UInt8(min(max(q, 0), 15))
            }
            if end == n && n % 2 == 1 { nibbles[n] = UInt8(zero) }
        }
    }
    var packed = [UInt8](repeating: 0, count: layout.packedByteCount)
    for j in 0..<packed.count { packed[j] = PackedNibbles(high: nibbles[2 * j], low: nibbles[2 * j + 1]).byte }
    return QuantizedInt4(scheme: scheme, shape: shape, groupSize: groupSize, packed: packed, scales: scales,
                         zeroPoints: zeros)
}

/// Convenience overload of `quantizeInt4` for arrays.
public func quantizeInt4(_ w: [Float], shape: [Int]? = nil, scheme: Int4Scheme, groupSize: Int = 64) throws
    -> QuantizedInt4 {
    try w.withUnsafeBufferPointer { try quantizeInt4($0, shape: shape, scheme: scheme, groupSize: groupSize) }
}

/// Dequantises int4 to a new [n] fp32 array.
public func dequantizeInt4(_ q: QuantizedInt4) -> [Float] {
    var out = [Float](repeating: 0, count: q.count)
    for i in 0..<q.count {
        let byte = PackedNibbles(byte: q.packed[i >> 1])
        let nib = Int((i & 1) == 0 ? byte.high : byte.low)
        let g = i / q.groupSize
        let zero = q.scheme == .symmetric ? 8 : Int(q.zeroPoints[g])
        out[i] = Float(nib - zero) * q.scales[g]
    }
    return out
}
