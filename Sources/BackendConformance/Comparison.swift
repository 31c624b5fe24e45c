// Comparing a backend's named outputs with the reference's under a tolerance: the one rule shared by the
// conformance tests, `hprune selftest` and the CUDA start-up self-check.
import TensorCore

/// Compares two named output sets; returns a description of the first mismatch, or nil.
public func mismatch(_ got: [String: [Float]], _ want: [String: [Float]], _ defaultTol: Tolerance,
              perOutput: [String: Tolerance] = [:]) -> String? {
    guard Set(got.keys) == Set(want.keys) else { return "outputs \(got.keys.sorted()) vs \(want.keys.sorted())" }
    for key in want.keys.sorted() {
        let g = got[key]!, w = want[key]!, tol = perOutput[key] ?? defaultTol
        guard g.count == w.count else { return "\(key): \(g.count) values, expected \(w.count)" }
        for i in w.indices {
            if g[i].isNaN && w[i].isNaN { continue }
            if tol.rtol == 0 && tol.atol == 0 {
                if g[i].bitPattern != w[i].bitPattern { return "\(key)[\(i)]: \(g[i]) != \(w[i]) (exact)" }
                continue
            }
            if g[i] == w[i] { continue }                                  // also equal infinities
            let err = abs(g[i] - w[i])
            if !(err <= tol.atol + tol.rtol * abs(w[i])) {
                return "\(key)[\(i)]: got \(g[i]), reference \(w[i]), |diff| \(err) > \(tol.atol) + \(tol.rtol)·|ref|"
            }
        }
    }
    return nil
}
