// A thin binding over the system libyaml event API (`yaml_parser_parse`) that builds `YAMLNode` trees with
// 1-based marks, resolves anchors, aliases and `<<` merge keys, rejects duplicate keys, and bounds every
// resource (input size, nesting depth, alias expansion) so hostile input fails fast with `file:line:col`.
import CYAML

/// Resource bounds for one parse. The defaults are generous for recipes and small enough that hostile input
/// (deep nesting, alias bombs, huge files) fails in well under a second.
public struct YAMLLimits: Sendable, Hashable {
    /// The largest input accepted, in bytes.
    public var maxBytes: Int
    /// The deepest nesting of collections accepted (the top-level node is depth 1). Every tree the parser
    /// returns has at most this height, so later recursive walks over it are safe.
    public var maxDepth: Int
    /// How many nodes aliases (`*name`) may copy in all, counting each copy in full (billion-laughs guard).
    public var maxAliasNodes: Int

    public init(maxBytes: Int = 64 << 20, maxDepth: Int = 512, maxAliasNodes: Int = 1_000_000) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        self.maxAliasNodes = maxAliasNodes
    }

    public static let `default` = YAMLLimits()
}

/// Parses one YAML document into a `YAMLNode` tree.
///
/// ```swift
/// let root = try YAMLParser.parse(bytes, file: "recipes/x.yaml")
/// ```
/// Errors are `Diagnostic`s with `file:line:col` (1-based) and a hint where one helps: libyaml's syntax and
/// encoding errors, an empty file, more than one document, duplicate keys, undefined aliases, bad merge keys
/// and exceeded limits. Merge keys follow YAML 1.1: keys written in the mapping win over merged ones, and
/// in `<<: [*a, *b]` earlier mappings win over later ones; merged keys come first in the result.
public enum YAMLParser {
    /// Parses UTF-8 (or BOM-marked UTF-16) bytes. `file` is used in every mark.
    public static func parse(_ bytes: [UInt8], file: String, limits: YAMLLimits = .default)
        throws(DiagnosticError) -> YAMLNode
    {
        let start = SourceMark(file: file, line: 1, column: 1)
        if bytes.count > limits.maxBytes {
            throw DiagnosticError([.error(
                "file is \(bytes.count) bytes, larger than the \(limits.maxBytes)-byte limit for YAML input",
                at: start, hint: "recipes are small text files; is this the right file?")])
        }
        if bytes.isEmpty {
            throw DiagnosticError([.error("file is empty", at: start,
                                          hint: "a recipe starts with 'recipe: 1' and has a 'stages:' mapping")])
        }
        var builder = TreeBuilder(file: file, bytes: bytes, limits: limits)
        let result: Result<YAMLNode, DiagnosticError> = bytes.withUnsafeBufferPointer { buffer in
            builder.run(buffer)
        }
        return try result.get()
    }

    /// Parses text (convenience for tests and in-memory sources).
    public static func parse(_ text: String, file: String, limits: YAMLLimits = .default)
        throws(DiagnosticError) -> YAMLNode
    {
        try parse(Array(text.utf8), file: file, limits: limits)
    }
}

// MARK: - Building the tree from events

/// Builds the tree iteratively from libyaml events: an explicit stack of open collections, never recursion,
/// so nesting depth costs heap, not stack, and is checked against `limits.maxDepth` as it grows.
private struct TreeBuilder {
    /// A finished node with its expanded size (nodes, aliases counted in full) and height.
    struct Built {
        var node: YAMLNode
        var size: Int
        var height: Int
    }

    /// A collection that has started and not yet ended.
    struct Frame {
        var isMapping: Bool
        var mark: SourceMark
        var tag: String?
        var anchor: String?
        var items: [YAMLNode] = []
        var pairs: [YAMLPair] = []
        var pendingKey: YAMLNode?
        /// Values of `<<` keys, merged when the mapping ends.
        var merges: [YAMLNode] = []
        var mergeKeyMark: SourceMark?
        /// First mark of each scalar key written explicitly, for duplicate detection; filled only once the
        /// mapping has more than `smallMapping` pairs (small ones are scanned, which is cheaper).
        var seen: [String: SourceMark] = [:]
        var size = 1
        var height = 1
    }

    let file: String
    let bytes: [UInt8]
    let limits: YAMLLimits
    /// The innermost open collection. Below the first real collection sits a sentinel sequence frame whose
    /// single item becomes the root, so there is always a frame to add to.
    var top = Frame(isMapping: false, mark: SourceMark(file: "", line: 0, column: 0))
    /// The frames enclosing `top`, outermost first; `parents.count` is the depth of `top`.
    var parents: [Frame] = []
    var root: Built?
    var anchors: [String: Built] = [:]
    var aliasNodes = 0
    var documents = 0
    var firstDocumentMark: SourceMark?
    /// Problems that do not stop parsing (duplicate keys, undefined aliases); reported together at the end.
    var errors: [Diagnostic] = []

    init(file: String, bytes: [UInt8], limits: YAMLLimits) {
        self.file = file
        self.bytes = bytes
        self.limits = limits
    }

    func mark(_ m: yaml_mark_t) -> SourceMark {
        SourceMark(file: file, line: Int(m.line) + 1, column: Int(m.column) + 1)
    }

    mutating func run(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<YAMLNode, DiagnosticError> {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else {
            return .failure(DiagnosticError([.error("cannot start the YAML parser (out of memory)",
                                                    at: SourceMark(file: file, line: 1, column: 1))]))
        }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)

        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(parser, &event) == 1 else {
                return .failure(DiagnosticError(errors + [libyamlError(parser.pointee)]))
            }
            let type = event.type.rawValue
            let fatal = handle(&event)
            yaml_event_delete(&event)
            if let fatal { return .failure(DiagnosticError(errors + [fatal])) }
            if type == YAML_STREAM_END_EVENT.rawValue { break }
        }
        if !errors.isEmpty { return .failure(DiagnosticError(errors)) }
        guard let root else {
            return .failure(DiagnosticError([.error(
                "file is empty", at: SourceMark(file: file, line: 1, column: 1),
                hint: "it holds only comments or blank lines; a recipe starts with 'recipe: 1'")]))
        }
        return .success(root.node)
    }

    /// Handles one event; returns a diagnostic if parsing must stop.
    mutating func handle(_ event: inout yaml_event_t) -> Diagnostic? {
        let at = mark(event.start_mark)
        // Compare raw values: cheaper than the imported enums' generic `==` in unoptimised builds.
        switch event.type.rawValue {
        case YAML_DOCUMENT_START_EVENT.rawValue:
            documents += 1
            if documents == 1 { firstDocumentMark = at; return nil }
            var d = Diagnostic.error("a recipe file must hold exactly one YAML document; a second one starts here",
                                     at: at, hint: "remove the '---' line or split the file")
            if let firstDocumentMark { d.notes.append(Diagnostic(.note, "the first document starts here",
                                                                 at: firstDocumentMark)) }
            return d

        case YAML_SCALAR_EVENT.rawValue:
            let s = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: s.value, count: Int(s.length)), as: UTF8.self)
            let style: ScalarStyle
            switch s.style.rawValue {
            case YAML_SINGLE_QUOTED_SCALAR_STYLE.rawValue: style = .singleQuoted
            case YAML_DOUBLE_QUOTED_SCALAR_STYLE.rawValue: style = .doubleQuoted
            case YAML_LITERAL_SCALAR_STYLE.rawValue: style = .literal
            case YAML_FOLDED_SCALAR_STYLE.rawValue: style = .folded
            default: style = .plain
            }
            let node = YAMLNode(.scalar(text, style), mark: at, tag: Self.string(s.tag))
            return complete(Built(node: node, size: 1, height: 1), anchor: Self.string(s.anchor))

        case YAML_ALIAS_EVENT.rawValue:
            let name = Self.string(event.data.alias.anchor) ?? ""
            guard let target = anchors[name] else {
                errors.append(.error("alias '*\(name)' refers to no anchor '&\(name)' defined before it", at: at,
                                     hint: Suggest.hint(for: name, in: anchors.keys).map { "\($0) (as '*name')" }
                                        ?? "define '&\(name)' on a node earlier in the file"))
                return complete(Built(node: YAMLNode(.scalar("", .plain), mark: at), size: 1, height: 1),
                                anchor: nil)
            }
            aliasNodes += target.size
            if aliasNodes > limits.maxAliasNodes {
                return .error("alias '*\(name)' expands the document beyond \(limits.maxAliasNodes) nodes",
                              at: at, hint: "aliases that copy aliases grow exponentially, as in a 'billion laughs' "
                                  + "document; write the data out or use fewer levels")
            }
            if parents.count + target.height > limits.maxDepth {
                return depthError(at)
            }
            return complete(target, anchor: nil)

        case YAML_SEQUENCE_START_EVENT.rawValue, YAML_MAPPING_START_EVENT.rawValue:
            if parents.count + 1 > limits.maxDepth { return depthError(at) }
            let isMapping = event.type.rawValue == YAML_MAPPING_START_EVENT.rawValue
            let tag = isMapping ? Self.string(event.data.mapping_start.tag) : Self.string(event.data.sequence_start.tag)
            let anchor = isMapping ? Self.string(event.data.mapping_start.anchor)
                                   : Self.string(event.data.sequence_start.anchor)
            parents.append(top)
            top = Frame(isMapping: isMapping, mark: at, tag: tag, anchor: anchor)
            return nil

        case YAML_SEQUENCE_END_EVENT.rawValue, YAML_MAPPING_END_EVENT.rawValue:
            guard !parents.isEmpty else { return nil }
            let frame = top
            // Assign straight from the array: a local copy would keep the parent's arrays shared, and the
            // next append would copy them (quadratic in unoptimised builds).
            top = parents.removeLast()
            let node: YAMLNode
            if frame.isMapping {
                node = YAMLNode(.mapping(resolveMerges(frame)), mark: frame.mark, tag: frame.tag)
            } else {
                node = YAMLNode(.sequence(frame.items), mark: frame.mark, tag: frame.tag)
            }
            return complete(Built(node: node, size: frame.size, height: frame.height), anchor: frame.anchor)

        default:
            return nil
        }
    }

    func depthError(_ at: SourceMark) -> Diagnostic {
        .error("YAML nesting is deeper than \(limits.maxDepth) levels", at: at,
               hint: "a recipe never needs this much nesting; is the file generated or corrupt?")
    }

    /// Attaches a finished node to the innermost open collection (or makes it the root) and records its anchor.
    mutating func complete(_ built: Built, anchor: String?) -> Diagnostic? {
        if let anchor { anchors[anchor] = built }
        if parents.isEmpty {
            root = built
            return nil
        }
        top.size += built.size
        if built.height >= top.height { top.height = built.height + 1 }
        if !top.isMapping {
            top.items.append(built.node)
            return nil
        }
        guard let key = top.pendingKey else {
            top.pendingKey = built.node
            return nil
        }
        top.pendingKey = nil
        if Self.isMergeKey(key) {
            if let first = top.mergeKeyMark {
                errors.append(duplicateKey("<<", at: key.mark, first: first))
            } else {
                top.mergeKeyMark = key.mark
            }
            top.merges.append(built.node)
            return nil
        }
        if case .scalar(let text, _) = key.value, let first = Self.firstMark(ofKey: text, at: key.mark, in: &top) {
            errors.append(duplicateKey(text, at: key.mark, first: first))
            return nil
        }
        top.pairs.append(YAMLPair(key: key, value: built.node))
        return nil
    }

    static let smallMapping = 8

    /// The mark of an earlier explicit key `text` in `frame`, if there is one; otherwise records `text`.
    /// Static on purpose: a method on `self` would hold a copy of `top` and make every insert copy it.
    static func firstMark(ofKey text: String, at mark: SourceMark, in frame: inout Frame) -> SourceMark? {
        if frame.pairs.count < Self.smallMapping {
            for pair in frame.pairs {
                if case .scalar(let k, _) = pair.key.value, k == text { return pair.key.mark }
            }
            return nil
        }
        if frame.seen.isEmpty {
            for pair in frame.pairs {
                if case .scalar(let k, _) = pair.key.value { frame.seen[k] = pair.key.mark }
            }
        }
        if let first = frame.seen[text] { return first }
        frame.seen[text] = mark
        return nil
    }

    func duplicateKey(_ key: String, at: SourceMark, first: SourceMark) -> Diagnostic {
        Diagnostic(.error, "duplicate key '\(key)' in this mapping", at: at,
                   hint: "a key may appear once per mapping; remove or rename one of them",
                   notes: [Diagnostic(.note, "'\(key)' is first written here", at: first)])
    }

    /// The mapping's pairs with its `<<` values merged in (explicit keys win; earlier merge sources win).
    mutating func resolveMerges(_ frame: Frame) -> [YAMLPair] {
        guard !frame.merges.isEmpty else { return frame.pairs }
        var sources: [YAMLNode] = []
        for value in frame.merges {
            switch value.value {
            case .mapping:
                sources.append(value)
            case .sequence(let items):
                for item in items {
                    if item.isMapping { sources.append(item) } else { errors.append(badMerge(item)) }
                }
            case .scalar:
                errors.append(badMerge(value))
            }
        }
        var taken = Set(frame.pairs.compactMap(\.key.scalarText))
        var result: [YAMLPair] = []
        for source in sources {
            for pair in source.pairs ?? [] {
                if let k = pair.key.scalarText {
                    if taken.contains(k) { continue }
                    taken.insert(k)
                }
                result.append(pair)
            }
        }
        return result + frame.pairs
    }

    func badMerge(_ node: YAMLNode) -> Diagnostic {
        .error("merge key '<<' needs a mapping or a list of mappings, got \(node.typeDescription)", at: node.mark,
               hint: "write '<<: *base' or '<<: [*a, *b]' where the anchors name mappings")
    }

    static func isMergeKey(_ key: YAMLNode) -> Bool {
        guard case .scalar("<<", let style) = key.value else { return false }
        return (style == .plain && key.tag == nil) || key.tag == "tag:yaml.org,2002:merge"
    }

    static func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let p else { return nil }
        return String(cString: p)
    }

    // MARK: libyaml errors

    /// Turns libyaml's error state into a diagnostic with a mark and, where we can tell, a human hint.
    func libyamlError(_ p: yaml_parser_t) -> Diagnostic {
        let problem = p.problem.map { String(cString: $0) } ?? "unknown error"
        let context = p.context.map { String(cString: $0) }
        switch p.error {
        case YAML_MEMORY_ERROR:
            return .error("out of memory while reading YAML", at: SourceMark(file: file, line: 1, column: 1))
        case YAML_READER_ERROR:
            let at = markForOffset(Int(p.problem_offset))
            var what = problem
            if p.problem_value >= 0 { what += " (0x" + String(p.problem_value, radix: 16, uppercase: true) + ")" }
            let hint = p.problem_value == 0
                ? "the file contains a NUL byte; it is not a text file"
                : "the file is not UTF-8 text; is it a binary file?"
            return .error("cannot read YAML: \(what)", at: at, hint: hint)
        default:
            let at = mark(p.problem_mark)
            var d = Diagnostic.error("YAML syntax error: \(problem)", at: at, hint: hint(problem, context, at))
            if let context {
                let contextMark = mark(p.context_mark)
                if contextMark != at {
                    d.notes.append(Diagnostic(.note, "\(context), which starts here", at: contextMark))
                } else {
                    d.message += " (\(context))"
                }
            }
            return d
        }
    }

    func hint(_ problem: String, _ context: String?, _ at: SourceMark) -> String? {
        let line = lineText(at.line)
        let leading = line.prefix { $0 == " " || $0 == "\t" }
        if leading.contains("\t") || problem.contains("tab") || line.dropFirst(max(0, at.column - 1)).first == "\t" {
            return "YAML indentation must use spaces, not tabs"
        }
        // A line before the problem may hold the tab (libyaml reports some at the next token).
        if at.line > 1, lineText(at.line - 1).prefix(while: { $0 == " " || $0 == "\t" }).contains("\t") {
            return "YAML indentation must use spaces, not tabs"
        }
        if problem.contains("mapping values are not allowed") {
            return "quote values that contain ': ', and check the indentation of this line"
        }
        if problem.contains("did not find expected key") || problem.contains("did not find expected '-'") {
            return "check the indentation of this line against the lines above"
        }
        if problem.contains("found unexpected end of stream"), let context, context.contains("quoted") {
            return "a quoted string is not closed"
        }
        if problem.contains("did not find expected ',' or") {
            return "a flow collection ('[...]' or '{...}') is not closed, or an item lacks a comma"
        }
        if problem.contains("cannot start any token"), line.dropFirst(max(0, at.column - 1)).first == "@"
            || line.dropFirst(max(0, at.column - 1)).first == "`"
        {
            return "'@' and '`' are reserved in YAML; quote the value"
        }
        return nil
    }

    /// The text of a 1-based line of the input (decoded leniently).
    func lineText(_ line: Int) -> Substring {
        var current = 1, start = 0, i = 0
        while i < bytes.count, current < line {
            if bytes[i] == 0x0A { current += 1; start = i + 1 }
            i += 1
        }
        guard current == line else { return "" }
        var end = start
        while end < bytes.count, bytes[end] != 0x0A, bytes[end] != 0x0D { end += 1 }
        return Substring(String(decoding: bytes[start..<end], as: UTF8.self))
    }

    /// 1-based line and column (in characters) of a byte offset, for reader errors that libyaml reports by offset.
    func markForOffset(_ offset: Int) -> SourceMark {
        var line = 1, column = 1, i = 0
        let end = min(offset, bytes.count)
        while i < end {
            let b = bytes[i]
            if b == 0x0A {
                line += 1
                column = 1
            } else if b & 0xC0 != 0x80 {
                column += 1
            }
            i += 1
        }
        return SourceMark(file: file, line: line, column: column)
    }
}
