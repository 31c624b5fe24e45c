// Typed parameter schemas for stage kinds: fields with types, defaults, ranges and docs. One schema drives
// checking (every problem at once, with marks and did-you-mean), default filling, and the reference docs.
import YAMLSupport

/// What flows along an edge of the stage graph.
public enum ArtifactType: String, Sendable, Hashable, CaseIterable {
    case model, sensitivity, dataset, report, files
    /// Accepts any artifact (the `command` kind's inputs).
    case any
}

public indirect enum ParamType: Sendable {
    case string
    case bool
    /// Integer within optional bounds (inclusive).
    case integer(min: Int? = nil, max: Int? = nil)
    /// Number within optional bounds; `exclusive` makes both bounds open.
    case number(min: Double? = nil, max: Double? = nil, exclusive: Bool = false)
    case choice([String])
    case list(ParamType, minCount: Int = 0)
    /// A mapping with free keys (identifiers) and values of one type.
    case dictionary(ParamType)
    case object(Schema)
    /// An input port: the name of a stage (`stage` or `stage.output`), a model or a dataset of this type.
    case reference(ArtifactType)

    /// Words for messages and docs.
    public var summary: String {
        switch self {
        case .string: return "string"
        case .bool: return "boolean"
        case .integer(let lo, let hi): return "integer" + Self.bounds(lo.map(Double.init), hi.map(Double.init), false)
        case .number(let lo, let hi, let ex): return "number" + Self.bounds(lo, hi, ex)
        case .choice(let c): return "one of " + c.map { "`\($0)`" }.joined(separator: ", ")
        case .list(let t, _): return "list of \(t.summary)"
        case .dictionary(let t): return "mapping of name → \(t.summary)"
        case .object: return "mapping"
        case .reference(let a): return a == .any ? "reference (stage, stage.output, model or dataset)" : "reference to a \(a.rawValue)"
        }
    }

    static func bounds(_ lo: Double?, _ hi: Double?, _ ex: Bool) -> String {
        func f(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d) }
        switch (lo, hi) {
        case (nil, nil): return ""
        case (let l?, nil): return ex ? " > \(f(l))" : " ≥ \(f(l))"
        case (nil, let h?): return ex ? " < \(f(h))" : " ≤ \(f(h))"
        case (let l?, let h?): return ex ? " in (\(f(l)), \(f(h)))" : " in [\(f(l)), \(f(h))]"
        }
    }
}

public struct Field: Sendable {
    public var name: String
    public var type: ParamType
    public var required: Bool
    public var defaultValue: ParamValue?
    public var doc: String
    /// Whether the value enters the action key (top-level fields only). False for settings that change where or
    /// how fast a stage runs but never its outputs (`ranks` of the training kinds: bit-identical for any value).
    public var keyed: Bool

    public init(_ name: String, _ type: ParamType, required: Bool = false, default defaultValue: ParamValue? = nil,
                keyed: Bool = true, doc: String) {
        self.name = name
        self.type = type
        self.required = required
        self.defaultValue = defaultValue
        self.keyed = keyed
        self.doc = doc
    }
}

public struct Schema: Sendable {
    public var fields: [Field]
    public init(_ fields: [Field]) { self.fields = fields }
    public func field(_ name: String) -> Field? { fields.first { $0.name == name } }
}

/// A reference written in the params, to be resolved by the graph builder.
public struct ReferenceUse: Sendable, Hashable {
    /// Dotted path of the field, e.g. `inputs.scores`.
    public var path: String
    /// The text written: `stage`, `stage.output`, a model or a dataset name.
    public var target: String
    public var type: ArtifactType
    public var mark: SourceMark
}

/// Checks YAML against a schema, collecting all problems.
public struct SchemaChecker {
    /// Prefix for messages, e.g. `stage 'prune'`.
    public var context: String
    public private(set) var diagnostics: [Diagnostic] = []
    public private(set) var references: [ReferenceUse] = []

    public init(context: String) { self.context = context }

    /// Checks a mapping against `schema`, skipping `ignoring` keys (e.g. `kind`), and returns the value
    /// with defaults filled in.
    public mutating func check(_ node: YAMLNode, _ schema: Schema, path: String = "",
                               ignoring: Set<String> = []) -> ParamValue {
        guard let pairs = node.pairs else {
            error("\(label(path)) expected a mapping, got \(node.valueDescription)", node.mark)
            return .map([])
        }
        var out: [(String, ParamValue)] = []
        var seen: Set<String> = []
        for pair in pairs {
            guard let key = pair.key.scalarText else {
                error("\(label(path)) keys must be plain names", pair.key.mark)
                continue
            }
            if ignoring.contains(key) { continue }
            seen.insert(key)
            guard let field = schema.field(key) else {
                let names = schema.fields.map(\.name)
                error("unknown key '\(join(path, key))'", pair.key.mark,
                      hint: Suggest.hint(for: key, in: names) ?? "expected one of: " + names.joined(separator: ", "))
                continue
            }
            out.append((key, check(pair.value, field.type, path: join(path, key))))
        }
        for field in schema.fields where !seen.contains(field.name) {
            if field.required {
                error("missing required key '\(join(path, field.name))'", node.mark,
                      hint: "add `\(field.name): <\(field.type.summary)>`")
            } else if let d = field.defaultValue {
                out.append((field.name, d))
            }
        }
        return .map(out)
    }

    public mutating func check(_ node: YAMLNode, _ type: ParamType, path: String) -> ParamValue {
        switch type {
        case .string:
            guard node.isScalar, !node.isNull, let s = node.string else { return mismatch(node, type, path) }
            return .string(s)
        case .bool:
            guard let b = node.bool else { return mismatch(node, type, path) }
            return .bool(b)
        case .integer(let lo, let hi):
            guard let i = node.int else { return mismatch(node, type, path) }
            if let lo, i < lo { outOfRange(path, type, node.scalarText ?? "", node.mark) }
            if let hi, i > hi { outOfRange(path, type, node.scalarText ?? "", node.mark) }
            return .int(i)
        case .number(let lo, let hi, let ex):
            guard let d = node.double, d.isFinite else { return mismatch(node, type, path) }
            let bad = (lo.map { ex ? d <= $0 : d < $0 } ?? false) || (hi.map { ex ? d >= $0 : d > $0 } ?? false)
            if bad { outOfRange(path, type, node.scalarText ?? "", node.mark) }
            return node.int.map(ParamValue.int) ?? .double(d)
        case .choice(let options):
            guard let s = node.string, node.isScalar else { return mismatch(node, type, path) }
            if !options.contains(s) {
                error("\(label(path)) must be one of \(options.joined(separator: ", ")), got '\(TerminalText.quoted(s))'", node.mark,
                      hint: Suggest.hint(for: s, in: options))
            }
            return .string(s)
        case .list(let element, let minCount):
            guard let items = node.items else { return mismatch(node, type, path) }
            if items.count < minCount {
                error("\(label(path)) needs at least \(minCount) item\(minCount == 1 ? "" : "s")", node.mark)
            }
            return .list(items.enumerated().map { check($0.element, element, path: path + "[\($0.offset)]") })
        case .dictionary(let element):
            guard let pairs = node.pairs else { return mismatch(node, type, path) }
            var out: [(String, ParamValue)] = []
            for p in pairs {
                guard let k = p.key.scalarText, !k.isEmpty else {
                    error("\(label(path)) keys must be plain names", p.key.mark)
                    continue
                }
                out.append((k, check(p.value, element, path: join(path, k))))
            }
            return .map(out)
        case .object(let schema):
            return check(node, schema, path: path)
        case .reference(let artifact):
            guard node.isScalar, let s = node.string, !s.isEmpty else { return mismatch(node, type, path) }
            references.append(ReferenceUse(path: path, target: s, type: artifact, mark: node.mark))
            return .reference(s)
        }
    }

    public mutating func error(_ message: String, _ mark: SourceMark, hint: String? = nil) {
        diagnostics.append(.error("\(context): \(message)", at: mark, hint: hint))
    }

    private mutating func mismatch(_ node: YAMLNode, _ type: ParamType, _ path: String) -> ParamValue {
        error("\(label(path)) expected \(type.summary), got \(node.valueDescription)", node.mark)
        return .null
    }

    private mutating func outOfRange(_ path: String, _ type: ParamType, _ text: String, _ mark: SourceMark) {
        var range = ""
        switch type {
        case .integer(let lo, let hi): range = ParamType.bounds(lo.map(Double.init), hi.map(Double.init), false)
        case .number(let lo, let hi, let ex): range = ParamType.bounds(lo, hi, ex)
        default: break
        }
        error("\(label(path)) must be\(range), got \(TerminalText.quoted(text))", mark)
    }

    private func label(_ path: String) -> String { path.isEmpty ? "value" : "'\(path)'" }
    private func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : a + "." + b }
}
