// Typed stage parameters: decodes a kind's checked `ParamValue` into its `Params: Decodable` struct, once, with
// every default taken from the kind's `Schema`. A kind's code never re-states a default:
//   - a field present in the params decodes from its value;
//   - a non-optional property whose field is absent decodes from the field's schema default, and an absent
//     `object` field decodes from its sub-schema's defaults (so `loss.form` has its default even with no `loss:`);
//   - an optional property whose field is absent (and has no default) is nil.
// Keys: a Swift property `checkpointEvery` reads the recipe key `checkpoint_every` (camelCase → snake_case).
// References decode as the name written; stages resolve them through their inputs. Enums decode from `.choice`
// strings (declare the field with `.choice(of: E.self)` so the schema and the enum cannot drift apart).
// A property the schema does not know, or a required value with neither a value nor a default, is a
// programming error in the kind and is reported as a `ParamDecodingError` naming the dotted path.
import YAMLSupport

public struct ParamDecodingError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public var description: String { "params '\(path)': \(message)" }
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
}

public enum ParamDecoder {
    /// Decodes `value` (as `SchemaChecker` returned it) against `schema`.
    public static func decode<T: Decodable>(_ type: T.Type, from value: ParamValue, schema: Schema) throws -> T {
        try T(from: _ParamDecoder(value: value, schema: schema, codingPath: []))
    }

    /// A recipe key for a Swift property name: `checkpointEvery` → `checkpoint_every`.
    public static func recipeKey(_ swiftName: String) -> String {
        var out = ""
        for ch in swiftName {
            if ch.isUppercase {
                if !out.isEmpty { out.append("_") }
                out.append(contentsOf: ch.lowercased())
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

extension ParamType {
    /// A `.choice` over an enum's raw values, in declaration order.
    public static func choice<E: CaseIterable & RawRepresentable>(of: E.Type) -> ParamType where E.RawValue == String {
        .choice(E.allCases.map(\.rawValue))
    }
}

// MARK: - Decoder

private struct _Key: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
}

private func pathString(_ path: [CodingKey]) -> String {
    path.map { $0.intValue.map { "[\($0)]" } ?? "." + ParamDecoder.recipeKey($0.stringValue) }.joined()
        .trimmingPrefix(".")
}

private extension String {
    func trimmingPrefix(_ p: String) -> String { hasPrefix(p) ? String(dropFirst(p.count)) : self }
}

/// `schema` is the sub-schema of an object value, when known (nil for dictionaries and scalars).
private struct _ParamDecoder: Decoder {
    let value: ParamValue
    let schema: Schema?
    let elementType: ParamType?
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(value: ParamValue, schema: Schema?, elementType: ParamType? = nil, codingPath: [CodingKey]) {
        self.value = value
        self.schema = schema
        self.elementType = elementType
        self.codingPath = codingPath
    }

    func fail(_ message: String) -> ParamDecodingError {
        ParamDecodingError(path: pathString(codingPath), message: message)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let entries = value.entries else { throw fail("expected a mapping, got \(value.display)") }
        return KeyedDecodingContainer(_Keyed<Key>(entries: entries, schema: schema, elementType: elementType, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard let items = value.list else { throw fail("expected a list, got \(value.display)") }
        return _Unkeyed(items: items, elementType: elementType, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        _Single(value: value, schema: schema, elementType: elementType, codingPath: codingPath)
    }
}

/// The sub-schema / element type a field's value decodes with.
private func nested(_ type: ParamType?) -> (schema: Schema?, element: ParamType?) {
    switch type {
    case .object(let s)?: return (s, nil)
    case .list(let e, _)?: return (nil, e)
    case .dictionary(let e)?: return (nil, e)
    default: return (nil, nil)
    }
}

private struct _Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let entries: [(String, ParamValue)]
    /// An object's schema; nil for a `.dictionary` (free keys, every value of `elementType`).
    let schema: Schema?
    let elementType: ParamType?
    var codingPath: [CodingKey]

    var allKeys: [Key] { entries.compactMap { Key(stringValue: $0.0) } }

    private func name(_ key: Key) -> String { schema == nil ? key.stringValue : ParamDecoder.recipeKey(key.stringValue) }

    private func field(_ key: Key) throws -> Field? {
        guard let schema else { return nil }
        guard let f = schema.field(name(key)) else {
            throw ParamDecodingError(path: pathString(codingPath + [key]),
                                     message: "the kind's Params has a property the schema does not declare (fields: \(schema.fields.map(\.name).joined(separator: ", ")))")
        }
        return f
    }

    /// The value to decode for `key`: written, else the field's default, else (objects) the sub-schema's defaults.
    private func resolved(_ key: Key) throws -> (ParamValue, ParamType?)? {
        let f = try field(key)
        let type = f?.type ?? elementType
        if let v = entries.first(where: { $0.0 == name(key) })?.1, !v.isNull { return (v, type) }
        if let d = f?.defaultValue { return (d, type) }
        if case .object? = type { return (.map([]), type) }
        return nil
    }

    func contains(_ key: Key) -> Bool {
        (try? resolved(key)) != nil
    }

    func decodeNil(forKey key: Key) throws -> Bool { try resolved(key) == nil }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let (v, t) = try resolved(key) else {
            throw ParamDecodingError(path: pathString(codingPath + [key]), message: "no value and no schema default (make the property optional, or give the field a default)")
        }
        let n = nested(t)
        return try T(from: _ParamDecoder(value: v, schema: n.schema, elementType: n.element ?? t.flatMap(scalarType), codingPath: codingPath + [key]))
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        // Optional properties: an absent object stays nil (its presence can mean "on", e.g. `classifier:`).
        let f = try field(key)
        let t = f?.type ?? elementType
        let written = entries.first(where: { $0.0 == name(key) })?.1
        let v: ParamValue
        if let w = written, !w.isNull { v = w } else if let d = f?.defaultValue { v = d } else { return nil }
        let n = nested(t)
        return try T(from: _ParamDecoder(value: v, schema: n.schema, elementType: n.element ?? t.flatMap(scalarType), codingPath: codingPath + [key]))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        guard let (v, t) = try resolved(key) else { throw ParamDecodingError(path: pathString(codingPath + [key]), message: "absent") }
        let n = nested(t)
        return try _ParamDecoder(value: v, schema: n.schema, elementType: n.element, codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        guard let (v, t) = try resolved(key) else { throw ParamDecodingError(path: pathString(codingPath + [key]), message: "absent") }
        return try _ParamDecoder(value: v, schema: nil, elementType: nested(t).element, codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { throw ParamDecodingError(path: pathString(codingPath), message: "superDecoder is not supported") }
    func superDecoder(forKey key: Key) throws -> Decoder { try superDecoder() }
}

/// Scalars keep their own type as "element type" so a single-value container knows it is e.g. a choice.
private func scalarType(_ t: ParamType) -> ParamType? {
    switch t {
    case .object, .list, .dictionary: return nil
    default: return t
    }
}

private struct _Unkeyed: UnkeyedDecodingContainer {
    let items: [ParamValue]
    let elementType: ParamType?
    var codingPath: [CodingKey]
    var currentIndex = 0

    init(items: [ParamValue], elementType: ParamType?, codingPath: [CodingKey]) {
        self.items = items
        self.elementType = elementType
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    mutating func next() throws -> _ParamDecoder {
        guard !isAtEnd else { throw ParamDecodingError(path: pathString(codingPath), message: "list ended") }
        defer { currentIndex += 1 }
        let n = nested(elementType)
        return _ParamDecoder(value: items[currentIndex], schema: n.schema, elementType: n.element ?? elementType.flatMap(scalarType),
                             codingPath: codingPath + [_Key(intValue: currentIndex)!])
    }

    mutating func decodeNil() throws -> Bool {
        if !isAtEnd, items[currentIndex].isNull { currentIndex += 1; return true }
        return false
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: try next()) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> Decoder { try next() }
}

private struct _Single: SingleValueDecodingContainer {
    let value: ParamValue
    let schema: Schema?
    let elementType: ParamType?
    var codingPath: [CodingKey]

    private func fail(_ expected: String) -> ParamDecodingError {
        ParamDecodingError(path: pathString(codingPath), message: "expected \(expected), got \(value.display)")
    }

    func decodeNil() -> Bool { value.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { guard let b = value.bool else { throw fail("a boolean") }; return b }
    func decode(_ type: String.Type) throws -> String {
        if let s = value.string { return s }
        if let r = value.referenceTarget { return r }
        throw fail("a string")
    }
    func decode(_ type: Double.Type) throws -> Double { guard let d = value.double else { throw fail("a number") }; return d }
    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    func decode(_ type: Int.Type) throws -> Int {
        if let i = value.int { return i }
        if let d = value.double, d == d.rounded(), abs(d) < 9e15 { return Int(d) }
        throw fail("an integer")
    }
    func decode(_ type: Int8.Type) throws -> Int8 { try narrow(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try narrow(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try narrow(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { Int64(try decode(Int.self)) }
    func decode(_ type: UInt.Type) throws -> UInt { try narrow(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try narrow(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try narrow(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try narrow(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try narrow(type) }
    private func narrow<I: FixedWidthInteger>(_ t: I.Type) throws -> I {
        let i = try decode(Int.self)
        guard let v = I(exactly: i) else { throw fail("an integer that fits \(I.self)") }
        return v
    }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try T(from: _ParamDecoder(value: value, schema: schema, elementType: elementType, codingPath: codingPath))
    }
}
