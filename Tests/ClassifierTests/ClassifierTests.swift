// Tests of the digits classifier (training, held-out accuracy on the committed data) and the Fréchet distance.

import TensorFiles
import Foundation
import Testing
@testable import Classifier

/// The committed digits split at Examples/digits/ (images [N·256], labels [N]).
func digits(_ split: String) throws -> (images: [Float], labels: [Int]) {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let file = try SafetensorsFile(path: root.appendingPathComponent("Examples/digits/digits-\(split).safetensors").path)
    let images = try file.floats("latents")
    let n = try file.info("labels").shape[0]
    let labels = try file.bytes("labels").withUnsafeBytes { p in
        (0..<n).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
    }
    return (images, labels)
}

@Test func classifierReachesNinetyFivePercentOnHeldOutDigits() throws {
    let train = try digits("train"), test = try digits("test")
    #expect(train.labels.count == 1438 && test.labels.count == 359)
    let m = try MLPClassifier.train(images: train.images, labels: train.labels, inputs: 256, classes: 10)
    let acc = try m.accuracy(images: test.images, labels: test.labels)
    #expect(acc >= 0.95, "held-out accuracy \(acc)")
    // Deterministic per seed.
    let again = try MLPClassifier.train(images: train.images, labels: train.labels, inputs: 256, classes: 10)
    #expect(again.w1 == m.w1 && again.b2 == m.b2)
}

@Test func classifierRejectsBadInput() {
    #expect(throws: ClassifierError.self) { try MLPClassifier.train(images: [0, 1, 2], labels: [0, 1], inputs: 2, classes: 2) }
    #expect(throws: ClassifierError.self) { try MLPClassifier.train(images: [0, 1, 2, 3], labels: [0, 5], inputs: 2, classes: 2) }
    let m = MLPClassifier(inputs: 2, hidden: 3, classes: 2, seed: 0)
    #expect(throws: ClassifierError.self) { try m.evaluate([1, 2, 3]) }
}

@Test func jacobiFindsKnownEigenvalues() {
    // [[2, 1], [1, 2]] has eigenvalues 1 and 3; [[4,0,0],[0,9,0],[0,0,1]]'s square root is diag(2, 3, 1).
    let (e, _) = jacobiEigen([2, 1, 1, 2], 2)
    #expect(abs(e.sorted()[0] - 1) < 1e-12 && abs(e.sorted()[1] - 3) < 1e-12)
    let r = symmetricSqrt([4, 0, 0, 0, 9, 0, 0, 0, 1], 3)
    #expect(zip(r, [2.0, 0, 0, 0, 3, 0, 0, 0, 1]).allSatisfy { abs($0 - $1) < 1e-12 })
    // A full symmetric matrix: sqrt(A)·sqrt(A) = A.
    let a: [Double] = [5, 2, 1, 2, 4, 0.5, 1, 0.5, 3]
    let s = symmetricSqrt(a, 3), back = matmul(s, s, 3)
    #expect(zip(back, a).allSatisfy { abs($0 - $1) < 1e-9 })
}

@Test func frechetDistanceOfKnownGaussians() throws {
    // Identical sets: 0. A set shifted by (3, 4): 25 (same covariance). Scaled by 2 in 1-D: μ² + σ².
    var rng = SplitMix64(3)
    let a = (0..<4000).map { _ in rng.nextFloat() * 2 - 1 }                // 2000 rows × 2
    #expect(try frechetDistance(a, a, dim: 2) < 1e-9)
    let shifted = a.enumerated().map { $0.element + ($0.offset % 2 == 0 ? 3 : 4) }
    #expect(abs(try frechetDistance(a, shifted, dim: 2) - 25) < 1e-6)
    let one = (0..<2000).map { _ in rng.nextFloat() * 2 - 1 }
    let (mean, cov) = meanAndCovariance(one, dim: 1)
    let fd = try frechetDistance(one, one.map { $0 * 2 }, dim: 1)
    #expect(abs(fd - (mean[0] * mean[0] + cov[0])) < 1e-6)                 // (μ − 2μ)² + (σ − 2σ)²
    #expect(throws: ClassifierError.self) { try frechetDistance([1, 2], [1, 2, 3, 4], dim: 2) }
}

@Test func groupTaskMetricsByHand() throws {
    // 1-D features, so Fréchet = (μ₁ − μ₂)² + σ₁² + σ₂² − 2σ₁σ₂ (unbiased variances).
    // Group a = {0, 1}: generated [1, 3, 0, 2] (μ 1.5, σ² 5/3), real [0, 2, 0, 2] (μ 1, σ² 4/3);
    //   predictions 0, 1, 1, 1 for labels 0, 0, 1, 1 → 3 of 4 right.
    // Group b = {2}: generated [10, 12] (μ 11, σ² 2), real [5, 7] (μ 6, σ² 2) → 25 + 2 + 2 − 4 = 25; 1 of 2 right.
    let labels = [0, 0, 1, 1, 2, 2], predictions = [0, 1, 1, 1, 2, 0]
    let features: [Float] = [1, 3, 0, 2, 10, 12], real: [Float] = [0, 2, 0, 2, 5, 7]
    let out = try groupTaskMetrics(groups: [("b", [2]), ("a", [0, 1])], labels: labels, predictions: predictions,
                                   features: features, realFeatures: real, realLabels: labels, dim: 1)
    #expect(out.map(\.name) == ["b", "a"])
    #expect(out.map(\.samples) == [2, 4])
    #expect(out[0].promptAccuracy == 0.5 && out[1].promptAccuracy == 0.75)
    #expect(abs(out[0].frechet - 25) < 1e-9)
    #expect(abs(out[1].frechet - (3.25 - 4 * 5.0.squareRoot() / 3)) < 1e-9, "\(out[1].frechet)")
    // A group with fewer than 2 samples on either side cannot have a Fréchet distance.
    #expect(throws: GroupedTaskMetricsError.tooFewSamples(group: "none", generated: 0, real: 0)) {
        try groupTaskMetrics(groups: [("none", [7])], labels: labels, predictions: predictions, features: features,
                             realFeatures: real, realLabels: labels, dim: 1)
    }
    #expect(throws: GroupedTaskMetricsError.self) {
        try groupTaskMetrics(groups: [("a", [0])], labels: labels, predictions: [0], features: features,
                             realFeatures: real, realLabels: labels, dim: 1)
    }
}
