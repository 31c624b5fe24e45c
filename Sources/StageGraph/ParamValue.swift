// Stage parameters after checking: a small JSON-like value with defaults filled in. Its canonical JSON is
// what action keys hash, so two recipes that mean the same thing give the same key.
import YAMLSupport

public enum ParamValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([ParamValue])
    /// Keys sorted on output; insertion order kept for display.
    case map([(String, ParamValue)])
    /// An input port's value: the name written (`stage`, `stage.output`, a model or dataset). Action keys
    /// replace it by the digest of what it resolved to, so renaming a stage does not invalidate the cache.
    case reference(String)

    public static func == (a: ParamValue, b: ParamValue) -> Bool { a.canonicalJSON == b.canonicalJSON }
    public func hash(into h: inout Hasher) { h.combine(canonicalJSON) }

    public subscript(key: String) -> ParamValue? {
        if case .map(let kv) = self { return kv.first(where: { $0.0 == key })?.1 }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var int: Int? { if case .int(let i) = self { return i }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var double: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }
    public var list: [ParamValue]? { if case .list(let l) = self { return l }; return nil }
    public var entries: [(String, ParamValue)]? { if case .map(let m) = self { return m }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }
    public var referenceTarget: String? { if case .reference(let r) = self { return r }; return nil }

    /// The same value with every reference replaced by `transform(target)`.
    public func mapReferences(_ transform: (String) -> ParamValue) -> ParamValue {
        switch self {
        case .reference(let r): return transform(r)
        case .list(let l): return .list(l.map { $0.mapReferences(transform) })
        case .map(let m): return .map(m.map { ($0.0, $0.1.mapReferences(transform)) })
        default: return self
        }
    }

    /// Sorted-key JSON with no whitespace; doubles in shortest round-trip form.
    public var canonicalJSON: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? YAMLNode.formatDouble(d) : YAMLNode.jsonString(String(d))
        case .string(let s): return YAMLNode.jsonString(s)
        case .reference(let r): return "{\"$ref\":" + YAMLNode.jsonString(r) + "}"
        case .list(let l): return "[" + l.map(\.canonicalJSON).joined(separator: ",") + "]"
        case .map(let m):
            return "{" + m.sorted { $0.0 < $1.0 }.map { YAMLNode.jsonString($0.0) + ":" + $0.1.canonicalJSON }
                .joined(separator: ",") + "}"
        }
    }

    /// Short human form for tables and diffs (YAML-ish flow style).
    public var display: String {
        switch self {
        case .string(let s): return s
        case .reference(let r): return r
        case .list(let l): return "[" + l.map(\.display).joined(separator: ", ") + "]"
        case .map(let m): return "{" + m.map { "\($0.0): \($0.1.display)" }.joined(separator: ", ") + "}"
        default: return canonicalJSON
        }
    }

    /// Every (dotted path, leaf) pair, for diffs by path. Lists index with numbers.
    public func flattened(prefix: String = "") -> [(String, ParamValue)] {
        switch self {
        case .map(let m):
            if m.isEmpty { return [(prefix, self)] }
            return m.flatMap { $0.1.flattened(prefix: prefix.isEmpty ? $0.0 : prefix + "." + $0.0) }
        default:
            return [(prefix, self)]
        }
    }
}
