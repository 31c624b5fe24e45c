// Data-parallel training steps whose result does not depend on the number of ranks. The global batch of B samples
// is cut into fixed micro-batches of `size` samples (the last may be shorter) — a partition set by the recipe,
// never by the rank count. Micro-batch i (samples [i·m, i·m + n_i)) draws exactly the σ and noise that rows
// [i·m, …) of the whole batch would draw, its loss and gradients are computed on their own, rank i mod R computes
// it, every rank all-gathers every micro-batch's gradients, and every rank sums them in micro-batch order,
//     g = Σ_i (n_i / B) · g_i      (i = 0, 1, …, K−1, left to right, f32)
// then applies the same AdamW update. So 1, 2 or 4 ranks (or one process, which takes the same path with
// `SingleProcess`) perform the same floating-point operations on the same values: bit-identical weights.
//
// Gathered record per micro-batch (bytes): header [index Int64, layout UInt64, total, output, feature, task
// Double] then the gradient of every trained tensor, names sorted, flattened as f32 (P values in all).

import Foundation
import Models
import TensorCore

/// How a global batch is cut into micro-batches.
public struct MicroBatches: Sendable, Hashable {
    /// Samples per optimiser step (the global batch).
    public let batch: Int
    /// Samples per micro-batch (the last one holds the rest).
    public let size: Int

    public init(batch: Int, size: Int) {
        precondition(batch >= 1 && size >= 1, "batch and micro-batch size must be ≥ 1")
        self.batch = batch
        self.size = min(size, batch)
    }

    /// K = ⌈batch / size⌉.
    public var count: Int { (batch + size - 1) / size }

    /// Samples of micro-batch `i` within the global batch.
    public func range(_ i: Int) -> Range<Int> { (i * size)..<min(batch, (i + 1) * size) }

    /// The micro-batches rank `rank` of `ranks` computes: i ≡ rank (mod ranks), ascending.
    public func owned(rank: Int, ranks: Int) -> [Int] { Array(stride(from: rank, to: count, by: ranks)) }
}

extension TrainingBatch {
    /// Samples `range` of this batch (prompt tensors sliced; FLUX position ids shared, guidance sliced).
    public func rows(_ range: Range<Int>, backend be: any Backend) throws -> TrainingBatch {
        TrainingBatch(latents: try be.transfer(latents.rows(range)),
                      encoderHiddenStates: try be.transfer(encoderHiddenStates.rows(range)),
                      pooledProjections: try be.transfer(pooledProjections.rows(range)),
                      guidance: guidance.map { Array($0[range]) }, imgIds: imgIds, txtIds: txtIds)
    }
}

/// The layout of the flattened gradient: trained tensor names (sorted) and their element counts.
struct GradientLayout: Equatable {
    var names: [String]
    var counts: [Int]
    var shapes: [[Int]]
    var total: Int { counts.reduce(0, +) }

    init(_ gradients: [String: Tensor]) {
        names = gradients.keys.sorted()
        shapes = names.map { gradients[$0]!.shape }
        counts = shapes.map { $0.reduce(1, *) }
    }

    /// FNV-1a over names and shapes: every rank must flatten the same way.
    var fingerprint: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for (n, s) in zip(names, shapes) {
            for b in n.utf8 { mix(b) }
            mix(0)
            for d in s { for k in 0..<8 { mix(UInt8(truncatingIfNeeded: d >> (8 * k))) } }
        }
        return h
    }
}

/// One micro-batch's contribution, as gathered.
private struct MicroRecordHeader {
    var index: Int64
    var layout: UInt64
    var total: Double
    var output: Double
    var feature: Double
    var task: Double
    static let bytes = 48
}

extension Trainer {
    /// One training step at 0-based `step` over the global `batch`, computed as `micro` micro-batches spread over the
    /// ranks of `collective` and summed in micro-batch order (file comment). Every rank calls it with the same
    /// global batch (each computes only its own micro-batches) and ends with the same weights.
    /// - Throws: `TrainingError.nonFinite` (nothing updated, on every rank alike); `CollectiveError` when the ranks
    ///   disagree on the gradient layout or a collective fails.
    public func dataParallelStep(_ batch: TrainingBatch, step: Int, micro: MicroBatches,
                                 collective: any Collective) throws -> StepResult {
        precondition(micro.batch == batch.batchSize, "micro-batches of \(micro.batch) samples for a batch of \(batch.batchSize)")
        let be = model.backend
        let owned = micro.owned(rank: collective.rank, ranks: collective.size)
        let slots = (micro.count + collective.size - 1) / collective.size
        guard !owned.isEmpty else {
            throw CollectiveError("rank \(collective.rank) of \(collective.size) has no micro-batch: \(micro.count) micro-batch\(micro.count == 1 ? "" : "es") of \(micro.size) for \(collective.size) ranks; use at most \(micro.count) ranks or a smaller micro_batch")
        }

        // This rank's micro-batches, each flattened into its record.
        var layout: GradientLayout?
        var send: [UInt8] = []
        var recordBytes = 0
        for (slot, i) in owned.enumerated() {
            let r = micro.range(i)
            let (loss, grads) = try lossAndGradients(try batch.rows(r, backend: be), step: step, sampleOffset: r.lowerBound)
            let l = GradientLayout(grads)
            if layout == nil {
                layout = l
                recordBytes = MicroRecordHeader.bytes + 4 * l.total
                send = [UInt8](repeating: 0, count: slots * recordBytes)
            } else if l != layout {
                throw CollectiveError("micro-batch \(i) trained different tensors than micro-batch \(owned[0])")
            }
            var header = MicroRecordHeader(index: Int64(i), layout: l.fingerprint, total: loss.total, output: loss.output,
                                           feature: loss.feature, task: loss.task)
            try send.withUnsafeMutableBytes { out in
                let base = out.baseAddress! + slot * recordBytes
                withUnsafeBytes(of: &header.index) { base.copyMemory(from: $0.baseAddress!, byteCount: 8) }
                withUnsafeBytes(of: &header.layout) { (base + 8).copyMemory(from: $0.baseAddress!, byteCount: 8) }
                for (k, v) in [header.total, header.output, header.feature, header.task].enumerated() {
                    withUnsafeBytes(of: v) { (base + 16 + 8 * k).copyMemory(from: $0.baseAddress!, byteCount: 8) }
                }
                var at = base + MicroRecordHeader.bytes
                for n in l.names {
                    let v = try be.floats(grads[n]!)
                    v.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    at += 4 * v.count
                }
            }
        }
        guard let layout else { throw CollectiveError("no micro-batch computed") }

        // Every rank's records; a rank with fewer micro-batches sends empty slots (index −1 would be
        // unreachable below: only indices < count are read).
        let sizes: [Int64] = try collective.allGather(Int64(recordBytes))
        guard sizes.allSatisfy({ $0 == Int64(recordBytes) }) else {
            throw CollectiveError("the ranks flatten different gradients (record bytes \(sizes.map(String.init).joined(separator: ", "))): do all ranks run the same model and recipe?")
        }
        var all = [UInt8](repeating: 0, count: collective.size * send.count)
        try send.withUnsafeBytes { s in try all.withUnsafeMutableBytes { try collective.allGather(s, into: $0) } }

        // Σ_i (n_i / B) g_i in micro-batch order, and the loss alike.
        var sum = [Float](repeating: 0, count: layout.total)
        var loss = LossBreakdown(total: 0, output: 0)
        try all.withUnsafeBytes { raw in
            for i in 0..<micro.count {
                let base = raw.baseAddress! + ((i % collective.size) * slots + i / collective.size) * recordBytes
                let index = base.loadUnaligned(as: Int64.self)
                let fp = (base + 8).loadUnaligned(as: UInt64.self)
                guard index == Int64(i), fp == layout.fingerprint else {
                    throw CollectiveError("micro-batch \(i) arrived as \(index) with layout \(String(fp, radix: 16)) (expected \(String(layout.fingerprint, radix: 16))): the ranks do not train the same tensors")
                }
                let w = Double(micro.range(i).count) / Double(micro.batch)
                loss.total += w * (base + 16).loadUnaligned(as: Double.self)
                loss.output += w * (base + 24).loadUnaligned(as: Double.self)
                loss.feature += w * (base + 32).loadUnaligned(as: Double.self)
                loss.task += w * (base + 40).loadUnaligned(as: Double.self)
                let g = UnsafeRawPointer(base + MicroRecordHeader.bytes)
                Self.accumulate(&sum, g, weight: Float(w))
            }
        }
        guard loss.total.isFinite else { throw TrainingError.nonFinite(step: step, what: "loss", value: loss.total) }
        var gradients: [String: Tensor] = [:]
        var offset = 0
        for (k, n) in layout.names.enumerated() {
            gradients[n] = try be.tensor(Array(sum[offset..<(offset + layout.counts[k])]), shape: layout.shapes[k])
            offset += layout.counts[k]
        }
        let applied = try optimizer.step(gradients, step: step, totalSteps: totalSteps)
        return StepResult(step: step, loss: loss, gradientNorm: applied,
                          lrFactor: optimizer.settings.schedule.factor(step: step, totalSteps: totalSteps))
    }

    /// sum[j] += weight · g[j] for the f32 values at `g` (unaligned), in index order.
    static func accumulate(_ sum: inout [Float], _ g: UnsafeRawPointer, weight: Float) {
        sum.withUnsafeMutableBufferPointer { s in
            for j in 0..<s.count { s[j] += weight * g.loadUnaligned(fromByteOffset: 4 * j, as: Float.self) }
        }
    }

    /// FNV-1a of the trained tensors' f32 bits (names sorted): ranks compare it after training to prove they agree.
    public func trainedWeightsFingerprint() throws -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for n in trainable.names.sorted() {
            let t = try model.weights(n)
            let v = try model.backend.floats(t.dtype == .f32 ? t : try model.backend.cast(t, to: .f32))
            for x in v {
                var b = x.bitPattern
                for _ in 0..<4 { h = (h ^ UInt64(b & 0xff)) &* 0x100_0000_01b3; b >>= 8 }
            }
        }
        return h
    }
}
