// One traits entry per stored quantised format (as ggml's `type_traits`): block layout, code table, the
// reference decoder (stored tensors → fp32) and the W4A16 preparation (stored tensors → packed codes, per-block
// scale / zero and code table), keyed by `QuantFormat`. Model loading reads a weight's stored tensors
// (`StoredQuantWeight`) and asks its format's traits; no other code decodes a quantised weight.
// Legend: n = numel of the weight, B = block (group) size, nb = ceil(n / B), R × C = rows × columns (int8).
//
//   format     codes                     statistics (suffix: tensor)                          decode
//   nf4, fp4   X        U8 [ceil(n/2),1]  bitsandbytes keys (`Quantized4Bit(bitsandbytesTensors:)`)  table[q]·absmax
//   int4       X        U8 [ceil(n/2)]    .scales F32 [nb]                                     (q − 8)·s
//   int4-asym  X        U8 [ceil(n/2)]    .scales F32 [nb], .zeros U8 [nb]                     (q − z)·s
//   int8       X        I8 [R, C]         .SCB F32 [R]                                         q·(SCB/127)
// plus `X.quant_state.<tag>` (U8 JSON) for every format, which only the bitsandbytes reader needs.

/// A quantised weight as stored: its codes tensor and companions (suffix → tensor), with the format, block size
/// and original shape its manifest records.
public struct StoredQuantWeight: Sendable, Hashable {
    /// The weight's name (messages; bitsandbytes' keys are relative to it).
    public var name: String
    public var format: QuantFormat
    /// B, as recorded; nil for per-row int8.
    public var blockSize: Int?
    /// The weight's shape before quantisation.
    public var shape: [Int]
    /// The tensor stored under `name` itself (packed codes).
    public var codes: SerializedTensor
    /// Suffix (`.absmax`, `.scales`, `.SCB`, `.quant_state.bitsandbytes__nf4`, …) → tensor.
    public var companions: [String: SerializedTensor]

    public init(name: String, format: QuantFormat, blockSize: Int?, shape: [Int], codes: SerializedTensor,
                companions: [String: SerializedTensor]) {
        self.name = name
        self.format = format
        self.blockSize = blockSize
        self.shape = shape
        self.codes = codes
        self.companions = companions
    }

    /// The weight `name` out of `tensors` (full name → tensor, as `QuantizedWeight.storedTensors` writes them):
    /// `name` itself and every `name`-prefixed companion.
    public init(name: String, format: QuantFormat, blockSize: Int?, shape: [Int], tensors: [String: SerializedTensor]) throws {
        guard let codes = tensors[name] else { throw QuantError.missingKey(name) }
        var companions: [String: SerializedTensor] = [:]
        for (k, t) in tensors where k.count > name.count && k.hasPrefix(name) && k.dropFirst(name.count).first == "." {
            companions[String(k.dropFirst(name.count))] = t
        }
        self.init(name: name, format: format, blockSize: blockSize, shape: shape, codes: codes, companions: companions)
    }

    /// n.
    public var count: Int { shape.reduce(1, *) }

    /// The fp32 values [n] (row-major) of the weight.
    public func dequantised() throws -> [Float] { try format.traits.dequantise(self) }

    /// The parts `Backend.matmulW4A16` runs on; throws for a format the kernels do not run packed (int8).
    public func prepared4Bit() throws -> Prepared4BitWeight {
        guard let prepare = format.traits.prepare else {
            throw QuantError.badLayout(key: name, reason: "\(format) weights are not held packed (dequantise them)")
        }
        return try prepare(self)
    }

    /// Every tensor under its full name (`name` + suffix), as bitsandbytes' reader wants them.
    public var tensorsByName: [String: SerializedTensor] {
        var out = [name: codes]
        for (suffix, t) in companions { out[name + suffix] = t }
        return out
    }

    func companion(_ suffix: String) throws -> SerializedTensor {
        guard let t = companions[suffix] else { throw QuantError.missingCompanion(key: name + suffix) }
        return t
    }

    func requireBlockSize() throws -> Int {
        guard let b = blockSize, b > 0, b % 2 == 0 else {
            throw QuantError.badLayout(key: name, reason: "\(format) needs a positive even block size, the manifest records \(blockSize.map(String.init) ?? "none")")
        }
        return b
    }
}

/// A 4-bit weight's kernel parts on the host, before they become backend tensors (`Packed4BitWeight`):
/// element e decodes to `codebook[q[e]] · scale[e / B] (+ zero[e / B])`.
public struct Prepared4BitWeight: Sendable, Hashable {
    /// [ceil(n/2)] `PackedNibbles` bytes of the flattened weight.
    public var packed: [UInt8]
    /// The packed tensor's dtype (`.nf4`, `.fp4` or `.int4`, carrying B).
    public var dtype: DType
    /// [nb] f32 scales (nf4/fp4: the absmax, a nested absmax decoded to f32 once).
    public var scale: [Float]
    /// [nb] f32 offsets (asymmetric int4: −z·s), or nil.
    public var zero: [Float]?
    /// [16] f32 code values.
    public var codebook: [Float]

    public init(packed: [UInt8], dtype: DType, scale: [Float], zero: [Float]? = nil, codebook: [Float]) {
        self.packed = packed
        self.dtype = dtype
        self.scale = scale
        self.zero = zero
        self.codebook = codebook
    }
}

extension Packed4BitWeight {
    /// The prepared parts as tensors on `backend`; `shape` is the weight's (N, K).
    public init(_ p: Prepared4BitWeight, shape: [Int], backend: any Backend) throws {
        func f32(_ v: [Float]) throws -> Tensor { try backend.tensor(v, shape: [v.count], dtype: .f32) }
        self.init(packed: try backend.tensor(bytes: p.packed, shape: shape, dtype: p.dtype), scale: try f32(p.scale),
                  zero: try p.zero.map(f32), codebook: try f32(p.codebook))
    }
}

/// What a stored format is: its block layout, code table, and how it is decoded and prepared for the kernels.
public struct QuantTraits: Sendable {
    public let format: QuantFormat
    /// Bits per stored code.
    public let codeBits: Int
    /// Whether statistics are per block of B flattened elements (false: per row, int8).
    public let blockwise: Bool
    /// Bytes of statistics per block (per row for int8) beside the codes, without double quantisation:
    /// an f32 scale, plus one zero-point byte for int4-asym.
    public let statisticBytes: Int
    /// Companion suffixes every stored weight of the format has (bitsandbytes' own keys are checked by its reader).
    public let companions: [String]
    /// The 16 code values of a 4-bit format as the kernel uses them (value = codebook[q]·scale + zero); nil for int8.
    public let codebook: [Float]?
    /// The reference decode: stored tensors → [n] fp32.
    public let dequantise: @Sendable (StoredQuantWeight) throws -> [Float]
    /// Stored tensors → the W4A16 kernel's parts; nil when the format is dequantised at load (int8).
    public let prepare: (@Sendable (StoredQuantWeight) throws -> Prepared4BitWeight)?

    /// Bytes one block of B elements (one row of B columns for int8) occupies: codes + statistics.
    public func bytesPerBlock(_ blockSize: Int) -> Int { (blockSize * codeBits + 7) / 8 + statisticBytes }

    /// Whether the kernels run the format packed (W4A16) instead of dequantising it at load.
    public var runsPacked: Bool { prepare != nil }
}

extension QuantFormat {
    /// This format's traits.
    public var traits: QuantTraits {
        switch self {
        case .nf4: return QuantTraits.nf4
        case .fp4: return QuantTraits.fp4
        case .int4: return QuantTraits.int4
        case .int4Asym: return QuantTraits.int4Asym
        case .int8: return QuantTraits.int8
        }
    }
}

extension QuantTraits {
    static let nf4 = bitsandbytes(.nf4)
    static let fp4 = bitsandbytes(.fp4)
    static let int4 = linear4(.symmetric)
    static let int4Asym = linear4(.asymmetric)
    static let int8 = QuantTraits(
        format: .int8, codeBits: 8, blockwise: false, statisticBytes: 4, companions: [".SCB"], codebook: nil,
        dequantise: { w in dequantizeInt8Rows(try int8Rows(w)) }, prepare: nil)

    /// nf4 / fp4 in bitsandbytes' key layout: scale = the block absmax, codebook = bitsandbytes' quant_map.
    private static func bitsandbytes(_ type: FourBitType) -> QuantTraits {
        QuantTraits(
            format: type == .nf4 ? .nf4 : .fp4, codeBits: 4, blockwise: true, statisticBytes: 4,
            companions: [".absmax", ".quant_map"], codebook: type.codebook.values,
            dequantise: { w in dequantize4bit(try fourBit(w, type)) },
            prepare: { w in
                let q = try fourBit(w, type)
                let dtype: DType = type == .nf4 ? .nf4(blockSize: q.blockSize) : .fp4(blockSize: q.blockSize)
                return Prepared4BitWeight(packed: q.packed, dtype: dtype, scale: q.blockAbsmax(), codebook: type.codebook.values)
            })
    }

    /// hprune's group-wise int4. Kernel form: symmetric uses the table −8…7 (value (q − 8)·s, exact); asymmetric
    /// the table 0…15 with zero = −z·s per group (q·s − z·s, within 2 ulp of (q − z)·s).
    private static func linear4(_ scheme: Int4Scheme) -> QuantTraits {
        let codebook: [Float] = switch scheme {
        case .symmetric: (0..<16).map { Float($0 - 8) }
        case .asymmetric: (0..<16).map(Float.init)
        }
        return QuantTraits(
            format: scheme == .symmetric ? .int4 : .int4Asym, codeBits: 4, blockwise: true,
            statisticBytes: scheme == .symmetric ? 4 : 5,
            companions: scheme == .symmetric ? [".scales"] : [".scales", ".zeros"], codebook: codebook,
            dequantise: { w in dequantizeInt4(try int4(w, scheme)) },
            prepare: { w in
                let q = try int4(w, scheme)
                let zero: [Float]? = switch scheme {
                case .symmetric: nil
                case .asymmetric: zip(q.zeroPoints, q.scales).map { -Float($0) * $1 }
                }
                return Prepared4BitWeight(packed: q.packed, dtype: .int4(groupSize: q.groupSize), scale: q.scales,
                                          zero: zero, codebook: codebook)
            })
    }

    /// The bitsandbytes 4-bit weight of `w`, checked against the manifest's shape.
    private static func fourBit(_ w: StoredQuantWeight, _ type: FourBitType) throws -> Quantized4Bit {
        let q = try Quantized4Bit(bitsandbytesTensors: w.tensorsByName, weightName: w.name)
        guard q.type == type else {
            throw QuantError.badLayout(key: w.name, reason: "the manifest says \(w.format), its quant state says \(q.type.rawValue)")
        }
        guard q.count == w.count, q.packed.count == (w.count + 1) / 2 else {
            throw QuantError.badLayout(key: w.name, reason: "its quant state holds \(q.count) values, the weight's shape \(w.shape) \(w.count)")
        }
        return q
    }

    /// hprune's int4 weight of `w`: codes, `.scales` and (asymmetric) `.zeros`, sizes checked.
    private static func int4(_ w: StoredQuantWeight, _ scheme: Int4Scheme) throws -> QuantizedInt4 {
        let g = try w.requireBlockSize()
        let n = w.count
        let blocks = (n + g - 1) / g
        let codes = w.codes.bytes
        guard let scales = try w.companion(".scales").floats() else {
            throw QuantError.badTensor(key: w.name + ".scales", expected: "F32 [\(blocks)]", got: "unreadable bytes")
        }
        var zeros: [UInt8] = []
        if scheme == .asymmetric { zeros = try w.companion(".zeros").bytes }
        guard codes.count == (n + 1) / 2, scales.count == blocks, scheme == .symmetric || zeros.count == blocks else {
            throw QuantError.badLayout(key: w.name, reason: "int4 data (\(codes.count) code bytes, \(scales.count) scales, \(zeros.count) zero points, group \(g)) does not match the shape \(w.shape)")
        }
        return QuantizedInt4(scheme: scheme, shape: w.shape, groupSize: g, packed: codes, scales: scales, zeroPoints: zeros)
    }

    /// Per-row int8 of `w`: codes I8 [R, C] and `.SCB` F32 [R] (R = n / C, C the last dimension).
    private static func int8Rows(_ w: StoredQuantWeight) throws -> QuantizedInt8Rows {
        let n = w.count, cols = w.shape.last ?? 1
        guard let scb = try w.companion(".SCB").floats() else {
            throw QuantError.badTensor(key: w.name + ".SCB", expected: "F32 row absmax", got: "unreadable bytes")
        }
        guard w.codes.bytes.count == n, cols > 0, scb.count == n / cols else {
            throw QuantError.badLayout(key: w.name, reason: "int8 data (\(w.codes.bytes.count) codes, \(scb.count) row scales) does not match the shape \(w.shape)")
        }
        return QuantizedInt8Rows(q: w.codes.bytes.map { Int8(bitPattern: $0) }, rowAbsmax: scb, rows: n / cols, cols: cols)
    }
}
