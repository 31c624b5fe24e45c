// Reproduces PyTorch's CPU float32 `sum` / `mean` of a contiguous 1-D tensor bit for bit, because bitsandbytes'
// double quantisation stores `absmax.mean()` (the nested offset) and every nested code depends on it.
// Follows aten/src/ATen/native/cpu/SumKernel.cpp (cascade_sum, row_sum, multi_row_sum, vectorized_inner_sum)
// and TensorIteratorBase::parallel_reduce (two_pass_reduction), read from the public PyTorch source.

/// How the PyTorch build that ran bitsandbytes reduces a float32 vector (its result depends on both).
public struct TorchReductionConfig: Hashable, Sendable {
    /// Floats per `Vectorized<float>` in the sum kernel: 8 on x86-64 (AVX2 and DEFAULT builds, and also on
    /// AVX512 machines, because `sum_stub` is registered without AVX512 dispatch; checked against PyTorch 2.15
    /// on an AVX512 CPU for every length 1...69 and several longer ones).
    public var vectorLanes: Int
    /// `torch.get_num_threads()`; matters only for vectors of 32768 elements or more (PyTorch's grain size).
    public var threads: Int

    public init(vectorLanes: Int = 8, threads: Int = 2) {
        precondition(vectorLanes >= 1 && threads >= 1)
        self.vectorLanes = vectorLanes
        self.threads = threads
    }

    /// x86-64 PyTorch with 2 threads (the fixtures' machine: AVX512 capability, `torch.get_num_threads() == 2`).
    public static let reference = TorchReductionConfig(vectorLanes: 8, threads: 2)
}

/// PyTorch CPU `x.sum()` for float32 `x`, bit-identical for the given build config.
public func torchFloatSum(_ x: UnsafeBufferPointer<Float>, config: TorchReductionConfig = .reference) -> Float {
    let n = x.count
    let grain = 32768
    if n < grain || config.threads == 1 {
        return 0 + TorchSum.contiguousSum(x, lanes: config.vectorLanes)
    }
    // two_pass_reduction: at::parallel_for splits [0, n) into min(threads, ceil(n / grain)) equal chunks; each
    // chunk is reduced into its own slot of a buffer of `threads` zeros, then the buffer is summed.
    let used = min(config.threads, (n + grain - 1) / grain)
    let chunk = (n + used - 1) / used
    var partials = [Float](repeating: 0, count: config.threads)
    for t in 0..<used {
        let begin = t * chunk
        let end = min(n, begin + chunk)
        if begin < end {
            partials[t] = 0 + TorchSum.contiguousSum(
                UnsafeBufferPointer(rebasing: x[begin..<end]), lanes: config.vectorLanes)
        }
    }
    return partials.withUnsafeBufferPointer { 0 + TorchSum.contiguousSum($0, lanes: config.vectorLanes) }
}

/// PyTorch CPU `x.mean()` for float32 `x`: the float32 sum divided by the float32 count.
public func torchFloatMean(_ x: UnsafeBufferPointer<Float>, config: TorchReductionConfig = .reference) -> Float {
    torchFloatSum(x, config: config) / Float(x.count)
}

enum TorchSum {
    /// One serial `cascade_sum` loop over a contiguous range: vectorised when it holds at least one vector.
    static func contiguousSum(_ x: UnsafeBufferPointer<Float>, lanes: Int) -> Float {
        let n = x.count
        if n >= lanes {
            // vectorized_inner_sum: row_sum over n / lanes vectors, then the scalar tail, then the lanes.
            let vecCount = n / lanes
            let acc = rowSum(x, width: lanes, count: vecCount)
            var final: Float = 0
            for k in (vecCount * lanes)..<n { final += x[k] }
            for l in 0..<lanes { final += acc[l] }
            return final
        }
        return rowSum(x, width: 1, count: n)[0]
    }

    /// `row_sum` over `count` elements, each element being `width` consecutive floats (a vector; 1 = scalar),
    /// accumulated lane-wise. Returns the `width` lane sums.
    static func rowSum(_ x: UnsafeBufferPointer<Float>, width: Int, count: Int) -> [Float] {
        let ilp = 4
        let sizeILP = count / ilp
        // multi_row_sum with nrows = ilp: "row" i holds elements i*ilp ..< i*ilp + ilp.
        var partial = multiRowSum(x, width: width, rows: ilp, size: sizeILP)
        for i in (sizeILP * ilp)..<count {
            for l in 0..<width { partial[0][l] += x[i * width + l] }
        }
        for k in 1..<ilp {
            for l in 0..<width { partial[0][l] += partial[k][l] }
        }
        return partial[0]
    }

    /// `multi_row_sum`: cascade of 4 accumulator levels, each level flushed every 2^level_power elements.
    static func multiRowSum(_ x: UnsafeBufferPointer<Float>, width: Int, rows: Int, size: Int) -> [[Float]] {
        let numLevels = 4
        let levelPower = max(4, ceilLog2(size) / numLevels)
        let levelStep = 1 << levelPower
        let levelMask = levelStep - 1
        var acc = [[[Float]]](
            repeating: [[Float]](repeating: [Float](repeating: 0, count: width), count: rows), count: numLevels)
        func load(_ i: Int, _ k: Int, _ l: Int) -> Float { x[(i * rows + k) * width + l] }

        var i = 0
        while i + levelStep <= size {
            for _ in 0..<levelStep {
                for k in 0..<rows { for l in 0..<width { acc[0][k][l] += load(i, k, l) } }
                i += 1
            }
            for j in 1..<numLevels {
                for k in 0..<rows {
                    for l in 0..<width {
                        acc[j][k][l] += acc[j - 1][k][l]
                        acc[j - 1][k][l] = 0
                    }
                }
                let mask = levelMask << (j * levelPower)
                if (i & mask) != 0 { break }
            }
        }
        while i < size {
            for k in 0..<rows { for l in 0..<width { acc[0][k][l] += load(i, k, l) } }
            i += 1
        }
        for j in 1..<numLevels {
            for k in 0..<rows { for l in 0..<width { acc[0][k][l] += acc[j][k][l] } }
        }
        return acc[0]
    }

    /// c10 `CeilLog2`: 1 for x <= 2, else the bit width of x - 1.
    static func ceilLog2(_ x: Int) -> Int {
        if x <= 2 { return 1 }
        return UInt64(x - 1).bitWidth - UInt64(x - 1).leadingZeroBitCount
    }
}
