// The code tables of bitsandbytes' 4-bit (NF4, FP4) and 8-bit dynamic formats, bit for bit, defined once.
// Values are given as IEEE-754 bit patterns, copied from what bitsandbytes 0.50 computes in float32 (see
// Tests/Fixtures/quant/generate.py, which re-derives and checks them), so no decimal rounding can creep in.

/// bitsandbytes' 4-bit floating code types (`quant_type`).
public enum FourBitType: String, Hashable, Sendable, CaseIterable {
    case nf4
    case fp4

    /// The 16-entry table of this type.
    public var codebook: FourBitCodebook {
        switch self {
        case .nf4: return .nf4
        case .fp4: return .fp4
        }
    }
}

/// A 16-entry 4-bit code table and the decision rule bitsandbytes' CPU quantiser uses to pick a code.
///
/// Rule (bitsandbytes 0.50 `backends/default/ops.py`, the kernel `quantize_4bit` runs on CPU): sort the codes,
/// take the float32 midpoints `bounds[i] = (sorted[i] + sorted[i+1]) / 2`, and give a scaled value s the sorted
/// position p = #{ i : !(bounds[i] >= s) } (`torch.bucketize`, right=False). A value exactly on a midpoint
/// therefore takes the LOWER code; NaN takes position 15. The stored code is `sortedToCode[p]`.
///
/// - NF4 codes are already sorted, so the code is p itself.
/// - FP4 has two +0.0 entries (codes 0 and 8; bitsandbytes builds `-0` from the integer `-0`, which is +0.0).
///   `argsort` puts code 0 first, so s in (-0.0026, 0] gets code 0 and s in (0, 0.0026] gets code 8.
///
/// bitsandbytes' CUDA quantiser (`csrc/kernels.cu`) is a different rule; read from source, not run here:
/// - NF4 (`dQuantizeNF4`) compares with `>` against decimal midpoints that round to exactly these float32
///   `bounds`, so finite values get the same codes (NaN there gets code 0, and an all-zero block 0 * inf = NaN too).
/// - FP4 (`dQuantizeFP4`) takes the sign bit from x < 0 and searches |x| against decimal pivots; five of the
///   seven round to float32 values 1 to 14 ulps off the midpoints here (e.g. 0.583333f is 6 ulps below 7/12,
///   0.00260417f 14 ulps above 1/384), so values that close to a pivot can get the neighbouring code, and tiny
///   negatives get code 8 instead of 0.
/// - It multiplies by 1/absmax in every block, the partial last one included.
public struct FourBitCodebook: Hashable, Sendable {
    /// Which table this is.
    public let type: FourBitType
    /// values[code], code 0...15: what a code decodes to (times the block's absmax).
    public let values: [Float]
    /// The 15 float32 midpoints between consecutive sorted values.
    public let bounds: [Float]
    /// sortedToCode[p]: the code of the p-th smallest value.
    public let sortedToCode: [UInt8]

    init(type: FourBitType, valueBits: [UInt32], boundBits: [UInt32], sortedToCode: [UInt8]) {
        precondition(valueBits.count == 16 && boundBits.count == 15 && sortedToCode.count == 16)
        self.type = type
        self.values = valueBits.map(Float.init(bitPattern:))
        self.bounds = boundBits.map(Float.init(bitPattern:))
        self.sortedToCode = sortedToCode
    }

    /// NormalFloat4: bitsandbytes `get_4bit_type('nf4')` (quantiles of N(0,1), normalised to [-1, 1]).
    public static let nf4 = FourBitCodebook(
        type: .nf4,
        valueBits: [
            0xbf80_0000, 0xbf32_39b1, 0xbf06_6b30, 0xbeca_32a0, 0xbe91_a24d, 0xbe3d_353f, 0xbdba_7871, 0x0000_0000,
            0x3da2_faff, 0x3e24_cae3, 0x3e7c_04dd, 0x3ead_033a, 0x3ee1_a4b8, 0x3f10_07ab, 0x3f39_13b3, 0x3f80_0000,
        ],
        boundBits: [
            0xbf59_1cd8, 0xbf1c_5270, 0xbeeb_8480, 0xbead_ea76, 0xbe70_3cec, 0xbe0d_38bc, 0xbd3a_7871, 0x3d22_faff,
            0x3df6_4862, 0x3e50_67e0, 0x3e95_82d4, 0x3ec7_53f9, 0x3f00_6d04, 0x3f24_8daf, 0x3f5c_89da,
        ],
        sortedToCode: Array(0...15))

    /// FP4 (e2m1, bias 2): bitsandbytes `get_4bit_type('fp4')` = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, ...] / 12.
    public static let fp4 = FourBitCodebook(
        type: .fp4,
        valueBits: [
            0x0000_0000, 0x3baa_aaab, 0x3f2a_aaab, 0x3f80_0000, 0x3eaa_aaab, 0x3f00_0000, 0x3e2a_aaab, 0x3e80_0000,
            0x0000_0000, 0xbbaa_aaab, 0xbf2a_aaab, 0xbf80_0000, 0xbeaa_aaab, 0xbf00_0000, 0xbe2a_aaab, 0xbe80_0000,
        ],
        boundBits: [
            0xbf55_5556, 0xbf15_5556, 0xbed5_5556, 0xbe95_5556, 0xbe55_5556, 0xbdb0_0000, 0xbb2a_aaab, 0x0000_0000,
            0x3b2a_aaab, 0x3db0_0000, 0x3e55_5556, 0x3e95_5556, 0x3ed5_5556, 0x3f15_5556, 0x3f55_5556,
        ],
        sortedToCode: [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3])

    /// The code bitsandbytes' CPU quantiser assigns to a value already scaled into [-1, 1] (or NaN).
    @inlinable public func code(ofScaled s: Float) -> UInt8 {
        var p = 0
        for b in bounds where !(b >= s) { p += 1 }
        return sortedToCode[p]
    }
}

/// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True)`), the code of `quantize_blockwise`
/// and of the nested (double) quantisation of 4-bit absmax. 256 sorted values in [-0.99297, 1].
public enum DynamicMap8 {
    /// The 256 values, sorted ascending, index = 8-bit code.
    public static let signed: [Float] = signedBits.map(Float.init(bitPattern:))

    static let signedBits: [UInt32] = [
        0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
        0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
        0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
        0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
        0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
        0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
        0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
        0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
        0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
        0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
        0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
        0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
        0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
        0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
        0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
        0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
        0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
        0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
        0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
        0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
        0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
        0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
        0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
        0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
        0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
        0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
        0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
        0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
        0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
        0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
        0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
        0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
    ]
}
