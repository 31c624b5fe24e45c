// `${vars.NAME}` and `${env.NAME}` interpolation over a whole recipe document. A scalar that is exactly one
// `${…}` becomes the referenced value itself (a var keeps its type: number, list, mapping; an env value is
// typed like a plain scalar); inside a longer string the text is spliced. `$${` writes a literal `${`.
import Foundation
import YAMLSupport

/// Interpolates one document. Variables may use env and other variables; cycles are reported, not followed.
struct Interpolator {
    let environment: [String: String]
    let maxDepth: Int
    /// How many nodes whole-value substitutions may copy in all (the same guard as YAML aliases have).
    let maxSubstitutedNodes: Int
    var diagnostics: [Diagnostic] = []

    /// Raw `vars:` entries by name.
    private var vars: [String: YAMLNode] = [:]
    private var resolved: [String: YAMLNode] = [:]
    private var substitutedNodes = 0
    private var reportedBudget = false
    /// Variables being resolved, outermost first (for cycle messages).
    private var resolving: [String] = []
    /// Walk frames alive, across nested variable resolutions; bounds recursion on hostile input.
    private var frames = 0
    private var reportedTooDeep = false

    static let maxVariableChain = 32

    init(environment: [String: String], maxDepth: Int, maxSubstitutedNodes: Int) {
        self.environment = environment
        self.maxDepth = maxDepth
        self.maxSubstitutedNodes = maxSubstitutedNodes
    }

    /// Interpolates `document` in place (in place so that large trees are not copied).
    mutating func run(_ document: inout YAMLNode) {
        guard case .mapping(var pairs) = document.value else { return }
        document.value = .scalar("", .plain)   // release the array so `pairs` is uniquely owned
        for pair in pairs where pair.key.scalarText == "vars" {
            vars.reserveCapacity(pair.value.pairs?.count ?? 0)
            resolved.reserveCapacity(pair.value.pairs?.count ?? 0)
            for v in pair.value.pairs ?? [] {
                if let name = v.key.scalarText { vars[name] = v.value }
            }
        }
        for i in pairs.indices {
            if pairs[i].key.scalarText == "vars", case .mapping(var varPairs) = pairs[i].value.value {
                for j in varPairs.indices {
                    if let name = varPairs[j].key.scalarText, vars[name] != nil {
                        varPairs[j].value = resolveVariable(name, usedAt: nil)
                    }
                }
                pairs[i].value.value = .mapping(varPairs)
            } else {
                walk(&pairs[i].value, depth: 2)
            }
        }
        document.value = .mapping(pairs)
    }

    /// Interpolates every scalar value under `node` (mapping keys are left as written). `depth` is the node's
    /// depth in the document (the root is 1), so substituted values keep the tree within `maxDepth`.
    private mutating func walk(_ node: inout YAMLNode, depth: Int) {
        frames += 1
        defer { frames -= 1 }
        if frames > 2 * maxDepth {
            if !reportedTooDeep {
                reportedTooDeep = true
                diagnostics.append(.error("values and the variables they use nest more than \(2 * maxDepth) "
                                          + "levels deep", at: node.mark))
            }
            return
        }
        switch node.value {
        case .scalar(let text, _):
            // Fast path: most scalars have nothing to interpolate.
            guard Self.hasReference(text) else { return }
            node = interpolate(node, text: text, depth: depth)
        case .sequence(var items):
            node.value = .scalar("", .plain)   // release the array so `items` is uniquely owned
            for i in items.indices { walk(&items[i], depth: depth + 1) }
            node.value = .sequence(items)
        case .mapping(var pairs):
            node.value = .scalar("", .plain)
            for i in pairs.indices { walk(&pairs[i].value, depth: depth + 1) }
            node.value = .mapping(pairs)
        }
    }

    /// Whether `text` contains `${` (a byte scan; much cheaper than a substring search).
    static func hasReference(_ text: String) -> Bool {
        var afterDollar = false
        for byte in text.utf8 {
            if afterDollar, byte == UInt8(ascii: "{") { return true }
            afterDollar = byte == UInt8(ascii: "$")
        }
        return false
    }

    private enum Part {
        case text(String)
        case reference(String)
    }

    private mutating func interpolate(_ node: YAMLNode, text: String, depth: Int) -> YAMLNode {
        // Split into literal text and references.
        var parts: [Part] = []
        var literal = ""
        var i = text.startIndex
        while i < text.endIndex {
            let rest = text[i...]
            if rest.hasPrefix("$${") {
                literal += "${"
                i = text.index(i, offsetBy: 3)
            } else if rest.hasPrefix("${") {
                let open = text.index(i, offsetBy: 2)
                guard let close = text[open...].firstIndex(of: "}") else {
                    diagnostics.append(.error("unterminated '${' in \(YAMLNode.jsonString(text))", at: node.mark,
                                              hint: "close it with '}', or write '$${' for a literal '${'"))
                    return node
                }
                if !literal.isEmpty { parts.append(.text(literal)); literal = "" }
                parts.append(.reference(String(text[open..<close])))
                i = text.index(after: close)
            } else {
                literal.append(text[i])
                i = text.index(after: i)
            }
        }
        if !literal.isEmpty { parts.append(.text(literal)) }

        var out = node
        // Whole-scalar reference: the value itself, at the scalar's mark.
        if parts.count == 1, case .reference(let reference) = parts[0] {
            guard var value = resolve(reference, at: node.mark) else { return node }
            let budget = maxSubstitutedNodes - substitutedNodes
            guard let (size, height) = Self.measure(value, budget: budget) else {
                if reportedBudget { return node }
                reportedBudget = true
                diagnostics.append(.error("${\(reference)} makes the document larger than \(maxSubstitutedNodes) "
                                          + "copied nodes", at: node.mark,
                                          hint: "variables that copy variables grow exponentially; use fewer levels"))
                return node
            }
            substitutedNodes += size
            if depth + height - 1 > maxDepth {
                diagnostics.append(.error("${\(reference)} would nest the document deeper than \(maxDepth) levels",
                                          at: node.mark))
                return node
            }
            value.mark = node.mark
            return value
        }
        // Splice into text.
        var result = ""
        var failed = false
        for part in parts {
            switch part {
            case .text(let s):
                result += s
            case .reference(let reference):
                guard let value = resolve(reference, at: node.mark) else { failed = true; continue }
                guard case .scalar(let s, _) = value.value else {
                    diagnostics.append(.error("${\(reference)} is \(value.typeDescription) and cannot be put inside "
                                              + "a longer string", at: node.mark,
                                              hint: "use it as the whole value, e.g. 'key: ${\(reference)}'"))
                    failed = true
                    continue
                }
                result += value.isNull ? "" : s
            }
        }
        if failed { return node }
        let hasReference = parts.contains { if case .reference = $0 { return true }; return false }
        if hasReference {
            out.value = .scalar(result, .doubleQuoted)
            out.tag = nil
        } else if case .scalar(_, let style) = node.value {
            out.value = .scalar(result, style)   // only `$${` escapes: the scalar keeps its style
        }
        return out
    }

    /// The value of one reference (`vars.NAME[.key…]` or `env.NAME`), or nil after reporting why not.
    private mutating func resolve(_ reference: String, at mark: SourceMark) -> YAMLNode? {
        let trimmed = reference.trimmingCharacters(in: .whitespaces)
        let segments = trimmed.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        switch segments.first {
        case "vars" where segments.count >= 2 && !segments[1].isEmpty:
            let name = segments[1]
            guard vars[name] != nil else {
                let hint = Suggest.hint(for: name, in: vars.keys.sorted())
                    ?? (vars.isEmpty ? "define it under 'vars:'" : "defined variables: "
                        + vars.keys.sorted().joined(separator: ", "))
                diagnostics.append(.error("unknown variable '\(name)' in ${\(trimmed)}", at: mark, hint: hint))
                return nil
            }
            var value = resolveVariable(name, usedAt: mark)
            var walked = "vars.\(name)"
            for key in segments.dropFirst(2) {
                if let child = value[key] {
                    value = child
                } else if let items = value.items, let i = Int(key), i >= 0, i < items.count {
                    value = items[i]
                } else {
                    let hint = value.pairs.flatMap { pairs in
                        Suggest.hint(for: key, in: pairs.compactMap(\.key.scalarText))
                    }
                    diagnostics.append(.error("${\(trimmed)}: '\(walked)' (\(value.typeDescription)) has no '\(key)'",
                                              at: mark, hint: hint))
                    return nil
                }
                walked += ".\(key)"
            }
            return value

        case "env" where segments.count >= 2:
            let name = segments.dropFirst().joined(separator: ".")
            guard let value = environment[name] else {
                diagnostics.append(.error("environment variable '\(name)' is not set (used as ${env.\(name)})",
                                          at: mark, hint: "set it, e.g. 'export \(name)=…', or override this "
                                              + "value with --set"))
                return nil
            }
            return YAMLNode(.scalar(value, .plain), mark: mark)

        default:
            let head = segments.first ?? ""
            let hint = Suggest.closest(to: head, in: ["vars", "env"]).map {
                "did you mean '${\(([$0] + segments.dropFirst()).joined(separator: "."))}'?"
            } ?? "write ${vars.NAME} or ${env.NAME}; write $${ for a literal '${'"
            diagnostics.append(.error("cannot interpolate '${\(reference)}'", at: mark, hint: hint))
            return nil
        }
    }

    /// Node count and height of `node`, or nil as soon as the count passes `budget`.
    static func measure(_ node: YAMLNode, budget: Int) -> (size: Int, height: Int)? {
        var size = 1, height = 1
        func child(_ n: YAMLNode) -> Bool {
            guard let (s, h) = measure(n, budget: budget - size) else { return false }
            size += s
            height = max(height, h + 1)
            return size <= budget
        }
        switch node.value {
        case .scalar: break
        case .sequence(let items):
            for item in items {
                if !child(item) { return nil }
            }
        case .mapping(let pairs):
            for pair in pairs {
                if !child(pair.key) || !child(pair.value) { return nil }
            }
        }
        return size <= budget ? (size, height) : nil
    }

    /// A variable's value with its own references resolved (once; later uses get the cached result).
    private mutating func resolveVariable(_ name: String, usedAt: SourceMark?) -> YAMLNode {
        if let done = resolved[name] { return done }
        let raw = vars[name] ?? YAMLNode(.scalar("", .plain), mark: .synthetic("vars"))
        if let start = resolving.firstIndex(of: name) {
            let chain = (resolving[start...] + [name]).map { "vars.\($0)" }.joined(separator: " → ")
            diagnostics.append(.error("variable cycle: \(chain)", at: usedAt ?? raw.mark,
                                      hint: "a variable cannot use itself, directly or through other variables"))
            return raw
        }
        if resolving.count >= Self.maxVariableChain {
            diagnostics.append(.error("variables use each other more than \(Self.maxVariableChain) levels deep",
                                      at: usedAt ?? raw.mark))
            return raw
        }
        resolving.append(name)
        var value = raw
        walk(&value, depth: 3)   // vars.NAME sits at depth 3: document, vars, value
        resolving.removeLast()
        resolved[name] = value
        return value
    }
}
