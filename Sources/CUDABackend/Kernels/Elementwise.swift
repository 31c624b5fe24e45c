// CUDA kernels for the elementwise ops: broadcast add/mul, scale, axpy, GELU/SiLU and their backwards (in f64, as
// the reference), AdaLN modulate / gated residual with their per-(B,D) column reductions, RoPE, the MSE gradient.
// Scalar twins: the ReferenceBackend methods of the same names.
//
// Legend: B batch, L sequence, D width; (B,D) tensors broadcast over L.

enum ElementwiseKernels {
    static let source = #"""
/* op 0: a + b, op 1: a · b; b indexed through the broadcast strides in d (v[9..] = b's stride per axis of a). */
extern "C" __global__ void hp_binary(int op, const float *a, const float *b, float *y, i64 n, Dims d) {
    GRID_STRIDE(i, n) {
        const float bv = b[permuted_index(d, i)];
        y[i] = op == 0 ? a[i] + bv : a[i] * bv;
    }
}
extern "C" __global__ void hp_scale(const float *x, float s, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = s * x[i]; }
extern "C" __global__ void hp_axpy(float *y, float alpha, const float *x, i64 n) {
    GRID_STRIDE(i, n) y[i] = (float)((double)y[i] + (double)alpha * (double)x[i]);
}
extern "C" __global__ void hp_gelu(const float *x, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = (float)act_apply((double)x[i], 1); }
extern "C" __global__ void hp_gelu_backward(const float *g, const float *x, float *y, i64 n) {
    GRID_STRIDE(i, n) {
        const double u = x[i], t = tanh(HP_GELU_C * (u + 0.044715 * u * u * u));
        const double dd = 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * HP_GELU_C * (1.0 + 3.0 * 0.044715 * u * u);
        y[i] = (float)((double)g[i] * dd);
    }
}
extern "C" __global__ void hp_silu(const float *x, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = (float)act_apply((double)x[i], 2); }
extern "C" __global__ void hp_silu_backward(const float *g, const float *x, float *y, i64 n) {
    GRID_STRIDE(i, n) {
        const double v = x[i], s = 1.0 / (1.0 + exp(-v));
        y[i] = (float)((double)g[i] * s * (1.0 + v * (1.0 - s)));
    }
}
/* Applies an epilogue activation in place (SiLU after a cuBLASLt bias epilogue). */
extern "C" __global__ void hp_activate(float *y, int act, i64 n) { GRID_STRIDE(i, n) y[i] = (float)act_apply((double)y[i], act); }

/* x (B,L,D), shift, scale (B,D) → x·(1+scale) + shift. */
extern "C" __global__ void hp_modulate(const float *x, const float *sh, const float *sc, float *y, i64 B, i64 L, i64 D) {
    GRID_STRIDE(i, B * L * D) {
        const i64 bd = (i / (L * D)) * D + i % D;
        y[i] = (float)((double)x[i] * (1.0 + (double)sc[bd]) + (double)sh[bd]);
    }
}
/* dx = dy·(1+scale) elementwise. */
extern "C" __global__ void hp_modulate_backward_dx(const float *g, const float *sc, float *dx, i64 B, i64 L, i64 D) {
    GRID_STRIDE(i, B * L * D) dx[i] = (float)((double)g[i] * (1.0 + (double)sc[(i / (L * D)) * D + i % D]));
}
/* Column sums over L for each (b, d): s1 = Σ_l g, s2 = Σ_l g·x (x may be null: only s1). One thread per (b, d). */
extern "C" __global__ void hp_column_sums(const float *g, const float *x, float *s1, float *s2, i64 B, i64 L, i64 D) {
    GRID_STRIDE(i, B * D) {
        const i64 b = i / D, d = i % D;
        double a = 0.0, c = 0.0;
        for (i64 l = 0; l < L; l++) {
            const i64 e = (b * L + l) * D + d;
            a += (double)g[e];
            if (x) c += (double)g[e] * (double)x[e];
        }
        if (s1) s1[i] = (float)a;
        if (s2) s2[i] = (float)c;
    }
}
/* residual (B,L,D) + gate (B,D)·y. */
extern "C" __global__ void hp_gate_residual(const float *r, const float *gate, const float *y, float *o, i64 B, i64 L, i64 D) {
    GRID_STRIDE(i, B * L * D) o[i] = (float)((double)r[i] + (double)gate[(i / (L * D)) * D + i % D] * (double)y[i]);
}
/* dy = dout·gate. */
extern "C" __global__ void hp_gate_residual_backward_dy(const float *g, const float *gate, float *dy, i64 B, i64 L, i64 D) {
    GRID_STRIDE(i, B * L * D) dy[i] = (float)((double)g[i] * (double)gate[(i / (L * D)) * D + i % D]);
}
/* Interleaved-pair rotary embedding: x (outer,L,D), cos/sin (L,D/2); one thread per pair. */
extern "C" __global__ void hp_rope(const float *x, const float *cs, const float *sn, float *y, i64 outer, i64 L, i64 D, int inverse) {
    const i64 half = D / 2;
    GRID_STRIDE(i, outer * L * half) {
        const i64 r = i / half, k = i % half, l = r % L;
        const float x0 = x[r * D + 2 * k], x1 = x[r * D + 2 * k + 1], c = cs[l * half + k];
        const float s = inverse ? -sn[l * half + k] : sn[l * half + k];
        y[r * D + 2 * k] = (float)((double)x0 * c - (double)x1 * s);
        y[r * D + 2 * k + 1] = (float)((double)x0 * s + (double)x1 * c);
    }
}
/* c·(a − b) (the MSE gradient with c = 2·dloss/n). */
extern "C" __global__ void hp_scaled_diff(const float *a, const float *b, double c, float *y, i64 n) {
    GRID_STRIDE(i, n) y[i] = (float)(c * ((double)a[i] - (double)b[i]));
}
"""#
    static let kernels = ["hp_binary", "hp_scale", "hp_axpy", "hp_gelu", "hp_gelu_backward", "hp_silu", "hp_silu_backward",
                          "hp_activate", "hp_modulate", "hp_modulate_backward_dx", "hp_column_sums", "hp_gate_residual",
                          "hp_gate_residual_backward_dy", "hp_rope", "hp_scaled_diff"]
}
