// How close one model's outputs are to a reference model's, sample by sample: MSE, PSNR and cosine similarity of
// flattened latents (or velocities). `score` turns a distance into ΔP of a removal (`OutputDistance`);
// `evaluate` reports the means over a sample set (`FidelityMetrics.mean`).

import Foundation

/// MSE, PSNR and cosine similarity of one output against a reference (both flattened, same length).
public struct FidelityMetrics: Sendable, Hashable {
    /// PSNR above this counts as identical: `evaluate` caps its PSNR here, `score`'s `psnr` metric has
    /// ΔP = cap − min(cap, PSNR).
    public static let psnrCapDB = 100.0

    public var mse: Double
    /// 10·log10(peak² / mse), peak = max − min of the reference; +∞ when identical.
    public var psnr: Double
    public var cosine: Double

    public init(_ x: [Float], _ ref: [Float]) {
        var se = 0.0, dot = 0.0, nx = 0.0, nr = 0.0
        var lo = Double.infinity, hi = -Double.infinity
        for (a, b) in zip(x, ref) {
            let da = Double(a), db = Double(b)
            se += (da - db) * (da - db)
            dot += da * db
            nx += da * da
            nr += db * db
            lo = min(lo, db)
            hi = max(hi, db)
        }
        let n = Double(max(1, min(x.count, ref.count)))
        mse = se / n
        let peak = hi > lo ? hi - lo : 1
        psnr = mse == 0 ? .infinity : 10 * log10(peak * peak / mse)
        cosine = (nx == 0 && nr == 0) ? 1 : (nx == 0 || nr == 0 ? 0 : dot / (nx.squareRoot() * nr.squareRoot()))
    }

    /// Means over paired samples (`outputs[i]` against `reference[i]`) of MSE, PSNR capped at `psnrCapDB`, and cosine.
    public static func mean(_ outputs: [[Float]], reference: [[Float]]) -> (mse: Double, psnr: Double, cosine: Double) {
        var mse = 0.0, psnr = 0.0, cos = 0.0
        for (o, r) in zip(outputs, reference) {
            let f = FidelityMetrics(o, r)
            mse += f.mse
            psnr += min(psnrCapDB, f.psnr)
            cos += f.cosine
        }
        let n = Double(max(1, outputs.count))
        return (mse / n, psnr / n, cos / n)
    }
}

/// A distance of an output from the reference's that is 0 when they are identical and grows as they part.
public enum OutputDistance: String, Sendable, Hashable, CaseIterable {
    /// Mean squared difference.
    case mse
    /// `psnrCapDB` − min(cap, PSNR) dB.
    case psnr
    /// 1 − cosine similarity.
    case cosine

    public func of(_ x: [Float], _ ref: [Float]) -> Double {
        let d = FidelityMetrics(x, ref)
        switch self {
        case .mse: return d.mse
        case .psnr: return FidelityMetrics.psnrCapDB - min(FidelityMetrics.psnrCapDB, d.psnr)
        case .cosine: return 1 - d.cosine
        }
    }

    /// The mean distance over paired samples.
    public func mean(_ outputs: [[Float]], reference: [[Float]]) -> Double {
        var total = 0.0
        for (o, r) in zip(outputs, reference) { total += of(o, r) }
        return total / Double(max(1, outputs.count))
    }
}
