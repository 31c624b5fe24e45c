// Recipe → Graph: checks each stage against its kind's schema, resolves references (`stage`,
// `stage.output`, model and dataset names), checks port types, finds cycles, and orders the stages.
// Every problem is reported, each with the mark of the text that caused it.
import RecipeLanguage
import YAMLSupport

public enum GraphBuilder {
    public static func build(_ recipe: Recipe, registry: StageRegistry) -> (graph: Graph?, diagnostics: [Diagnostic]) {
        var diags: [Diagnostic] = []

        // Sources.
        var sources: [SourceNode] = []
        for (decls, role) in [(recipe.models, SourceNode.Role.model), (recipe.datasets, .dataset)] {
            for d in decls {
                var checker = SchemaChecker(context: "\(role.rawValue) '\(d.name)'")
                let params = checker.check(d.body, role == .model ? SourceSchema.model : SourceSchema.dataset)
                if let pin = params["sha256"]?.string,
                   pin.count != 64 || !pin.allSatisfy({ "0123456789abcdef".contains($0) }) {
                    checker.error("'sha256' must be 64 lowercase hex digits", d.body["sha256"]?.mark ?? d.mark)
                }
                diags += checker.diagnostics
                sources.append(SourceNode(name: d.name, role: role, params: params, mark: d.mark))
            }
        }
        let sourceByName = Dictionary(sources.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })

        // Stages: kind and params.
        struct Pending { var decl: StageDeclaration; var kind: any StageKindDescription; var params: ParamValue; var refs: [ReferenceUse] }
        var pending: [Pending] = []
        for decl in recipe.stages {
            guard let kind = registry[decl.kind] else {
                if !decl.kind.isEmpty {
                    diags.append(.error("stage '\(decl.name)': unknown stage kind '\(decl.kind)'", at: decl.kindMark,
                                        hint: Suggest.hint(for: decl.kind, in: registry.names)
                                            ?? "known kinds: " + registry.names.joined(separator: ", ")))
                }
                continue
            }
            var checker = SchemaChecker(context: "stage '\(decl.name)'")
            let params = checker.check(decl.body, kind.schema, ignoring: CommonStageKeys.names)
            if checker.diagnostics.isEmpty { kind.check(params: params, node: decl.body, checker: &checker) }
            if let d = decl.body["description"], d.string == nil || !d.isScalar {
                checker.error("'description' expected a string, got \(d.typeDescription)", d.mark)
            }
            diags += checker.diagnostics
            pending.append(Pending(decl: decl, kind: kind, params: params, refs: checker.references))
        }

        // References.
        let stageOutputs: [String: (ports: [PortSpec], primary: String)] = Dictionary(
            pending.map { ($0.decl.name, ($0.kind.outputs(params: $0.params), $0.kind.defaultOutput(params: $0.params))) },
            uniquingKeysWith: { a, _ in a })
        let declaredStageNames = Set(recipe.stages.map(\.name))
        let allNames = recipe.stages.map(\.name) + sources.map(\.name)
        var nodes: [StageNode] = []
        for p in pending {
            var bindings: [Binding] = []
            for ref in p.refs {
                let context = "stage '\(p.decl.name)'"
                let (head, port) = split(ref.target)
                if let s = sourceByName[head] {
                    if port != nil {
                        diags.append(.error("\(context): '\(ref.path)': \(s.role.rawValue) '\(head)' has no outputs; write '\(head)'",
                                            at: ref.mark))
                        continue
                    }
                    if ref.type != .any && ref.type != s.artifactType {
                        diags.append(.error("\(context): '\(ref.path)' expects a \(ref.type.rawValue), but '\(head)' is a \(s.artifactType.rawValue)",
                                            at: ref.mark))
                        continue
                    }
                    bindings.append(Binding(path: ref.path, target: ref.target, source: .source(head), type: s.artifactType, mark: ref.mark))
                } else if let out = stageOutputs[head] {
                    let portName = port ?? out.primary
                    guard let spec = out.ports.first(where: { $0.name == portName }) else {
                        let names = out.ports.map(\.name)
                        diags.append(.error("\(context): '\(ref.path)': stage '\(head)' has no output '\(portName)'",
                                            at: ref.mark,
                                            hint: Suggest.hint(for: portName, in: names)
                                                ?? "its outputs: " + names.joined(separator: ", ")))
                        continue
                    }
                    if ref.type != .any && spec.type != .any && ref.type != spec.type {
                        diags.append(.error("\(context): '\(ref.path)' expects a \(ref.type.rawValue), but '\(head).\(spec.name)' is a \(spec.type.rawValue)",
                                            at: ref.mark))
                        continue
                    }
                    bindings.append(Binding(path: ref.path, target: ref.target, source: .stage(head, port: spec.name), type: spec.type, mark: ref.mark))
                } else if declaredStageNames.contains(head) {
                    continue // that stage failed its own checks; already reported
                } else {
                    diags.append(.error("stage '\(p.decl.name)': '\(ref.path)' refers to unknown '\(head)'", at: ref.mark,
                                        hint: Suggest.hint(for: head, in: allNames)
                                            ?? (allNames.isEmpty ? nil : "known names: " + allNames.joined(separator: ", "))))
                }
            }
            nodes.append(StageNode(name: p.decl.name, kind: p.kind, params: p.params, bindings: bindings,
                                   outputs: stageOutputs[p.decl.name]?.ports ?? [], mark: p.decl.mark))
        }

        // Cycles and order.
        let (ordered, cycle) = topologicalOrder(nodes)
        if let cycle {
            let first = nodes.first { $0.name == cycle[0] }
            diags.append(.error("stages form a cycle: " + (cycle + [cycle[0]]).joined(separator: " → "),
                                at: first?.mark, hint: "a stage cannot depend on its own output, directly or through others"))
        }
        if diags.contains(where: { $0.severity == .error }) { return (nil, diags) }
        return (Graph(sources: sources, stages: ordered), diags)
    }

    /// `a.b.c` → (`a`, `b.c`): stage names never contain dots, port names may (`gen.scores.json`).
    static func split(_ target: String) -> (String, String?) {
        guard let dot = target.firstIndex(of: ".") else { return (target, nil) }
        return (String(target[..<dot]), String(target[target.index(after: dot)...]))
    }

    /// Kahn's algorithm, ties in file order; on a cycle returns one cycle's stage names.
    static func topologicalOrder(_ nodes: [StageNode]) -> ([StageNode], [String]?) {
        let index = Dictionary(nodes.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
        var indegree = [Int](repeating: 0, count: nodes.count)
        var users = [[Int]](repeating: [], count: nodes.count)
        for (i, n) in nodes.enumerated() {
            for d in n.dependencies { if let j = index[d] { indegree[i] += 1; users[j].append(i) } }
        }
        // A min-heap would be faster; a sorted ready list is plenty for thousands of stages.
        var ready = indegree.indices.filter { indegree[$0] == 0 }
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        var cursor = 0
        while cursor < ready.count {
            let i = ready[cursor]
            cursor += 1
            order.append(i)
            var newly: [Int] = []
            for u in users[i] {
                indegree[u] -= 1
                if indegree[u] == 0 { newly.append(u) }
            }
            if !newly.isEmpty {
                // Keep file order among the remaining ready stages.
                var rest = Array(ready[cursor...]) + newly
                rest.sort()
                ready = Array(ready[..<cursor]) + rest
            }
        }
        if order.count == nodes.count { return (order.map { nodes[$0] }, nil) }
        return (order.map { nodes[$0] }, findCycle(nodes, index: index, blocked: Set(indegree.indices.filter { indegree[$0] > 0 })))
    }

    /// Walks dependencies among the stages left over by Kahn's algorithm until a name repeats.
    static func findCycle(_ nodes: [StageNode], index: [String: Int], blocked: Set<Int>) -> [String]? {
        guard var current = blocked.min() else { return nil }
        var path: [Int] = []
        var position: [Int: Int] = [:]
        while position[current] == nil {
            position[current] = path.count
            path.append(current)
            guard let next = nodes[current].dependencies.compactMap({ index[$0] }).first(where: blocked.contains) else { return nil }
            current = next
        }
        // path[position[current]...] is the cycle, in dependency direction; print it in data-flow order,
        // starting from the stage declared first so the message does not depend on where the walk began.
        let cycle = Array(path[position[current]!...].reversed())
        let start = cycle.indices.min { cycle[$0] < cycle[$1] }!
        return (cycle[start...] + cycle[..<start]).map { nodes[$0].name }
    }
}
