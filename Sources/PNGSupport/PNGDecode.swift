// A small PNG reader beside the writer: 8-bit greyscale, RGB, grey+alpha and RGBA, non-interlaced, all five row
// filters, IDAT inflated by our own RFC 1951 decoder (stored, fixed and dynamic Huffman blocks; the canonical-code
// walk of zlib's "puff"). Alpha is composited over white, so the result is a 1- or 3-channel `PNGImage`.

extension PNGImage {
    /// Decodes a PNG file's bytes. `source` names the file in errors.
    ///
    /// - Throws: `PNGError.malformed` for anything outside the supported subset or a corrupt stream.
    public static func decode(_ bytes: [UInt8], source: String = "<png>") throws -> PNGImage {
        func bad(_ why: String) -> PNGError { .malformed(source: source, reason: why) }
        guard bytes.count >= 8, bytes.prefix(8).elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw bad("no PNG signature")
        }
        var pos = 8
        var width = 0, height = 0, colourType = -1
        var idat: [UInt8] = []
        func be32(_ i: Int) -> Int { bytes[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while pos + 12 <= bytes.count {
            let length = be32(pos)
            let type = String(decoding: bytes[(pos + 4)..<(pos + 8)], as: UTF8.self)
            guard length >= 0, pos + 12 + length <= bytes.count else { throw bad("chunk '\(type)' at byte \(pos) runs past the end") }
            let data = bytes[(pos + 8)..<(pos + 8 + length)]
            switch type {
            case "IHDR":
                guard length == 13 else { throw bad("IHDR has \(length) bytes, not 13") }
                width = be32(pos + 8); height = be32(pos + 12)
                let depth = Int(data[data.startIndex + 8]); colourType = Int(data[data.startIndex + 9])
                let interlace = data[data.startIndex + 12]
                guard depth == 8 else { throw bad("bit depth \(depth) is not supported (only 8)") }
                guard [0, 2, 4, 6].contains(colourType) else { throw bad("colour type \(colourType) is not supported (grey, RGB, grey+alpha, RGBA)") }
                guard interlace == 0 else { throw bad("interlaced PNGs are not supported") }
                guard width > 0, height > 0, width.multipliedReportingOverflow(by: height).partialValue <= (1 << 28) else {
                    throw bad("image size \(width)×\(height) is not supported")
                }
            case "IDAT": idat += data
            case "IEND": pos = bytes.count
            default: break
            }
            pos += 12 + length
        }
        guard colourType >= 0 else { throw bad("no IHDR chunk") }
        guard idat.count > 2, (Int(idat[0]) << 8 | Int(idat[1])) % 31 == 0, idat[0] & 0x0F == 8 else {
            throw bad("IDAT is not a zlib deflate stream")
        }
        let channelsIn = [0: 1, 2: 3, 4: 2, 6: 4][colourType]!
        let stride = width * channelsIn
        let raw: [UInt8]
        do { raw = try Inflate.decompress(Array(idat[2...]), expected: height * (stride + 1)) } catch let e as Inflate.Failure {
            throw bad("IDAT: \(e.reason)")
        }
        guard raw.count >= height * (stride + 1) else { throw bad("IDAT holds \(raw.count) bytes, the image needs \(height * (stride + 1))") }
        // Undo the row filters (PNG spec §9), bytes-per-pixel = channelsIn at depth 8.
        var px = [UInt8](repeating: 0, count: height * stride)
        let bpp = channelsIn
        for y in 0..<height {
            let filter = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride
            for x in 0..<stride {
                let a = x >= bpp ? Int(px[dst + x - bpp]) : 0
                let b = y > 0 ? Int(px[dst - stride + x]) : 0
                let c = x >= bpp && y > 0 ? Int(px[dst - stride + x - bpp]) : 0
                let v = Int(raw[src + x])
                let out: Int
                switch filter {
                case 0: out = v
                case 1: out = v + a
                case 2: out = v + b
                case 3: out = v + (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    out = v + (pa <= pb && pa <= pc ? a : (pb <= pc ? b : c))
                default: throw bad("row \(y) has filter type \(filter) (0–4 exist)")
                }
                px[dst + x] = UInt8(truncatingIfNeeded: out)
            }
        }
        // Composite alpha over white.
        guard channelsIn == 2 || channelsIn == 4 else { return try PNGImage(width: width, height: height, channels: channelsIn, pixels: px) }
        let colour = channelsIn - 1
        var out = [UInt8](repeating: 0, count: width * height * colour)
        for i in 0..<(width * height) {
            let alpha = Int(px[i * channelsIn + colour])
            for k in 0..<colour {
                out[i * colour + k] = UInt8((Int(px[i * channelsIn + k]) * alpha + 255 * (255 - alpha) + 127) / 255)
            }
        }
        return try PNGImage(width: width, height: height, channels: colour, pixels: out)
    }
}

/// RFC 1951 inflate (raw deflate, no zlib header), after zlib's contrib/puff.
enum Inflate {
    struct Failure: Error { var reason: String }

    /// Canonical Huffman code: number of codes of each length (0…15) and the symbols in code order.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int]

        init(lengths: [Int]) throws {
            symbols = [Int](repeating: 0, count: lengths.count)
            for l in lengths { counts[l] += 1 }
            var left = 1
            for len in 1...15 {
                left <<= 1
                left -= counts[len]
                if left < 0 { throw Failure(reason: "over-subscribed Huffman code") }
            }
            var offsets = [Int](repeating: 0, count: 16)
            for len in 1..<15 { offsets[len + 1] = offsets[len] + counts[len] }
            for (sym, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = sym
                offsets[l] += 1
            }
        }
    }

    struct Reader {
        let input: [UInt8]
        var pos = 0
        var bitBuf = 0
        var bitCount = 0

        mutating func bits(_ need: Int) throws -> Int {
            var val = bitBuf
            while bitCount < need {
                guard pos < input.count else { throw Failure(reason: "the deflate stream ends early") }
                val |= Int(input[pos]) << bitCount
                pos += 1
                bitCount += 8
            }
            bitBuf = val >> need
            bitCount -= need
            return val & ((1 << need) - 1)
        }

        mutating func decode(_ h: Huffman) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1...15 {
                code |= try bits(1)
                let count = h.counts[len]
                if code - count < first { return h.symbols[index + (code - first)] }
                index += count
                first += count
                first <<= 1
                code <<= 1
            }
            throw Failure(reason: "invalid Huffman code")
        }
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                           4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    /// Inflates `input`; `expected` is a capacity hint.
    static func decompress(_ input: [UInt8], expected: Int = 0) throws -> [UInt8] {
        var r = Reader(input: input)
        var out: [UInt8] = []
        out.reserveCapacity(expected)
        let fixedLit = try Huffman(lengths: (0..<288).map { $0 < 144 ? 8 : ($0 < 256 ? 9 : ($0 < 280 ? 7 : 8)) })
        let fixedDist = try Huffman(lengths: [Int](repeating: 5, count: 30))
        var last = 0
        repeat {
            last = try r.bits(1)
            switch try r.bits(2) {
            case 0:
                r.bitBuf = 0; r.bitCount = 0
                guard r.pos + 4 <= input.count else { throw Failure(reason: "a stored block's header runs past the end") }
                let len = Int(input[r.pos]) | Int(input[r.pos + 1]) << 8
                let nlen = Int(input[r.pos + 2]) | Int(input[r.pos + 3]) << 8
                guard len == (~nlen & 0xFFFF) else { throw Failure(reason: "a stored block's length check fails") }
                r.pos += 4
                guard r.pos + len <= input.count else { throw Failure(reason: "a stored block runs past the end") }
                out += input[r.pos..<(r.pos + len)]
                r.pos += len
            case 1:
                try codes(&r, &out, fixedLit, fixedDist)
            case 2:
                let nlen = try r.bits(5) + 257, ndist = try r.bits(5) + 1, ncode = try r.bits(4) + 4
                guard nlen <= 286, ndist <= 30 else { throw Failure(reason: "bad dynamic block header counts") }
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var cl = [Int](repeating: 0, count: 19)
                for i in 0..<ncode { cl[order[i]] = try r.bits(3) }
                let clCode = try Huffman(lengths: cl)
                var lengths: [Int] = []
                while lengths.count < nlen + ndist {
                    let sym = try r.decode(clCode)
                    switch sym {
                    case 0..<16: lengths.append(sym)
                    case 16:
                        guard let prev = lengths.last else { throw Failure(reason: "a repeat code with no previous length") }
                        lengths += [Int](repeating: prev, count: 3 + (try r.bits(2)))
                    case 17: lengths += [Int](repeating: 0, count: 3 + (try r.bits(3)))
                    default: lengths += [Int](repeating: 0, count: 11 + (try r.bits(7)))
                    }
                }
                guard lengths.count == nlen + ndist, lengths[256] != 0 else { throw Failure(reason: "bad dynamic code lengths") }
                try codes(&r, &out, try Huffman(lengths: Array(lengths[0..<nlen])), try Huffman(lengths: Array(lengths[nlen...])))
            default:
                throw Failure(reason: "block type 3 is reserved")
            }
        } while last == 0
        return out
    }

    static func codes(_ r: inout Reader, _ out: inout [UInt8], _ lit: Huffman, _ dist: Huffman) throws {
        while true {
            let sym = try r.decode(lit)
            if sym < 256 { out.append(UInt8(sym)); continue }
            if sym == 256 { return }
            let li = sym - 257
            guard li < 29 else { throw Failure(reason: "invalid length symbol \(sym)") }
            let len = lengthBase[li] + (try r.bits(lengthExtra[li]))
            let ds = try r.decode(dist)
            guard ds < 30 else { throw Failure(reason: "invalid distance symbol \(ds)") }
            let d = distBase[ds] + (try r.bits(distExtra[ds]))
            guard d <= out.count else { throw Failure(reason: "a distance of \(d) reaches before the start") }
            let start = out.count - d
            for k in 0..<len { out.append(out[start + k]) }
        }
    }
}
