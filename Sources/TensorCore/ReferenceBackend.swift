// The scalar reference backend: every op as the most obvious loops, f64 arithmetic, f32 results.
// It is the oracle the fast backends are tested against, so clarity beats speed everywhere in this file.
//
// Legend: B batch, L sequence, H heads, D width, K/M/N GEMM sizes, R rows (product of leading axes).
import Foundation

/// The oracle backend: plain Swift, f64 accumulation, implements every `Op`.
public final class ReferenceBackend: HostBackend, @unchecked Sendable {
    public let name = "reference"
    public let displayName = "reference"
    public let supportedOps = Set(Op.allCases)
    /// The version of this backend's numerics (identity `reference`, part of action keys): bump when any op's
    /// results change (Numerics.swift).
    public static let numericsVersion = 1

    public init() {}

    // MARK: helpers

    /// The elements of a float tensor as f64.
    func load(_ x: Tensor, _ op: Op) throws -> [Double] {
        try OpChecks.dtype(op, x, [.f32, .bf16, .f16], backend: displayName)
        _ = try host(x, op)
        return try floats(x).map(Double.init)
    }

    /// A new f32 tensor holding `values` rounded to f32.
    func store(_ values: [Double], _ shape: [Int]) throws -> Tensor {
        try tensor(values.map { Float($0) }, shape: shape, dtype: .f32)
    }

    /// Writes `values` (rounded to f32) into an existing f32 tensor.
    func overwrite(_ x: Tensor, _ values: [Double], _ op: Op) throws {
        let p = try hostWritable(x, op).assumingMemoryBound(to: Float.self)
        for i in values.indices { p[i] = Float(values[i]) }
    }

    func f32Only(_ op: Op, _ xs: Tensor...) throws {
        for x in xs { try OpChecks.dtype(op, x, [.f32], backend: displayName) }
    }

    // MARK: layout

    public func cast(_ x: Tensor, to dtype: DType) throws -> Tensor {
        try OpChecks.dtype(.cast, x, [.f32, .bf16, .f16, .i8, .u8], backend: displayName)
        guard dtype.isFloatingPoint || dtype == x.dtype else {
            throw BackendError.unsupportedDType(.cast, dtype, backend: displayName)
        }
        return try tensor(try floats(x), shape: x.shape, dtype: dtype)
    }

    /// Copies element bytes from `src` index to `dst` index (any dtype of 8 bits or more).
    func copyElements(_ x: Tensor, _ op: Op, into out: Tensor, map: (Int) -> Int) throws {
        guard x.dtype.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(op, x.dtype, backend: displayName) }
        let es = x.dtype.bitsPerElement / 8
        let src = try host(x, op), dst = out.hostPointer!
        for o in 0..<out.count { (dst + o * es).copyMemory(from: src + map(o) * es, byteCount: es) }
    }

    /// Row-major strides of a shape, in elements.
    static func strides(_ shape: [Int]) -> [Int] {
        var s = Array(repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { s[i] = s[i + 1] * shape[i + 1] }
        return s
    }

    public func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor {
        let shape = try OpChecks.transpose(x, perm)
        let out = try zeros(shape, dtype: x.dtype)
        let inStrides = Self.strides(x.shape), outStrides = Self.strides(shape)
        try copyElements(x, .transpose, into: out) { o in
            var rem = o, src = 0
            for i in 0..<shape.count {
                let c = rem / outStrides[i]
                rem %= outStrides[i]
                src += c * inStrides[perm[i]]
            }
            return src
        }
        return out
    }

    public func concat(_ xs: [Tensor], axis: Int) throws -> Tensor {
        let (shape, a) = try OpChecks.concat(xs, axis: axis)
        let out = try zeros(shape, dtype: xs[0].dtype)
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
        var start = 0
        for x in xs {
            let len = x.shape[a]
            // out index (o, start + j, i) ← x index (o, j, i)
            let es = x.dtype.bitsPerElement / 8
            let src = try host(x, .concat), dst = out.hostPointer!
            for o in 0..<outer {
                for j in 0..<len {
                    for i in 0..<inner {
                        let s = (o * len + j) * inner + i, d = (o * shape[a] + start + j) * inner + i
                        (dst + d * es).copyMemory(from: src + s * es, byteCount: es)
                    }
                }
            }
            start += len
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor {
        let (shape, a) = try OpChecks.slice(x, axis: axis, start: start, length: length)
        let out = try zeros(shape, dtype: x.dtype)
        let inner = shape[(a + 1)...].reduce(1, *)
        try copyElements(x, .slice, into: out) { o in
            let i = o % inner, j = (o / inner) % length, outerIdx = o / (inner * length)
            return (outerIdx * x.shape[a] + start + j) * inner + i
        }
        return out
    }

    /// Index inside one patch vector of (c, py, px) for the given order.
    static func patchIndex(_ order: PatchOrder, c: Int, py: Int, px: Int, channels: Int, patch p: Int) -> Int {
        switch order {
        case .channelFirst: (c * p + py) * p + px
        case .channelLast: (py * p + px) * channels + c
        }
    }

    public func patchify(_ x: Tensor, patch p: Int, order: PatchOrder) throws -> Tensor {
        try f32Only(.patchify, x)
        let (b, c, h, w) = try OpChecks.patchify(x, patch: p)
        let v = try load(x, .patchify)
        var out = Array(repeating: 0.0, count: x.count)
        let hh = h * p, ww = w * p, pv = c * p * p
        for bi in 0..<b { for ci in 0..<c { for y in 0..<hh { for xx in 0..<ww {
            let token = (y / p) * w + xx / p
            let k = Self.patchIndex(order, c: ci, py: y % p, px: xx % p, channels: c, patch: p)
            out[(bi * h * w + token) * pv + k] = v[((bi * c + ci) * hh + y) * ww + xx]
        }}}}
        return try store(out, [b, h * w, pv])
    }

    public func unpatchify(_ x: Tensor, patch p: Int, channels c: Int, height h: Int, width w: Int,
                           order: PatchOrder) throws -> Tensor {
        try f32Only(.unpatchify, x)
        let b = try OpChecks.unpatchify(x, patch: p, channels: c, height: h, width: w)
        let v = try load(x, .unpatchify)
        var out = Array(repeating: 0.0, count: x.count)
        let hh = h * p, ww = w * p, pv = c * p * p
        for bi in 0..<b { for ci in 0..<c { for y in 0..<hh { for xx in 0..<ww {
            let token = (y / p) * w + xx / p
            let k = Self.patchIndex(order, c: ci, py: y % p, px: xx % p, channels: c, patch: p)
            out[((bi * c + ci) * hh + y) * ww + xx] = v[(bi * h * w + token) * pv + k]
        }}}}
        return try store(out, [b, c, hh, ww])
    }

    // MARK: elementwise

    /// Index of b's element for each element of a under broadcasting.
    func broadcastIndex(_ op: Op, _ a: Tensor, _ b: Tensor) throws -> (Int) -> Int {
        let bStrides = try OpChecks.broadcast(op, a, b), aStrides = Self.strides(a.shape), shape = a.shape
        return { i in
            var j = 0
            for axis in shape.indices { j += (i / aStrides[axis]) % shape[axis] * bStrides[axis] }
            return j
        }
    }

    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try f32Only(.add, a, b)
        let index = try broadcastIndex(.add, a, b)
        let x = try load(a, .add), y = try load(b, .add)
        return try store(x.indices.map { x[$0] + y[index($0)] }, a.shape)
    }

    public func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try f32Only(.mul, a, b)
        let index = try broadcastIndex(.mul, a, b)
        let x = try load(a, .mul), y = try load(b, .mul)
        return try store(x.indices.map { x[$0] * y[index($0)] }, a.shape)
    }

    public func scale(_ x: Tensor, _ s: Float) throws -> Tensor {
        try f32Only(.scale, x)
        return try store(try load(x, .scale).map { $0 * Double(s) }, x.shape)
    }

    public func axpy(_ y: Tensor, alpha: Float, _ x: Tensor) throws {
        try f32Only(.axpy, y, x)
        try OpChecks.sameShape(.axpy, y, x)
        let yv = try load(y, .axpy), xv = try load(x, .axpy)
        try overwrite(y, yv.indices.map { yv[$0] + Double(alpha) * xv[$0] }, .axpy)
    }

    static let geluC = (2.0 / Double.pi).squareRoot()

    public func gelu(_ x: Tensor) throws -> Tensor {
        try f32Only(.gelu, x)
        return try store(try load(x, .gelu).map { v in
            0.5 * v * (1 + tanh(Self.geluC * (v + 0.044715 * v * v * v)))
        }, x.shape)
    }

    public func geluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
        try f32Only(.geluBackward, dy, x)
        try OpChecks.sameShape(.geluBackward, dy, x)
        let g = try load(dy, .geluBackward), v = try load(x, .geluBackward)
        return try store(v.indices.map { i in
            let u = v[i], t = tanh(Self.geluC * (u + 0.044715 * u * u * u))
            let d = 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * Self.geluC * (1 + 3 * 0.044715 * u * u)
            return g[i] * d
        }, x.shape)
    }

    public func silu(_ x: Tensor) throws -> Tensor {
        try f32Only(.silu, x)
        return try store(try load(x, .silu).map { $0 / (1 + exp(-$0)) }, x.shape)
    }

    public func siluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
        try f32Only(.siluBackward, dy, x)
        try OpChecks.sameShape(.siluBackward, dy, x)
        let g = try load(dy, .siluBackward), v = try load(x, .siluBackward)
        return try store(v.indices.map { i in
            let s = 1 / (1 + exp(-v[i]))
            return g[i] * s * (1 + v[i] * (1 - s))
        }, x.shape)
    }

    public func modulate(_ x: Tensor, shift: Tensor, scale: Tensor) throws -> Tensor {
        try f32Only(.modulate, x, shift, scale)
        let (b, l, d) = try OpChecks.perBatch(.modulate, x, [shift, scale])
        let xv = try load(x, .modulate), sh = try load(shift, .modulate), sc = try load(scale, .modulate)
        return try store(xv.indices.map { i in
            let bd = (i / (l * d)) * d + i % d
            return xv[i] * (1 + sc[bd]) + sh[bd]
        }, [b, l, d])
    }

    public func modulateBackward(_ dy: Tensor, _ x: Tensor, scale: Tensor) throws
        -> (dx: Tensor, dshift: Tensor, dscale: Tensor) {
        try f32Only(.modulateBackward, dy, x, scale)
        try OpChecks.sameShape(.modulateBackward, dy, x)
        let (b, l, d) = try OpChecks.perBatch(.modulateBackward, x, [scale])
        let g = try load(dy, .modulateBackward), xv = try load(x, .modulateBackward)
        let sc = try load(scale, .modulateBackward)
        var dx = Array(repeating: 0.0, count: xv.count)
        var dsh = Array(repeating: 0.0, count: b * d), dsc = dsh
        for i in xv.indices {
            let bd = (i / (l * d)) * d + i % d
            dx[i] = g[i] * (1 + sc[bd])
            dsh[bd] += g[i]
            dsc[bd] += g[i] * xv[i]
        }
        return (try store(dx, x.shape), try store(dsh, [b, d]), try store(dsc, [b, d]))
    }

    public func gateResidual(_ residual: Tensor, gate: Tensor, _ y: Tensor) throws -> Tensor {
        try f32Only(.gateResidual, residual, gate, y)
        try OpChecks.sameShape(.gateResidual, residual, y)
        let (_, l, d) = try OpChecks.perBatch(.gateResidual, residual, [gate])
        let r = try load(residual, .gateResidual), gv = try load(gate, .gateResidual), yv = try load(y, .gateResidual)
        return try store(r.indices.map { i in r[i] + gv[(i / (l * d)) * d + i % d] * yv[i] }, residual.shape)
    }

    public func gateResidualBackward(_ dout: Tensor, gate: Tensor, _ y: Tensor) throws -> (dy: Tensor, dgate: Tensor) {
        try f32Only(.gateResidualBackward, dout, gate, y)
        try OpChecks.sameShape(.gateResidualBackward, dout, y)
        let (b, l, d) = try OpChecks.perBatch(.gateResidualBackward, y, [gate])
        let g = try load(dout, .gateResidualBackward), gv = try load(gate, .gateResidualBackward)
        let yv = try load(y, .gateResidualBackward)
        var dy = Array(repeating: 0.0, count: yv.count), dgate = Array(repeating: 0.0, count: b * d)
        for i in yv.indices {
            let bd = (i / (l * d)) * d + i % d
            dy[i] = g[i] * gv[bd]
            dgate[bd] += g[i] * yv[i]
        }
        return (try store(dy, y.shape), try store(dgate, [b, d]))
    }

    public func rope(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) throws -> Tensor {
        try f32Only(.rope, x, cos, sin)
        let (outer, l, d) = try OpChecks.rope(x, cos: cos, sin: sin)
        let v = try load(x, .rope), c = try load(cos, .rope), s = try load(sin, .rope)
        var out = v
        for o in 0..<outer { for t in 0..<l { for k in 0..<(d / 2) {
            let i = (o * l + t) * d + 2 * k
            let cs = c[t * d / 2 + k], sn = inverse ? -s[t * d / 2 + k] : s[t * d / 2 + k]
            out[i] = v[i] * cs - v[i + 1] * sn
            out[i + 1] = v[i] * sn + v[i + 1] * cs
        }}}
        return try store(out, x.shape)
    }

    // MARK: row-wise

    public func layerNorm(_ x: Tensor, eps: Float) throws -> (y: Tensor, mean: Tensor, rstd: Tensor) {
        try f32Only(.layerNorm, x)
        let v = try load(x, .layerNorm), d = x.lastDim, rows = x.rowCount
        var y = v, means = Array(repeating: 0.0, count: rows), rstds = means
        for r in 0..<rows {
            let row = v[(r * d)..<((r + 1) * d)]
            let mean = row.reduce(0, +) / Double(d)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(d)
            let rstd = 1 / (variance + Double(eps)).squareRoot()
            for j in 0..<d { y[r * d + j] = (v[r * d + j] - mean) * rstd }
            means[r] = mean
            rstds[r] = rstd
        }
        let statShape = Array(x.shape.dropLast())
        return (try store(y, x.shape), try store(means, statShape), try store(rstds, statShape))
    }

    public func layerNormBackward(_ dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor) throws -> Tensor {
        try f32Only(.layerNormBackward, dy, x, mean, rstd)
        try OpChecks.sameShape(.layerNormBackward, dy, x)
        try OpChecks.rowStats(.layerNormBackward, x, [mean, rstd])
        let g = try load(dy, .layerNormBackward), v = try load(x, .layerNormBackward)
        let mu = try load(mean, .layerNormBackward), rs = try load(rstd, .layerNormBackward)
        let d = x.lastDim
        var dx = v
        for r in 0..<x.rowCount {
            var gMean = 0.0, gxMean = 0.0
            for j in 0..<d {
                let xhat = (v[r * d + j] - mu[r]) * rs[r]
                gMean += g[r * d + j]
                gxMean += g[r * d + j] * xhat
            }
            gMean /= Double(d)
            gxMean /= Double(d)
            for j in 0..<d {
                let xhat = (v[r * d + j] - mu[r]) * rs[r]
                dx[r * d + j] = (g[r * d + j] - gMean - xhat * gxMean) * rs[r]
            }
        }
        return try store(dx, x.shape)
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> (y: Tensor, rstd: Tensor) {
        try f32Only(.rmsNorm, x)
        let d = x.lastDim
        if let weight {
            try f32Only(.rmsNorm, weight)
            guard weight.shape == [d] else {
                throw BackendError.invalidArgument(.rmsNorm, "weight must be (\(d)), got \(weight.shape.shapeString)")
            }
        }
        let v = try load(x, .rmsNorm), w = try weight.map { try load($0, .rmsNorm) }
        var y = v, rstds = Array(repeating: 0.0, count: x.rowCount)
        for r in 0..<x.rowCount {
            let ms = v[(r * d)..<((r + 1) * d)].reduce(0) { $0 + $1 * $1 } / Double(d)
            let rstd = 1 / (ms + Double(eps)).squareRoot()
            for j in 0..<d { y[r * d + j] = v[r * d + j] * rstd * (w?[j] ?? 1) }
            rstds[r] = rstd
        }
        return (try store(y, x.shape), try store(rstds, Array(x.shape.dropLast())))
    }

    public func rmsNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor?, rstd: Tensor) throws
        -> (dx: Tensor, dweight: Tensor?) {
        try f32Only(.rmsNormBackward, dy, x, rstd)
        try OpChecks.sameShape(.rmsNormBackward, dy, x)
        try OpChecks.rowStats(.rmsNormBackward, x, [rstd])
        let d = x.lastDim
        if let weight {
            try f32Only(.rmsNormBackward, weight)
            guard weight.shape == [d] else {
                throw BackendError.invalidArgument(.rmsNormBackward, "weight must be (\(d)), got \(weight.shape.shapeString)")
            }
        }
        let g = try load(dy, .rmsNormBackward), v = try load(x, .rmsNormBackward)
        let rs = try load(rstd, .rmsNormBackward), w = try weight.map { try load($0, .rmsNormBackward) }
        var dx = v, dw = Array(repeating: 0.0, count: d)
        for r in 0..<x.rowCount {
            var gx = 0.0                                       // mean over j of (dy·w)·xhat
            for j in 0..<d { gx += g[r * d + j] * (w?[j] ?? 1) * v[r * d + j] * rs[r] }
            gx /= Double(d)
            for j in 0..<d {
                let xhat = v[r * d + j] * rs[r]
                dx[r * d + j] = (g[r * d + j] * (w?[j] ?? 1) - xhat * gx) * rs[r]
                dw[j] += g[r * d + j] * xhat
            }
        }
        return (try store(dx, x.shape), weight == nil ? nil : try store(dw, [d]))
    }

    public func softmax(_ x: Tensor) throws -> Tensor {
        try f32Only(.softmax, x)
        let v = try load(x, .softmax), d = x.lastDim
        var y = v
        for r in 0..<x.rowCount {
            let row = v[(r * d)..<((r + 1) * d)]
            let m = row.max() ?? 0
            let s = row.reduce(0) { $0 + exp($1 - m) }
            for j in 0..<d { y[r * d + j] = exp(v[r * d + j] - m) / s }
        }
        return try store(y, x.shape)
    }

    public func softmaxBackward(_ dy: Tensor, _ y: Tensor) throws -> Tensor {
        try f32Only(.softmaxBackward, dy, y)
        try OpChecks.sameShape(.softmaxBackward, dy, y)
        let g = try load(dy, .softmaxBackward), p = try load(y, .softmaxBackward), d = y.lastDim
        var dx = p
        for r in 0..<y.rowCount {
            var dot = 0.0
            for j in 0..<d { dot += g[r * d + j] * p[r * d + j] }
            for j in 0..<d { dx[r * d + j] = p[r * d + j] * (g[r * d + j] - dot) }
        }
        return try store(dx, y.shape)
    }

    // MARK: reductions

    func reduce(_ op: Op, _ x: Tensor, axes: [Int], divide: Bool) throws -> Tensor {
        try f32Only(op, x)
        let (ax, shape) = try OpChecks.reduction(op, x, axes: axes)
        let v = try load(x, op)
        let inStrides = Self.strides(x.shape), outStrides = Self.strides(shape)
        let keep = (0..<x.rank).filter { !ax.contains($0) }
        var out = Array(repeating: 0.0, count: shape.reduce(1, *))
        for i in v.indices {
            var o = 0
            for (k, axis) in keep.enumerated() { o += (i / inStrides[axis]) % x.shape[axis] * outStrides[k] }
            out[o] += v[i]
        }
        let n = ax.map { x.shape[$0] }.reduce(1, *)
        return try store(divide ? out.map { $0 / Double(n) } : out, shape)
    }

    public func sum(_ x: Tensor, axes: [Int]) throws -> Tensor { try reduce(.sum, x, axes: axes, divide: false) }
    public func mean(_ x: Tensor, axes: [Int]) throws -> Tensor { try reduce(.mean, x, axes: axes, divide: true) }

    public func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try f32Only(.mse, a, b)
        try OpChecks.sameShape(.mse, a, b)
        let x = try load(a, .mse), y = try load(b, .mse)
        let s = x.indices.reduce(0.0) { $0 + (x[$1] - y[$1]) * (x[$1] - y[$1]) }
        return try store([s / Double(max(x.count, 1))], [])
    }

    public func mseBackward(_ a: Tensor, _ b: Tensor, dloss: Float) throws -> Tensor {
        try f32Only(.mseBackward, a, b)
        try OpChecks.sameShape(.mseBackward, a, b)
        let x = try load(a, .mseBackward), y = try load(b, .mseBackward)
        let c = 2 * Double(dloss) / Double(max(x.count, 1))
        return try store(x.indices.map { c * (x[$0] - y[$0]) }, a.shape)
    }

    // MARK: contractions

    static func activate(_ v: Double, _ act: Activation) -> Double {
        switch act {
        case .none: v
        case .geluTanh: 0.5 * v * (1 + tanh(geluC * (v + 0.044715 * v * v * v)))
        case .silu: v / (1 + exp(-v))
        }
    }

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
                       activation: Activation) throws -> Tensor {
        try OpChecks.dtype(.matmul, a, [.f32, .bf16], backend: displayName)
        let s = try OpChecks.matmul(a, b, transposeA: transposeA, transposeB: transposeB, bias: bias)
        let av = try load(a, .matmul), bv = try load(b, .matmul), bias = try bias.map { try load($0, .matmul) }
        let (m, n, k) = (s.m, s.n, s.k)
        var out = Array(repeating: 0.0, count: s.batch * m * n)
        for p in 0..<s.batch {
            let ao = p * m * k, bo = s.bBatched ? p * k * n : 0
            for i in 0..<m { for j in 0..<n {
                var acc = 0.0
                for l in 0..<k {
                    let x = av[ao + (transposeA ? l * m + i : i * k + l)]
                    let y = bv[bo + (transposeB ? j * k + l : l * n + j)]
                    acc += x * y
                }
                out[(p * m + i) * n + j] = Self.activate(acc + (bias?[j] ?? 0), activation)
            }}
        }
        return try store(out, s.outShape)
    }

    public func matmulW4A16(_ x: Tensor, _ w: Packed4BitWeight, bias: Tensor?, activation: Activation) throws -> Tensor {
        try OpChecks.dtype(.matmulW4A16, x, [.f32, .bf16], backend: displayName)
        let (rows, n, k) = try OpChecks.matmulW4A16(x, w, bias: bias)
        let packed = try host(w.packed, .matmulW4A16).assumingMemoryBound(to: UInt8.self)
        let scale = try load(w.scale, .matmulW4A16), code = try load(w.codebook, .matmulW4A16)
        let zero = try w.zero.map { try load($0, .matmulW4A16) }
        let xv = try load(x, .matmulW4A16), bias = try bias.map { try load($0, .matmulW4A16) }
        // Dequantise the whole weight: the oracle may materialise it; fast kernels must not.
        let weight: [Double] = (0..<(n * k)).map { e in
            let byte = packed[e / 2]
            let q = e % 2 == 0 ? byte >> 4 : byte & 0x0F
            return code[Int(q)] * scale[e / w.blockSize] + (zero?[e / w.blockSize] ?? 0)
        }
        var out = Array(repeating: 0.0, count: rows * n)
        for r in 0..<rows { for j in 0..<n {
            var acc = 0.0
            for l in 0..<k { acc += xv[r * k + l] * weight[j * k + l] }
            out[r * n + j] = Self.activate(acc + (bias?[j] ?? 0), activation)
        }}
        return try store(out, Array(x.shape.dropLast()) + [n])
    }

    public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float) throws -> (out: Tensor, lse: Tensor) {
        try OpChecks.dtype(.attention, q, [.f32, .bf16], backend: displayName)
        let s = try OpChecks.attention(.attention, q, k, v)
        let qv = try load(q, .attention), kv = try load(k, .attention), vv = try load(v, .attention)
        var out = Array(repeating: 0.0, count: q.count), lse = Array(repeating: 0.0, count: s.b * s.h * s.lq)
        for bh in 0..<(s.b * s.h) {
            for i in 0..<s.lq {
                let qo = (bh * s.lq + i) * s.d
                var scores = Array(repeating: 0.0, count: s.lk)
                for j in 0..<s.lk {
                    let ko = (bh * s.lk + j) * s.d
                    var dot = 0.0
                    for c in 0..<s.d { dot += qv[qo + c] * kv[ko + c] }
                    scores[j] = dot * Double(scale)
                }
                let m = scores.max() ?? 0
                let l = scores.reduce(0) { $0 + exp($1 - m) }
                for j in 0..<s.lk {
                    let p = exp(scores[j] - m) / l
                    for c in 0..<s.d { out[qo + c] += p * vv[(bh * s.lk + j) * s.d + c] }
                }
                lse[bh * s.lq + i] = m + log(l)
            }
        }
        let o = q.dtype == .f32 ? try store(out, q.shape) : try tensor(out.map { Float($0) }, shape: q.shape, dtype: q.dtype)
        return (o, try store(lse, [s.b, s.h, s.lq]))
    }

    public func attentionBackward(_ dout: Tensor, _ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor,
                                  scale: Float) throws -> (dq: Tensor, dk: Tensor, dv: Tensor) {
        try f32Only(.attentionBackward, dout, q, k, v, out, lse)
        let s = try OpChecks.attention(.attentionBackward, q, k, v)
        try OpChecks.sameShape(.attentionBackward, dout, q, "dout and q")
        try OpChecks.sameShape(.attentionBackward, out, q, "out and q")
        guard lse.shape == [s.b, s.h, s.lq] else {
            throw BackendError.invalidArgument(.attentionBackward, "lse must be (B,H,Lq) = \([s.b, s.h, s.lq].shapeString), got \(lse.shape.shapeString)")
        }
        let g = try load(dout, .attentionBackward), qv = try load(q, .attentionBackward)
        let kv = try load(k, .attentionBackward), vv = try load(v, .attentionBackward)
        let ov = try load(out, .attentionBackward), lv = try load(lse, .attentionBackward)
        var dq = Array(repeating: 0.0, count: q.count)
        var dk = Array(repeating: 0.0, count: k.count), dv = dk
        let sc = Double(scale)
        for bh in 0..<(s.b * s.h) {
            for i in 0..<s.lq {
                let qo = (bh * s.lq + i) * s.d
                var rowDot = 0.0                                   // D_i = dO_i · O_i
                for c in 0..<s.d { rowDot += g[qo + c] * ov[qo + c] }
                for j in 0..<s.lk {
                    let ko = (bh * s.lk + j) * s.d
                    var dot = 0.0, dp = 0.0
                    for c in 0..<s.d {
                        dot += qv[qo + c] * kv[ko + c]
                        dp += g[qo + c] * vv[ko + c]
                    }
                    let p = exp(dot * sc - lv[bh * s.lq + i])
                    let ds = p * (dp - rowDot)
                    for c in 0..<s.d {
                        dv[ko + c] += p * g[qo + c]
                        dq[qo + c] += sc * ds * kv[ko + c]
                        dk[ko + c] += sc * ds * qv[qo + c]
                    }
                }
            }
        }
        return (try store(dq, q.shape), try store(dk, k.shape), try store(dv, v.shape))
    }

    // MARK: optimizer

    public func adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: Int, config c: AdamWConfig) throws {
        try f32Only(.adamw, param, grad, m, v)
        for t in [grad, m, v] { try OpChecks.sameShape(.adamw, param, t, "param, grad, m and v") }
        guard step >= 1 else { throw BackendError.invalidArgument(.adamw, "step counts from 1, got \(step)") }
        var p = try load(param, .adamw), mv = try load(m, .adamw), vv = try load(v, .adamw)
        let g = try load(grad, .adamw)
        let lr = Double(c.learningRate), b1 = Double(c.beta1), b2 = Double(c.beta2)
        let bc1 = 1 - pow(b1, Double(step)), bc2 = 1 - pow(b2, Double(step))
        for i in p.indices {
            p[i] *= 1 - lr * Double(c.weightDecay)
            mv[i] = b1 * mv[i] + (1 - b1) * g[i]
            vv[i] = b2 * vv[i] + (1 - b2) * g[i] * g[i]
            p[i] -= lr / bc1 * mv[i] / (vv[i].squareRoot() / bc2.squareRoot() + Double(c.eps))
        }
        try overwrite(param, p, .adamw)
        try overwrite(m, mv, .adamw)
        try overwrite(v, vv, .adamw)
    }

    public func clipGradNorm(_ grads: [Tensor], maxNorm: Float) throws -> Float {
        var total = 0.0
        for g in grads {
            try f32Only(.clipGradNorm, g)
            total += try load(g, .clipGradNorm).reduce(0) { $0 + $1 * $1 }
        }
        let norm = total.squareRoot()
        let coef = Double(maxNorm) / (norm + 1e-6)
        if coef < 1 {
            for g in grads { try overwrite(g, try load(g, .clipGradNorm).map { $0 * coef }, .clipGradNorm) }
        }
        return Float(norm)
    }

    // MARK: random

    public func randomNormal(_ shape: [Int], seed: UInt64, offset: UInt64) throws -> Tensor {
        let n = shape.reduce(1, *)
        return try tensor((0..<n).map { Philox.normal(seed: seed, index: offset &+ UInt64($0)) }, shape: shape)
    }
}
