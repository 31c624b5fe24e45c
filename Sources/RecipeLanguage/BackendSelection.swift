// Which compute backend a run asks for: a recipe's `backend:` or `--backend` on the command line, checked the same
// way in both places (an unknown name is an error with a did-you-mean, never a silent fallback to `auto`).
import YAMLSupport

/// `auto` (CUDA when it opens and passed its self-check for every op the recipe needs, else the CPU), `cpu` (the C
/// kernels), `cuda`, or `reference` (the scalar reference backend: slow, the oracle the others are checked against).
public enum BackendSelection: String, Sendable, CaseIterable, Hashable {
    case auto, cpu, cuda, reference

    /// Every name, in the order they are offered.
    public static var names: [String] { allCases.map(\.rawValue) }

    /// The selection called `text`.
    ///
    /// - Throws: `UnknownBackend` naming the choices and, when one is close, asking whether it was meant.
    public static func parse(_ text: String) throws(UnknownBackend) -> BackendSelection {
        guard let b = BackendSelection(rawValue: text) else { throw UnknownBackend(name: text) }
        return b
    }

    /// An unknown backend name: `unknown backend 'cdua' (did you mean 'cuda'?)`.
    public struct UnknownBackend: Error, CustomStringConvertible, Sendable {
        public var name: String
        /// "did you mean 'cuda'?", or nil when nothing is close.
        public var suggestion: String? { Suggest.hint(for: name, in: BackendSelection.names) }
        public var choices: String { "choose one of " + BackendSelection.names.joined(separator: ", ") }
        public var description: String {
            "unknown backend '\(name)'" + (suggestion.map { " (\($0))" } ?? "") + "; " + choices
        }
    }
}
