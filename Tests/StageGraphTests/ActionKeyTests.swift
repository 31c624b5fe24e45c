// Action keys: pinned to a known value so an accidental change to key composition is caught, and
// sensitive to exactly what should change them.
import Foundation
import Scheduler
import StageGraph
import Testing

@Test func knownActionKeyIsPinned() {
    let params = ParamValue.map([("run", .list([.string("echo"), .string("hi")])), ("inputs", .map([("a", .reference("gen"))])),
                                 ("outputs", .list([])), ("env", .map([])), ("deps", .list([]))])
    let json = ActionKey.canonicalJSON(kind: "command", version: 1, usesBackend: false, params: params,
                                       context: KeyContext(seed: 0, backendClass: "cpu", numerics: ["cpu": 1], hpruneVersion: "0.1.0"),
                                       resolve: { _ in "sha256:" + String(repeating: "ab", count: 32) })
    #expect(json == #"{"backend":"none","hprune":"0.1.0","kind":"command","kind_version":1,"params":{"deps":[],"env":{},"inputs":{"a":"sha256:abababababababababababababababababababababababababababababababab"},"outputs":[],"run":["echo","hi"]},"seed":0}"#)
    // Pinned: recompute with `printf '%s' "$json" | sha256sum` if the composition changes on purpose.
    #expect(ActionKey.hash(json!) == "9fa7edc26ed0f7d4206a460f1a88aa84f95c35c37f50b3c11db9da8bed626f96")
}

@Test func keyIgnoresKeyOrderButNotValues() {
    let a = ParamValue.map([("x", .int(1)), ("y", .double(0.5))])
    let b = ParamValue.map([("y", .double(0.5)), ("x", .int(1))])
    let c = ParamValue.map([("x", .int(1)), ("y", .double(0.25))])
    let ctx = KeyContext(seed: 0, backendClass: "cpu", numerics: [:])
    func key(_ p: ParamValue, seed: Int = 0) -> String {
        ActionKey.hash(ActionKey.canonicalJSON(kind: "k", version: 1, usesBackend: true, params: p,
                                               context: KeyContext(seed: seed, backendClass: ctx.backendClass, numerics: [:]), resolve: { _ in nil })!)
    }
    #expect(key(a) == key(b))
    #expect(key(a) != key(c))
    #expect(key(a) != key(a, seed: 1))
}

@Test func unknownInputGivesNoKey() {
    let p = ParamValue.map([("m", .reference("up"))])
    #expect(ActionKey.canonicalJSON(kind: "k", version: 1, usesBackend: true, params: p,
                                    context: KeyContext(seed: 0, backendClass: "cpu", numerics: [:]), resolve: { _ in nil }) == nil)
}
