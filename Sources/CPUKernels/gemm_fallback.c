// gemm_fallback.c — TEMPORARY plain-C implementations of hp_gemm_api.h (thread pool, CPU features, GEMM, W4A16,
// attention) so the CPU backend runs before the fast-kernel branch merges. Delete this file at merge: that branch
// provides the same symbols (cpu_kernels.h). Correct and deterministic (fixed reduction order per output), slow.
#include "hp_gemm_api.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ── threads: a fixed pool created once; tasks split statically over threads; a busy pool runs callers serially ──

#define HP_MAX_THREADS 64

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pool_call = PTHREAD_MUTEX_INITIALIZER;   // held by the caller that owns the pool
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_start = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static int pool_workers;               // threads besides the caller
static int pool_active = 1;            // threads kernels use now (caller included)
static uint64_t pool_generation;
static int pool_pending;
static hp_task_fn job_fn;
static void *job_ctx;
static long job_n;
static int job_parts;
static __thread int in_parallel;

static void run_part(int part) {
    long b = job_n * part / job_parts, e = job_n * (part + 1) / job_parts;
    for (long t = b; t < e; t++) job_fn(job_ctx, t, part);
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;       // 1 ... pool_workers
    uint64_t seen = 0;
    in_parallel = 1;
    for (;;) {
        pthread_mutex_lock(&pool_mu);
        while (pool_generation == seen) pthread_cond_wait(&pool_start, &pool_mu);
        seen = pool_generation;
        int parts = job_parts;
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
    for (long i = 1; i < cores; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        pthread_detach(t);
        pool_workers++;
    }
    pool_active = pool_workers + 1;
}

int hp_threads_init(int n) {
    pthread_once(&pool_once, pool_create);
    pthread_mutex_lock(&pool_call);
    pool_active = (n <= 0 || n > pool_workers + 1) ? pool_workers + 1 : n;
    pthread_mutex_unlock(&pool_call);
    return pool_active;
}

int hp_threads_count(void) {
    pthread_once(&pool_once, pool_create);
    return pool_active;
}

void hp_parallel_for(long n_tasks, hp_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    pthread_once(&pool_once, pool_create);
    if (n_tasks == 1 || pool_active <= 1 || in_parallel || pthread_mutex_trylock(&pool_call) != 0) {
        for (long t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    int parts = n_tasks < pool_active ? (int)n_tasks : pool_active;
    pthread_mutex_lock(&pool_mu);
    job_fn = fn; job_ctx = ctx; job_n = n_tasks; job_parts = parts;
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

// ── CPU features (TEMPORARY cpuid reader, same names as the kernels branch; its dispatcher replaces it) ──────────────────────

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
    if (zmm && ((b7 >> 17) & 1)) add_feature("avx512dq");
    if (zmm && ((b7 >> 31) & 1)) add_feature("avx512vl");
    if (zmm && ((c7 >> 11) & 1)) add_feature("avx512_vnni");
    if (zmm && ((a71 >> 5) & 1)) add_feature("avx512_bf16");
    if ((d7 >> 22) & 1) add_feature("amx_bf16");
    if ((d7 >> 24) & 1) add_feature("amx_tile");
}
const char *hp_cpu_features_string(void) { pthread_once(&features_once, read_features); return features; }
#elif defined(__aarch64__)
const char *hp_cpu_features_string(void) { return "neon"; }
#else
const char *hp_cpu_features_string(void) { return ""; }
#endif

// ── helpers ─────────────────────────────────────────────────────────────────────────────────────────────

static inline float bf16_to_f32(uint16_t h) { union { uint32_t u; float f; } v = { (uint32_t)h << 16 }; return v.f; }

static inline uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}

static inline float activate(float v, hp_act act) {
    switch (act) {
    case HP_ACT_GELU_TANH: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case HP_ACT_SILU: return v / (1.0f + expf(-v));
    default: return v;
    }
}

static inline float load(const void *p, hp_dtype dt, long i) {
    return dt == HP_BF16 ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void store(void *p, hp_dtype dt, long i, float v) {
    if (dt == HP_BF16) ((uint16_t *)p)[i] = f32_to_bf16(v); else ((float *)p)[i] = v;
}

// ── GEMM: op(A), op(B) are first copied to row-major (M,K), (K,N) f32; each C row is then computed on one
//    thread as Σ_k a[i,k]·b[k,:] in increasing k (deterministic). ───────────────────────────────────────────

typedef struct {
    long M, N, K;
    const float *A, *B;          // packed (M,K), (K,N)
    void *C; hp_dtype c_dtype; long ldc;
    float alpha, beta;
    const float *bias; hp_act act;
} gemm_job;

#define GEMM_ROWS 4

static void gemm_rows(void *vctx, long task, int thread) {
    (void)thread;
    const gemm_job *j = vctx;
    long begin = task * GEMM_ROWS, end = begin + GEMM_ROWS < j->M ? begin + GEMM_ROWS : j->M;
    float *acc = malloc(sizeof(float) * (size_t)(j->N > 0 ? j->N : 1));
    for (long i = begin; i < end; i++) {
        for (long n = 0; n < j->N; n++) acc[n] = 0.0f;
        const float *a = j->A + i * j->K;
        for (long k = 0; k < j->K; k++) {
            const float av = a[k], *b = j->B + k * j->N;
            for (long n = 0; n < j->N; n++) acc[n] += av * b[n];
        }
        for (long n = 0; n < j->N; n++) {
            float v = j->alpha * acc[n];
            if (j->beta != 0.0f) v += j->beta * load(j->C, j->c_dtype, i * j->ldc + n);
            if (j->bias) v += j->bias[n];
            store(j->C, j->c_dtype, i * j->ldc + n, activate(v, j->act));
        }
    }
    free(acc);
}

// Loads op(X) as a row-major (R, S) f32 matrix; X (f32 or bf16) has row stride ld, transposed when trans.
static void pack(float *dst, const void *src, hp_dtype dt, long R, long S, long ld, int trans) {
    for (long r = 0; r < R; r++)
        for (long s = 0; s < S; s++) dst[r * S + s] = load(src, dt, trans ? s * ld + r : r * ld + s);
}

static int gemm_any(hp_dtype in_dt, int trans_a, int trans_b, long M, long N, long K, float alpha,
                    const void *A, long lda, long stride_a, const void *B, long ldb, long stride_b,
                    float beta, void *C, hp_dtype c_dtype, long ldc, long stride_c,
                    const float *bias, hp_act act, long batch) {
    if (M < 0 || N < 0 || K < 0 || batch < 0) return HP_EINVAL;
    size_t es = in_dt == HP_BF16 ? 2 : 4, ces = c_dtype == HP_BF16 ? 2 : 4;
    float *pa = malloc(sizeof(float) * (size_t)(M * K + 1)), *pb = malloc(sizeof(float) * (size_t)(K * N + 1));
    if (!pa || !pb) { free(pa); free(pb); return HP_ENOMEM; }
    for (long p = 0; p < batch; p++) {
        pack(pa, (const char *)A + (size_t)(p * stride_a) * es, in_dt, M, K, lda, trans_a);
        if (p == 0 || stride_b != 0) pack(pb, (const char *)B + (size_t)(p * stride_b) * es, in_dt, K, N, ldb, trans_b);
        gemm_job j = { M, N, K, pa, pb, (char *)C + (size_t)(p * stride_c) * ces, c_dtype, ldc, alpha, beta, bias, act };
        hp_parallel_for((M + GEMM_ROWS - 1) / GEMM_ROWS, gemm_rows, &j);
    }
    free(pa);
    free(pb);
    return HP_OK;
}

int hp_gemm_f32_batched(int trans_a, int trans_b, long M, long N, long K, float alpha,
                        const float *A, long lda, long stride_a, const float *B, long ldb, long stride_b,
                        float beta, float *C, long ldc, long stride_c, const float *bias, hp_act act, long batch) {
    return gemm_any(HP_F32, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, HP_F32,
                    ldc, stride_c, bias, act, batch);
}

int hp_gemm_bf16_batched(int trans_a, int trans_b, long M, long N, long K, float alpha,
                         const uint16_t *A, long lda, long stride_a, const uint16_t *B, long ldb, long stride_b,
                         float beta, void *C, hp_dtype c_dtype, long ldc, long stride_c,
                         const float *bias, hp_act act, long batch) {
    return gemm_any(HP_BF16, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, c_dtype,
                    ldc, stride_c, bias, act, batch);
}

// ── W4A16: one task per 8 output columns; a thread dequantises one weight row (K values) at a time. ─────────

typedef struct {
    long M;
    const void *X; hp_dtype x_dtype; long ldx;
    const hp_q4_weight *W;
    const float *bias; hp_act act;
    void *Y; hp_dtype y_dtype; long ldy;
} w4_job;

#define W4_COLS 8

static void w4_cols(void *vctx, long task, int thread) {
    (void)thread;
    const w4_job *j = vctx;
    const hp_q4_weight *W = j->W;
    long begin = task * W4_COLS, end = begin + W4_COLS < W->n ? begin + W4_COLS : W->n;
    float *w = malloc(sizeof(float) * (size_t)(W->k > 0 ? W->k : 1));
    for (long n = begin; n < end; n++) {
        for (long k = 0; k < W->k; k++) {
            long e = n * W->k + k;
            uint8_t byte = W->data[e >> 1];
            int q = (e & 1) ? (byte & 15) : (byte >> 4);
            w[k] = W->code[q] * W->scale[e / W->block] + (W->zero ? W->zero[e / W->block] : 0.0f);
        }
        for (long m = 0; m < j->M; m++) {
            float acc = 0.0f;
            for (long k = 0; k < W->k; k++) acc += load(j->X, j->x_dtype, m * j->ldx + k) * w[k];
            store(j->Y, j->y_dtype, m * j->ldy + n, activate(acc + (j->bias ? j->bias[n] : 0.0f), j->act));
        }
    }
    free(w);
}

int hp_gemm_w4a16(long M, const void *X, hp_dtype x_dtype, long ldx, const hp_q4_weight *W,
                  const float *bias, hp_act act, void *Y, hp_dtype y_dtype, long ldy) {
    if (M < 0 || !W || W->block <= 0 || W->n < 0 || W->k < 0) return HP_EINVAL;
    w4_job j = { M, X, x_dtype, ldx, W, bias, act, Y, y_dtype, ldy };
    hp_parallel_for((W->n + W4_COLS - 1) / W4_COLS, w4_cols, &j);
    return HP_OK;
}

// ── attention ───────────────────────────────────────────────────────────────────────────────────────────

// Offset of row l of head (b,h) for a [B,H,L,D] view with strides (sb, sh, sl); zeros mean contiguous.
static inline long row_off(long b, long h, long l, long sb, long sh, long sl, long H, long L, long D) {
    if (sb == 0 && sh == 0 && sl == 0) return ((b * H + h) * L + l) * D;
    return b * sb + h * sh + l * sl;
}

static void attn_fwd_row(void *vctx, long row, int thread) {   // row = (b·H + h)·Lq + i
    (void)thread;
    const hp_attn_args *a = vctx;
    const long D = a->D, b = row / (a->H * a->Lq), h = (row / a->Lq) % a->H, i = row % a->Lq;
    float *s = malloc(sizeof(float) * (size_t)(a->Lk > 0 ? a->Lk : 1));
    float *o = calloc((size_t)(D > 0 ? D : 1), sizeof(float));
    const long qo = row_off(b, h, i, a->q_sb, a->q_sh, a->q_sl, a->H, a->Lq, D);
    float m = -INFINITY;
    for (long t = 0; t < a->Lk; t++) {
        const long ko = row_off(b, h, t, a->k_sb, a->k_sh, a->k_sl, a->H, a->Lk, D);
        float dot = 0.0f;
        for (long c = 0; c < D; c++) dot += load(a->q, a->dtype, qo + c) * load(a->k, a->dtype, ko + c);
        s[t] = dot * a->scale;
        if (s[t] > m) m = s[t];
    }
    float l = 0.0f;
    for (long t = 0; t < a->Lk; t++) { s[t] = expf(s[t] - m); l += s[t]; }
    for (long t = 0; t < a->Lk; t++) {
        const long vo = row_off(b, h, t, a->v_sb, a->v_sh, a->v_sl, a->H, a->Lk, D);
        const float p = s[t] / l;
        for (long c = 0; c < D; c++) o[c] += p * load(a->v, a->dtype, vo + c);
    }
    const long oo = row_off(b, h, i, a->o_sb, a->o_sh, a->o_sl, a->H, a->Lq, D);
    for (long c = 0; c < D; c++) store(a->o, a->dtype, oo + c, o[c]);
    if (a->lse) a->lse[row] = m + logf(l);
    free(s);
    free(o);
}

int hp_attention_forward(const hp_attn_args *a) {
    if (!a || a->B < 0 || a->H < 0 || a->Lq < 0 || a->Lk < 0 || a->D < 0) return HP_EINVAL;
    hp_parallel_for(a->B * a->H * a->Lq, attn_fwd_row, (void *)a);
    return HP_OK;
}

// Backward: one task per (b,h); dK/dV accumulate over queries in increasing order (f32 only, contiguous or strided).
static void attn_bwd_head(void *vctx, long bh, int thread) {
    (void)thread;
    const hp_attn_args *a = vctx;
    const long D = a->D, Lq = a->Lq, Lk = a->Lk, b = bh / a->H, h = bh % a->H;
    const float *Q = a->q, *K = a->k, *V = a->v, *O = a->o, *dO = a->dout;
    float *dQ = a->dq, *dK = a->dk, *dV = a->dv;
    for (long t = 0; t < Lk; t++) {
        const long ko = row_off(b, h, t, a->k_sb, a->k_sh, a->k_sl, a->H, Lk, D);
        const long vo = row_off(b, h, t, a->v_sb, a->v_sh, a->v_sl, a->H, Lk, D);
        for (long c = 0; c < D; c++) { dK[ko + c] = 0.0f; dV[vo + c] = 0.0f; }
    }
    for (long i = 0; i < Lq; i++) {
        const long qo = row_off(b, h, i, a->q_sb, a->q_sh, a->q_sl, a->H, Lq, D);
        const long oo = row_off(b, h, i, a->o_sb, a->o_sh, a->o_sl, a->H, Lq, D);
        const float lse = a->lse[bh * Lq + i];
        float rowdot = 0.0f;
        for (long c = 0; c < D; c++) { rowdot += dO[oo + c] * O[oo + c]; dQ[qo + c] = 0.0f; }
        for (long t = 0; t < Lk; t++) {
            const long ko = row_off(b, h, t, a->k_sb, a->k_sh, a->k_sl, a->H, Lk, D);
            const long vo = row_off(b, h, t, a->v_sb, a->v_sh, a->v_sl, a->H, Lk, D);
            float dot = 0.0f, dp = 0.0f;
            for (long c = 0; c < D; c++) { dot += Q[qo + c] * K[ko + c]; dp += dO[oo + c] * V[vo + c]; }
            const float p = expf(dot * a->scale - lse), ds = p * (dp - rowdot) * a->scale;
            for (long c = 0; c < D; c++) {
                dV[vo + c] += p * dO[oo + c];
                dQ[qo + c] += ds * K[ko + c];
                dK[ko + c] += ds * Q[qo + c];
            }
        }
    }
}

int hp_attention_backward(const hp_attn_args *a) {
    if (!a || a->dtype != HP_F32) return a ? HP_EUNSUPPORTED : HP_EINVAL;
    hp_parallel_for(a->B * a->H, attn_bwd_head, (void *)a);
    return HP_OK;
}
