// elementwise.c — elementwise, row-wise, reduction, AdamW and layout kernels of the CPU backend (hp_elementwise.h).
// Fast versions keep HP_LANES independent f32 partial sums (vectorisable, and the same result for every ISA and
// thread count); the _ref twins are plain loops with f64 accumulation. Work is split over rows, never inside a
// reduction, so the thread count cannot change a bit. Philox lives in elementwise_philox.c.
#include "hp_elementwise.h"
#include "hp_gemm_api.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HP_LANES 16

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (ifunc), so one portable
// binary runs them at full width. Results do not depend on the clone: every loop is per-element or lane-blocked,
// and this target builds with -ffp-contract=off (no FMA contraction).
#if defined(__x86_64__) && defined(__linux__)
#define HP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HP_CLONES
#endif
#define GRAIN 16384            // elements per parallel part (below that, one thread)

// A generic job: the kernels below pick the fields they need.
typedef struct {
    const float *a, *b, *c, *d;
    float *y, *z, *w;
    int64_t n, nb, rows, D, L, B;
    float s, t, eps;
    int flag;
} job;

// Splits [0, n) into tasks of `chunk` items for the pool (hp_parallel_for is task-based).
typedef void (*range_fn)(void *ctx, int64_t begin, int64_t end);
typedef struct { range_fn fn; void *ctx; int64_t n, chunk; } chunked;

static void chunk_task(void *v, long task, int thread) {
    (void)thread;
    const chunked *c = v;
    int64_t b = (int64_t)task * c->chunk, e = b + c->chunk < c->n ? b + c->chunk : c->n;
    c->fn(c->ctx, b, e);
}

static void par_for(int64_t n, int64_t chunk, range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (chunk < 1) chunk = 1;
    chunked c = { fn, ctx, n, chunk };
    hp_parallel_for((long)((n + chunk - 1) / chunk), chunk_task, &c);
}

static int64_t grain_rows(int64_t D) { int64_t g = GRAIN / (D > 0 ? D : 1); return g > 0 ? g : 1; }

// Lane-blocked sum of a row: HP_LANES partial sums combined in a fixed tree order.
static inline float lanes_sum(const float acc[HP_LANES]) {
    float t[HP_LANES];
    memcpy(t, acc, sizeof t);
    for (int w = HP_LANES / 2; w > 0; w /= 2)
        for (int i = 0; i < w; i++) t[i] += t[i + w];
    return t[0];
}

// exp(x) for f32 without libm: Cephes-style range reduction + degree-6 polynomial (≤ 2 ulp on [-87, 88]; inputs
// outside are clamped). Plain arithmetic only, so loops calling it vectorise at any ISA width.
static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f;      // round(x / ln 2) via the 1.5·2^23 trick
    n = n - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// ── conversions ─────────────────────────────────────────────────────────────────────────────────────

static inline uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}

static inline uint16_t f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { f };
    uint16_t sign = (uint16_t)((v.u >> 16) & 0x8000);
    uint32_t a = v.u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0);
    if (a >= 0x47800000u) return sign | 0x7c00;
    if (a < 0x38800000u) {
        if (a < 0x33000000u) return sign;
        uint32_t e = a >> 23, mant = (a & 0x7fffff) | 0x800000, shift = 126 - e;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    uint32_t h = (a - 0x38000000u) >> 13, rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (e == 0) { float m = (float)mant * 0x1p-24f; return sign ? -m : m; }
    v.u = e == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((e + 112) << 23) | (mant << 13));
    return v.f;
}

// f32 <-> bf16 run on every activation a bf16 model feeds to a matmul, so they are parallel and vectorised:
// the rounding is written without branches (a select), which the compiler turns into blends. Same bits as
// f32_to_bf16 (the reference, and hp_f32_to_bf16_array in gemm.c).
typedef struct { const void *x; void *y; } cvt_job;
HP_CLONES static void f32_to_bf16_range(void *v, int64_t b, int64_t e) {
    const cvt_job *j = v;
    const uint32_t *restrict x = j->x;
    uint16_t *restrict y = j->y;
    for (int64_t i = b; i < e; i++) {
        uint32_t u = x[i];
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
        y[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
    }
}
HP_CLONES static void bf16_to_f32_range(void *v, int64_t b, int64_t e) {
    const cvt_job *j = v;
    const uint16_t *restrict x = j->x;
    uint32_t *restrict y = j->y;
    for (int64_t i = b; i < e; i++) y[i] = (uint32_t)x[i] << 16;
}
void hp_convert_f32_to_bf16(const float *x, uint16_t *y, int64_t n) {
    cvt_job j = { x, y };
    par_for(n, 4 * GRAIN, f32_to_bf16_range, &j);
}
void hp_convert_bf16_to_f32(const uint16_t *x, float *y, int64_t n) {
    cvt_job j = { x, y };
    par_for(n, 4 * GRAIN, bf16_to_f32_range, &j);
}
void hp_convert_f32_to_f16(const float *x, uint16_t *y, int64_t n) { for (int64_t i = 0; i < n; i++) y[i] = f32_to_f16(x[i]); }
void hp_convert_f16_to_f32(const uint16_t *x, float *y, int64_t n) { for (int64_t i = 0; i < n; i++) y[i] = f16_to_f32(x[i]); }

// ── elementwise ─────────────────────────────────────────────────────────────────────────────────────

// Broadcast add/mul: the range is walked in runs that stay inside one repetition of b (no per-element modulo).
HP_CLONES static void add_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const float *restrict a = j->a, *restrict bb = j->b;
    float *restrict y = j->y;
    for (int64_t i = b; i < e;) {
        int64_t off = i % j->nb, run = j->nb - off < e - i ? j->nb - off : e - i;
        for (int64_t t = 0; t < run; t++) y[i + t] = a[i + t] + bb[off + t];
        i += run;
    }
}
HP_CLONES static void mul_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const float *restrict a = j->a, *restrict bb = j->b;
    float *restrict y = j->y;
    for (int64_t i = b; i < e;) {
        int64_t off = i % j->nb, run = j->nb - off < e - i ? j->nb - off : e - i;
        for (int64_t t = 0; t < run; t++) y[i + t] = a[i + t] * bb[off + t];
        i += run;
    }
}
HP_CLONES static void scale_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    for (int64_t i = b; i < e; i++) j->y[i] = j->s * j->a[i];
}
HP_CLONES static void axpy_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    for (int64_t i = b; i < e; i++) j->y[i] += j->s * j->a[i];
}

// General broadcast: parallel over rows of the last axis; each row finds its b offset from its coordinates.
typedef struct { int op, rank; const float *a, *b; float *y; int64_t shape[8], bstride[8]; } bcast_job;

HP_CLONES static void bcast_range(void *v, int64_t r0, int64_t r1) {
    const bcast_job *j = v;
    const int64_t inner = j->shape[j->rank - 1], bs = j->bstride[j->rank - 1];
    for (int64_t r = r0; r < r1; r++) {
        int64_t rem = r, off = 0;
        for (int ax = j->rank - 2; ax >= 0; ax--) { off += (rem % j->shape[ax]) * j->bstride[ax]; rem /= j->shape[ax]; }
        const float *restrict a = j->a + r * inner, *restrict b = j->b + off;
        float *restrict y = j->y + r * inner;
        if (bs == 0) {
            const float bv = b[0];
            if (j->op == 0) for (int64_t i = 0; i < inner; i++) y[i] = a[i] + bv;
            else for (int64_t i = 0; i < inner; i++) y[i] = a[i] * bv;
        } else {
            if (j->op == 0) for (int64_t i = 0; i < inner; i++) y[i] = a[i] + b[i];
            else for (int64_t i = 0; i < inner; i++) y[i] = a[i] * b[i];
        }
    }
}

void hp_broadcast_binary_f32(int op, const float *a, const float *b, float *y, int rank, const int64_t *shape,
                             const int64_t *bstride) {
    if (rank <= 0 || rank > 8) return;
    bcast_job j = { .op = op, .rank = rank, .a = a, .b = b, .y = y };
    int64_t rows = 1;
    for (int i = 0; i < rank; i++) { j.shape[i] = shape[i]; j.bstride[i] = bstride[i]; if (i < rank - 1) rows *= shape[i]; }
    if (rows * shape[rank - 1] == 0) return;
    par_for(rows, grain_rows(shape[rank - 1]), bcast_range, &j);
}

void hp_add_f32(const float *a, const float *b, float *y, int64_t n, int64_t nb) {
    job j = { .a = a, .b = b, .y = y, .nb = nb }; par_for(n, GRAIN, add_range, &j);
}
void hp_mul_f32(const float *a, const float *b, float *y, int64_t n, int64_t nb) {
    job j = { .a = a, .b = b, .y = y, .nb = nb }; par_for(n, GRAIN, mul_range, &j);
}
void hp_scale_f32(const float *x, float s, float *y, int64_t n) {
    job j = { .a = x, .y = y, .s = s }; par_for(n, GRAIN, scale_range, &j);
}
void hp_axpy_f32(float *y, float alpha, const float *x, int64_t n) {
    job j = { .a = x, .y = y, .s = alpha }; par_for(n, GRAIN, axpy_range, &j);
}

#define GELU_C 0.7978845608028654f
#define GELU_A 0.044715f

// Fast forms: 0.5·(1 + tanh(u)) = sigmoid(2u), so gelu(x) = x / (1 + exp(−2u)) (no cancellation, no libm).
HP_CLONES static void gelu_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const float *restrict x = j->a;
    float *restrict y = j->y;
    for (int64_t i = b; i < e; i++) {
        float u = GELU_C * (x[i] + GELU_A * x[i] * x[i] * x[i]);
        y[i] = x[i] / (1.0f + fast_expf(-2.0f * u));
    }
}
// d/dx x·σ(2u) = σ + 2x·σ(1−σ)·u'(x), u' = c·(1 + 3a·x²).
HP_CLONES static void gelu_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const float *restrict dy = j->a, *restrict x = j->b;
    float *restrict dx = j->y;
    for (int64_t i = b; i < e; i++) {
        float xi = x[i], u = GELU_C * (xi + GELU_A * xi * xi * xi);
        float s = 1.0f / (1.0f + fast_expf(-2.0f * u));
        float d = s + 2.0f * xi * s * (1.0f - s) * GELU_C * (1.0f + 3.0f * GELU_A * xi * xi);
        dx[i] = dy[i] * d;
    }
}
HP_CLONES static void silu_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const float *restrict x = j->a;
    float *restrict y = j->y;
    for (int64_t i = b; i < e; i++) y[i] = x[i] / (1.0f + fast_expf(-x[i]));
}
HP_CLONES static void silu_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const float *restrict dy = j->a, *restrict x = j->b;
    float *restrict dx = j->y;
    for (int64_t i = b; i < e; i++) {
        float s = 1.0f / (1.0f + fast_expf(-x[i]));
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void hp_gelu_f32(const float *x, float *y, int64_t n) { job j = { .a = x, .y = y }; par_for(n, GRAIN, gelu_range, &j); }
void hp_gelu_backward_f32(const float *dy, const float *x, float *dx, int64_t n) {
    job j = { .a = dy, .b = x, .y = dx }; par_for(n, GRAIN, gelu_bwd_range, &j);
}
void hp_silu_f32(const float *x, float *y, int64_t n) { job j = { .a = x, .y = y }; par_for(n, GRAIN, silu_range, &j); }
void hp_silu_backward_f32(const float *dy, const float *x, float *dx, int64_t n) {
    job j = { .a = dy, .b = x, .y = dx }; par_for(n, GRAIN, silu_bwd_range, &j);
}

// Scalar twins: the textbook formulas with libm in f64.
void hp_gelu_f32_ref(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))));
    }
}
void hp_gelu_backward_f32_ref(const float *dy, const float *x, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], t = tanh(0.7978845608028654 * (v + 0.044715 * v * v * v));
        double d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
        dx[i] = (float)(dy[i] * d);
    }
}
void hp_silu_f32_ref(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
}
void hp_silu_backward_f32_ref(const float *dy, const float *x, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        dx[i] = (float)(dy[i] * s * (1.0 + x[i] * (1.0 - s)));
    }
}

// modulate / gate: parallel over the B·L rows.
HP_CLONES static void modulate_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    for (int64_t r = b; r < e; r++) {
        const float *restrict x = j->a + r * j->D, *restrict sh = j->b + (r / j->L) * j->D;
        const float *restrict sc = j->c + (r / j->L) * j->D;
        float *restrict y = j->y + r * j->D;
        for (int64_t d = 0; d < j->D; d++) y[d] = x[d] * (1.0f + sc[d]) + sh[d];
    }
}
void hp_modulate_f32(const float *x, const float *shift, const float *scale, float *y, int64_t B, int64_t L, int64_t D) {
    job j = { .a = x, .b = shift, .c = scale, .y = y, .L = L, .D = D };
    par_for(B * L, grain_rows(D), modulate_range, &j);
}

HP_CLONES static void gate_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    for (int64_t r = b; r < e; r++) {
        const float *restrict res = j->a + r * j->D, *restrict g = j->b + (r / j->L) * j->D;
        const float *restrict y = j->c + r * j->D;
        float *restrict o = j->y + r * j->D;
        for (int64_t d = 0; d < j->D; d++) o[d] = res[d] + g[d] * y[d];
    }
}
void hp_gate_residual_f32(const float *res, const float *gate, const float *y, float *out, int64_t B, int64_t L, int64_t D) {
    job j = { .a = res, .b = gate, .c = y, .y = out, .L = L, .D = D };
    par_for(B * L, grain_rows(D), gate_range, &j);
}

// Backwards with a sum over L: parallel over (b, column block) so each (b,d) sum runs in increasing l on one thread.
#define COLS 256
HP_CLONES static void modulate_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    int64_t nblk = (j->D + COLS - 1) / COLS;
    for (int64_t t = b; t < e; t++) {
        int64_t bi = t / nblk, d0 = (t % nblk) * COLS, d1 = d0 + COLS < j->D ? d0 + COLS : j->D;
        const float *sc = j->c + bi * j->D;
        float sh_acc[COLS], sc_acc[COLS];
        for (int64_t d = d0; d < d1; d++) { sh_acc[d - d0] = 0.0f; sc_acc[d - d0] = 0.0f; }
        for (int64_t l = 0; l < j->L; l++) {
            const float *restrict dy = j->a + (bi * j->L + l) * j->D, *restrict x = j->b + (bi * j->L + l) * j->D;
            float *restrict dx = j->y + (bi * j->L + l) * j->D;
            for (int64_t d = d0; d < d1; d++) {
                dx[d] = dy[d] * (1.0f + sc[d]);
                sh_acc[d - d0] += dy[d];
                sc_acc[d - d0] += dy[d] * x[d];
            }
        }
        for (int64_t d = d0; d < d1; d++) { j->z[bi * j->D + d] = sh_acc[d - d0]; j->w[bi * j->D + d] = sc_acc[d - d0]; }
    }
}
void hp_modulate_backward_f32(const float *dy, const float *x, const float *scale, float *dx, float *dshift,
                              float *dscale, int64_t B, int64_t L, int64_t D) {
    job j = { .a = dy, .b = x, .c = scale, .y = dx, .z = dshift, .w = dscale, .L = L, .D = D };
    par_for(B * ((D + COLS - 1) / COLS), 1, modulate_bwd_range, &j);
}

HP_CLONES static void gate_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    int64_t nblk = (j->D + COLS - 1) / COLS;
    for (int64_t t = b; t < e; t++) {
        int64_t bi = t / nblk, d0 = (t % nblk) * COLS, d1 = d0 + COLS < j->D ? d0 + COLS : j->D;
        const float *g = j->b + bi * j->D;
        float acc[COLS];
        for (int64_t d = d0; d < d1; d++) acc[d - d0] = 0.0f;
        for (int64_t l = 0; l < j->L; l++) {
            const float *restrict dout = j->a + (bi * j->L + l) * j->D, *restrict y = j->c + (bi * j->L + l) * j->D;
            float *restrict dy = j->y + (bi * j->L + l) * j->D;
            for (int64_t d = d0; d < d1; d++) { dy[d] = dout[d] * g[d]; acc[d - d0] += dout[d] * y[d]; }
        }
        for (int64_t d = d0; d < d1; d++) j->z[bi * j->D + d] = acc[d - d0];
    }
}
void hp_gate_residual_backward_f32(const float *dout, const float *gate, const float *y, float *dy, float *dgate,
                                   int64_t B, int64_t L, int64_t D) {
    job j = { .a = dout, .b = gate, .c = y, .y = dy, .z = dgate, .L = L, .D = D };
    par_for(B * ((D + COLS - 1) / COLS), 1, gate_bwd_range, &j);
}

HP_CLONES static void rope_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    int64_t half = j->D / 2;
    for (int64_t r = b; r < e; r++) {                       // r = outer·L + l
        const float *x = j->a + r * j->D, *c = j->b + (r % j->L) * half, *s = j->c + (r % j->L) * half;
        float *y = j->y + r * j->D;
        for (int64_t k = 0; k < half; k++) {
            float x0 = x[2 * k], x1 = x[2 * k + 1], cs = c[k], sn = j->flag ? -s[k] : s[k];
            y[2 * k] = x0 * cs - x1 * sn;
            y[2 * k + 1] = x0 * sn + x1 * cs;
        }
    }
}
void hp_rope_f32(const float *x, const float *cos, const float *sin, float *y, int64_t outer, int64_t L, int64_t D,
                 int inverse) {
    job j = { .a = x, .b = cos, .c = sin, .y = y, .L = L, .D = D, .flag = inverse };
    par_for(outer * L, grain_rows(D), rope_range, &j);
}

// Lane-blocked reduction: acc[d % HP_LANES] += EXPR for d in [0, D), written so the compiler vectorises it.
// The lane of each term is fixed, so the result is the same for every ISA width and thread count.
#define LANE_REDUCE(acc, D, EXPR) do {                                                           \
        int64_t d0_ = 0;                                                                        \
        for (; d0_ + HP_LANES <= (D); d0_ += HP_LANES)                                          \
            for (int l_ = 0; l_ < HP_LANES; l_++) { const int64_t d = d0_ + l_; acc[l_] += (EXPR); } \
        for (int l_ = 0; d0_ + l_ < (D); l_++) { const int64_t d = d0_ + l_; acc[l_] += (EXPR); } \
    } while (0)

// ── LayerNorm ───────────────────────────────────────────────────────────────────────────────────────

HP_CLONES static void layernorm_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t D = j->D;
    for (int64_t r = b; r < e; r++) {
        const float *restrict x = j->a + r * D;
        float *restrict y = j->y + r * D;
        float acc[HP_LANES] = { 0 };
        LANE_REDUCE(acc, D, x[d]);
        const float mean = lanes_sum(acc) / (float)D;
        float vacc[HP_LANES] = { 0 };
        LANE_REDUCE(vacc, D, (x[d] - mean) * (x[d] - mean));
        const float rstd = 1.0f / sqrtf(lanes_sum(vacc) / (float)D + j->eps);
        for (int64_t d = 0; d < D; d++) y[d] = (x[d] - mean) * rstd;
        j->z[r] = mean;
        j->w[r] = rstd;
    }
}
void hp_layernorm_f32(const float *x, float *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps) {
    job j = { .a = x, .y = y, .z = mean, .w = rstd, .D = D, .eps = eps };
    par_for(rows, grain_rows(D), layernorm_range, &j);
}
void hp_layernorm_f32_ref(const float *x, float *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D;
        double m = 0, var = 0;
        for (int64_t d = 0; d < D; d++) m += xr[d];
        m /= (double)D;
        for (int64_t d = 0; d < D; d++) var += (xr[d] - m) * (xr[d] - m);
        double rs = 1.0 / sqrt(var / (double)D + eps);
        for (int64_t d = 0; d < D; d++) y[r * D + d] = (float)((xr[d] - m) * rs);
        mean[r] = (float)m;
        rstd[r] = (float)rs;
    }
}

HP_CLONES static void layernorm_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t D = j->D;
    for (int64_t r = b; r < e; r++) {
        const float *restrict dy = j->a + r * D, *restrict x = j->b + r * D;
        float *restrict dx = j->y + r * D;
        const float mean = j->c[r], rstd = j->d[r];
        float g[HP_LANES] = { 0 }, gx[HP_LANES] = { 0 };
        LANE_REDUCE(g, D, dy[d]);
        LANE_REDUCE(gx, D, dy[d] * ((x[d] - mean) * rstd));
        const float gm = lanes_sum(g) / (float)D, gxm = lanes_sum(gx) / (float)D;
        for (int64_t d = 0; d < D; d++) dx[d] = (dy[d] - gm - (x[d] - mean) * rstd * gxm) * rstd;
    }
}
void hp_layernorm_backward_f32(const float *dy, const float *x, const float *mean, const float *rstd, float *dx,
                               int64_t rows, int64_t D) {
    job j = { .a = dy, .b = x, .c = mean, .d = rstd, .y = dx, .D = D };
    par_for(rows, grain_rows(D), layernorm_bwd_range, &j);
}
void hp_layernorm_backward_f32_ref(const float *dy, const float *x, const float *mean, const float *rstd, float *dx,
                                   int64_t rows, int64_t D) {
    for (int64_t r = 0; r < rows; r++) {
        double g = 0, gx = 0;
        for (int64_t d = 0; d < D; d++) {
            double xhat = ((double)x[r * D + d] - mean[r]) * rstd[r];
            g += dy[r * D + d];
            gx += dy[r * D + d] * xhat;
        }
        g /= (double)D; gx /= (double)D;
        for (int64_t d = 0; d < D; d++) {
            double xhat = ((double)x[r * D + d] - mean[r]) * rstd[r];
            dx[r * D + d] = (float)((dy[r * D + d] - g - xhat * gx) * rstd[r]);
        }
    }
}

// ── RMSNorm ─────────────────────────────────────────────────────────────────────────────────────────

HP_CLONES static void rmsnorm_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t D = j->D;
    const float *restrict w = j->b;
    for (int64_t r = b; r < e; r++) {
        const float *restrict x = j->a + r * D;
        float *restrict y = j->y + r * D;
        float acc[HP_LANES] = { 0 };
        LANE_REDUCE(acc, D, x[d] * x[d]);
        const float rstd = 1.0f / sqrtf(lanes_sum(acc) / (float)D + j->eps);
        if (w) for (int64_t d = 0; d < D; d++) y[d] = x[d] * rstd * w[d];
        else for (int64_t d = 0; d < D; d++) y[d] = x[d] * rstd;
        j->z[r] = rstd;
    }
}
void hp_rmsnorm_f32(const float *x, const float *w, float *y, float *rstd, int64_t rows, int64_t D, float eps) {
    job j = { .a = x, .b = w, .y = y, .z = rstd, .D = D, .eps = eps };
    par_for(rows, grain_rows(D), rmsnorm_range, &j);
}
void hp_rmsnorm_f32_ref(const float *x, const float *w, float *y, float *rstd, int64_t rows, int64_t D, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        double ms = 0;
        for (int64_t d = 0; d < D; d++) ms += (double)x[r * D + d] * x[r * D + d];
        double rs = 1.0 / sqrt(ms / (double)D + eps);
        for (int64_t d = 0; d < D; d++) y[r * D + d] = (float)(x[r * D + d] * rs * (w ? w[d] : 1.0f));
        rstd[r] = (float)rs;
    }
}

// dx rows in parallel; dw (a sum over rows) in a second pass parallel over columns, rows in increasing order.
HP_CLONES static void rmsnorm_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t D = j->D;
    const float *restrict w = j->c;
    for (int64_t r = b; r < e; r++) {
        const float *restrict dy = j->a + r * D, *restrict x = j->b + r * D;
        float *restrict dx = j->y + r * D;
        const float rstd = j->d[r];
        float acc[HP_LANES] = { 0 };
        if (w) LANE_REDUCE(acc, D, dy[d] * w[d] * x[d] * rstd);
        else LANE_REDUCE(acc, D, dy[d] * x[d] * rstd);
        const float gx = lanes_sum(acc) / (float)D;
        if (w) for (int64_t d = 0; d < D; d++) dx[d] = (dy[d] * w[d] - x[d] * rstd * gx) * rstd;
        else for (int64_t d = 0; d < D; d++) dx[d] = (dy[d] - x[d] * rstd * gx) * rstd;
    }
}
HP_CLONES static void rmsnorm_dw_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    float *restrict dw = j->z;
    for (int64_t d = b; d < e; d++) dw[d] = 0.0f;
    for (int64_t r = 0; r < j->rows; r++) {
        const float *restrict dy = j->a + r * j->D, *restrict x = j->b + r * j->D;
        const float rstd = j->d[r];
        for (int64_t d = b; d < e; d++) dw[d] += dy[d] * x[d] * rstd;
    }
}
void hp_rmsnorm_backward_f32(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                             int64_t rows, int64_t D) {
    job j = { .a = dy, .b = x, .c = w, .d = rstd, .y = dx, .z = dw, .rows = rows, .D = D };
    par_for(rows, grain_rows(D), rmsnorm_bwd_range, &j);
    if (dw) par_for(D, 64, rmsnorm_dw_range, &j);
}
void hp_rmsnorm_backward_f32_ref(const float *dy, const float *x, const float *w, const float *rstd, float *dx,
                                 float *dw, int64_t rows, int64_t D) {
    double *dwa = calloc((size_t)(D > 0 ? D : 1), sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        double gx = 0;
        for (int64_t d = 0; d < D; d++) gx += (double)dy[r * D + d] * (w ? w[d] : 1.0f) * x[r * D + d] * rstd[r];
        gx /= (double)D;
        for (int64_t d = 0; d < D; d++) {
            double xhat = (double)x[r * D + d] * rstd[r];
            dx[r * D + d] = (float)(((double)dy[r * D + d] * (w ? w[d] : 1.0f) - xhat * gx) * rstd[r]);
            dwa[d] += dy[r * D + d] * xhat;
        }
    }
    if (dw) for (int64_t d = 0; d < D; d++) dw[d] = (float)dwa[d];
    free(dwa);
}

// ── softmax ─────────────────────────────────────────────────────────────────────────────────────────

HP_CLONES static void softmax_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t D = j->D;
    for (int64_t r = b; r < e; r++) {
        const float *restrict x = j->a + r * D;
        float *restrict y = j->y + r * D;
        float mx[HP_LANES];
        for (int l = 0; l < HP_LANES; l++) mx[l] = -INFINITY;
        int64_t d0 = 0;
        for (; d0 + HP_LANES <= D; d0 += HP_LANES)
            for (int l = 0; l < HP_LANES; l++) mx[l] = x[d0 + l] > mx[l] ? x[d0 + l] : mx[l];
        for (int l = 0; d0 + l < D; l++) mx[l] = x[d0 + l] > mx[l] ? x[d0 + l] : mx[l];
        float m = mx[0];
        for (int l = 1; l < HP_LANES; l++) m = mx[l] > m ? mx[l] : m;
        for (int64_t d = 0; d < D; d++) y[d] = fast_expf(x[d] - m);
        float acc[HP_LANES] = { 0 };
        LANE_REDUCE(acc, D, y[d]);
        const float inv = 1.0f / lanes_sum(acc);
        for (int64_t d = 0; d < D; d++) y[d] *= inv;
    }
}
void hp_softmax_f32(const float *x, float *y, int64_t rows, int64_t D) {
    job j = { .a = x, .y = y, .D = D }; par_for(rows, grain_rows(D), softmax_range, &j);
}
void hp_softmax_f32_ref(const float *x, float *y, int64_t rows, int64_t D) {
    for (int64_t r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (int64_t d = 0; d < D; d++) m = x[r * D + d] > m ? x[r * D + d] : m;
        for (int64_t d = 0; d < D; d++) s += exp(x[r * D + d] - m);
        for (int64_t d = 0; d < D; d++) y[r * D + d] = (float)(exp(x[r * D + d] - m) / s);
    }
}
HP_CLONES static void softmax_bwd_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t D = j->D;
    for (int64_t r = b; r < e; r++) {
        const float *restrict dy = j->a + r * D, *restrict y = j->b + r * D;
        float *restrict dx = j->y + r * D;
        float acc[HP_LANES] = { 0 };
        LANE_REDUCE(acc, D, dy[d] * y[d]);
        const float dot = lanes_sum(acc);
        for (int64_t d = 0; d < D; d++) dx[d] = y[d] * (dy[d] - dot);
    }
}
void hp_softmax_backward_f32(const float *dy, const float *y, float *dx, int64_t rows, int64_t D) {
    job j = { .a = dy, .b = y, .y = dx, .D = D }; par_for(rows, grain_rows(D), softmax_bwd_range, &j);
}

// ── reductions ──────────────────────────────────────────────────────────────────────────────────────

static void sum_axis_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t R = j->rows, inner = j->D;
    if (inner == 1) {
        for (int64_t o = b; o < e; o++) {
            const float *x = j->a + o * R;
            double acc[8] = { 0 };
            for (int64_t r = 0; r < R; r++) acc[r % 8] += x[r];
            j->y[o] = (float)(((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])));
        }
        return;
    }
    double *acc = malloc(sizeof(double) * (size_t)inner);
    for (int64_t o = b; o < e; o++) {
        for (int64_t i = 0; i < inner; i++) acc[i] = 0;
        for (int64_t r = 0; r < R; r++) {
            const float *x = j->a + (o * R + r) * inner;
            for (int64_t i = 0; i < inner; i++) acc[i] += x[i];
        }
        for (int64_t i = 0; i < inner; i++) j->y[o * inner + i] = (float)acc[i];
    }
    free(acc);
}
// Column-parallel variant for outer == 1 with a wide inner axis (bias gradients: sum over rows).
static void sum_cols_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    const int64_t R = j->rows, inner = j->D;
    double acc[COLS];
    for (int64_t c0 = b; c0 < e; c0 += COLS) {
        int64_t c1 = c0 + COLS < e ? c0 + COLS : e;
        for (int64_t i = c0; i < c1; i++) acc[i - c0] = 0;
        for (int64_t r = 0; r < R; r++) {
            const float *x = j->a + r * inner;
            for (int64_t i = c0; i < c1; i++) acc[i - c0] += x[i];
        }
        for (int64_t i = c0; i < c1; i++) j->y[i] = (float)acc[i - c0];
    }
}
void hp_sum_axis_f32(const float *x, float *y, int64_t outer, int64_t R, int64_t inner) {
    job j = { .a = x, .y = y, .rows = R, .D = inner };
    if (outer == 1 && inner > 1) par_for(inner, COLS, sum_cols_range, &j);
    else par_for(outer, 1 + GRAIN / (R * inner + 1), sum_axis_range, &j);
}

#define BLOCK 4096
HP_CLONES static void sumsq_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    double *partial = (double *)(void *)j->w;
    for (int64_t blk = b; blk < e; blk++) {
        int64_t i0 = blk * BLOCK, i1 = i0 + BLOCK < j->n ? i0 + BLOCK : j->n;
        double acc[8] = { 0 };
        if (j->b) for (int64_t i = i0; i < i1; i++) { double d = (double)j->a[i] - j->b[i]; acc[i % 8] += d * d; }
        else for (int64_t i = i0; i < i1; i++) acc[i % 8] += (double)j->a[i] * j->a[i];
        partial[blk] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    }
}
static double blocked_sumsq(const float *a, const float *b, int64_t n) {
    if (n <= 0) return 0;
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
    double *partial = malloc(sizeof(double) * (size_t)blocks);
    job j = { .a = a, .b = b, .w = (float *)(void *)partial, .n = n };
    par_for(blocks, 4, sumsq_range, &j);
    double s = 0;
    for (int64_t i = 0; i < blocks; i++) s += partial[i];
    free(partial);
    return s;
}
double hp_sum_squares_f32(const float *x, int64_t n) { return blocked_sumsq(x, NULL, n); }
double hp_sq_diff_sum_f32(const float *a, const float *b, int64_t n) { return blocked_sumsq(a, b, n); }

HP_CLONES static void scaled_diff_range(void *v, int64_t b, int64_t e) {
    const job *j = v;
    for (int64_t i = b; i < e; i++) j->y[i] = j->s * (j->a[i] - j->b[i]);
}
void hp_scaled_diff_f32(const float *a, const float *b, float c, float *da, int64_t n) {
    job j = { .a = a, .b = b, .s = c, .y = da }; par_for(n, GRAIN, scaled_diff_range, &j);
}

// ── AdamW ───────────────────────────────────────────────────────────────────────────────────────────

typedef struct { float *p; const float *g; float *m, *v; float lr, b1, b2, eps, wd, bc1, sbc2; } adam_job;

HP_CLONES static void adamw_range(void *vj, int64_t b, int64_t e) {
    const adam_job *j = vj;
    const float decay = 1.0f - j->lr * j->wd, step = j->lr / j->bc1;
    for (int64_t i = b; i < e; i++) {
        float g = j->g[i];
        float m = j->b1 * j->m[i] + (1.0f - j->b1) * g;
        float v = j->b2 * j->v[i] + (1.0f - j->b2) * g * g;
        j->m[i] = m;
        j->v[i] = v;
        j->p[i] = j->p[i] * decay - step * m / (sqrtf(v) / j->sbc2 + j->eps);
    }
}
void hp_adamw_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                  float wd, float bc1, float bc2) {
    adam_job j = { p, g, m, v, lr, b1, b2, eps, wd, bc1, sqrtf(bc2) };
    par_for(n, GRAIN, adamw_range, &j);
}
void hp_adamw_f32_ref(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                      float wd, float bc1, float bc2) {
    for (int64_t i = 0; i < n; i++) {
        double pi = p[i] * (1.0 - (double)lr * wd);
        double mi = (double)b1 * m[i] + (1.0 - b1) * g[i];
        double vi = (double)b2 * v[i] + (1.0 - b2) * (double)g[i] * g[i];
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(pi - (double)lr / bc1 * mi / (sqrt(vi) / sqrt((double)bc2) + eps));
    }
}

// ── layout ──────────────────────────────────────────────────────────────────────────────────────────

// Parallel over output rows (the last output axis); each row finds its source offset from its coordinates.
typedef struct { const char *x; char *y; int64_t es, inner, sstep; int rank; int64_t out_shape[8], src_stride[8]; } permute_job;

static void permute_range(void *v, int64_t r0, int64_t r1) {
    const permute_job *j = v;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rem = r, off = 0;
        for (int ax = j->rank - 2; ax >= 0; ax--) { off += (rem % j->out_shape[ax]) * j->src_stride[ax]; rem /= j->out_shape[ax]; }
        const int64_t o = r * j->inner;
        if (j->es == 4) {
            const float *restrict src = (const float *)(const void *)j->x + off;
            float *restrict dst = (float *)(void *)j->y + o;
            for (int64_t t = 0; t < j->inner; t++) dst[t] = src[t * j->sstep];
        } else if (j->es == 2) {
            const uint16_t *restrict src = (const uint16_t *)(const void *)j->x + off;
            uint16_t *restrict dst = (uint16_t *)(void *)j->y + o;
            for (int64_t t = 0; t < j->inner; t++) dst[t] = src[t * j->sstep];
        } else {
            for (int64_t t = 0; t < j->inner; t++) memcpy(j->y + (o + t) * j->es, j->x + (off + t * j->sstep) * j->es, (size_t)j->es);
        }
    }
}

void hp_permute(const void *x, void *y, int64_t es, int rank, const int64_t *shape, const int64_t *perm) {
    if (rank <= 0 || rank > 8) return;
    permute_job j = { .x = x, .y = y, .es = es, .rank = rank };
    int64_t in_stride[8], n = 1;
    in_stride[rank - 1] = 1;
    for (int i = rank - 2; i >= 0; i--) in_stride[i] = in_stride[i + 1] * shape[i + 1];
    for (int i = 0; i < rank; i++) { j.out_shape[i] = shape[perm[i]]; j.src_stride[i] = in_stride[perm[i]]; n *= j.out_shape[i]; }
    if (n == 0) return;
    j.inner = j.out_shape[rank - 1];
    j.sstep = j.src_stride[rank - 1];
    par_for(n / j.inner, grain_rows(j.inner), permute_range, &j);
}

static inline int64_t patch_index(int order, int64_t c, int64_t py, int64_t px, int64_t C, int64_t p) {
    return order == 0 ? (c * p + py) * p + px : (py * p + px) * C + c;
}

void hp_patchify_f32(const float *x, float *y, int64_t B, int64_t C, int64_t h, int64_t w, int64_t p, int order) {
    const int64_t H = h * p, W = w * p, pv = C * p * p;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t yy = 0; yy < H; yy++)
                for (int64_t xx = 0; xx < W; xx++)
                    y[(b * h * w + (yy / p) * w + xx / p) * pv + patch_index(order, c, yy % p, xx % p, C, p)] =
                        x[((b * C + c) * H + yy) * W + xx];
}

void hp_unpatchify_f32(const float *x, float *y, int64_t B, int64_t C, int64_t h, int64_t w, int64_t p, int order) {
    const int64_t H = h * p, W = w * p, pv = C * p * p;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t yy = 0; yy < H; yy++)
                for (int64_t xx = 0; xx < W; xx++)
                    y[((b * C + c) * H + yy) * W + xx] =
                        x[(b * h * w + (yy / p) * w + xx / p) * pv + patch_index(order, c, yy % p, xx % p, C, p)];
}
