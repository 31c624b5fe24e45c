// The 4-bit weight the backends compute on (W4A16 matmul): packed codes, per-block scales (and zeros), and the
// 16-entry code table, all as backend tensors. The quantisation module (TensorCore/Quant) produces the values
// (`QuantizedWeight`) and converts them to this type; backends never quantise.

/// A Linear weight (N, K) in a 4-bit format, ready for `Backend.matmulW4A16`.
///
/// Layout (bitsandbytes-compatible for nf4/fp4, METHOD.md §4): the weight is flattened row-major (`e = n·K + k`),
/// cut into blocks of `blockSize` consecutive values (blocks may straddle rows; the last may be partial);
/// element e has code `q[e]` (4 bits) and value `codebook[q[e]] · scale[e / blockSize] (+ zero[e / blockSize])`.
/// Byte j of `packed` holds `q[2j] << 4 | q[2j+1]` (first element in the high nibble).
/// NF4/FP4: scale = absmax (nested absmax dequantised first), zero = nil. int4 with zero point z:
/// codebook 0…15, scale s, zero = −z·s.
///
///     // packed: (N,K) dtype .nf4(blockSize:) ; scale, zero: (ceil(N·K/blockSize)) f32 ; codebook: (16) f32
public struct Packed4BitWeight: Sendable {
    /// Packed codes, shape (N, K), dtype `.nf4`, `.fp4` or `.int4` (carrying the block size).
    public var packed: Tensor
    /// One f32 scale per block (bitsandbytes absmax).
    public var scale: Tensor
    /// One f32 offset per block, or nil.
    public var zero: Tensor?
    /// The 16 code values, f32 (for nf4/fp4 exactly bitsandbytes' quant_map).
    public var codebook: Tensor

    public init(packed: Tensor, scale: Tensor, zero: Tensor? = nil, codebook: Tensor) {
        self.packed = packed
        self.scale = scale
        self.zero = zero
        self.codebook = codebook
    }

    /// N, the output features.
    public var outFeatures: Int { packed.shape.first ?? 0 }
    /// K, the input features.
    public var inFeatures: Int { packed.shape.count == 2 ? packed.shape[1] : 0 }
    /// Values sharing one scale (0 if `packed` is not a 4-bit tensor).
    public var blockSize: Int { packed.dtype.blockSize ?? 0 }
    /// Number of scale blocks: ceil(N·K / blockSize).
    public var blockCount: Int { blockSize > 0 ? (packed.count + blockSize - 1) / blockSize : 0 }
}
