// hp_elementwise.h — elementwise, row-wise (norms, softmax), RoPE, reduction, AdamW, Philox and layout kernels
// of the CPU backend. All f32 unless named otherwise; all deterministic (independent of the thread count).
// Functions ending in _ref are plain scalar twins (f64 accumulation) the fast versions are tested against.
//
// Legend: B batch, L sequence, D last-axis width, rows = product of the leading axes.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ── conversions (round to nearest even; NaN stays NaN) ──────────────────────────────────────────────────
void hp_convert_f32_to_bf16(const float *x, uint16_t *y, int64_t n);
void hp_convert_bf16_to_f32(const uint16_t *x, float *y, int64_t n);
void hp_convert_f32_to_f16(const float *x, uint16_t *y, int64_t n);
void hp_convert_f16_to_f32(const uint16_t *x, float *y, int64_t n);

// ── elementwise ─────────────────────────────────────────────────────────────────────────────────────
/// y[i] = a[i] + b[i % nb]  (b repeats over a's leading axes; nb divides n).
void hp_add_f32(const float *a, const float *b, float *y, int64_t n, int64_t nb);
/// y[i] = a[i] * b[i % nb].
void hp_mul_f32(const float *a, const float *b, float *y, int64_t n, int64_t nb);
/// y = s·x.
void hp_scale_f32(const float *x, float s, float *y, int64_t n);
/// y += alpha·x (in place).
void hp_axpy_f32(float *y, float alpha, const float *x, int64_t n);
/// GELU (tanh approximation) and its backward dx = dy·gelu'(x). Fast versions use a polynomial exp (≤ 2 ulp).
void hp_gelu_f32(const float *x, float *y, int64_t n);
void hp_gelu_f32_ref(const float *x, float *y, int64_t n);
void hp_gelu_backward_f32(const float *dy, const float *x, float *dx, int64_t n);
void hp_gelu_backward_f32_ref(const float *dy, const float *x, float *dx, int64_t n);
/// SiLU and its backward.
void hp_silu_f32(const float *x, float *y, int64_t n);
void hp_silu_f32_ref(const float *x, float *y, int64_t n);
void hp_silu_backward_f32(const float *dy, const float *x, float *dx, int64_t n);
void hp_silu_backward_f32_ref(const float *dy, const float *x, float *dx, int64_t n);
/// y = x·(1+scale) + shift; x, y (B,L,D); shift, scale (B,D).
void hp_modulate_f32(const float *x, const float *shift, const float *scale, float *y, int64_t B, int64_t L, int64_t D);
/// dx = dy·(1+scale); dshift = Σ_L dy; dscale = Σ_L dy·x   (dshift, dscale (B,D)).
void hp_modulate_backward_f32(const float *dy, const float *x, const float *scale, float *dx, float *dshift,
                              float *dscale, int64_t B, int64_t L, int64_t D);
/// out = res + gate·y; res, y, out (B,L,D); gate (B,D).
void hp_gate_residual_f32(const float *res, const float *gate, const float *y, float *out, int64_t B, int64_t L, int64_t D);
/// dy = dout·gate; dgate = Σ_L dout·y.
void hp_gate_residual_backward_f32(const float *dout, const float *gate, const float *y, float *dy, float *dgate,
                                   int64_t B, int64_t L, int64_t D);
/// RoPE on interleaved pairs: x, y (outer,L,D); cos, sin (L,D/2); inverse != 0 rotates by −θ.
void hp_rope_f32(const float *x, const float *cos, const float *sin, float *y, int64_t outer, int64_t L, int64_t D,
                 int inverse);

// ── row-wise over the last axis (rows, D) ───────────────────────────────────────────────────────────
void hp_layernorm_f32(const float *x, float *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps);
void hp_layernorm_f32_ref(const float *x, float *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps);
void hp_layernorm_backward_f32(const float *dy, const float *x, const float *mean, const float *rstd, float *dx,
                               int64_t rows, int64_t D);
void hp_layernorm_backward_f32_ref(const float *dy, const float *x, const float *mean, const float *rstd, float *dx,
                                   int64_t rows, int64_t D);
/// y = x·rstd·w (w may be NULL = ones); rstd = 1/sqrt(mean(x²)+eps).
void hp_rmsnorm_f32(const float *x, const float *w, float *y, float *rstd, int64_t rows, int64_t D, float eps);
void hp_rmsnorm_f32_ref(const float *x, const float *w, float *y, float *rstd, int64_t rows, int64_t D, float eps);
/// dx; dw (D) = Σ_rows dy·x·rstd when dw != NULL (w may be NULL).
void hp_rmsnorm_backward_f32(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                             int64_t rows, int64_t D);
void hp_rmsnorm_backward_f32_ref(const float *dy, const float *x, const float *w, const float *rstd, float *dx,
                                 float *dw, int64_t rows, int64_t D);
void hp_softmax_f32(const float *x, float *y, int64_t rows, int64_t D);
void hp_softmax_f32_ref(const float *x, float *y, int64_t rows, int64_t D);
void hp_softmax_backward_f32(const float *dy, const float *y, float *dx, int64_t rows, int64_t D);

// ── reductions ──────────────────────────────────────────────────────────────────────────────────────
/// y[o,i] = Σ_r x[o,r,i]  for x (outer,R,inner), y (outer,inner); f64 accumulation in increasing r.
void hp_sum_axis_f32(const float *x, float *y, int64_t outer, int64_t R, int64_t inner);
/// Σ x² in f64 (fixed blocks of 4096, summed in order).
double hp_sum_squares_f32(const float *x, int64_t n);
/// Σ (a−b)² in f64 (same blocking).
double hp_sq_diff_sum_f32(const float *a, const float *b, int64_t n);
/// da = c·(a−b).
void hp_scaled_diff_f32(const float *a, const float *b, float c, float *da, int64_t n);

// ── optimizer ───────────────────────────────────────────────────────────────────────────────────────
/// One AdamW step in place (torch order): p *= 1 − lr·wd; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
/// p −= (lr/bc1)·m / (sqrt(v)/sqrt(bc2) + eps), with bc1 = 1 − b1^t, bc2 = 1 − b2^t given by the caller.
void hp_adamw_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                  float wd, float bc1, float bc2);
void hp_adamw_f32_ref(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                      float wd, float bc1, float bc2);

// ── random: Philox 4x32-10 and the (seed, index) → N(0,1) mapping of TensorCore/Philox.swift ─────────────
void hp_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/// y[i] = normal(seed, offset + i).
void hp_randn_f32(float *y, int64_t n, uint64_t seed, uint64_t offset);
/// One element at a time (the scalar twin).
float hp_randn_one(uint64_t seed, uint64_t index);

// ── layout ──────────────────────────────────────────────────────────────────────────────────────────
/// General permutation of elements of `es` bytes: y.shape[i] = shape[perm[i]], rank <= 8.
void hp_permute(const void *x, void *y, int64_t es, int rank, const int64_t *shape, const int64_t *perm);
/// (B,C,H,W) → (B, h·w, C·p·p); order 0: (c,py,px), 1: (py,px,c).
void hp_patchify_f32(const float *x, float *y, int64_t B, int64_t C, int64_t h, int64_t w, int64_t p, int order);
/// (B, h·w, C·p·p) → (B,C,H,W), the inverse.
void hp_unpatchify_f32(const float *x, float *y, int64_t B, int64_t C, int64_t h, int64_t w, int64_t p, int order);

#ifdef __cplusplus
}
#endif
