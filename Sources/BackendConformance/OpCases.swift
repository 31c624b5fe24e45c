// The conformance case table: for every Op, calls with deterministic inputs at a given size, returning named
// f32 outputs. The same table drives backend-vs-reference conformance (tests and `hprune selftest --full`), the
// start-up self-check of the CUDA backend, and the thread-count determinism test.
import Foundation
import TensorCore

/// Deterministic inputs: an LCG, so the test data never depends on the code under test.
public struct Inputs {
    public var state: UInt64

    public init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1 }

    /// n values uniform in [lo, hi).
    public mutating func uniform(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return lo + (hi - lo) * Float(state >> 40) / Float(1 << 24)
        }
    }
}

/// Sizes a case is instantiated at: `n` is the size under test (1, 7, 63, 65, 1000, …), `rows` the leading size.
public struct CaseSize: CustomStringConvertible, Sendable {
    public var n: Int
    public var rows: Int
    public init(n: Int, rows: Int) { self.n = n; self.rows = rows }
    public var description: String { "n=\(n) rows=\(rows)" }
}

/// How close a backend must be to the reference.
public struct Tolerance: Sendable {
    public var rtol: Float
    public var atol: Float
    public init(rtol: Float, atol: Float) { self.rtol = rtol; self.atol = atol }
    public static let exact = Tolerance(rtol: 0, atol: 0)
    public static let elementwise = Tolerance(rtol: 2e-6, atol: 1e-6)
    public static let rowwise = Tolerance(rtol: 1e-4, atol: 2e-5)
    public static let contraction = Tolerance(rtol: 2e-4, atol: 2e-4)
    /// One bf16 rounding step (2^-8 relative) plus accumulation differences.
    public static let bf16Output = Tolerance(rtol: 8e-3, atol: 1e-3)
    /// Operands rounded to bf16 inside a kernel (bf16 compute): error ≈ 2⁻⁹·Σ|x·w|, for K = 65 here up to ~0.03.
    public static let bf16Compute = Tolerance(rtol: 1e-2, atol: 4e-2)
}

/// One conformance case of one op.
public struct OpCase: Sendable {
    public var op: Op
    public var label: String
    public var tolerance: Tolerance
    /// Looser tolerances for some outputs (results rounded to bf16 may differ by one bf16 ulp).
    public var perOutput: [String: Tolerance] = [:]
    /// Runs the op on `be` and returns its outputs by name.
    public var run: @Sendable (any Backend, CaseSize) throws -> [String: [Float]]

    public init(op: Op, label: String, tolerance: Tolerance, perOutput: [String: Tolerance] = [:],
         run: @escaping @Sendable (any Backend, CaseSize) throws -> [String: [Float]]) {
        self.op = op
        self.label = label
        self.tolerance = tolerance
        self.perOutput = perOutput
        self.run = run
    }
}

/// The nf4 code table (bitsandbytes, METHOD.md §4), used to build test weights.
public let nf4Code: [Float] = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                        0.7229568362236023, 1.0]

/// A random 4-bit weight (N,K): nf4 (absmax only), or int4 with a zero per block when `withZero`.
public func packedWeight(_ be: any Backend, n: Int, k: Int, blockSize: Int, withZero: Bool = false,
                  seed: UInt64) throws -> Packed4BitWeight {
    var r = Inputs(seed)
    let count = n * k
    let codes = r.uniform(count, 0, 16).map { UInt8(min(15, Int($0))) }
    var packed = [UInt8](repeating: 0, count: (count + 1) / 2)
    for i in 0..<count { packed[i / 2] |= i % 2 == 0 ? codes[i] << 4 : codes[i] }
    let blocks = (count + blockSize - 1) / blockSize
    let dtype: DType = withZero ? .int4(groupSize: blockSize) : .nf4(blockSize: blockSize)
    return Packed4BitWeight(
        packed: try be.tensor(bytes: packed, shape: [n, k], dtype: dtype),
        scale: try be.tensor(r.uniform(blocks, 0.1, 2), shape: [blocks]),
        zero: withZero ? try be.tensor(r.uniform(blocks, -1, 1), shape: [blocks]) : nil,
        codebook: try be.tensor(withZero ? (0..<16).map(Float.init) : nf4Code, shape: [16]))
}

/// Every op's cases.
public enum OpCases {
    public static func t(_ be: any Backend, _ v: [Float], _ s: [Int], _ dt: DType = .f32) throws -> Tensor {
        try be.tensor(v, shape: s, dtype: dt)
    }
    public static func f(_ be: any Backend, _ x: Tensor) throws -> [Float] { try be.floats(x) }

    public static func unary(_ op: Op, _ body: @escaping @Sendable (any Backend, Tensor) throws -> Tensor) -> OpCase {
        OpCase(op: op, label: "\(op)", tolerance: .elementwise) { be, s in
            var r = Inputs(1)
            let x = try t(be, r.uniform(s.rows * s.n, -4, 4), [s.rows, s.n])
            return ["y": try f(be, try body(be, x))]
        }
    }

    public static func binary(_ op: Op, _ body: @escaping @Sendable (any Backend, Tensor, Tensor) throws -> Tensor) -> OpCase {
        OpCase(op: op, label: "\(op)", tolerance: .elementwise) { be, s in
            var r = Inputs(2)
            let a = try t(be, r.uniform(s.rows * s.n, -4, 4), [s.rows, s.n])
            let b = try t(be, r.uniform(s.rows * s.n, -4, 4), [s.rows, s.n])
            return ["y": try f(be, try body(be, a, b))]
        }
    }

    public static let all: [OpCase] = layout + elementwise + rowwise + reductions + contractions + optimizer + random

    // ── layout ────────────────────────────────────────────────────────────────────────────────────
    public static let layout: [OpCase] = [
        OpCase(op: .cast, label: "cast f32→bf16→f32, f32→f16→f32, bf16→f16", tolerance: .exact) { be, s in
            var r = Inputs(3)
            let special: [Float] = [0, -0, 1, .infinity, -.infinity, 1.00390625, 1.01171875, 65504, 65520, 1e-8,
                                    6e-8, 3e-5, -2.5e-38, 3.4e38]
            let v = Array((r.uniform(s.rows * s.n, -3, 3) + special).prefix(max(s.rows * s.n, special.count)))
            let x = try t(be, v, [v.count])
            let b = try be.cast(x, to: .bf16), h = try be.cast(x, to: .f16)
            return ["bf16": try f(be, try be.cast(b, to: .f32)), "f16": try f(be, try be.cast(h, to: .f32)),
                    "bf16→f16": try f(be, try be.cast(b, to: .f16)), "copy": try f(be, try be.cast(x, to: .f32))]
        },
        OpCase(op: .transpose, label: "transpose 2-D, 3-D and 4-D, f32 and bf16", tolerance: .exact) { be, s in
            var r = Inputs(4)
            let a = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let b = try t(be, r.uniform(2 * s.rows * s.n * 3), [2, s.rows, s.n, 3], .bf16)
            return ["2d": try f(be, try be.transpose(a, [1, 0])),
                    "4d": try f(be, try be.transpose(b, [2, 0, 3, 1])),
                    "3d": try f(be, try be.transpose(a.reshaped([s.rows, 1, s.n]), [2, 1, 0]))]
        },
        OpCase(op: .concat, label: "concat along each axis", tolerance: .exact) { be, s in
            var r = Inputs(5)
            let a = try t(be, r.uniform(s.rows * s.n * 2), [s.rows, s.n, 2])
            let b = try t(be, r.uniform(s.rows * 3 * 2), [s.rows, 3, 2])
            let c = try t(be, r.uniform(s.n * 2), [1, s.n, 2])
            return ["axis1": try f(be, try be.concat([a, b, a], axis: 1)),
                    "axis0": try f(be, try be.concat([a, c], axis: 0)),
                    "axis-1": try f(be, try be.concat([a, a], axis: -1))]
        },
        OpCase(op: .slice, label: "slice and split", tolerance: .exact) { be, s in
            var r = Inputs(6)
            let a = try t(be, r.uniform(s.rows * (s.n + 2) * 3), [s.rows, s.n + 2, 3])
            let parts = try be.split(a, axis: 1, sizes: [1, s.n, 1])
            return ["mid": try f(be, parts[1]), "last": try f(be, try be.slice(a, axis: 2, start: 1, length: 2)),
                    "first": try f(be, try be.slice(a, axis: 0, start: s.rows - 1, length: 1))]
        },
        OpCase(op: .patchify, label: "patchify both orders", tolerance: .exact) { be, s in
            var r = Inputs(7)
            let w = 2 * max(1, s.n / 8)
            let x = try t(be, r.uniform(2 * 3 * 4 * w), [2, 3, 4, w])
            return ["cf": try f(be, try be.patchify(x, patch: 2, order: .channelFirst)),
                    "cl": try f(be, try be.patchify(x, patch: 2, order: .channelLast))]
        },
        OpCase(op: .unpatchify, label: "unpatchify both orders", tolerance: .exact) { be, s in
            var r = Inputs(8)
            let w = max(1, s.n / 8)
            let x = try t(be, r.uniform(2 * 2 * w * 3 * 4), [2, 2 * w, 12])
            return ["cf": try f(be, try be.unpatchify(x, patch: 2, channels: 3, height: 2, width: w, order: .channelFirst)),
                    "cl": try f(be, try be.unpatchify(x, patch: 2, channels: 3, height: 2, width: w, order: .channelLast))]
        },
    ]

    // ── elementwise ──────────────────────────────────────────────────────────────────────────────
    public static let elementwise: [OpCase] = [
        OpCase(op: .add, label: "add, same shape and suffix broadcast", tolerance: .elementwise) { be, s in
            var r = Inputs(9)
            let a = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let b = try t(be, r.uniform(s.n), [s.n]), c = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let x4 = try t(be, r.uniform(2 * 3 * s.rows * s.n), [2, 3, s.rows, s.n])
            let perBatch = try t(be, r.uniform(2), [2, 1, 1, 1]), mid = try t(be, r.uniform(3 * s.n), [3, 1, s.n])
            return ["bcast": try f(be, try be.add(a, b)), "same": try f(be, try be.add(a, c)),
                    "perBatch": try f(be, try be.add(x4, perBatch)), "mid": try f(be, try be.add(x4, mid)),
                    "scalar": try f(be, try be.add(x4, try t(be, [0.5], [])))]
        },
        OpCase(op: .mul, label: "mul, same shape and suffix broadcast", tolerance: .elementwise) { be, s in
            var r = Inputs(10)
            let a = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let b = try t(be, r.uniform(s.n), [s.n]), c = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let x4 = try t(be, r.uniform(2 * 3 * s.rows * s.n), [2, 3, s.rows, s.n])
            let perBatch = try t(be, r.uniform(2), [2, 1, 1, 1]), col = try t(be, r.uniform(s.rows), [s.rows, 1])
            return ["bcast": try f(be, try be.mul(a, b)), "same": try f(be, try be.mul(a, c)),
                    "perBatch": try f(be, try be.mul(x4, perBatch)), "col": try f(be, try be.mul(x4, col))]
        },
        unary(.scale) { be, x in try be.scale(x, -0.37) },
        OpCase(op: .axpy, label: "axpy", tolerance: .elementwise) { be, s in
            var r = Inputs(11)
            let y = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n]), x = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            try be.axpy(y, alpha: 0.25, x)
            return ["y": try f(be, y)]
        },
        unary(.gelu) { be, x in try be.gelu(x) },
        binary(.geluBackward) { be, dy, x in try be.geluBackward(dy, x) },
        unary(.silu) { be, x in try be.silu(x) },
        binary(.siluBackward) { be, dy, x in try be.siluBackward(dy, x) },
        OpCase(op: .modulate, label: "modulate", tolerance: .elementwise) { be, s in
            var r = Inputs(12)
            let x = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n])
            let sh = try t(be, r.uniform(2 * s.n), [2, s.n]), sc = try t(be, r.uniform(2 * s.n), [2, s.n])
            return ["y": try f(be, try be.modulate(x, shift: sh, scale: sc))]
        },
        OpCase(op: .modulateBackward, label: "modulateBackward", tolerance: .rowwise) { be, s in
            var r = Inputs(13)
            let x = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n]), dy = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n])
            let sc = try t(be, r.uniform(2 * s.n), [2, s.n])
            let g = try be.modulateBackward(dy, x, scale: sc)
            return ["dx": try f(be, g.dx), "dshift": try f(be, g.dshift), "dscale": try f(be, g.dscale)]
        },
        OpCase(op: .gateResidual, label: "gateResidual", tolerance: .elementwise) { be, s in
            var r = Inputs(14)
            let res = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n]), y = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n])
            let g = try t(be, r.uniform(2 * s.n), [2, s.n])
            return ["out": try f(be, try be.gateResidual(res, gate: g, y))]
        },
        OpCase(op: .gateResidualBackward, label: "gateResidualBackward", tolerance: .rowwise) { be, s in
            var r = Inputs(15)
            let d = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n]), y = try t(be, r.uniform(2 * s.rows * s.n), [2, s.rows, s.n])
            let g = try t(be, r.uniform(2 * s.n), [2, s.n])
            let out = try be.gateResidualBackward(d, gate: g, y)
            return ["dy": try f(be, out.dy), "dgate": try f(be, out.dgate)]
        },
        OpCase(op: .rope, label: "rope forward and inverse", tolerance: .elementwise) { be, s in
            var r = Inputs(16)
            let d = 2 * max(1, s.n / 8), l = s.rows + 2
            let x = try t(be, r.uniform(2 * 3 * l * d), [2, 3, l, d])
            let ang = r.uniform(l * d / 2, -3, 3)
            let c = try t(be, ang.map { cos($0) }, [l, d / 2]), sn = try t(be, ang.map { sin($0) }, [l, d / 2])
            return ["fwd": try f(be, try be.rope(x, cos: c, sin: sn)), "inv": try f(be, try be.ropeBackward(x, cos: c, sin: sn))]
        },
    ]

    // ── row-wise ─────────────────────────────────────────────────────────────────────────────────
    public static let rowwise: [OpCase] = [
        OpCase(op: .layerNorm, label: "layerNorm", tolerance: .rowwise) { be, s in
            var r = Inputs(17)
            let x = try t(be, r.uniform(s.rows * s.n, -2, 3), [s.rows, s.n])
            let (y, m, rs) = try be.layerNorm(x, eps: 1e-6)
            return ["y": try f(be, y), "mean": try f(be, m), "rstd": try f(be, rs)]
        },
        OpCase(op: .layerNormBackward, label: "layerNormBackward", tolerance: .rowwise) { be, s in
            var r = Inputs(18)
            let x = try t(be, r.uniform(s.rows * s.n, -2, 3), [s.rows, s.n]), dy = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let ref = ReferenceBackend()                     // same statistics for every backend under test
            let (_, m, rs) = try ref.layerNorm(x, eps: 1e-6)
            return ["dx": try f(be, try be.layerNormBackward(dy, x, mean: m, rstd: rs))]
        },
        OpCase(op: .rmsNorm, label: "rmsNorm with and without weight", tolerance: .rowwise) { be, s in
            var r = Inputs(19)
            let x = try t(be, r.uniform(s.rows * s.n, -2, 3), [s.rows, s.n]), w = try t(be, r.uniform(s.n), [s.n])
            let a = try be.rmsNorm(x, weight: w, eps: 1e-6), b = try be.rmsNorm(x, weight: nil, eps: 1e-6)
            return ["y": try f(be, a.y), "rstd": try f(be, a.rstd), "y_noweight": try f(be, b.y)]
        },
        OpCase(op: .rmsNormBackward, label: "rmsNormBackward", tolerance: .rowwise) { be, s in
            var r = Inputs(20)
            let x = try t(be, r.uniform(s.rows * s.n, -2, 3), [s.rows, s.n]), w = try t(be, r.uniform(s.n), [s.n])
            let dy = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let rs = try ReferenceBackend().rmsNorm(x, weight: w, eps: 1e-6).rstd
            let a = try be.rmsNormBackward(dy, x, weight: w, rstd: rs), b = try be.rmsNormBackward(dy, x, weight: nil, rstd: rs)
            return ["dx": try f(be, a.dx), "dw": try f(be, a.dweight!), "dx_noweight": try f(be, b.dx)]
        },
        OpCase(op: .softmax, label: "softmax", tolerance: .rowwise) { be, s in
            var r = Inputs(21)
            return ["y": try f(be, try be.softmax(try t(be, r.uniform(s.rows * s.n, -8, 8), [s.rows, s.n])))]
        },
        OpCase(op: .softmaxBackward, label: "softmaxBackward", tolerance: .rowwise) { be, s in
            var r = Inputs(22)
            let y = try ReferenceBackend().softmax(try t(be, r.uniform(s.rows * s.n, -3, 3), [s.rows, s.n]))
            return ["dx": try f(be, try be.softmaxBackward(try t(be, r.uniform(s.rows * s.n), [s.rows, s.n]), y))]
        },
    ]

    // ── reductions ───────────────────────────────────────────────────────────────────────────────
    public static let reductions: [OpCase] = [
        OpCase(op: .sum, label: "sum over axis sets", tolerance: .rowwise) { be, s in
            var r = Inputs(23)
            let x = try t(be, r.uniform(s.rows * s.n * 3), [s.rows, s.n, 3])
            var out: [String: [Float]] = [:]
            for axes in [[0], [1], [2], [0, 2], [0, 1], [0, 1, 2], [-1]] { out["\(axes)"] = try f(be, try be.sum(x, axes: axes)) }
            return out
        },
        OpCase(op: .mean, label: "mean over axis sets", tolerance: .rowwise) { be, s in
            var r = Inputs(24)
            let x = try t(be, r.uniform(s.rows * s.n * 3), [s.rows, s.n, 3])
            var out: [String: [Float]] = [:]
            for axes in [[1], [0, 2], [0, 1, 2]] { out["\(axes)"] = try f(be, try be.mean(x, axes: axes)) }
            return out
        },
        OpCase(op: .mse, label: "mse", tolerance: .rowwise) { be, s in
            var r = Inputs(25)
            let a = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n]), b = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            return ["loss": try f(be, try be.mse(a, b))]
        },
        OpCase(op: .mseBackward, label: "mseBackward", tolerance: .elementwise) { be, s in
            var r = Inputs(26)
            let a = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n]), b = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            return ["da": try f(be, try be.mseBackward(a, b, dloss: 1.5))]
        },
    ]

    // ── contractions ─────────────────────────────────────────────────────────────────────────────
    public static let contractions: [OpCase] = [
        OpCase(op: .matmul, label: "matmul: transposes, batch, shared B, bias + activations, bf16", tolerance: .contraction) { be, s in
            var r = Inputs(27)
            let m = s.rows + 4, n = s.n, k = 65
            var out: [String: [Float]] = [:]
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = try t(be, r.uniform(m * k), ta ? [k, m] : [m, k]), b = try t(be, r.uniform(k * n), tb ? [n, k] : [k, n])
                out["t\(ta)\(tb)"] = try f(be, try be.matmul(a, b, transposeA: ta, transposeB: tb, bias: nil, activation: .none))
            }
            let bias = try t(be, r.uniform(n), [n])
            let a3 = try t(be, r.uniform(2 * m * k), [2, m, k])
            let bShared = try t(be, r.uniform(n * k), [n, k]), bBatched = try t(be, r.uniform(2 * k * n), [2, k, n])
            for act in Activation.allCases {
                out["linear-\(act)"] = try f(be, try be.linear(a3, weight: bShared, bias: bias, activation: act))
            }
            out["batched"] = try f(be, try be.matmul(a3, bBatched, transposeA: false, transposeB: false, bias: nil, activation: .none))
            let a16 = try be.cast(a3, to: .bf16), b16 = try be.cast(bShared, to: .bf16)
            out["bf16"] = try f(be, try be.matmul(a16, b16, transposeA: false, transposeB: true, bias: bias, activation: .geluTanh))
            return out
        },
        OpCase(op: .linearPrepared, label: "linear on a prepared weight: f32, bf16 weight with f32 x, activations",
               tolerance: .contraction, perOutput: ["bf16-out": .bf16Output]) { be, s in
            var r = Inputs(31)
            let m = s.rows + 4, n = s.n, k = 65
            let x = try t(be, r.uniform(2 * m * k), [2, m, k]), w = try t(be, r.uniform(n * k), [n, k])
            let bias = try t(be, r.uniform(n), [n])
            let p32 = try be.prepareLinearWeight(w), p16 = try be.prepareLinearWeight(try be.cast(w, to: .bf16))
            var out: [String: [Float]] = [:]
            for act in Activation.allCases {
                out["f32-\(act)"] = try f(be, try be.linear(x, prepared: p32, bias: bias, activation: act))
            }
            out["bf16-nobias"] = try f(be, try be.linear(x, prepared: p16, bias: nil, activation: .none))
            out["bf16-x"] = try f(be, try be.linear(try be.cast(x, to: .bf16), prepared: p16, bias: bias, activation: .silu))
            out["bf16-out"] = try f(be, try be.linear(x, prepared: p16, bias: bias, activation: .geluTanh, output: .bf16))
            return out
        },
        OpCase(op: .matmulW4A16, label: "W4A16 nf4, blocks across rows, f32 and bf16 activations", tolerance: .contraction,
               perOutput: ["bf16-silu": .bf16Compute]) { be, s in         // bf16 compute may round the weight to bf16
            var r = Inputs(28)
            let n = s.n, k = 65, m = s.rows
            let w = try packedWeight(be, n: n, k: k, blockSize: 64, seed: 29)
            let wz = try packedWeight(be, n: n, k: k, blockSize: 32, withZero: true, seed: 30)
            let x = try t(be, r.uniform(m * k), [m, k]), bias = try t(be, r.uniform(n), [n])
            return ["f32": try f(be, try be.matmulW4A16(x, w, bias: bias, activation: .none)),
                    "bf16-silu": try f(be, try be.matmulW4A16(try be.cast(x, to: .bf16), w, bias: nil, activation: .silu)),
                    "int4-zero": try f(be, try be.matmulW4A16(x.reshaped([1, m, k]), wz, bias: bias, activation: .geluTanh))]
        },
        OpCase(op: .attention, label: "attention Lq ≠ Lk, f32 and bf16", tolerance: .contraction,
               perOutput: ["out-bf16": .bf16Output]) { be, s in
            var r = Inputs(30)
            let lq = s.n, lk = s.rows + 4, d = 16
            let q = try t(be, r.uniform(2 * lq * d, -2, 2), [1, 2, lq, d])
            let k = try t(be, r.uniform(2 * lk * d, -2, 2), [1, 2, lk, d]), v = try t(be, r.uniform(2 * lk * d), [1, 2, lk, d])
            let a = try be.attention(q, k, v, scale: 0.25)
            let b = try be.attention(try be.cast(q, to: .bf16), try be.cast(k, to: .bf16), try be.cast(v, to: .bf16), scale: 0.25)
            return ["out": try f(be, a.out), "lse": try f(be, a.lse), "out-bf16": try f(be, b.out)]
        },
        OpCase(op: .attentionBackward, label: "attentionBackward", tolerance: .contraction) { be, s in
            var r = Inputs(31)
            let lq = s.rows + 2, lk = s.n, d = 8
            let q = try t(be, r.uniform(2 * lq * d, -2, 2), [2, 1, lq, d])
            let k = try t(be, r.uniform(2 * lk * d, -2, 2), [2, 1, lk, d]), v = try t(be, r.uniform(2 * lk * d), [2, 1, lk, d])
            let dout = try t(be, r.uniform(2 * lq * d), [2, 1, lq, d])
            let fwd = try ReferenceBackend().attention(q, k, v, scale: 0.3)
            let g = try be.attentionBackward(dout, q, k, v, out: fwd.out, lse: fwd.lse, scale: 0.3)
            return ["dq": try f(be, g.dq), "dk": try f(be, g.dk), "dv": try f(be, g.dv)]
        },
    ]

    // ── optimizer ────────────────────────────────────────────────────────────────────────────────
    public static let optimizer: [OpCase] = [
        OpCase(op: .adamw, label: "adamw, three steps", tolerance: .rowwise) { be, s in
            var r = Inputs(32)
            let p = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n])
            let m = try be.zeros([s.rows, s.n], dtype: .f32), v = try be.zeros([s.rows, s.n], dtype: .f32)
            let cfg = AdamWConfig(learningRate: 1e-2, weightDecay: 0.1)
            for step in 1...3 {
                try be.adamw(param: p, grad: try t(be, r.uniform(s.rows * s.n), [s.rows, s.n]), m: m, v: v, step: step, config: cfg)
            }
            return ["p": try f(be, p), "m": try f(be, m), "v": try f(be, v)]
        },
        OpCase(op: .clipGradNorm, label: "clipGradNorm, clipping and not", tolerance: .rowwise) { be, s in
            var r = Inputs(33)
            let a = try t(be, r.uniform(s.rows * s.n), [s.rows, s.n]), b = try t(be, r.uniform(s.n), [s.n])
            let n1 = try be.clipGradNorm([a, b], maxNorm: 0.5)
            let n2 = try be.clipGradNorm([a, b], maxNorm: 100)
            return ["a": try f(be, a), "b": try f(be, b), "norms": [n1, n2]]
        },
    ]

    // ── random ───────────────────────────────────────────────────────────────────────────────────
    public static let random: [OpCase] = [
        OpCase(op: .randomNormal, label: "randomNormal at offsets", tolerance: .exact) { be, s in
            ["o0": try f(be, try be.randomNormal([s.rows, s.n], seed: 42, offset: 0)),
             "o3": try f(be, try be.randomNormal([s.n], seed: 0xDEAD_BEEF_0000_0001, offset: 3))]
        },
    ]
}
