# Fixtures for Tests/PNGSupportTests: PNGs built by Python's own zlib (stored blocks, level 0) and CRC-32, to
# hold our dependency-free writer to byte equality, plus an external check of a multi-block PNG of ours.
#
#   /tmp/ref/bin/python Tests/Fixtures/images/generate.py
#
# 1. grey-13x7.png, rgb-5x4.png: small images (one stored block) written here with zlib.compress(level=0) and
#    zlib.crc32; our writer must reproduce them byte for byte. Pixel values are the formulas in `grey` / `rgb`.
# 2. ours-300x221.png: written by OUR writer (HPRUNE_RECORD=1 swift test --filter PNGSupportTests), two stored
#    blocks, which zlib splits differently (65,531 bytes, ...), so bytes cannot match. This script checks it
#    instead: signature, every chunk's CRC with zlib.crc32, IHDR, IDAT inflated by zlib.decompress, every pixel
#    equal to the formula, and writes ours-300x221.verified.json with its sha256; the Swift test compares its
#    output with the committed file, so the bytes Python verified are the bytes we write.
# 3. For the reader (PNGImage.decode): zlib-compressed PNGs as other programs write them (Chromium's screenshots):
#    filters-rgba-23x17.png (RGBA, the row filter cycling through 0-4, level 9), grey-alpha-40x30.png (grey+alpha,
#    filter 4 on every row, level 6), and wide-grey-640x48.png (a repetitive greyscale pattern, level 9, so the
#    stream has long matches and dynamic Huffman blocks). Pixel formulas: `rgba`, `ga`, `wide`.
import hashlib
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def grey(x, y):
    return (x * 19 + y * 37) % 256


def rgb(x, y, c):
    return (x * 50 + y * 20 + c * 90) % 256


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, colour, rows):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b"")


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


write("grey-13x7.png", png(13, 7, 0, [[grey(x, y) for x in range(13)] for y in range(7)]))
write("rgb-5x4.png", png(5, 4, 2, [[rgb(x, y, c) for x in range(5) for c in range(3)] for y in range(4)]))


def rgba(x, y, c):
    return (x * 31 + y * 17 + c * 71 + (x * y) % 13) % 256 if c < 3 else (x * 11 + y * 23) % 256


def ga(x, y, c):
    return (x * 7 + y * 3) % 256 if c == 0 else (255 - x * 5) % 256


def wide(x, y):
    return ((x // 8) * 40 + (y // 6) * 25) % 256


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filtered_png(width, height, colour, channels, pixel, filters, level):
    rows = [[pixel(x, y, c) for x in range(width) for c in range(channels)] for y in range(height)]
    raw = b""
    for y, row in enumerate(rows):
        f = filters(y)
        prev = rows[y - 1] if y > 0 else [0] * len(row)
        out = []
        for i, v in enumerate(row):
            a = row[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][f]
            out.append((v - pred) % 256)
        raw += bytes([f]) + bytes(out)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b"")


write("filters-rgba-23x17.png", filtered_png(23, 17, 6, 4, rgba, lambda y: y % 5, 9))
write("grey-alpha-40x30.png", filtered_png(40, 30, 4, 2, ga, lambda y: 4, 6))
write("wide-grey-640x48.png", filtered_png(640, 48, 0, 1, lambda x, y, c: wide(x, y), lambda y: 0, 9))

ours = os.path.join(HERE, "ours-300x221.png")
if os.path.exists(ours):
    data = open(ours, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "signature"
    i, chunks = 8, []
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n:i + 12 + n])
        assert crc == zlib.crc32(kind + body), f"CRC of {kind}"
        chunks.append((kind, body))
        i += 12 + n
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"], chunks
    assert chunks[0][1] == struct.pack(">IIBBBBB", 300, 221, 8, 0, 0, 0, 0), "IHDR"
    raw = zlib.decompress(chunks[1][1])
    want = b"".join(b"\x00" + bytes(grey(x, y) for x in range(300)) for y in range(221))
    assert raw == want, "pixels"
    blocks, j = [], 2
    body = chunks[1][1]
    while True:
        (length,) = struct.unpack("<H", body[j + 1:j + 3])
        blocks.append(length)
        if body[j] & 1:
            break
        j += 5 + length
    with open(os.path.join(HERE, "ours-300x221.verified.json"), "w") as f:
        json.dump({"file": "ours-300x221.png", "sha256": hashlib.sha256(data).hexdigest(),
                   "stored_blocks": blocks, "size": len(data), "crc32": zlib.crc32(data), "checked_with": f"Python zlib {zlib.ZLIB_RUNTIME_VERSION}"}, f, indent=1)
        f.write("\n")
    print("verified", ours, blocks)
else:
    print("ours-300x221.png missing: run `HPRUNE_RECORD=1 swift test --filter PNGSupportTests` first, then this again")
