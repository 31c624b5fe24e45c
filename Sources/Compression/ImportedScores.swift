// Score tables written outside hprune, read into ΔP by address: hprune's own JSON (`external` / `import`) and the
// official HierarchicalPrune code's precomputed contribution files (assets/precomputed_metrics/hpsv2/*.json).

import Foundation
import ModelSpec

/// The layout of a scores file (`score`'s `import.format`).
public enum ScoreFileFormat: String, Sendable, Hashable, CaseIterable, Decodable {
    /// `{"baseline": P, "scores": {…}}` or `{"delta_p": {…}}` (`ImportedScores.hprune`).
    case hprune
    /// The official code's contribution JSON (`ImportedScores.official`).
    case hierarchicalprune

    /// The layout of a parsed file by its content: hprune's when it has `scores` or `delta_p`.
    public init(guessing obj: [String: Any]) {
        self = obj["scores"] == nil && obj["delta_p"] == nil ? .hierarchicalprune : .hprune
    }
}

public enum ImportedScores {
    public struct Problem: Error, Sendable {
        public var message: String
        public var fix: String?
        public init(message: String, fix: String? = nil) {
            self.message = message
            self.fix = fix
        }
    }

    /// `{"baseline": P, "scores": {"blocks.3": P, …}}` (ΔP = baseline − P) or `{"delta_p": {"blocks.3": ΔP, …}}`.
    /// Every address must exist in `structure`.
    public static func hprune(_ obj: [String: Any], structure: ModelStructure) throws -> ([ComponentAddress: Double], Double?) {
        let baseline = (obj["baseline"] as? NSNumber)?.doubleValue
        let table: [String: Any]
        let isDelta: Bool
        if let d = obj["delta_p"] as? [String: Any] {
            (table, isDelta) = (d, true)
        } else if let s = obj["scores"] as? [String: Any] {
            guard baseline != nil else { throw Problem(message: "'scores' needs a numeric 'baseline' (P of the unpruned model)") }
            (table, isDelta) = (s, false)
        } else {
            throw Problem(message: "needs 'scores' (with 'baseline') or 'delta_p'", fix: "write {\"baseline\": P, \"scores\": {\"blocks.3\": P, …}}")
        }
        var out: [ComponentAddress: Double] = [:]
        for (k, v) in table {
            guard let x = (v as? NSNumber)?.doubleValue else { throw Problem(message: "'\(k)' is not a number") }
            let a: ComponentAddress
            do { a = try ComponentAddress(parsing: k); try structure.validate(a) } catch {
                throw Problem(message: "'\(k)': \(error)")
            }
            out[a] = isDelta ? x : (baseline ?? 0) - x
        }
        return (out, baseline)
    }

    /// The official code's contribution JSON: keys `"<block><tab><component>"` (the literal text `<tab>`, as
    /// utils/utils.py `get_metric_results_dict` joins them; a real tab is accepted too), values the metric P with
    /// that component removed; component `all` is the whole block (layer-wise analysis). Block indices are global
    /// (FLUX single block j is 19 + j), as hprune's. The file holds no baseline: ΔP = `baseline` − P.
    ///
    /// Entries the model does not have are skipped and listed in the second result (the official SD3.5 files score
    /// `ff_context` of the last block, which diffusers builds without one); composite entries (`w_norm1+ff`,
    /// the code's hybrid analyses) are refused.
    public static func official(_ obj: [String: Any], baseline: Double?, structure: ModelStructure) throws -> ([ComponentAddress: Double], [String]) {
        guard let baseline else {
            throw Problem(message: "the official contribution files hold no baseline", fix: "set `import.baseline` to P of the unpruned model (the paper: HPSv2 30.29 for SD3.5 Large Turbo)")
        }
        guard !obj.isEmpty else { throw Problem(message: "no entries") }
        var out: [ComponentAddress: Double] = [:]
        var skipped: [String] = []
        for (k, v) in obj {
            let parts = k.components(separatedBy: "<tab>").count == 2 ? k.components(separatedBy: "<tab>") : k.components(separatedBy: "\t")
            guard parts.count == 2, let block = Int(parts[0]) else {
                throw Problem(message: "'\(k)' is not \"<block><tab><component>\"", fix: "import the official code's precomputed_metrics JSON, or use `format: hprune`")
            }
            guard let x = (v as? NSNumber)?.doubleValue ?? (v as? String).flatMap(Double.init) else {
                throw Problem(message: "'\(k)' is not a number")
            }
            let name = parts[1]
            if name.contains("+") {
                throw Problem(message: "'\(k)': composite components (the official hybrid analyses) have no single address", fix: "import a fine-grained (`fg`) or layer-wise analysis")
            }
            guard let c = name == "all" ? SubComponent.block : SubComponent(rawValue: name) else {
                throw Problem(message: "'\(k)': unknown component '\(name)'", fix: "components are \(SubComponent.allCases.map(\.rawValue).joined(separator: ", ")) or all")
            }
            let a = ComponentAddress(block: block, component: c)
            guard block >= 0, block < structure.blocks.count else {
                throw Problem(message: "'\(k)': block \(block) does not exist (the model has \(structure.blocks.count))", fix: "import the file written for this model")
            }
            if (try? structure.validate(a)) == nil { skipped.append(k); continue }
            out[a] = baseline - x
        }
        return (out, skipped.sorted())
    }
}
