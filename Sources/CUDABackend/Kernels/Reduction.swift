// CUDA kernels for reductions and the optimizer: sums over an axis run (f64), the squared-difference and
// sum-of-squares totals behind mse / clipGradNorm (two deterministic passes), and the AdamW step (f64).
// Scalar twins: ReferenceBackend.sum/mse/clipGradNorm/adamw.
//
// Legend: x viewed as (outer, r, inner): the r axis is summed.

enum ReductionKernels {
    static let source = #"""
/* out (outer, inner) = Σ_r x (outer, r, inner); one block per output, threads over r. */
extern "C" __global__ void hp_sum_axis(const float *x, float *out, i64 outer, i64 r, i64 inner, double div) {
    __shared__ double sh[32];
    for (i64 o = blockIdx.x; o < outer * inner; o += gridDim.x) {
        const i64 a = o / inner, c = o % inner;
        double s = 0.0;
        for (i64 k = threadIdx.x; k < r; k += blockDim.x) s += (double)x[(a * r + k) * inner + c];
        s = block_sum(s, sh);
        if (threadIdx.x == 0) out[o] = (float)(s / div);
    }
}
/* partial[block] = Σ (a − b)² (b null: Σ a²) over a grid-stride share; the host sums the partials in order. */
extern "C" __global__ void hp_square_partials(const float *a, const float *b, double *partial, i64 n) {
    __shared__ double sh[32];
    double s = 0.0;
    GRID_STRIDE(i, n) { const double d = b ? (double)a[i] - (double)b[i] : (double)a[i]; s += d * d; }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
/* One AdamW step in place (decoupled weight decay, bias-corrected moments, as torch.optim.AdamW). */
extern "C" __global__ void hp_adamw(float *p, const float *g, float *m, float *v, i64 n, double lr, double b1, double b2,
                                    double eps, double wd, double bc1, double bc2) {
    GRID_STRIDE(i, n) {
        double pi = (double)p[i] * (1.0 - lr * wd);
        const double gi = g[i];
        const double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        const double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        pi -= lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + eps);
        p[i] = (float)pi;
        m[i] = (float)mi;
        v[i] = (float)vi;
    }
}
"""#
    static let kernels = ["hp_sum_axis", "hp_square_partials", "hp_adamw"]
}
