// Argument checks and output shapes shared by all backends, so every backend accepts exactly the same calls.
// Each check throws `BackendError.invalidArgument(op, …)` naming the shapes involved and what was expected.

/// Shape rules of the ops, defined once.
public enum OpChecks {
    static func fail(_ op: Op, _ message: String) -> BackendError { .invalidArgument(op, message) }

    /// Throws unless `x.dtype` is one of `allowed`.
    public static func dtype(_ op: Op, _ x: Tensor, _ allowed: [DType], backend: String) throws {
        guard allowed.contains(x.dtype) else { throw BackendError.unsupportedDType(op, x.dtype, backend: backend) }
    }

    /// Throws unless the two shapes are equal.
    public static func sameShape(_ op: Op, _ a: Tensor, _ b: Tensor, _ what: String = "operands") throws {
        guard a.shape == b.shape else {
            throw fail(op, "\(what) must have equal shapes, got \(a.shape.shapeString) and \(b.shape.shapeString)")
        }
    }

    /// An axis in [-rank, rank) made non-negative.
    public static func axis(_ op: Op, _ axis: Int, rank: Int) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < rank else { throw fail(op, "axis \(axis) out of range for rank \(rank)") }
        return a
    }

    /// How `b` broadcasts onto `a` for `add`/`mul` (numpy rules, b only): b's shape aligned to the right of a's,
    /// each of b's axes equal to a's or 1. Returns b's element strides over a's axes (0 where b repeats).
    public static func broadcast(_ op: Op, _ a: Tensor, _ b: Tensor) throws -> [Int] {
        try broadcast(op, a.shape, b.shape)
    }

    /// `broadcast` on shapes.
    public static func broadcast(_ op: Op, _ a: [Int], _ b: [Int]) throws -> [Int] {
        guard b.count <= a.count else {
            throw fail(op, "second operand \(b.shapeString) has more axes than \(a.shapeString)")
        }
        let lead = a.count - b.count
        var strides = Array(repeating: 0, count: a.count)
        var s = 1
        for i in stride(from: b.count - 1, through: 0, by: -1) {
            let ai = a[lead + i], bi = b[i]
            guard bi == ai || bi == 1 else {
                throw fail(op, "second operand \(b.shapeString) does not broadcast to \(a.shapeString) (axis \(lead + i): \(bi) vs \(ai); it must be equal or 1)")
            }
            strides[lead + i] = bi == 1 ? 0 : s
            s *= bi
        }
        return strides
    }

    /// True when b's shape equals a's trailing axes (b repeats whole over a's leading axes: the fast path).
    public static func isSuffix(_ a: Tensor, _ b: Tensor) -> Bool {
        b.rank <= a.rank && Array(a.shape.suffix(b.rank)) == b.shape
    }

    /// Output shape of `transpose`.
    public static func transpose(_ x: Tensor, _ perm: [Int]) throws -> [Int] {
        guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else {
            throw fail(.transpose, "permutation \(perm) is not a permutation of 0..<\(x.rank) for \(x.shape.shapeString)")
        }
        return perm.map { x.shape[$0] }
    }

    /// Output shape of `concat` and the normalised axis.
    public static func concat(_ xs: [Tensor], axis: Int) throws -> (shape: [Int], axis: Int) {
        guard let first = xs.first else { throw fail(.concat, "needs at least one tensor") }
        let a = try Self.axis(.concat, axis, rank: first.rank)
        var shape = first.shape
        shape[a] = 0
        for x in xs {
            var s = x.shape
            guard s.count == first.rank, x.dtype == first.dtype else {
                throw fail(.concat, "tensors must share rank and dtype: \(first.shape.shapeString) \(first.dtype) vs \(x.shape.shapeString) \(x.dtype)")
            }
            shape[a] += s[a]
            s[a] = first.shape[a]
            guard s == first.shape else {
                throw fail(.concat, "shapes \(first.shape.shapeString) and \(x.shape.shapeString) differ outside axis \(a)")
            }
        }
        return (shape, a)
    }

    /// Output shape of `slice` and the normalised axis.
    public static func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> (shape: [Int], axis: Int) {
        let a = try Self.axis(.slice, axis, rank: x.rank)
        guard start >= 0, length >= 0, start + length <= x.shape[a] else {
            throw fail(.slice, "range \(start)..<\(start + length) out of bounds for axis \(a) of \(x.shape.shapeString)")
        }
        var s = x.shape
        s[a] = length
        return (s, a)
    }

    /// (B,C,H,W) → (B,C,H,W, h, w) sizes for `patchify`.
    public static func patchify(_ x: Tensor, patch p: Int) throws -> (b: Int, c: Int, h: Int, w: Int) {
        guard x.rank == 4, p > 0, x.shape[2] % p == 0, x.shape[3] % p == 0 else {
            throw fail(.patchify, "input must be (B,C,H,W) with H and W multiples of patch \(p), got \(x.shape.shapeString)")
        }
        return (x.shape[0], x.shape[1], x.shape[2] / p, x.shape[3] / p)
    }

    /// Checks `unpatchify`'s input (B, h·w, C·p·p); returns B.
    public static func unpatchify(_ x: Tensor, patch p: Int, channels c: Int, height h: Int, width w: Int) throws -> Int {
        guard x.rank == 3, p > 0, x.shape[1] == h * w, x.shape[2] == c * p * p else {
            throw fail(.unpatchify, "input must be (B, \(h)·\(w), \(c)·\(p)·\(p)), got \(x.shape.shapeString)")
        }
        return x.shape[0]
    }

    /// x (B,L,D) with per-batch vectors (B,D); returns (B, L, D).
    public static func perBatch(_ op: Op, _ x: Tensor, _ vectors: [Tensor]) throws -> (b: Int, l: Int, d: Int) {
        guard x.rank == 3 else { throw fail(op, "x must be (B,L,D), got \(x.shape.shapeString)") }
        for v in vectors where v.shape != [x.shape[0], x.shape[2]] {
            throw fail(op, "per-batch vector must be (B,D) = \([x.shape[0], x.shape[2]].shapeString), got \(v.shape.shapeString)")
        }
        return (x.shape[0], x.shape[1], x.shape[2])
    }

    /// x (…,L,D) with cos/sin (L, D/2); returns (rows before L, L, D).
    public static func rope(_ x: Tensor, cos: Tensor, sin: Tensor) throws -> (outer: Int, l: Int, d: Int) {
        guard x.rank >= 2, x.lastDim % 2 == 0 else {
            throw fail(.rope, "x must be (…,L,D) with even D, got \(x.shape.shapeString)")
        }
        let l = x.shape[x.rank - 2], d = x.lastDim
        guard cos.shape == [l, d / 2], sin.shape == [l, d / 2] else {
            throw fail(.rope, "cos and sin must be (L, D/2) = \([l, d / 2].shapeString), got \(cos.shape.shapeString) and \(sin.shape.shapeString)")
        }
        return (x.count / max(l * d, 1), l, d)
    }

    /// Statistics (…) for a row-wise op on x (…,D).
    public static func rowStats(_ op: Op, _ x: Tensor, _ stats: [Tensor]) throws {
        let want = Array(x.shape.dropLast())
        for s in stats where s.shape != want {
            throw fail(op, "row statistics must be \(want.shapeString) for x \(x.shape.shapeString), got \(s.shape.shapeString)")
        }
    }

    /// Normalised, sorted reduction axes and the output shape.
    public static func reduction(_ op: Op, _ x: Tensor, axes: [Int]) throws -> (axes: [Int], shape: [Int]) {
        let norm = try Set(axes.map { try axis(op, $0, rank: x.rank) }).sorted()
        guard norm.count == axes.count else { throw fail(op, "repeated axis in \(axes)") }
        let shape = x.shape.enumerated().filter { !norm.contains($0.offset) }.map(\.element)
        return (norm, shape)
    }

    /// The sizes of a (batched) matmul.
    public struct MatmulSizes: Sendable, Equatable {
        public var batch: Int, m: Int, n: Int, k: Int
        /// True when b has a's batch axes; false when one b is shared by every batch.
        public var bBatched: Bool
        public var outShape: [Int]
    }

    /// Checks a matmul call and returns its sizes.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?) throws
        -> MatmulSizes {
        guard a.rank >= 2, b.rank >= 2 else {
            throw fail(.matmul, "operands must have rank ≥ 2, got \(a.shape.shapeString) and \(b.shape.shapeString)")
        }
        let batchShape = Array(a.shape.dropLast(2))
        let m = transposeA ? a.shape[a.rank - 1] : a.shape[a.rank - 2]
        let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        let kb = transposeB ? b.shape[b.rank - 1] : b.shape[b.rank - 2]
        let n = transposeB ? b.shape[b.rank - 2] : b.shape[b.rank - 1]
        let bBatch = Array(b.shape.dropLast(2))
        guard k == kb else {
            throw fail(.matmul, "inner sizes differ: a \(a.shape.shapeString)\(transposeA ? "ᵀ" : "") has K=\(k), b \(b.shape.shapeString)\(transposeB ? "ᵀ" : "") has K=\(kb)")
        }
        guard bBatch.isEmpty || bBatch == batchShape else {
            throw fail(.matmul, "b's batch axes \(bBatch.shapeString) must be empty or equal a's \(batchShape.shapeString)")
        }
        guard a.dtype == b.dtype else {
            throw fail(.matmul, "operands must share a dtype, got \(a.dtype) and \(b.dtype); cast one first")
        }
        if let bias, bias.shape != [n] || bias.dtype != .f32 {
            throw fail(.matmul, "bias must be (N) = (\(n)) f32, got \(bias.shape.shapeString) \(bias.dtype)")
        }
        return MatmulSizes(batch: batchShape.reduce(1, *), m: m, n: n, k: k, bBatched: !bBatch.isEmpty,
                           outShape: batchShape + [m, n])
    }

    /// Checks a weight to prepare for `linear(_:prepared:…)`: (N,K) with N, K ≥ 1, f32 or bf16.
    public static func preparedWeight(_ w: Tensor) throws {
        guard w.rank == 2, w.shape[0] > 0, w.shape[1] > 0, w.dtype == .f32 || w.dtype == .bf16 else {
            throw fail(.linearPrepared, "a Linear weight to prepare must be (N,K) f32 or bf16, got \(w.shape.shapeString) \(w.dtype)")
        }
    }

    /// Checks a `linear(_:prepared:…)` call; returns (rows, N, K).
    public static func linearPrepared(_ x: Tensor, _ w: PreparedLinearWeight, bias: Tensor?) throws -> (rows: Int, n: Int, k: Int) {
        let n = w.outFeatures, k = w.inFeatures
        guard x.rank >= 1, x.lastDim == k, x.dtype == .f32 || x.dtype == .bf16 else {
            throw fail(.linearPrepared, "x must be (…,K) f32 or bf16 with K = \(k), got \(x.shape.shapeString) \(x.dtype)")
        }
        if let bias, bias.shape != [n] || bias.dtype != .f32 {
            throw fail(.linearPrepared, "bias must be (N) = (\(n)) f32, got \(bias.shape.shapeString) \(bias.dtype)")
        }
        return (x.rowCount, n, k)
    }

    /// Checks a W4A16 call; returns (rows, N, K).
    public static func matmulW4A16(_ x: Tensor, _ w: Packed4BitWeight, bias: Tensor?) throws -> (rows: Int, n: Int, k: Int) {
        guard w.packed.rank == 2, w.packed.dtype.bitsPerElement == 4, w.blockSize > 0 else {
            throw fail(.matmulW4A16, "packed weight must be (N,K) in a 4-bit dtype with a positive block size, got \(w.packed.shape.shapeString) \(w.packed.dtype)")
        }
        let n = w.outFeatures, k = w.inFeatures
        guard x.rank >= 1, x.lastDim == k else {
            throw fail(.matmulW4A16, "x must be (…,K) with K = \(k), got \(x.shape.shapeString)")
        }
        for (name, t) in [("scale", w.scale), ("zero", w.zero)] {
            guard let t else { continue }
            guard t.dtype == .f32, t.count == w.blockCount else {
                throw fail(.matmulW4A16, "\(name) must hold \(w.blockCount) f32 values (one per block of \(w.blockSize)), got \(t.count) \(t.dtype)")
            }
        }
        guard w.codebook.dtype == .f32, w.codebook.count == 16 else {
            throw fail(.matmulW4A16, "codebook must hold 16 f32 values, got \(w.codebook.count) \(w.codebook.dtype)")
        }
        if let bias, bias.shape != [n] || bias.dtype != .f32 {
            throw fail(.matmulW4A16, "bias must be (N) = (\(n)) f32, got \(bias.shape.shapeString) \(bias.dtype)")
        }
        return (x.rowCount, n, k)
    }

    /// Attention sizes from q (B,H,Lq,D), k, v (B,H,Lk,D).
    public struct AttentionSizes: Sendable, Equatable {
        public var b: Int, h: Int, lq: Int, lk: Int, d: Int
    }

    /// Checks attention operands.
    public static func attention(_ op: Op, _ q: Tensor, _ k: Tensor, _ v: Tensor) throws -> AttentionSizes {
        guard q.rank == 4, k.rank == 4, k.shape == v.shape, q.shape[0] == k.shape[0], q.shape[1] == k.shape[1],
              q.shape[3] == k.shape[3] else {
            throw fail(op, "q must be (B,H,Lq,D) and k, v (B,H,Lk,D), got \(q.shape.shapeString), \(k.shape.shapeString), \(v.shape.shapeString)")
        }
        guard q.dtype == k.dtype, k.dtype == v.dtype else {
            throw fail(op, "q, k, v must share a dtype, got \(q.dtype), \(k.dtype), \(v.dtype)")
        }
        return AttentionSizes(b: q.shape[0], h: q.shape[1], lq: q.shape[2], lk: k.shape[2], d: q.shape[3])
    }
}
