// A small image classifier for task metrics on class-conditional data (the digits reproduction): a 2-layer MLP
// (D → hidden ReLU → classes) trained with softmax cross-entropy and Adam, in plain Swift, deterministic per seed.
// Its hidden activations are the features of the Fréchet distance (FrechetDistance.swift).

import Foundation

/// A 2-layer MLP classifier on flattened images: logits = W2·relu(W1·x + b1) + b2.
public struct MLPClassifier: Sendable {
    /// Input size D (e.g. 1·16·16 = 256).
    public let inputs: Int
    /// Hidden size (the feature dimension).
    public let hidden: Int
    /// Number of classes.
    public let classes: Int
    /// [hidden, inputs] row-major.
    public private(set) var w1: [Float]
    /// [hidden].
    public private(set) var b1: [Float]
    /// [classes, hidden] row-major.
    public private(set) var w2: [Float]
    /// [classes].
    public private(set) var b2: [Float]

    /// Training settings.
    public struct Settings: Sendable, Equatable {
        public var hidden = 64
        public var epochs = 40
        public var batch = 32
        public var learningRate: Float = 3e-3
        public var seed: UInt64 = 0
        public init(hidden: Int = 64, epochs: Int = 40, batch: Int = 32, learningRate: Float = 3e-3, seed: UInt64 = 0) {
            self.hidden = hidden; self.epochs = epochs; self.batch = batch; self.learningRate = learningRate; self.seed = seed
        }
    }

    /// A classifier with random weights (uniform ±√(6/(fan_in+fan_out)), zero biases) from `seed`.
    public init(inputs: Int, hidden: Int, classes: Int, seed: UInt64) {
        precondition(inputs > 0 && hidden > 0 && classes > 1, "MLPClassifier: sizes must be positive")
        self.inputs = inputs; self.hidden = hidden; self.classes = classes
        var rng = SplitMix64(seed)
        let a1 = Float((6.0 / Double(inputs + hidden)).squareRoot()), a2 = Float((6.0 / Double(hidden + classes)).squareRoot())
        w1 = (0..<(hidden * inputs)).map { _ in a1 * (2 * rng.nextFloat() - 1) }
        w2 = (0..<(classes * hidden)).map { _ in a2 * (2 * rng.nextFloat() - 1) }
        b1 = Array(repeating: 0, count: hidden)
        b2 = Array(repeating: 0, count: classes)
    }

    /// Trains a classifier on `images` ([N·D] row-major) with `labels` in 0..<classes.
    /// - Throws: `ClassifierError` when the sizes disagree or a label is out of range.
    public static func train(images: [Float], labels: [Int], inputs: Int, classes: Int,
                             settings: Settings = Settings()) throws -> MLPClassifier {
        let n = labels.count
        guard inputs > 0, n > 0, images.count == n * inputs else {
            throw ClassifierError("training data: \(images.count) values for \(n) labels of \(inputs) inputs each")
        }
        guard classes > 1 else { throw ClassifierError("training data: needs at least 2 classes, got \(classes)") }
        if let bad = labels.first(where: { $0 < 0 || $0 >= classes }) {
            throw ClassifierError("training data: label \(bad) is outside 0..<\(classes)")
        }
        var m = MLPClassifier(inputs: inputs, hidden: settings.hidden, classes: classes, seed: settings.seed)
        var adam = Adam(sizes: [m.w1.count, m.b1.count, m.w2.count, m.b2.count], lr: settings.learningRate)
        var rng = SplitMix64(settings.seed &+ 1)
        var order = Array(0..<n)
        let h = settings.hidden, d = inputs
        var g1 = [Float](repeating: 0, count: m.w1.count), gb1 = [Float](repeating: 0, count: h)
        var g2 = [Float](repeating: 0, count: m.w2.count), gb2 = [Float](repeating: 0, count: classes)
        var act = [Float](repeating: 0, count: h), p = [Float](repeating: 0, count: classes), dh = [Float](repeating: 0, count: h)
        for _ in 0..<settings.epochs {
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }   // Fisher–Yates
            var start = 0
            while start < n {
                let idx = order[start..<min(n, start + max(1, settings.batch))]
                start += idx.count
                for i in g1.indices { g1[i] = 0 }; for i in gb1.indices { gb1[i] = 0 }
                for i in g2.indices { g2[i] = 0 }; for i in gb2.indices { gb2[i] = 0 }
                let scale = 1 / Float(idx.count)
                images.withUnsafeBufferPointer { x in
                    for s in idx {
                        let xo = s * d
                        m.forward(x, offset: xo, hidden: &act, logits: &p)
                        softmaxInPlace(&p)
                        p[labels[s]] -= 1                                  // ∂CE/∂logits = softmax − onehot
                        for k in 0..<classes {
                            let gk = p[k] * scale
                            gb2[k] += gk
                            for j in 0..<h { g2[k * h + j] += gk * act[j] }
                        }
                        for j in 0..<h {
                            var acc: Float = 0
                            for k in 0..<classes { acc += p[k] * m.w2[k * h + j] }
                            dh[j] = act[j] > 0 ? acc * scale : 0
                        }
                        for j in 0..<h where dh[j] != 0 {
                            gb1[j] += dh[j]
                            let g = dh[j], row = j * d
                            for i in 0..<d { g1[row + i] += g * x[xo + i] }
                        }
                    }
                }
                adam.step(0, &m.w1, g1); adam.step(1, &m.b1, gb1); adam.step(2, &m.w2, g2); adam.step(3, &m.b2, gb2)
                adam.t += 1
            }
        }
        return m
    }

    /// Hidden features ([N·hidden]) and predicted classes ([N]) of `images` ([N·D] row-major).
    /// - Throws: `ClassifierError` when `images` is not a whole number of inputs.
    public func evaluate(_ images: [Float]) throws -> (features: [Float], predictions: [Int]) {
        guard images.count % inputs == 0 else {
            throw ClassifierError("\(images.count) values are not a whole number of \(inputs)-value images")
        }
        let n = images.count / inputs
        var features = [Float](repeating: 0, count: n * hidden), preds = [Int](repeating: 0, count: n)
        var act = [Float](repeating: 0, count: hidden), logits = [Float](repeating: 0, count: classes)
        images.withUnsafeBufferPointer { x in
            for s in 0..<n {
                forward(x, offset: s * inputs, hidden: &act, logits: &logits)
                for j in 0..<hidden { features[s * hidden + j] = act[j] }
                var best = 0
                for k in 1..<classes where logits[k] > logits[best] { best = k }
                preds[s] = best
            }
        }
        return (features, preds)
    }

    /// Share of `images` classified as their `labels` (0…1).
    public func accuracy(images: [Float], labels: [Int]) throws -> Double {
        let preds = try evaluate(images).predictions
        guard preds.count == labels.count, !labels.isEmpty else {
            throw ClassifierError("\(preds.count) images for \(labels.count) labels")
        }
        return Double(zip(preds, labels).filter { $0 == $1 }.count) / Double(labels.count)
    }

    /// One sample: hidden = relu(W1·x + b1) [hidden], logits = W2·hidden + b2 [classes].
    @inline(__always)
    private func forward(_ x: UnsafeBufferPointer<Float>, offset: Int, hidden act: inout [Float], logits: inout [Float]) {
        let d = inputs
        w1.withUnsafeBufferPointer { w in
            for j in 0..<hidden {
                var acc = b1[j]
                let row = j * d
                for i in 0..<d { acc += w[row + i] * x[offset + i] }
                act[j] = max(0, acc)
            }
        }
        for k in 0..<classes {
            var acc = b2[k]
            for j in 0..<hidden { acc += w2[k * hidden + j] * act[j] }
            logits[k] = acc
        }
    }
}

/// A classifier input or training problem, with what was wrong.
public struct ClassifierError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Numerically stable softmax, in place.
func softmaxInPlace(_ v: inout [Float]) {
    let m = v.max() ?? 0
    var sum: Float = 0
    for i in v.indices { v[i] = Foundation.exp(v[i] - m); sum += v[i] }
    for i in v.indices { v[i] /= sum }
}

/// Adam (β 0.9, 0.999, ε 1e-8) over several parameter arrays.
struct Adam {
    var m: [[Float]], v: [[Float]]
    let lr: Float
    var t = 1
    init(sizes: [Int], lr: Float) {
        m = sizes.map { [Float](repeating: 0, count: $0) }
        v = sizes.map { [Float](repeating: 0, count: $0) }
        self.lr = lr
    }
    mutating func step(_ k: Int, _ w: inout [Float], _ g: [Float]) {
        let b1: Float = 0.9, b2: Float = 0.999
        let c1 = 1 - Foundation.pow(b1, Float(t)), c2 = 1 - Foundation.pow(b2, Float(t))
        for i in w.indices {
            m[k][i] = b1 * m[k][i] + (1 - b1) * g[i]
            v[k][i] = b2 * v[k][i] + (1 - b2) * g[i] * g[i]
            w[i] -= lr * (m[k][i] / c1) / ((v[k][i] / c2).squareRoot() + 1e-8)
        }
    }
}

/// SplitMix64: a small deterministic generator for weights and shuffles.
struct SplitMix64 {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
