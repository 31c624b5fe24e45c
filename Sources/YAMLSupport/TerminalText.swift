// Makes untrusted text safe to print on a terminal: control characters, invalid UTF-8 bytes, bidi controls and
// other invisible format characters become visible escapes (`\u{202E}`, `\xFF`), so a recipe cannot move the
// cursor, recolour the screen or reorder what a diagnostic shows (Trojan Source). Also display widths, so a
// caret stays under its column when a line holds wide (CJK, emoji) or combining characters.

/// Escaping and display width of text from files, arguments and the environment.
///
/// ```swift
/// TerminalText.escape("a\u{202E}b\u{1B}[2J")   // "a\\u{202E}b\\u{1B}[2J"
/// TerminalText.cells([0x61, 0xFF])             // [("a", 1), ("\\xFF", 4)]
/// ```
public enum TerminalText {
    /// Whether `u` is shown as an escape: C0 and C1 controls and DEL (general category Cc), format characters
    /// (Cf: the bidi embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, the marks U+200E/U+200F
    /// and U+061C, zero-width characters, U+FEFF), and the line and paragraph separators U+2028/U+2029.
    public static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate: return true
        default: return false
        }
    }

    /// The visible spelling of one escaped scalar: `\n`, `\r`, `\t`, else `\u{HEX}`.
    public static func escaped(_ u: Unicode.Scalar) -> String {
        switch u {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\t": return "\\t"
        default: return "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
        }
    }

    /// `text` with every scalar that `needsEscape` written as its escape. With `keepNewlines`, `\n` stays a line
    /// break (for multi-line messages whose lines are each escaped).
    public static func escape(_ text: String, keepNewlines: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for u in text.unicodeScalars {
            if needsEscape(u) && !(keepNewlines && u == "\n") {
                out.append(contentsOf: escaped(u).unicodeScalars)
            } else {
                out.append(u)
            }
        }
        return String(out)
    }

    /// `text` escaped and cut to at most `limit` characters (an ellipsis marks the cut); for quoting a value
    /// inside a message.
    public static func quoted(_ text: String, limit: Int = 40) -> String {
        let e = escape(text)
        return e.count <= limit ? e : String(e.prefix(max(1, limit - 1))) + "…"
    }

    /// Columns a scalar takes on a terminal: 0 for combining marks, 2 for East Asian wide and fullwidth
    /// characters and emoji, else 1 (a close approximation of `wcwidth`).
    public static func width(_ u: Unicode.Scalar) -> Int {
        switch u.properties.generalCategory {
        case .nonspacingMark, .enclosingMark: return 0
        default: break
        }
        let v = u.value
        let wide: [ClosedRange<UInt32>] = [
            0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
            0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
            0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
        ]
        return wide.contains { $0.contains(v) } ? 2 : 1
    }

    /// Bytes of one source line as display cells, one per character (Unicode scalar) or per invalid UTF-8 byte:
    /// the text shown and its width in columns. Tabs become four spaces; escaped characters and invalid bytes
    /// (`\xFF`) are as wide as their escape.
    public static func cells(_ bytes: some Collection<UInt8>) -> [(text: String, width: Int)] {
        var out: [(text: String, width: Int)] = []
        let b = Array(bytes)
        var i = 0
        while i < b.count {
            guard let (u, n) = decode(b, at: i) else {
                out.append(("\\x" + hex2(b[i]), 4))
                i += 1
                continue
            }
            i += n
            if u == "\t" {
                out.append(("    ", 4))
            } else if needsEscape(u) {
                let e = escaped(u)
                out.append((e, e.count))
            } else {
                out.append((String(u), width(u)))
            }
        }
        return out
    }

    private static func hex2(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }

    /// One well-formed UTF-8 sequence at `i` (RFC 3629: no overlongs, surrogates or values past U+10FFFF) and
    /// its length, or nil if the byte at `i` does not start one.
    static func decode(_ b: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
        let b0 = b[i]
        if b0 < 0x80 { return (Unicode.Scalar(b0), 1) }
        let n: Int, lo: UInt8, hi: UInt8
        switch b0 {
        case 0xC2...0xDF: (n, lo, hi) = (2, 0x80, 0xBF)
        case 0xE0: (n, lo, hi) = (3, 0xA0, 0xBF)
        case 0xED: (n, lo, hi) = (3, 0x80, 0x9F)
        case 0xE1...0xEF: (n, lo, hi) = (3, 0x80, 0xBF)
        case 0xF0: (n, lo, hi) = (4, 0x90, 0xBF)
        case 0xF1...0xF3: (n, lo, hi) = (4, 0x80, 0xBF)
        case 0xF4: (n, lo, hi) = (4, 0x80, 0x8F)
        default: return nil
        }
        guard i + n <= b.count, (lo...hi).contains(b[i + 1]) else { return nil }
        var v = UInt32(b0) & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07)
        v = v << 6 | UInt32(b[i + 1] & 0x3F)
        for k in 2..<n {
            guard (0x80...0xBF).contains(b[i + k]) else { return nil }
            v = v << 6 | UInt32(b[i + k] & 0x3F)
        }
        return Unicode.Scalar(v).map { ($0, n) }
    }
}
