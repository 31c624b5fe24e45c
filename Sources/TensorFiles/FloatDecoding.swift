// Bit-level decoding of stored floating-point formats to Float, and NaN/Inf scans that look at
// exponent bits only (no conversion), for checkpoint validation and tests.

/// Decoding of stored floating-point elements.
public enum FloatDecoding {
    /// Converts IEEE binary16 bits to Float (exact).
    @inline(__always)
    public static func f16ToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1f)
        let man = UInt32(h & 0x3ff)
        if exp == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (man << 13)) }
        if exp == 0 {
            // subnormal: man × 2^-24
            let v = Float(man) * 0x1p-24
            return sign != 0 ? -v : v
        }
        return Float(bitPattern: sign | UInt32(exp + 112) << 23 | (man << 13))
    }

    /// Converts bfloat16 bits to Float (exact).
    @inline(__always)
    public static func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// Decodes `raw` as `dtype` elements to Float; nil for non-float dtypes other than F64.
    public static func decode(_ raw: UnsafeRawBufferPointer, dtype: StorageDType) -> [Float]? {
        let n = raw.count / dtype.byteSize
        switch dtype {
        case .f32:
            return (0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        case .f16:
            return (0..<n).map { f16ToFloat(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
        case .bf16:
            return (0..<n).map { bf16ToFloat(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
        case .f64:
            return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self)) }
        default:
            return nil
        }
    }

    /// Whether any element of `raw` (as `dtype`) is NaN or ±Inf. Non-float dtypes: false.
    public static func hasNonFinite(_ raw: UnsafeRawBufferPointer, dtype: StorageDType) -> Bool {
        let n = raw.count / dtype.byteSize
        switch dtype {
        case .f32:
            for i in 0..<n where raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) & 0x7f80_0000 == 0x7f80_0000 { return true }
        case .f64:
            for i in 0..<n where raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 { return true }
        case .f16:
            for i in 0..<n where raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self) & 0x7c00 == 0x7c00 { return true }
        case .bf16:
            for i in 0..<n where raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self) & 0x7f80 == 0x7f80 { return true }
        case .f8e5m2:
            for i in 0..<n where raw[i] & 0x7c == 0x7c { return true }
        case .f8e4m3:
            // E4M3FN has no infinities; NaN is S.1111.111.
            for i in 0..<n where raw[i] & 0x7f == 0x7f { return true }
        default:
            return false
        }
        return false
    }
}
