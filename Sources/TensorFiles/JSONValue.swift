// A small, strictly typed JSON tree: safetensors headers, index files and diffusers configs are
// decoded into it so integers, floats and booleans are never confused (JSONSerialization turns
// `true` into 1 and 2.0 into 2).

import Foundation

/// A decoded JSON value. Integers that fit in `Int` are `.int`; other numbers are `.double`.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = .double(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([JSONValue].self) { self = .array(a); return }
        if let o = try? c.decode([String: JSONValue].self) { self = .object(o); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Parses JSON bytes; on failure returns the parser's message.
    public static func parse(_ data: Data) -> Result<JSONValue, JSONParseError> {
        do {
            return .success(try JSONDecoder().decode(JSONValue.self, from: data))
        } catch let DecodingError.dataCorrupted(ctx) {
            let under = (ctx.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return .failure(JSONParseError(message: under ?? ctx.debugDescription))
        } catch {
            return .failure(JSONParseError(message: "\(error)"))
        }
    }

    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var intValue: Int? { if case .int(let i) = self { i } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    /// The number as a Double, for `.int` and `.double`.
    public var numberValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
    public var isNull: Bool { if case .null = self { true } else { false } }

    /// A short name of the JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// The type and, for a scalar, the value itself (strings quoted and cut to 40 characters), for messages:
    /// `an integer -3`, `a number 1e+300`, `a string "abc"`, `an array of 2 items`, `an object`, `null`.
    public var valueDescription: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "a boolean \(b)"
        case .int(let i): return "an integer \(i)"
        case .double(let d): return "a number \(d)"
        case .string(let s):
            let q = CompactJSON.string(s)
            return "a string " + (q.count <= 42 ? q : String(q.prefix(40)) + "…\"")
        case .array(let a): return "an array of \(a.count) item\(a.count == 1 ? "" : "s")"
        case .object: return "an object"
        }
    }
}

/// The JSON parser's complaint, as text.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// JSON text written the way serde_json writes it (compact; `"`, `\`, and control characters
/// escaped; `/` and non-ASCII left as they are), so our headers match the reference byte for byte.
enum CompactJSON {
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
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

    static func intArray(_ a: [Int]) -> String {
        "[" + a.map(String.init).joined(separator: ",") + "]"
    }
}
