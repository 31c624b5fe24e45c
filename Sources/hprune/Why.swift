// Why a stage would run: `hprune plan --why` compares each stage's new action (the canonical JSON its key hashes)
// with the last action of that stage in this store's ledger, and names what changed — a param, an input digest, a
// kernel family's numerics version, a file dependency — or says that it never ran or that its outputs are gone.
import ArtifactStore
import Foundation
import Scheduler

enum Why {
    /// The canonical JSON recorded for action `key`: the ledger's copy, else the action record's; nil for actions
    /// recorded before hprune kept them.
    static func canonical(key: String, store: ArtifactStore) -> String? {
        guard !key.isEmpty else { return nil }
        if let c = try? store.ledger.actionInput(key: key) { return c }
        return store.action(for: key)?.canonical
    }

    /// The changes from `old` to `new` as lines, or a line saying they cannot be compared.
    static func lines(from old: String?, to new: String?, oldKey: String, newKey: String?) -> [String] {
        guard let old else {
            return ["its last action \(oldKey.prefix(12)) was recorded without its inputs (by an older hprune), so only the key "
                    + "is known to differ: \(oldKey.prefix(12)) → \(newKey.map { String($0.prefix(12)) } ?? "(not known yet)")"]
        }
        guard let new, let changes = InputDiff.changes(old, new) else { return ["its inputs cannot be compared"] }
        return changes.isEmpty ? ["nothing in its inputs differs from its last action"] : changes.map(\.description)
    }

    /// Why `entry` is not cached: (the run its comparison is against, lines). Empty lines for a cached stage.
    static func explain(_ entry: PlanEntry, store: ArtifactStore, recipeName: String) -> (run: String?, lines: [String]) {
        if entry.cached { return (nil, []) }
        if entry.forced { return (nil, ["forced (--force)"]) }
        guard let previous = try? store.ledger.latestExecution(stage: entry.name, recipeName: recipeName) else {
            return (nil, ["it never ran in this store"])
        }
        let run = previous.run.rawValue
        if previous.key == entry.key {
            return (run, ["it ran with these inputs (run \(run)), but its outputs are no longer in the store (removed by `cache gc`, or damaged)"])
        }
        var lines = lines(from: canonical(key: previous.key, store: store), to: entry.canonical,
                          oldKey: previous.key, newKey: entry.key)
        if previous.status != .ran && previous.status != .cached {
            lines.insert("(its last execution, in run \(run), \(previous.status.rawValue))", at: 0)
        }
        return (run, lines)
    }
}
