// Comparing two recipes (or two runs' recipes): parameters by dotted path, graph changes, which stages would
// re-run — those whose definition key differs, i.e. whose params, sources or upstream changed — and, for each,
// which of its key's inputs changed (InputDiff over the two definitions' canonical JSON).
import StageGraph
import YAMLSupport

public struct ParamChange: Sendable, Equatable {
    public var path: String
    /// Canonical JSON of each side; nil where the path is absent.
    public var a: String?
    public var b: String?
}

public struct Comparison: Sendable {
    public var params: [ParamChange]
    public var addedStages: [String]
    public var removedStages: [String]
    /// Stages whose inputs come from elsewhere in B than in A (`stage: path ← endpoint`).
    public var rewired: [String]
    /// Stages of B that would run again after A: new, or definition key changed.
    public var rerun: [String]
    /// For each stage of `rerun` that A has too: what changed in its definition (an upstream input shows as
    /// `input model: teacher.model (def 1a2b…) → teacher.model (def 3c4d…)`). Absent for new stages.
    public var reasons: [String: [InputChange]] = [:]
}

public enum Compare {
    /// Flattens a document into (dotted path, canonical JSON of the leaf); list items are indexed `a.b.0`.
    public static func flatten(_ node: YAMLNode, prefix: String = "") -> [(String, String)] {
        switch node.value {
        case .mapping(let pairs):
            if pairs.isEmpty { return [(prefix, "{}")] }
            return pairs.flatMap { p in flatten(p.value, prefix: join(prefix, p.key.scalarText ?? "?")) }
        case .sequence(let items):
            if items.isEmpty { return [(prefix, "[]")] }
            return items.enumerated().flatMap { flatten($0.element, prefix: join(prefix, String($0.offset))) }
        case .scalar:
            return [(prefix, node.canonicalJSON)]
        }
    }

    static func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : a + "." + b }

    public static func documents(_ a: YAMLNode, _ b: YAMLNode) -> [ParamChange] {
        let fa = flatten(a), fb = flatten(b)
        let da = Dictionary(fa, uniquingKeysWith: { _, y in y }), db = Dictionary(fb, uniquingKeysWith: { _, y in y })
        var order: [String] = []
        var seen: Set<String> = []
        for (p, _) in fa + fb where seen.insert(p).inserted { order.append(p) }
        return order.compactMap { p in da[p] == db[p] ? nil : ParamChange(path: p, a: da[p], b: db[p]) }
    }

    /// - Parameters: planA/planB: plans of the two graphs (definition keys are what matter).
    public static func graphs(_ a: Graph, _ planA: Plan, _ b: Graph, _ planB: Plan, documentA: YAMLNode,
                              documentB: YAMLNode) -> Comparison {
        let namesA = Set(a.stages.map(\.name)), namesB = Set(b.stages.map(\.name))
        var rewired: [String] = []
        for s in b.stages where namesA.contains(s.name) {
            let ea = Set(a.stage(s.name)!.bindings.map { "\($0.path) ← \($0.source)" })
            let eb = Set(s.bindings.map { "\($0.path) ← \($0.source)" })
            if ea != eb { rewired.append(s.name) }
        }
        let rerun = planB.entries.filter { e in planA.entry(e.name)?.definitionKey != e.definitionKey }.map(\.name)
        var reasons: [String: [InputChange]] = [:]
        let describe = definitionNames(planA, planB)
        for name in rerun {
            guard let ea = planA.entry(name), let eb = planB.entry(name) else { continue }
            reasons[name] = InputDiff.changes(ea.definitionCanonical, eb.definitionCanonical, describe: describe) ?? []
        }
        return Comparison(params: documents(documentA, documentB),
                          addedStages: b.stages.map(\.name).filter { !namesA.contains($0) },
                          removedStages: a.stages.map(\.name).filter { !namesB.contains($0) },
                          rewired: rewired, rerun: rerun, reasons: reasons)
    }

    /// Shows an upstream input of a definition (`def:<key>#<port>`) as `<stage>.<port> (def <key prefix>)`.
    static func definitionNames(_ plans: Plan...) -> (String) -> String? {
        var names: [String: String] = [:]
        for p in plans { for e in p.entries { names[e.definitionKey] = e.name } }
        return { text in
            guard text.hasPrefix("def:"), let hash = text.dropFirst(4).split(separator: "#").first else { return nil }
            let port = text.split(separator: "#").dropFirst().first.map(String.init) ?? ""
            return "\(names[String(hash)] ?? "?").\(port) (def \(hash.prefix(12)))"
        }
    }
}
