// gemm_fallback.c — TEMPORARY plain-C implementations of hp_gemm_api.h (thread pool, CPU features, GEMM, W4A16,
// attention) so the CPU backend runs before the fast-kernel branch merges. Delete this file at merge: the fast
// kernels provide the same symbols. Correct and deterministic (fixed reduction order per output), not fast.
#include "hp_gemm_api.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ── threads: a fixed pool created once; one parallel_for at a time (others wait) ─────────────────────────────

#define HP_MAX_THREADS 64

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pool_call = PTHREAD_MUTEX_INITIALIZER;   // serialises callers
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_start = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static int pool_workers;               // threads besides the caller
static int pool_active = 1;            // threads kernels use now (caller included)
static uint64_t pool_generation;
static int pool_pending;
static hp_range_fn job_fn;
static void *job_ctx;
static int64_t job_n, job_parts;
static __thread int in_parallel;

static void run_part(int64_t part) {
    int64_t b = job_n * part / job_parts, e = job_n * (part + 1) / job_parts;
    if (b < e) job_fn(job_ctx, b, e);
}

static void *worker_main(void *arg) {
    int64_t id = (int64_t)(intptr_t)arg;       // 1 ... pool_workers
    uint64_t seen = 0;
    in_parallel = 1;
    for (;;) {
        pthread_mutex_lock(&pool_mu);
        while (pool_generation == seen) pthread_cond_wait(&pool_start, &pool_mu);
        seen = pool_generation;
        int64_t parts = job_parts;
        pthread_mutex_unlock(&pool_mu);
        if (id < parts) run_part(id);
        pthread_mutex_lock(&pool_mu);
        if (--pool_pending == 0) pthread_cond_signal(&pool_done);
        pthread_mutex_unlock(&pool_mu);
    }
    return NULL;
}

static void pool_create(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (cores > HP_MAX_THREADS) cores = HP_MAX_THREADS;
    pool_active = (int)cores;
    for (long i = 1; i < cores; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        pthread_detach(t);
        pool_workers++;
    }
    if (pool_active > pool_workers + 1) pool_active = pool_workers + 1;
}

void hp_threads_init(int n) {
    pthread_once(&pool_once, pool_create);
    pthread_mutex_lock(&pool_call);
    pool_active = (n <= 0 || n > pool_workers + 1) ? pool_workers + 1 : n;
    pthread_mutex_unlock(&pool_call);
}

int hp_threads_count(void) {
    pthread_once(&pool_once, pool_create);
    return pool_active;
}

void hp_parallel_for(int64_t n, int64_t grain, hp_range_fn fn, void *ctx) {
    if (n <= 0) return;
    pthread_once(&pool_once, pool_create);
    if (grain < 1) grain = 1;
    int64_t parts = n / grain;
    if (in_parallel || parts <= 1 || pool_active <= 1) { fn(ctx, 0, n); return; }
    pthread_mutex_lock(&pool_call);
    if (parts > pool_active) parts = pool_active;
    pthread_mutex_lock(&pool_mu);
    job_fn = fn; job_ctx = ctx; job_n = n; job_parts = parts;
    pool_pending = pool_workers;
    pool_generation++;
    pthread_cond_broadcast(&pool_start);
    pthread_mutex_unlock(&pool_mu);
    in_parallel = 1;
    run_part(0);
    in_parallel = 0;
    pthread_mutex_lock(&pool_mu);
    while (pool_pending > 0) pthread_cond_wait(&pool_done, &pool_mu);
    pthread_mutex_unlock(&pool_mu);
    pthread_mutex_unlock(&pool_call);
}

// ── CPU features (TEMPORARY cpuid reader; the kernels branch's dispatcher replaces it) ──────────────────────

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static char features[256];
static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static void add_feature(const char *name) {
    if (features[0]) strncat(features, " ", sizeof features - strlen(features) - 1);
    strncat(features, name, sizeof features - strlen(features) - 1);
}
static void read_features(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1;
    unsigned long long xcr0 = 0;
    if (osxsave) { unsigned lo, hi; __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0)); xcr0 = ((unsigned long long)hi << 32) | lo; }
    int ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xe6) == 0xe6;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    add_feature("sse2");
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        unsigned b1, c1, d1; __cpuid_count(7, 1, a71, b1, c1, d1);
    }
    if (ymm && ((b7 >> 5) & 1)) add_feature("avx2");
    if (ymm && fma) add_feature("fma");
    if (ymm && f16c) add_feature("f16c");
    if (zmm && ((b7 >> 16) & 1)) add_feature("avx512f");
    if (zmm && ((b7 >> 30) & 1)) add_feature("avx512bw");
    if (zmm && ((c7 >> 11) & 1)) add_feature("avx512vnni");
    if (zmm && ((a71 >> 5) & 1)) add_feature("avx512bf16");
    if ((d7 >> 22) & 1) add_feature("amx-bf16");
    if ((d7 >> 24) & 1) add_feature("amx-tile");
}
const char *hp_cpu_features_string(void) { pthread_once(&features_once, read_features); return features; }
#elif defined(__aarch64__)
const char *hp_cpu_features_string(void) { return "neon"; }
#else
const char *hp_cpu_features_string(void) { return ""; }
#endif

// ── helpers ─────────────────────────────────────────────────────────────────────────────────────────────

static inline float bf16_to_f32(uint16_t h) { union { uint32_t u; float f; } v = { (uint32_t)h << 16 }; return v.f; }

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) { float m = (float)mant * 0x1p-24f; return sign ? -m : m; }
    if (exp == 31) v.u = sign | 0x7f800000u | (mant << 13);
    else v.u = sign | ((exp + 112) << 23) | (mant << 13);
    return v.f;
}

static inline float activate(float v, int act) {
    switch (act) {
    case HP_ACT_GELU_TANH: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case HP_ACT_SILU: return v / (1.0f + expf(-v));
    default: return v;
    }
}

// ── GEMM: operands are first copied to row-major (M,K) and (K,N) f32, then C rows are computed
//    independently: c[i,:] = Σ_k a[i,k]·b[k,:] in increasing k (deterministic). ─────────────────────────

typedef struct {
    int64_t M, N, K;
    const float *A, *B;     // packed (M,K), (K,N)
    float *C; int64_t ldc;
    const float *bias; int act, accumulate;
} gemm_job;

static void gemm_rows(void *vctx, int64_t begin, int64_t end) {
    const gemm_job *j = vctx;
    float *acc = malloc(sizeof(float) * (size_t)(j->N > 0 ? j->N : 1));
    for (int64_t i = begin; i < end; i++) {
        for (int64_t n = 0; n < j->N; n++) acc[n] = 0.0f;
        const float *a = j->A + i * j->K;
        for (int64_t k = 0; k < j->K; k++) {
            const float av = a[k], *b = j->B + k * j->N;
            for (int64_t n = 0; n < j->N; n++) acc[n] += av * b[n];
        }
        float *c = j->C + i * j->ldc;
        if (j->accumulate) for (int64_t n = 0; n < j->N; n++) c[n] += acc[n];
        else for (int64_t n = 0; n < j->N; n++) c[n] = activate(acc[n] + (j->bias ? j->bias[n] : 0.0f), j->act);
    }
    free(acc);
}

// Loads op(X) as a row-major (R, S) f32 matrix; X is f32 or bf16 with row stride ld, transposed when trans.
static void pack(float *dst, const void *src, int bf16, int64_t R, int64_t S, int64_t ld, int trans) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < S; s++) {
            int64_t idx = trans ? s * ld + r : r * ld + s;
            dst[r * S + s] = bf16 ? bf16_to_f32(((const uint16_t *)src)[idx]) : ((const float *)src)[idx];
        }
}

static void gemm_any(int bf16, int64_t batch, int64_t M, int64_t N, int64_t K,
                     const void *A, int64_t lda, int64_t strideA, int transA,
                     const void *B, int64_t ldb, int64_t strideB, int transB,
                     float *C, int64_t ldc, int64_t strideC, const float *bias, int act, int accumulate) {
    size_t es = bf16 ? 2 : 4;
    float *pa = malloc(sizeof(float) * (size_t)(M * K + 1)), *pb = malloc(sizeof(float) * (size_t)(K * N + 1));
    for (int64_t p = 0; p < batch; p++) {
        pack(pa, (const char *)A + (size_t)(p * strideA) * es, bf16, M, K, lda, transA);
        if (p == 0 || strideB != 0) pack(pb, (const char *)B + (size_t)(p * strideB) * es, bf16, K, N, ldb, transB);
        gemm_job j = { M, N, K, pa, pb, C + p * strideC, ldc, bias, act, accumulate };
        hp_parallel_for(M, 4, gemm_rows, &j);
    }
    free(pa);
    free(pb);
}

void hp_gemm_f32(int64_t batch, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, int64_t strideA, int transA,
                 const float *B, int64_t ldb, int64_t strideB, int transB,
                 float *C, int64_t ldc, int64_t strideC, const float *bias, int act, int accumulate) {
    gemm_any(0, batch, M, N, K, A, lda, strideA, transA, B, ldb, strideB, transB, C, ldc, strideC, bias, act, accumulate);
}

void hp_gemm_bf16(int64_t batch, int64_t M, int64_t N, int64_t K,
                  const uint16_t *A, int64_t lda, int64_t strideA, int transA,
                  const uint16_t *B, int64_t ldb, int64_t strideB, int transB,
                  float *C, int64_t ldc, int64_t strideC, const float *bias, int act, int accumulate) {
    gemm_any(1, batch, M, N, K, A, lda, strideA, transA, B, ldb, strideB, transB, C, ldc, strideC, bias, act, accumulate);
}

// ── W4A16: parallel over output columns; each thread dequantises one weight row (K values) at a time. ────

typedef struct {
    int64_t M, N, K, blocksize;
    const float *X;              // (M,K) f32 (converted once)
    const uint8_t *packed; const float *absmax, *code;
    float *Y; const float *bias; int act;
} w4_job;

static void w4_cols(void *vctx, int64_t begin, int64_t end) {
    const w4_job *j = vctx;
    float *w = malloc(sizeof(float) * (size_t)(j->K > 0 ? j->K : 1));
    for (int64_t n = begin; n < end; n++) {
        for (int64_t k = 0; k < j->K; k++) {
            int64_t i = n * j->K + k;
            uint8_t byte = j->packed[i >> 1];
            int q = (i & 1) ? (byte & 15) : (byte >> 4);
            w[k] = j->code[q] * j->absmax[i / j->blocksize];
        }
        for (int64_t m = 0; m < j->M; m++) {
            const float *x = j->X + m * j->K;
            float acc = 0.0f;
            for (int64_t k = 0; k < j->K; k++) acc += x[k] * w[k];
            j->Y[m * j->N + n] = activate(acc + (j->bias ? j->bias[n] : 0.0f), j->act);
        }
    }
    free(w);
}

void hp_gemm_w4a16(int64_t M, int64_t N, int64_t K, const void *X, int x_dtype,
                   const uint8_t *packed, const float *absmax, int64_t blocksize, const float codebook[16],
                   float *Y, const float *bias, int act) {
    float *x = malloc(sizeof(float) * (size_t)(M * K + 1));
    for (int64_t i = 0; i < M * K; i++)
        x[i] = x_dtype == HP_DT_BF16 ? bf16_to_f32(((const uint16_t *)X)[i])
             : x_dtype == HP_DT_F16 ? f16_to_f32(((const uint16_t *)X)[i]) : ((const float *)X)[i];
    w4_job j = { M, N, K, blocksize, x, packed, absmax, codebook, Y, bias, act };
    hp_parallel_for(N, 8, w4_cols, &j);
    free(x);
}

// ── attention forward: one query row at a time (scores buffer of Lk floats per thread) ───────────────────

typedef struct {
    int64_t H, Lq, Lk, D;
    const float *Q, *K, *V; float scale;
    float *O, *LSE;
} attn_job;

static void attn_rows(void *vctx, int64_t begin, int64_t end) {
    const attn_job *j = vctx;
    float *s = malloc(sizeof(float) * (size_t)(j->Lk > 0 ? j->Lk : 1));
    for (int64_t row = begin; row < end; row++) {            // row = (b·H + h)·Lq + i
        int64_t bh = row / j->Lq;
        const float *q = j->Q + row * j->D, *K = j->K + bh * j->Lk * j->D, *V = j->V + bh * j->Lk * j->D;
        float m = -INFINITY;
        for (int64_t t = 0; t < j->Lk; t++) {
            float dot = 0.0f;
            for (int64_t c = 0; c < j->D; c++) dot += q[c] * K[t * j->D + c];
            s[t] = dot * j->scale;
            if (s[t] > m) m = s[t];
        }
        float l = 0.0f;
        for (int64_t t = 0; t < j->Lk; t++) { s[t] = expf(s[t] - m); l += s[t]; }
        float *o = j->O + row * j->D;
        for (int64_t c = 0; c < j->D; c++) o[c] = 0.0f;
        for (int64_t t = 0; t < j->Lk; t++) {
            float p = s[t] / l;
            for (int64_t c = 0; c < j->D; c++) o[c] += p * V[t * j->D + c];
        }
        j->LSE[row] = m + logf(l);
    }
    free(s);
}

static const float *as_f32(const void *x, int dtype, int64_t n, float **owned) {
    *owned = NULL;
    if (dtype == HP_DT_F32) return x;
    float *y = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) y[i] = bf16_to_f32(((const uint16_t *)x)[i]);
    *owned = y;
    return y;
}

void hp_attention_fwd(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D,
                      const void *Q, const void *K, const void *V, int dtype, float scale, float *O, float *LSE) {
    float *oq, *ok, *ov;
    const float *q = as_f32(Q, dtype, B * H * Lq * D, &oq), *k = as_f32(K, dtype, B * H * Lk * D, &ok);
    const float *v = as_f32(V, dtype, B * H * Lk * D, &ov);
    attn_job j = { H, Lq, Lk, D, q, k, v, scale, O, LSE };
    hp_parallel_for(B * H * Lq, 4, attn_rows, &j);
    free(oq); free(ok); free(ov);
}

// ── attention backward: one (b,h) per task; dK/dV accumulate over queries in increasing order ───────────

typedef struct {
    int64_t Lq, Lk, D;
    const float *dO, *Q, *K, *V, *O, *LSE; float scale;
    float *dQ, *dK, *dV;
} attn_bwd_job;

static void attn_bwd_heads(void *vctx, int64_t begin, int64_t end) {
    const attn_bwd_job *j = vctx;
    int64_t Lq = j->Lq, Lk = j->Lk, D = j->D;
    for (int64_t bh = begin; bh < end; bh++) {
        const float *K = j->K + bh * Lk * D, *V = j->V + bh * Lk * D;
        float *dK = j->dK + bh * Lk * D, *dV = j->dV + bh * Lk * D;
        for (int64_t t = 0; t < Lk * D; t++) { dK[t] = 0.0f; dV[t] = 0.0f; }
        for (int64_t i = 0; i < Lq; i++) {
            int64_t row = bh * Lq + i;
            const float *q = j->Q + row * D, *dO = j->dO + row * D, *o = j->O + row * D;
            float *dq = j->dQ + row * D;
            float rowdot = 0.0f;
            for (int64_t c = 0; c < D; c++) { rowdot += dO[c] * o[c]; dq[c] = 0.0f; }
            for (int64_t t = 0; t < Lk; t++) {
                float dot = 0.0f, dp = 0.0f;
                for (int64_t c = 0; c < D; c++) { dot += q[c] * K[t * D + c]; dp += dO[c] * V[t * D + c]; }
                float p = expf(dot * j->scale - j->LSE[row]);
                float ds = p * (dp - rowdot) * j->scale;
                for (int64_t c = 0; c < D; c++) {
                    dV[t * D + c] += p * dO[c];
                    dq[c] += ds * K[t * D + c];
                    dK[t * D + c] += ds * q[c];
                }
            }
        }
    }
}

void hp_attention_bwd(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D,
                      const float *dO, const float *Q, const float *K, const float *V,
                      const float *O, const float *LSE, float scale, float *dQ, float *dK, float *dV) {
    attn_bwd_job j = { Lq, Lk, D, dO, Q, K, V, O, LSE, scale, dQ, dK, dV };
    hp_parallel_for(B * H, 1, attn_bwd_heads, &j);
}
