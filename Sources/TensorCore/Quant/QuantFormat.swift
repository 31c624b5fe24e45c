// Weight quantisation formats and their byte layouts, each defined once (ggml style), pinned by size checks.
// Every 4-bit format shares one layout: packed nibbles of the row-major flattened weight plus per-block scales.
// Legend: n = numel of the weight, B = block (group) size, nb = ceil(n / B) blocks, nn = ceil(nb / 256).

/// A stored quantised weight format: the name a model manifest records for a quantised tensor (its raw value,
/// so the manifest's JSON is the format name) and the key of the format's traits (`QuantTraits`, ggml-style:
/// one table entry per format with its block layout, code table, decoder and kernel preparation).
///
/// ```swift
/// let f = QuantFormat(name: "int4-sym")            // .int4 (aliases accepted, case-insensitive)
/// let t = QuantFormat.nf4.traits                   // codeBits 4, statisticBytes 4, codebook: bitsandbytes' NF4
/// ```
public enum QuantFormat: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// bitsandbytes NormalFloat4 (`quant_type='nf4'`), fp32 absmax per block (optionally double-quantised).
    case nf4
    /// bitsandbytes FP4 (`quant_type='fp4'`, 1 sign, 2 exponent, 1 mantissa bit), fp32 absmax per block.
    case fp4
    /// Linear 4-bit integers, symmetric: one fp32 scale per group.
    case int4
    /// Linear 4-bit integers, asymmetric: one fp32 scale and one zero point per group.
    case int4Asym = "int4-asym"
    /// Linear 8-bit integers, one fp32 absmax per row (bitsandbytes `int8_vectorwise_quant`).
    case int8

    /// Parses a recipe / CLI name, case-insensitively: the raw values and the aliases `int4-sym`,
    /// `int4-symmetric`, `int4-asymmetric`.
    public init?(name: String) {
        switch name.lowercased() {
        case "int4-sym", "int4-symmetric": self = .int4
        case "int4-asymmetric": self = .int4Asym
        case let n: self.init(rawValue: n)
        }
    }

    /// The bitsandbytes 4-bit type of nf4 / fp4 (what diffusers loads); nil for hprune's own formats.
    public var bitsandbytesType: FourBitType? {
        switch self {
        case .nf4: return .nf4
        case .fp4: return .fp4
        case .int4, .int4Asym, .int8: return nil
        }
    }

    public var description: String { rawValue }
}

extension QuantFormat: Codable {
    /// Decodes the raw value; an unknown name says which ones exist.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let f = QuantFormat(rawValue: s) else {
            throw DecodingError.dataCorruptedError(
                in: c, debugDescription: "unknown quantisation format '\(s)' (known: \(QuantFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self = f
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// What to quantise a weight to: a format with its block (group) size.
///
/// ```swift
/// let s = QuantSpec(name: "int4-asym", blockSize: 128)   // .int4(.asymmetric, blockSize: 128)
/// ```
public enum QuantSpec: Hashable, Sendable, CustomStringConvertible {
    /// bitsandbytes NormalFloat4 (`quant_type='nf4'`), fp32 absmax per block (optionally double-quantised).
    case nf4(blockSize: Int)
    /// bitsandbytes FP4 (`quant_type='fp4'`, 1 sign, 2 exponent, 1 mantissa bit), fp32 absmax per block.
    case fp4(blockSize: Int)
    /// Linear 4-bit integers with one fp32 scale (and for `.asymmetric` one zero point) per group.
    case int4(Int4Scheme, blockSize: Int)
    /// Linear 8-bit integers, one fp32 absmax per row (bitsandbytes `int8_vectorwise_quant`).
    case int8

    /// `format` with `blockSize` (ignored by the per-row `int8`).
    public init(_ format: QuantFormat, blockSize: Int) {
        switch format {
        case .nf4: self = .nf4(blockSize: blockSize)
        case .fp4: self = .fp4(blockSize: blockSize)
        case .int4: self = .int4(.symmetric, blockSize: blockSize)
        case .int4Asym: self = .int4(.asymmetric, blockSize: blockSize)
        case .int8: self = .int8
        }
    }

    /// Parses a recipe / CLI name (`QuantFormat(name:)`): `nf4`, `fp4`, `int4` (= `int4-sym`), `int4-sym`,
    /// `int4-asym`, `int8`.
    public init?(name: String, blockSize: Int = 64) {
        guard let f = QuantFormat(name: name) else { return nil }
        self.init(f, blockSize: blockSize)
    }

    /// The stored format.
    public var format: QuantFormat {
        switch self {
        case .nf4: return .nf4
        case .fp4: return .fp4
        case .int4(.symmetric, _): return .int4
        case .int4(.asymmetric, _): return .int4Asym
        case .int8: return .int8
        }
    }

    /// Stored bits per weight element, counting the packed codes only (not the scales).
    public var codeBits: Int { format.traits.codeBits }

    /// Elements that share one scale; `nil` for per-row `int8`.
    public var blockSize: Int? {
        switch self {
        case .nf4(let b), .fp4(let b), .int4(_, let b): return b
        case .int8: return nil
        }
    }

    public var description: String {
        switch self {
        case .nf4(let b): return "nf4/\(b)"
        case .fp4(let b): return "fp4/\(b)"
        case .int4(.symmetric, let b): return "int4-sym/\(b)"
        case .int4(.asymmetric, let b): return "int4-asym/\(b)"
        case .int8: return "int8"
        }
    }
}

/// How `int4` maps a group's range onto the 16 codes.
public enum Int4Scheme: String, Hashable, Sendable, CaseIterable, Codable {
    /// scale = absmax / 7, q = clamp(rint(x / scale), -8, 7), stored as the nibble q + 8.
    case symmetric
    /// Range widened to include 0; scale = (max - min) / 15, integer zero point z in 0...15, nibble q in 0...15.
    case asymmetric
}

/// The block sizes bitsandbytes accepts for `quantize_4bit`.
public let bitsandbytesBlockSizes: [Int] = [32, 64, 128, 256, 512, 1024, 2048, 4096]

/// One byte holding two 4-bit codes: element 2j in the HIGH nibble, element 2j+1 in the LOW nibble.
///
/// This is bitsandbytes' packing (`(q[2j] << 4) | q[2j+1]`). For odd n the last byte's low nibble holds the
/// code of 0.0 (NF4: 7, FP4: 0, int4: whatever 0.0 encodes to), exactly as bitsandbytes pads.
@frozen public struct PackedNibbles: Hashable, Sendable {
    public var byte: UInt8
    @inlinable public init(byte: UInt8) { self.byte = byte }
    @inlinable public init(high: UInt8, low: UInt8) { byte = (high << 4) | (low & 0x0F) }
    /// The code of element 2j.
    @inlinable public var high: UInt8 { byte >> 4 }
    /// The code of element 2j+1.
    @inlinable public var low: UInt8 { byte & 0x0F }
}

/// Byte layout shared by every 4-bit format (nf4, fp4, int4) for a weight of `count` elements.
///
/// ```
/// packed : [ceil(n/2)]  UInt8   PackedNibbles of the row-major flattened weight
/// scales : [nb]         Float32 one per block of B consecutive flattened elements; the last block may be partial
///                               (nf4/fp4: absmax; int4: scale)
/// zeros  : [nb]         UInt8   int4 asymmetric only: the zero point, one byte per block (0...15)
/// nested : [nb] UInt8 codes + [nn] Float32 absmax + 1 Float32 offset, replacing `scales` when nf4/fp4 are
///          double-quantised (bitsandbytes `compress_statistics=True`, 8-bit dynamic map, block 256)
/// ```
/// Blocks run over the flattened tensor, not per row; for every Linear layer whose in-features are a multiple of
/// B (all SD3/SD3.5/FLUX layers at B = 64 or 128) a block never straddles two rows.
public struct FourBitLayout: Hashable, Sendable {
    /// n: elements of the weight.
    public let count: Int
    /// B: elements per block.
    public let blockSize: Int

    public init(count: Int, blockSize: Int) {
        precondition(count >= 0 && blockSize > 0, "FourBitLayout needs count >= 0 and blockSize > 0")
        self.count = count
        self.blockSize = blockSize
    }

    /// Bytes of packed codes: ceil(n / 2).
    public var packedByteCount: Int { (count + 1) / 2 }
    /// nb: blocks, the last one possibly partial.
    public var blockCount: Int { (count + blockSize - 1) / blockSize }
    /// Elements in block `b` (only the last block can be short).
    public func elementCount(ofBlock b: Int) -> Int { min(blockSize, count - b * blockSize) }
    /// nn: blocks of the nested (double) quantisation of the absmax vector.
    public var nestedBlockCount: Int { (blockCount + NestedAbsmax.blockSize - 1) / NestedAbsmax.blockSize }
    /// Bytes of the whole quantised weight with fp32 scales (and zero points when `withZeroPoints`).
    public func storageBytes(withZeroPoints: Bool = false) -> Int {
        packedByteCount + blockCount * 4 + (withZeroPoints ? blockCount : 0)
    }
    /// Bytes of the whole quantised weight with double-quantised absmax.
    public var nestedStorageBytes: Int { packedByteCount + blockCount + nestedBlockCount * 4 + 4 }
}

/// Byte layout of per-row `int8`: `q: [rows, cols] Int8` row-major, then `rowAbsmax: [rows] Float32`.
public struct Int8RowLayout: Hashable, Sendable {
    public let rows: Int
    public let cols: Int
    public init(rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0, "Int8RowLayout needs non-negative dimensions")
        self.rows = rows
        self.cols = cols
    }
    public var codeByteCount: Int { rows * cols }
    public var storageBytes: Int { rows * cols + rows * 4 }
}

/// The size facts every layout relies on (checked by `LayoutTests`).
public enum QuantLayoutAssertions {
    /// `PackedNibbles` is exactly one byte, scales are 4-byte IEEE floats, codes are bytes.
    public static var hold: Bool {
        MemoryLayout<PackedNibbles>.size == 1 && MemoryLayout<PackedNibbles>.stride == 1
            && MemoryLayout<Float>.size == 4 && MemoryLayout<UInt8>.size == 1 && MemoryLayout<Int8>.size == 1
            && FourBitCodebook.nf4.values.count == 16 && FourBitCodebook.fp4.values.count == 16
            && DynamicMap8.signed.count == 256
    }
}
