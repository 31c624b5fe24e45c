// The minimal 4-bit weight type the backends compute on (W4A16 matmul). The quantisation module
// (TensorCore/Quant) owns the code tables, quantise/dequantise and serialization, and extends this type.

/// A Linear weight (N, K) stored in a 4-bit format: packed codes, one fp32 scale per block, and the 16-entry code table.
///
/// Layout (bitsandbytes-compatible for nf4/fp4, METHOD.md §4): the weight is flattened row-major
/// (`n * K + k`), cut into blocks of `format.blockSize` consecutive values (the last may be partial);
/// element `i` has code `q[i]` (4 bits) and value `codebook[q[i]] * absmax[i / blockSize]`.
/// Byte `j` of `packed` holds `q[2j] << 4 | q[2j+1]` (first element in the high nibble).
/// Nested (double-quantised) absmax is dequantised to fp32 before building this value.
///
///     // packed: (ceil(N*K/2)) u8, absmax: (ceil(N*K/blockSize)) f32, codebook: (16) f32
public struct QuantizedWeight: Sendable {
    public var format: QuantFormat
    /// Logical shape (N, K): N outputs, K inputs, as torch.nn.Linear.weight.
    public var outFeatures: Int
    public var inFeatures: Int
    /// Packed codes, dtype `.q4(format)`, shape (N, K).
    public var packed: Tensor
    /// Per-block scale, f32, shape (blocks).
    public var absmax: Tensor
    /// The 16 code values (f32, shape (16)): for nf4/fp4 exactly bitsandbytes' quant_map.
    public var codebook: Tensor

    public init(format: QuantFormat, outFeatures: Int, inFeatures: Int, packed: Tensor, absmax: Tensor,
                codebook: Tensor) {
        self.format = format
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.packed = packed
        self.absmax = absmax
        self.codebook = codebook
    }

    /// Number of scale blocks: ceil(N*K / blockSize).
    public var blockCount: Int { (outFeatures * inFeatures + format.blockSize - 1) / format.blockSize }
}
