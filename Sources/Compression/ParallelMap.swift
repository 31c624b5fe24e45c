// A small bounded parallel map for per-tensor work (quantising Linear weights): `workers` items at a time on
// Dispatch's pool, results in input order, the first error (in input order) rethrown.

import Foundation

public enum ParallelMap {
    /// Maps `items` with `body`, at most `workers` at once (each batch finishes before the next starts, so at most
    /// `workers` results of `body`'s inputs are alive besides the outputs). `onBatch` runs after each batch with
    /// the count done so far (for progress and cancellation checks; throwing from it stops the map).
    public static func map<T: Sendable, R: Sendable>(_ items: [T], workers: Int = ProcessInfo.processInfo.activeProcessorCount,
                                                     onBatch: (Int) throws -> Void = { _ in },
                                                     _ body: @Sendable (T) throws -> R) throws -> [R] {
        let w = max(1, workers)
        var out: [R] = []
        out.reserveCapacity(items.count)
        var start = 0
        while start < items.count {
            let batch = Array(items[start..<min(start + w, items.count)])
            let box = Box<R>(count: batch.count)
            DispatchQueue.concurrentPerform(iterations: batch.count) { i in
                box.set(i, Result { try body(batch[i]) })
            }
            for r in box.results { out.append(try r!.get()) }
            start += batch.count
            try onBatch(start)
        }
        return out
    }

    private final class Box<R: Sendable>: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var results: [Result<R, any Error>?]
        init(count: Int) { results = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<R, any Error>) { lock.withLock { results[i] = r } }
    }
}
