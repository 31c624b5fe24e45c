// GEMM on the CUDA backend through cuBLASLt: f32 or bf16 operands, f32 accumulation and output (CUBLAS_COMPUTE_32F,
// no TF32), bias and GELU-tanh epilogues, strided batches with a shared or batched B. Scalar twin:
// ReferenceBackend.matmul.
//
// Row-major C (M,N) = op(A)·op(B) is computed as the column-major Cᵀ (N,M) = op(B)ᵀ·op(A)ᵀ: cuBLASLt's "A" is our
// b and its "B" our a, so no data moves; the bias runs along cuBLASLt's rows, i.e. our N.
import Foundation
import TensorCore

extension CUDABackend {
    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
                       activation: Activation) throws -> Tensor {
        if let why = failures[.matmul] { throw BackendError.invalidArgument(.matmul, "disabled on this GPU by the start-up self-check: \(why)") }
        try OpChecks.dtype(.matmul, a, [.f32, .bf16], backend: displayName)
        let s = try OpChecks.matmul(a, b, transposeA: transposeA, transposeB: transposeB, bias: bias)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pa = try dev(a, &keep), pb = try dev(b, &keep), pbias = try bias.map { try dev($0, &keep) }
        let out = try empty(s.outShape, .f32, zeroed: true)
        guard out.count > 0 else { return out }
        if s.k == 0 {                                                  // empty inner axis: act(bias) or zeros
            guard bias != nil || activation != .none else { return out }
            let z = try linearEpilogueOnly(out, bias: bias, activation: activation)
            return z
        }
        let fuse = try activation == .geluTanh && fusedGELU()
        try gemm(a: pa, b: pb, out: ptr(out), s: s, transposeA: transposeA, transposeB: transposeB, dtype: a.dtype,
                 bias: pbias, gelu: fuse)
        if activation != .none && !fuse {            // SiLU (no cuBLASLt epilogue), or GELU when the probe said no
            try context.launch("hp_activate", grid: (context.blocks(out.count), 1, 1), block: 256,
                               [.ptr(ptr(out)), .i32(Self.actCode(activation)), .i64(out.count)])
        }
        return out
    }

    /// Whether cuBLASLt's GELU epilogue is the tanh approximation our ops define: decided once per process by
    /// running a small GEMM with the fused epilogue and with our own GELU pass and comparing (within 1e-5); when
    /// it differs (an erf GELU), every GELU matmul takes the separate pass.
    func fusedGELU() throws -> Bool {
        try geluLock.withLock {
            if let d = geluDecided { return d }
            let m = 7, n = 9, k = 65
            let a = try tensor((0..<(m * k)).map { Float($0 % 13) / 3 - 2 }, shape: [m, k], dtype: .f32)
            let b = try tensor((0..<(k * n)).map { Float($0 % 7) / 20 - 0.15 }, shape: [k, n], dtype: .f32)
            let s = try OpChecks.matmul(a, b, transposeA: false, transposeB: false, bias: nil)
            let fused = try empty(s.outShape, .f32), plain = try empty(s.outShape, .f32)
            try gemm(a: ptr(a), b: ptr(b), out: ptr(fused), s: s, transposeA: false, transposeB: false, dtype: .f32,
                     bias: nil, gelu: true)
            try gemm(a: ptr(a), b: ptr(b), out: ptr(plain), s: s, transposeA: false, transposeB: false, dtype: .f32,
                     bias: nil, gelu: false)
            try context.launch("hp_activate", grid: (1, 1, 1), block: 256, [.ptr(ptr(plain)), .i32(Self.actCode(.geluTanh)), .i64(m * n)])
            let f = try floats(fused), p = try floats(plain)
            let same = zip(f, p).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }
            geluDecided = same
            return same
        }
    }

    /// act(0 + bias) broadcast over the rows (a K = 0 matmul).
    private func linearEpilogueOnly(_ zeros: Tensor, bias: Tensor?, activation: Activation) throws -> Tensor {
        var y = zeros
        if let bias { y = try add(y, bias) }
        switch activation {
        case .none: return y
        case .geluTanh: return try gelu(y)
        case .silu: return try silu(y)
        }
    }

    /// One cuBLASLt matmul: out (batch, M, N) f32 from a, b device pointers in `dtype`.
    func gemm(a: UInt64, b: UInt64, out: UInt64, s: OpChecks.MatmulSizes, transposeA: Bool, transposeB: Bool,
              dtype: DType, bias: UInt64?, gelu: Bool) throws {
        try context.makeCurrent()
        let lt = context.cublas
        let dt = dtype == .bf16 ? CublasLtAPI.r16BF.value : CublasLtAPI.r32F.value
        var desc: RawPtr?
        try lt.check(lt.descCreate(&desc, CublasLtAPI.compute32F.value, CublasLtAPI.r32F.value), "cublasLtMatmulDescCreate")
        defer { _ = lt.descDestroy(desc) }
        func setDesc<T>(_ attr: CConstantSpec, _ value: T) throws {
            var v = value
            try lt.check(withUnsafeBytes(of: &v) { lt.descSet(desc, attr.value, $0.baseAddress, $0.count) }, "setting \(attr.name)")
        }
        // cuBLASLt A = our b: stored (N,K) row-major when transposeB (→ K×N column-major, OP_T), else (K,N) (→ N×K, OP_N).
        try setDesc(CublasLtAPI.transA, transposeB ? CublasLtAPI.opT.value : CublasLtAPI.opN.value)
        try setDesc(CublasLtAPI.transB, transposeA ? CublasLtAPI.opT.value : CublasLtAPI.opN.value)
        let epilogue: CConstantSpec = bias != nil
            ? (gelu ? CConstantSpec(header: "cublasLt.h", name: "CUBLASLT_EPILOGUE_GELU_BIAS",
                                    value: CublasLtAPI.epilogueGelu.value | CublasLtAPI.epilogueBias.value) : CublasLtAPI.epilogueBias)
            : (gelu ? CublasLtAPI.epilogueGelu : CublasLtAPI.epilogueDefault)
        try setDesc(CublasLtAPI.epilogue, UInt32(bitPattern: epilogue.value))
        if let bias { try setDesc(CublasLtAPI.biasPointer, bias) }

        func layout(_ type: Int32, rows: Int, cols: Int, ld: Int, batchStride: Int) throws -> RawPtr? {
            var l: RawPtr?
            try lt.check(lt.layoutCreate(&l, type, UInt64(rows), UInt64(cols), Int64(ld)), "cublasLtMatrixLayoutCreate")
            if s.batch > 1 {
                var count = Int32(s.batch), stride = Int64(batchStride)
                try lt.check(lt.layoutSet(l, CublasLtAPI.batchCount.value, &count, 4), "setting the batch count")
                try lt.check(lt.layoutSet(l, CublasLtAPI.stridedBatchOffset.value, &stride, 8), "setting the batch stride")
            }
            return l
        }
        let la = try transposeB ? layout(dt, rows: s.k, cols: s.n, ld: s.k, batchStride: s.bBatched ? s.k * s.n : 0)
                                : layout(dt, rows: s.n, cols: s.k, ld: s.n, batchStride: s.bBatched ? s.k * s.n : 0)
        defer { _ = lt.layoutDestroy(la) }
        let lb = try transposeA ? layout(dt, rows: s.m, cols: s.k, ld: s.m, batchStride: s.m * s.k)
                                : layout(dt, rows: s.k, cols: s.m, ld: s.k, batchStride: s.m * s.k)
        defer { _ = lt.layoutDestroy(lb) }
        let lc = try layout(CublasLtAPI.r32F.value, rows: s.n, cols: s.m, ld: s.n, batchStride: s.m * s.n)
        defer { _ = lt.layoutDestroy(lc) }

        var pref: RawPtr?
        try lt.check(lt.prefCreate(&pref), "cublasLtMatmulPreferenceCreate")
        defer { _ = lt.prefDestroy(pref) }
        var wsBytes = UInt64(context.workspace.byteCount)
        try lt.check(lt.prefSet(pref, CublasLtAPI.maxWorkspace.value, &wsBytes, 8), "setting the workspace size")
        // The heuristic assumes 256-byte aligned operands unless told otherwise; views (`rows`) may be less aligned.
        func alignment(_ p: UInt64) -> UInt32 { UInt32(min(256, p == 0 ? 256 : 1 << p.trailingZeroBitCount)) }
        for (attr, p) in [(CublasLtAPI.minAlignA, b), (CublasLtAPI.minAlignB, a), (CublasLtAPI.minAlignC, out),
                          (CublasLtAPI.minAlignD, out)] {
            var v = alignment(p)
            try lt.check(lt.prefSet(pref, attr.value, &v, 4), "setting \(attr.name)")
        }
        var result = [UInt8](repeating: 0, count: CublasLtAPI.heuristicResultBytes)
        var found: Int32 = 0
        try lt.check(result.withUnsafeMutableBytes {
            lt.heuristic(context.blasHandle, desc, la, lb, lc, lc, pref, 1, $0.baseAddress, &found)
        }, "cublasLtMatmulAlgoGetHeuristic (M=\(s.m) N=\(s.n) K=\(s.k) \(dtype))")
        guard found > 0 else { throw CUDAError.cublas("no cuBLASLt algorithm for M=\(s.m) N=\(s.n) K=\(s.k) \(dtype)", status: -1) }
        var alpha: Float = 1, beta: Float = 0
        let aPtr = RawPtr(bitPattern: UInt(b)), bPtr = RawPtr(bitPattern: UInt(a)), cPtr = RawPtr(bitPattern: UInt(out))
        let ws = RawPtr(bitPattern: UInt(context.workspace.pointer))
        let status = result.withUnsafeBytes { r in
            lt.matmul(context.blasHandle, desc, &alpha, aPtr, la, bPtr, lb, &beta, cPtr, lc, cPtr, lc, r.baseAddress, ws,
                      context.workspace.byteCount, nil)
        }
        try lt.check(status, "cublasLtMatmul (M=\(s.m) N=\(s.n) K=\(s.k) \(dtype))")
    }

    /// Keeps the dense weight on the device (cuBLASLt needs no repacking).
    public func prepareLinearWeight(_ weight: Tensor) throws -> PreparedLinearWeight {
        try OpChecks.preparedWeight(weight)
        return PreparedLinearWeight(shape: weight.shape, dtype: weight.dtype, backendName: name, dense: try transfer(weight))
    }

    public func linear(_ x: Tensor, prepared weight: PreparedLinearWeight, bias: Tensor?, activation: Activation,
                       output: DType) throws -> Tensor {
        if let why = failures[.linearPrepared] {
            throw BackendError.invalidArgument(.linearPrepared, "disabled on this GPU by the start-up self-check: \(why)")
        }
        _ = try OpChecks.linearPrepared(x, weight, bias: bias)
        return try linearOnKeptDense(x, prepared: weight, bias: bias, activation: activation, output: output)
    }
}
