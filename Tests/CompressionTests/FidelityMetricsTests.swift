// Fidelity metrics and the output distances of `score`'s metrics on known vectors (FidelityMetrics.swift), and
// the mapping of every `metric` / `method` value to its own behaviour (ScoringMethods.swift): the defect this
// replaces was a string switch whose `default:` summed MSE for any metric it did not name.

import Compression
import Foundation
import Testing

@Suite("Fidelity metrics and score criteria")
struct FidelityMetricsTests {
    @Test("MSE, PSNR (peak = reference range) and cosine of known vectors")
    func knownValues() {
        let f = FidelityMetrics([1, 2, 3], [1, 2, 5])
        #expect(f.mse == 4.0 / 3)
        #expect(abs(f.psnr - 10 * log10(16 / (4.0 / 3))) < 1e-12)   // peak = 5 − 1
        #expect(abs(f.cosine - 20 / (14.0.squareRoot() * 30.0.squareRoot())) < 1e-15)
        let same = FidelityMetrics([0.5, -1], [0.5, -1])
        #expect(same.mse == 0 && same.psnr == .infinity && abs(same.cosine - 1) < 1e-15)
        // A flat reference has peak 1; zero vectors are identical (cosine 1), one zero vector is orthogonal.
        #expect(abs(FidelityMetrics([2, 2], [1, 1]).psnr - 0) < 1e-12)
        #expect(FidelityMetrics([0, 0], [0, 0]).cosine == 1 && FidelityMetrics([0, 0], [1, 0]).cosine == 0)
    }

    @Test("means over samples cap PSNR at 100 dB; distances are 0 on identical outputs")
    func means() {
        let outs: [[Float]] = [[1, 2, 3], [4, 4]], ref: [[Float]] = [[1, 2, 5], [4, 4]]
        let m = FidelityMetrics.mean(outs, reference: ref)
        let a = FidelityMetrics([1, 2, 3], [1, 2, 5])
        #expect(m.mse == a.mse / 2)
        #expect(m.psnr == (a.psnr + FidelityMetrics.psnrCapDB) / 2)
        #expect(abs(m.cosine - (a.cosine + 1) / 2) < 1e-15)
        for d in OutputDistance.allCases { #expect(abs(d.mean(ref, reference: ref)) < 1e-12, "\(d)") }
        #expect(OutputDistance.psnr.mean(outs, reference: ref) == (FidelityMetrics.psnrCapDB - a.psnr) / 2)
    }

    @Test("every metric has its own distance; the three distances differ on one pair")
    func everyMetricHasItsBehaviour() {
        let x: [Float] = [1, 2, 3], r: [Float] = [1, 2, 5]
        let f = FidelityMetrics(x, r)
        #expect(OutputDistance.mse.of(x, r) == f.mse)
        #expect(OutputDistance.psnr.of(x, r) == FidelityMetrics.psnrCapDB - f.psnr)
        #expect(OutputDistance.cosine.of(x, r) == 1 - f.cosine)
        #expect(Set(OutputDistance.allCases.map { $0.of(x, r) }).count == 3)

        let want: [ScoreMetric: OutputDistance?] = [.sampleMSE: .mse, .velocityMSE: .mse, .psnr: .psnr, .cosine: .cosine, .external: nil]
        #expect(Set(want.keys) == Set(ScoreMetric.allCases))
        for m in ScoreMetric.allCases { #expect(m.distance == want[m]!, "\(m.rawValue)") }
        #expect(ScoreMetric.allCases.filter { !$0.comparesSamples } == [.velocityMSE])
        // The recipe spellings.
        #expect(ScoreMetric.allCases.map(\.rawValue) == ["sample-mse", "psnr", "cosine", "velocity-mse", "external"])
        #expect(ScoreMethod.allCases.map(\.rawValue) == ["remove", "cosine", "taylor", "additive"])
        #expect(ScoreMetric(rawValue: "banana") == nil && ScoreMethod(rawValue: "Remove") == nil)
        #expect(EvaluationMetric.allCases.filter { !$0.needsData } == [.memory])
    }
}
