// Lays out sample images (channel-planar floats, as model latents are) in a grid of rows and columns with gaps,
// mapping values linearly to 0…255 and upscaling by nearest neighbour: the sample sheets of `evaluate`.

/// A grid of equally sized tiles turned into one 8-bit image.
public enum ImageGrid {
    /// The grid image.
    ///
    /// - Parameters:
    ///   - rows: each row's tiles, left to right; a tile is [channels, height, width] floats (nil: an empty cell).
    ///     Rows may be shorter than `columns`.
    ///   - channels: 1 (greyscale) or 3 (RGB).
    ///   - low, high: the values mapped to 0 and 255 (values outside are clamped).
    ///   - scale: each pixel becomes a scale × scale block.
    ///   - gap: pixels of `background` between tiles and around the grid.
    /// - Throws: `PNGError` for a tile of the wrong size, a bad channel count or an impossible image size.
    public static func image(rows: [[[Float]?]], channels: Int, height: Int, width: Int, columns: Int,
                             scale: Int = 1, low: Float = -1, high: Float = 1, gap: Int = 1,
                             background: UInt8 = 128) throws -> PNGImage {
        guard channels == 1 || channels == 3 else { throw PNGError.unsupportedChannels(channels) }
        guard height > 0, width > 0, columns > 0, scale > 0, gap >= 0, !rows.isEmpty, high > low,
              rows.allSatisfy({ $0.count <= columns }) else {
            throw PNGError.badSize(width: columns * width * max(scale, 0), height: rows.count * height * max(scale, 0))
        }
        let tileH = height * scale, tileW = width * scale
        let (gridW, o1) = columns.multipliedReportingOverflow(by: tileW + gap)
        let (gridH, o2) = rows.count.multipliedReportingOverflow(by: tileH + gap)
        guard !o1, !o2, gridW + gap <= 1 << 24, gridH + gap <= 1 << 24 else {
            throw PNGError.badSize(width: gridW, height: gridH)
        }
        let W = gridW + gap, H = gridH + gap
        var pixels = [UInt8](repeating: background, count: W * H * channels)
        let plane = height * width
        for (r, row) in rows.enumerated() {
            for (c, tile) in row.enumerated() {
                guard let tile else { continue }
                guard tile.count == channels * plane else {
                    throw PNGError.pixelCountMismatch(expected: channels * plane, got: tile.count)
                }
                let x0 = gap + c * (tileW + gap), y0 = gap + r * (tileH + gap)
                for y in 0..<tileH {
                    for x in 0..<tileW {
                        let src = (y / scale) * width + x / scale
                        let dst = ((y0 + y) * W + x0 + x) * channels
                        for ch in 0..<channels { pixels[dst + ch] = byte(tile[ch * plane + src], low, high) }
                    }
                }
            }
        }
        return try PNGImage(width: W, height: H, channels: channels, pixels: pixels)
    }

    /// `v` mapped linearly from [low, high] to 0…255, rounded, clamped (NaN → 0).
    static func byte(_ v: Float, _ low: Float, _ high: Float) -> UInt8 {
        let t = (v - low) / (high - low) * 255
        guard t.isFinite else { return t == .infinity ? 255 : 0 }
        return UInt8(max(0, min(255, t.rounded())))
    }
}
