// `--set dotted.path=value` overrides: the value is parsed as YAML and put at the path (mapping keys, or
// numeric indexes into lists), after `extends` merging and before interpolation. Each argument becomes an
// in-memory source `<--set N>` holding `--set ARG`, so marks and carets point into the argument itself.
import Foundation
import YAMLSupport

extension LoadSession {
    /// One path segment of an override and where it is written in the argument.
    struct Segment {
        var text: String
        var mark: SourceMark
    }

    static let maxOverrideSegments = 64

    /// Applies `arg` (`dotted.path=value`) to `document`, or reports why it cannot.
    mutating func applyOverride(_ arg: String, index: Int, to document: inout YAMLNode) {
        let file = "<--set \(index)>"
        let flag = "--set "
        loader.sources.register(flag + arg, for: file)
        let base = flag.unicodeScalars.count   // columns before the argument
        func mark(_ scalarOffset: Int) -> SourceMark {
            SourceMark(file: file, line: 1, column: base + scalarOffset + 1)
        }
        let label = "--set \(arg)"

        guard let eq = arg.firstIndex(of: "=") else {
            diagnostics.append(.error("\(label): expected dotted.path=value", at: mark(0),
                                      hint: "e.g. --set stages.prune.target.params=0.3"))
            return
        }
        let pathText = arg[..<eq]
        let valueText = String(arg[arg.index(after: eq)...])
        let valueColumn = pathText.unicodeScalars.count + 1

        // Path segments with their columns.
        var segments: [Segment] = []
        var offset = 0
        for part in pathText.split(separator: ".", omittingEmptySubsequences: false) {
            if part.isEmpty {
                diagnostics.append(.error("\(label): the path has an empty segment", at: mark(offset),
                                          hint: "write keys separated by single dots, e.g. vars.budget"))
                return
            }
            segments.append(Segment(text: String(part), mark: mark(offset)))
            offset += part.unicodeScalars.count + 1
        }
        if segments.count > Self.maxOverrideSegments {
            diagnostics.append(.error("\(label): the path has more than \(Self.maxOverrideSegments) segments",
                                      at: mark(0)))
            return
        }

        // The value, parsed as YAML; an empty value is null, as in `key:`.
        var value: YAMLNode
        if valueText.allSatisfy({ $0 == " " || $0 == "\t" }) {
            value = YAMLNode(.scalar("", .plain), mark: mark(valueColumn))
        } else {
            do {
                value = try YAMLParser.parse(valueText, file: file, limits: loader.limits)
            } catch {
                let end = base + arg.unicodeScalars.count + 1
                diagnostics += error.diagnostics.map { Self.shift($0, file: file, by: base + valueColumn, end: end) }
                    .map { d in var d = d; d.message = "\(label): " + d.message; return d }
                return
            }
            value = Self.shift(value, file: file, by: base + valueColumn)
        }
        if segments.count + Self.height(value) > loader.limits.maxDepth {
            diagnostics.append(.error("\(label): the value would nest deeper than \(loader.limits.maxDepth) levels",
                                      at: mark(valueColumn)))
            return
        }
        if segments.count >= 2, segments[0].text == "vars" {
            let defined = document["vars"]?.pairs?.compactMap(\.key.scalarText) ?? []
            if !defined.contains(segments[1].text) {
                newVariables.append((segments[1].text, segments[1].mark, label, defined))
            }
        }
        if let problem = Self.set(&document, segments[...], to: value, walked: [], label: label) {
            diagnostics.append(problem)
        }
    }

    /// A `--set vars.NAME…` that creates a variable the recipe does not define is an error unless something in
    /// the recipe (or another `--set` value) uses `${vars.NAME}`: otherwise it is almost surely a typo, and it
    /// would change nothing.
    mutating func checkNewVariables(in document: YAMLNode) {
        guard !newVariables.isEmpty else { return }
        var used = Set<String>()
        Self.collectVariableUses(document, into: &used)
        for v in newVariables where !used.contains(v.name) {
            let hint = Suggest.hint(for: v.name, in: v.defined)
                ?? (v.defined.isEmpty ? "the recipe defines no variables"
                                      : "defined variables: " + v.defined.joined(separator: ", "))
            diagnostics.append(.error("\(v.label): there is no variable '\(v.name)' in the recipe, and nothing uses "
                                      + "${vars.\(v.name)}", at: v.mark, hint: hint))
        }
    }

    /// Names of the variables used as `${vars.NAME…}` in any scalar under `node`.
    static func collectVariableUses(_ node: YAMLNode, into used: inout Set<String>) {
        var stack = [node]
        while let n = stack.popLast() {
            switch n.value {
            case .scalar(let text, _):
                guard Interpolator.hasReference(text) else { continue }
                var rest = Substring(text)
                while let open = rest.range(of: "${") {
                    rest = rest[open.upperBound...]
                    guard let close = rest.firstIndex(of: "}") else { break }
                    let inner = rest[..<close].trimmingCharacters(in: .whitespaces)
                    if inner.hasPrefix("vars."),
                       let name = inner.dropFirst(5).split(separator: ".", omittingEmptySubsequences: false).first {
                        used.insert(String(name))
                    }
                    rest = rest[close...]
                }
            case .sequence(let items): stack.append(contentsOf: items)
            case .mapping(let pairs): stack.append(contentsOf: pairs.map(\.value))
            }
        }
    }

    /// Puts `value` at `segments` under `node`, creating missing mapping keys (a null counts as an empty
    /// mapping). Returns the problem if the path runs into a scalar or a list index that is not there.
    static func set(_ node: inout YAMLNode, _ segments: ArraySlice<Segment>, to value: YAMLNode,
                    walked: [String], label: String) -> Diagnostic? {
        guard let segment = segments.first else {
            node = value
            return nil
        }
        let rest = segments.dropFirst()
        let here = walked.isEmpty ? "the top level" : "'" + walked.joined(separator: ".") + "'"
        switch node.value {
        case .mapping(var pairs):
            if let i = pairs.lastIndex(where: { $0.key.scalarText == segment.text }) {
                if let problem = set(&pairs[i].value, rest, to: value, walked: walked + [segment.text], label: label) {
                    return problem
                }
            } else {
                var child = rest.isEmpty ? value : YAMLNode(.mapping([]), mark: segment.mark)
                if !rest.isEmpty,
                   let problem = set(&child, rest, to: value, walked: walked + [segment.text], label: label) {
                    return problem
                }
                pairs.append(YAMLPair(key: YAMLNode(.scalar(segment.text, .plain), mark: segment.mark), value: child))
            }
            node.value = .mapping(pairs)
            return nil

        case .sequence(var items):
            guard let i = Int(segment.text), i >= 0, i < items.count else {
                let range = items.isEmpty ? "it is empty" : "use an index from 0 to \(items.count - 1)"
                return Diagnostic(.error, "\(label): \(here) is a list with \(items.count) items; "
                                  + "'\(segment.text)' is not an index into it", at: segment.mark, hint: range,
                                  notes: [Diagnostic(.note, "\(here) is written here", at: node.mark)])
            }
            if let problem = set(&items[i], rest, to: value, walked: walked + [segment.text], label: label) {
                return problem
            }
            node.value = .sequence(items)
            return nil

        case .scalar:
            if node.isNull {
                node = YAMLNode(.mapping([]), mark: node.mark)
                return set(&node, segments, to: value, walked: walked, label: label)
            }
            return Diagnostic(.error, "\(label): \(here) is \(node.typeDescription), not a mapping, so it has no key "
                              + "'\(segment.text)'", at: segment.mark,
                              hint: "set \(here) itself, or check the path",
                              notes: [Diagnostic(.note, "\(here) is written here", at: node.mark)])
        }
    }

    /// Moves marks on line 1 of `file` right by `columns` (the value's place in the `--set` argument).
    static func shift(_ node: YAMLNode, file: String, by columns: Int) -> YAMLNode {
        var node = node
        if node.mark.file == file, node.mark.line == 1 { node.mark.column += columns }
        switch node.value {
        case .scalar: break
        case .sequence(let items): node.value = .sequence(items.map { shift($0, file: file, by: columns) })
        case .mapping(let pairs):
            node.value = .mapping(pairs.map {
                YAMLPair(key: shift($0.key, file: file, by: columns), value: shift($0.value, file: file, by: columns))
            })
        }
        return node
    }

    /// Moves a diagnostic's marks into the argument; a mark past its one line (libyaml's end of input)
    /// goes to the end of the argument, so the caret stays on the line shown.
    static func shift(_ d: Diagnostic, file: String, by columns: Int, end: Int) -> Diagnostic {
        var d = d
        if var m = d.mark, m.file == file {
            m.column = m.line == 1 ? m.column + columns : end
            m.line = 1
            d.mark = m
        }
        d.notes = d.notes.map { shift($0, file: file, by: columns, end: end) }
        return d
    }

    /// Nesting height of a tree (a scalar is 1). Trees from `YAMLParser` are at most `maxDepth` high.
    static func height(_ node: YAMLNode) -> Int {
        switch node.value {
        case .scalar: return 1
        case .sequence(let items): return 1 + (items.map(height).max() ?? 0)
        case .mapping(let pairs): return 1 + (pairs.map { max(height($0.key), height($0.value)) }.max() ?? 0)
        }
    }
}
