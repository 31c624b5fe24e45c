// Typed reads of YAML nodes under the YAML 1.2 core schema (plain `true`, `12`, `1.5e-4`, `null`, `~`),
// used by every checker so that "wrong type" means the same thing everywhere.

extension YAMLNode {
    /// The scalar text, whatever its style.
    public var scalarText: String? {
        if case .scalar(let s, _) = value { return s }
        return nil
    }

    public var isMapping: Bool { if case .mapping = value { return true }; return false }
    public var isSequence: Bool { if case .sequence = value { return true }; return false }
    public var isScalar: Bool { if case .scalar = value { return true }; return false }

    public var pairs: [YAMLPair]? { if case .mapping(let p) = value { return p }; return nil }
    public var items: [YAMLNode]? { if case .sequence(let i) = value { return i }; return nil }

    private var isPlain: Bool {
        if case .scalar(_, .plain) = value { return tag == nil }
        return false
    }

    /// `null`, `Null`, `NULL`, `~` or empty, written plain.
    public var isNull: Bool {
        guard isPlain, let s = scalarText else { return tag == "tag:yaml.org,2002:null" }
        return s.isEmpty || s == "~" || s == "null" || s == "Null" || s == "NULL"
    }

    /// Any non-null scalar as text (numbers and booleans too, as written).
    public var string: String? {
        guard let s = scalarText, !isNull else { return nil }
        return s
    }

    public var bool: Bool? {
        guard isPlain || tag == "tag:yaml.org,2002:bool", let s = scalarText else { return nil }
        switch s {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default: return nil
        }
    }

    public var int: Int? {
        guard isPlain || tag == "tag:yaml.org,2002:int", let s = scalarText else { return nil }
        if let v = Int(s) { return v }
        if s.hasPrefix("0x"), let v = Int(s.dropFirst(2), radix: 16) { return v }
        if s.hasPrefix("0o"), let v = Int(s.dropFirst(2), radix: 8) { return v }
        if s.hasPrefix("+"), let v = Int(s.dropFirst()) { return v }
        return nil
    }

    /// Floats, and integers read as floats.
    public var double: Double? {
        guard isPlain || tag == "tag:yaml.org,2002:float", let s = scalarText else { return nil }
        if let i = int { return Double(i) }
        switch s {
        case ".inf", ".Inf", ".INF", "+.inf": return .infinity
        case "-.inf", "-.Inf", "-.INF": return -.infinity
        case ".nan", ".NaN", ".NAN": return .nan
        default: break
        }
        // YAML floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
        guard s.allSatisfy({ "0123456789.eE+-".contains($0) }), s.contains(where: \.isNumber) else { return nil }
        return Double(s)
    }

    /// The value under `key` in a mapping (the last one, if the key is written twice).
    public subscript(key: String) -> YAMLNode? {
        pairs?.last(where: { $0.key.scalarText == key })?.value
    }

    /// The pair (with the key's own mark) under `key`.
    public func pair(_ key: String) -> YAMLPair? {
        pairs?.last(where: { $0.key.scalarText == key })
    }

    /// A short name of the node's type for messages: "a mapping", "a list", "a string", "a number", ….
    public var typeDescription: String {
        switch value {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar:
            if isNull { return "null" }
            if bool != nil { return "a boolean" }
            if int != nil { return "an integer" }
            if double != nil { return "a number" }
            return "a string"
        }
    }
}

extension YAMLNode {
    /// The type and, for a scalar, the value as written (escaped, cut to 40 characters), for "got …" in messages:
    /// `an integer -3`, `.inf (infinity)`, `a string "yes please"`, `a list of 3 items`, `a mapping`, `null`.
    public var valueDescription: String {
        switch value {
        case .mapping(let p): return p.isEmpty ? "an empty mapping" : "a mapping"
        case .sequence(let i): return i.isEmpty ? "an empty list" : "a list of \(i.count) item\(i.count == 1 ? "" : "s")"
        case .scalar(let text, _):
            if isNull { return "null" }
            let shown = TerminalText.quoted(text)
            if bool != nil { return "a boolean \(shown)" }
            if int != nil { return "an integer \(shown)" }
            if let d = double {
                if d.isNaN { return "\(shown) (not a number)" }
                if d.isInfinite { return "\(shown) (\(d < 0 ? "minus " : "")infinity)" }
                return "a number \(shown)"
            }
            return "a string \"\(shown)\""
        }
    }
}

extension YAMLNode {
    /// A plain string scalar (quoted on output when it would otherwise read as another type).
    public static func string(_ s: String, at mark: SourceMark) -> YAMLNode {
        YAMLNode(.scalar(s, .doubleQuoted), mark: mark)
    }

    /// Canonical, order-preserving JSON-like rendering used for hashing and `diff`: scalars are typed by the
    /// core schema so `0.2` and `0.20` differ as text but `"1"` (a string) and `1` (an int) differ in type.
    public var canonicalJSON: String {
        switch value {
        case .mapping(let ps):
            let sorted = ps.sorted { ($0.key.scalarText ?? "") < ($1.key.scalarText ?? "") }
            return "{" + sorted.map { Self.jsonString($0.key.scalarText ?? "") + ":" + $0.value.canonicalJSON }
                .joined(separator: ",") + "}"
        case .sequence(let items):
            return "[" + items.map(\.canonicalJSON).joined(separator: ",") + "]"
        case .scalar(let s, _):
            if isNull { return "null" }
            if let b = bool { return b ? "true" : "false" }
            if let i = int { return String(i) }
            if let d = double, d.isFinite { return Self.formatDouble(d) }
            return Self.jsonString(s)
        }
    }

    /// Shortest round-trip text of a double, integral values with a trailing `.0`.
    public static func formatDouble(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) + ".0" }
        return "\(d)"
    }

    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
