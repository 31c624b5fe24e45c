// Which input of an action changed: two canonical JSONs of the same stage (ActionKey.swift) compared field by field,
// for `hprune plan --why` and `hprune diff`. Labels say what the field is:
//
//     params.loss.feature: 0.0001 → 0.001
//     input student: sha256:ab12cd34ef56… → sha256:9f8e7d6c5b4a…
//     input model: sha256:ab12cd34ef56… → (after teacher runs)
//     numerics cpu.avx512_bf16: 1 → 2
//     file train.py: 3a4b… → 5c6d…
//     kind_version: 3 → 4
//
// Values are compared as their canonical JSON text, so equal values compare equal whatever their source spelling.
import Foundation

/// One field that differs between two canonical JSONs.
public struct InputChange: Sendable, Equatable, CustomStringConvertible {
    /// `params.<path>`, `input <path>`, `numerics <family>`, `file <path>`, or a top-level field (`seed`, `backend`, …).
    public var label: String
    /// How each side shows it; nil where the field is absent.
    public var a: String?
    public var b: String?

    public init(label: String, a: String?, b: String?) {
        self.label = label
        self.a = a
        self.b = b
    }

    public var description: String { "\(label): \(a ?? "(absent)") → \(b ?? "(absent)")" }
}

public enum InputDiff {
    /// The fields that differ from `a` to `b`, in a stable order (top-level fields, then params, inputs, numerics
    /// and files as they sort). Nil when either text is not canonical JSON of an object.
    /// `describe` may rename values (e.g. `def:<key>#<port>` of a definition as the stage it names); it is asked
    /// first, and nil keeps the built-in display.
    public static func changes(_ a: String, _ b: String, describe: (String) -> String? = { _ in nil }) -> [InputChange]? {
        guard let fa = flatten(a), let fb = flatten(b) else { return nil }
        let da = Dictionary(fa, uniquingKeysWith: { x, _ in x }), db = Dictionary(fb, uniquingKeysWith: { x, _ in x })
        var order: [[String]] = []
        var seen: Set<[String]> = []
        for (p, _) in fa + fb where seen.insert(p).inserted { order.append(p) }
        return order.compactMap { path in
            let x = da[path], y = db[path]
            guard x != y else { return nil }
            return InputChange(label: label(path, x, y), a: x.map { display($0, describe) }, b: y.map { display($0, describe) })
        }
    }

    /// `params.a.b`, `input a.b` (when either side is an artifact digest or a pending input), `numerics cpu.avx2`,
    /// `file x.py`, else the field name.
    static func label(_ path: [String], _ a: String?, _ b: String?) -> String {
        guard let head = path.first else { return "(document)" }
        let rest = path.dropFirst().joined(separator: ".")
        switch head {
        case "params":
            let isInput = [a, b].contains { v in v.map { isDigest($0) || isPending($0) || isDefinition($0) } ?? false }
            return (isInput ? "input " : "params.") + rest
        case "numerics", "files":
            return (head == "numerics" ? "numerics " : "file ") + rest
        default:
            return path.joined(separator: ".")
        }
    }

    /// Digests shortened to 12 hex digits, pending inputs as `(after <stage> runs)`, anything else as its JSON.
    static func display(_ raw: String, _ describe: (String) -> String?) -> String {
        let text = unquoted(raw)
        if let text, let d = describe(text) { return d }
        if let text, isDigestText(text) { return "sha256:" + text.dropFirst(7).prefix(12) + "…" }
        if let text, text.hasPrefix(ActionKey.pendingPrefix) {
            let target = text.dropFirst(ActionKey.pendingPrefix.count)
            return "(after \(target.split(separator: ".").first.map(String.init) ?? String(target)) runs)"
        }
        if let text, text.count == 64, text.allSatisfy(\.isHexDigit) { return text.prefix(12) + "…" }
        return raw
    }

    static func isDigest(_ raw: String) -> Bool { unquoted(raw).map(isDigestText) ?? false }
    static func isPending(_ raw: String) -> Bool { unquoted(raw)?.hasPrefix(ActionKey.pendingPrefix) ?? false }
    static func isDefinition(_ raw: String) -> Bool { unquoted(raw)?.hasPrefix("def:") ?? false }
    static func isDigestText(_ t: String) -> Bool {
        t.hasPrefix("sha256:") && t.count == 71 && t.dropFirst(7).allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// The string a JSON string literal holds (simple escapes only: what canonical JSON writes), else nil.
    static func unquoted(_ raw: String) -> String? {
        guard raw.count >= 2, raw.first == "\"", raw.last == "\"" else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(raw.utf8), options: .fragmentsAllowed)) as? String
    }

    /// (path, canonical JSON of the leaf) of every leaf; objects are walked by key, lists by index unless all their
    /// items are scalars that name no input (then the whole list is one leaf). Nil if `text` is not a JSON object.
    static func flatten(_ text: String) -> [([String], String)]? {
        var parser = Parser(bytes: Array(text.utf8))
        guard let value = parser.value(), parser.atEnd, case .object = value else { return nil }
        var out: [([String], String)] = []
        walk(value, [], &out)
        return out
    }

    private static func walk(_ v: Value, _ path: [String], _ out: inout [([String], String)]) {
        switch v {
        case .object(let fields):
            if fields.isEmpty { out.append((path, "{}")); return }
            for (k, x) in fields { walk(x, path + [k], &out) }
        case .array(let items, let raw):
            let scalar = items.allSatisfy { if case .scalar(let r) = $0 { return !isDigest(r) && !isPending(r) && !isDefinition(r) }; return false }
            if scalar || items.isEmpty { out.append((path, raw)); return }
            for (i, x) in items.enumerated() { walk(x, path + [String(i)], &out) }
        case .scalar(let raw):
            out.append((path, raw))
        }
    }

    private indirect enum Value {
        case object([(String, Value)])
        case array([Value], raw: String)
        case scalar(String)
    }

    /// A small recursive-descent reader for the JSON that `canonicalJSON` writes (no whitespace needed, but skipped).
    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        var atEnd: Bool { mutating get { skip(); return i == bytes.count } }

        mutating func skip() { while i < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[i]) { i += 1 } }

        mutating func value() -> Value? {
            skip()
            guard i < bytes.count else { return nil }
            let start = i
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var fields: [(String, Value)] = []
                skip()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object([]) }
                while true {
                    skip()
                    guard let k = stringLiteral(), let key = InputDiff.unquoted(k) else { return nil }
                    skip()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value() else { return nil }
                    fields.append((key, v))
                    skip()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(fields) }
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [Value] = []
                skip()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array([], raw: "[]") }
                while true {
                    guard let v = value() else { return nil }
                    items.append(v)
                    skip()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") {
                        i += 1
                        return .array(items, raw: String(decoding: bytes[start..<i], as: UTF8.self))
                    }
                    return nil
                }
            case UInt8(ascii: "\""):
                return stringLiteral().map(Value.scalar)
            default:
                while i < bytes.count, !",]}: \n\r\t".utf8.contains(bytes[i]) { i += 1 }
                return i > start ? .scalar(String(decoding: bytes[start..<i], as: UTF8.self)) : nil
            }
        }

        /// A string literal's raw text, quotes included.
        mutating func stringLiteral() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            let start = i
            i += 1
            while i < bytes.count {
                if bytes[i] == UInt8(ascii: "\\") { i += 2; continue }
                if bytes[i] == UInt8(ascii: "\"") { i += 1; return String(decoding: bytes[start..<i], as: UTF8.self) }
                i += 1
            }
            return nil
        }
    }
}
