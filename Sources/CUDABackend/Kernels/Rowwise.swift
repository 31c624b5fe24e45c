// CUDA kernels for the row-wise ops: LayerNorm, RMSNorm and softmax, forward and backward, one block per row with
// f64 accumulation (block_sum), plus the per-column weight gradient of RMSNorm.
// Scalar twins: ReferenceBackend.layerNorm/… (f64 throughout).
//
// Legend: R rows, D the normalised (last) axis.

enum RowwiseKernels {
    static let source = #"""
/* x (R,D) → y (R,D), mean, rstd (R). */
extern "C" __global__ void hp_layernorm(const float *x, float *y, float *mean, float *rstd, i64 R, i64 D, float eps) {
    __shared__ double sh[32];
    for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
        const float *xr = x + r * D;
        double s = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) s += (double)xr[j];
        const double mu = block_sum(s, sh) / (double)D;
        double v = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) { const double c = (double)xr[j] - mu; v += c * c; }
        const double rs = 1.0 / sqrt(block_sum(v, sh) / (double)D + (double)eps);
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) y[r * D + j] = (float)(((double)xr[j] - mu) * rs);
        if (threadIdx.x == 0) { mean[r] = (float)mu; rstd[r] = (float)rs; }
    }
}
extern "C" __global__ void hp_layernorm_backward(const float *g, const float *x, const float *mean, const float *rstd,
                                                 float *dx, i64 R, i64 D) {
    __shared__ double sh[32];
    for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
        const double mu = mean[r], rs = rstd[r];
        double a = 0.0, b = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) {
            const double gv = g[r * D + j], xh = ((double)x[r * D + j] - mu) * rs;
            a += gv;
            b += gv * xh;
        }
        const double gm = block_sum(a, sh) / (double)D, gxm = block_sum(b, sh) / (double)D;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) {
            const double xh = ((double)x[r * D + j] - mu) * rs;
            dx[r * D + j] = (float)(((double)g[r * D + j] - gm - xh * gxm) * rs);
        }
    }
}
/* y = x · rsqrt(mean(x²) + eps) · w (w may be null). */
extern "C" __global__ void hp_rmsnorm(const float *x, const float *w, float *y, float *rstd, i64 R, i64 D, float eps) {
    __shared__ double sh[32];
    for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
        double s = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) { const double v = x[r * D + j]; s += v * v; }
        const double rs = 1.0 / sqrt(block_sum(s, sh) / (double)D + (double)eps);
        for (i64 j = threadIdx.x; j < D; j += blockDim.x)
            y[r * D + j] = (float)((double)x[r * D + j] * rs * (w ? (double)w[j] : 1.0));
        if (threadIdx.x == 0) rstd[r] = (float)rs;
    }
}
extern "C" __global__ void hp_rmsnorm_backward(const float *g, const float *x, const float *w, const float *rstd,
                                               float *dx, i64 R, i64 D) {
    __shared__ double sh[32];
    for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
        const double rs = rstd[r];
        double s = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x)
            s += (double)g[r * D + j] * (w ? (double)w[j] : 1.0) * (double)x[r * D + j] * rs;
        const double gx = block_sum(s, sh) / (double)D;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) {
            const double xh = (double)x[r * D + j] * rs;
            dx[r * D + j] = (float)(((double)g[r * D + j] * (w ? (double)w[j] : 1.0) - xh * gx) * rs);
        }
    }
}
/* dw[j] = Σ_r g[r,j] · x[r,j] · rstd[r]; one thread per column, rows in order (deterministic). */
extern "C" __global__ void hp_rmsnorm_dweight(const float *g, const float *x, const float *rstd, float *dw, i64 R, i64 D) {
    GRID_STRIDE(j, D) {
        double s = 0.0;
        for (i64 r = 0; r < R; r++) s += (double)g[r * D + j] * (double)x[r * D + j] * (double)rstd[r];
        dw[j] = (float)s;
    }
}
extern "C" __global__ void hp_softmax(const float *x, float *y, i64 R, i64 D) {
    __shared__ double sh[32];
    for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
        float m = -__int_as_float(0x7f800000);
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) m = fmaxf(m, x[r * D + j]);
        m = block_max(m, (float *)sh);
        double s = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) s += exp((double)x[r * D + j] - (double)m);
        s = block_sum(s, sh);
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) y[r * D + j] = (float)(exp((double)x[r * D + j] - (double)m) / s);
    }
}
extern "C" __global__ void hp_softmax_backward(const float *g, const float *y, float *dx, i64 R, i64 D) {
    __shared__ double sh[32];
    for (i64 r = blockIdx.x; r < R; r += gridDim.x) {
        double s = 0.0;
        for (i64 j = threadIdx.x; j < D; j += blockDim.x) s += (double)g[r * D + j] * (double)y[r * D + j];
        const double dot = block_sum(s, sh);
        for (i64 j = threadIdx.x; j < D; j += blockDim.x)
            dx[r * D + j] = (float)((double)y[r * D + j] * ((double)g[r * D + j] - dot));
    }
}
"""#
    static let kernels = ["hp_layernorm", "hp_layernorm_backward", "hp_rmsnorm", "hp_rmsnorm_backward", "hp_rmsnorm_dweight",
                          "hp_softmax", "hp_softmax_backward"]
}
