// GEMM: operand packing into microkernel panels, the blocked multi-threaded driver, the public f32/bf16
// entry points and their scalar reference twins. Microkernels live in the per-ISA files.
// Legend: M rows of C, N columns of C, K reduced dimension; MR×NR microkernel tile; KC k-block; MC m-block.
#include "hp_internal.h"
#include <stdatomic.h>
#include <stdlib.h>

// ── bf16 helpers (public) ────────────────────────────────────────────────────────────────────────────────
uint16_t hp_f32_to_bf16(float x) { return hp_f2bf(x); }
float hp_bf16_to_f32(uint16_t x) { return hp_bf16f(x); }
void hp_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = hp_f2bf(src[i]);
}
void hp_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = hp_bf16f(src[i]);
}

// ── operand access ───────────────────────────────────────────────────────────────────────────────────────
static inline float src_f(const hp_src *s, long i) {
    return s->dtype == HP_F32 ? ((const float *)s->p)[i] : hp_bf16f(((const uint16_t *)s->p)[i]);
}
static inline uint16_t src_h(const hp_src *s, long i) {
    return s->dtype == HP_BF16 ? ((const uint16_t *)s->p)[i] : hp_f2bf(((const float *)s->p)[i]);
}

/// Dequantises elements [k0, k0+len) of row n of a 4-bit weight into out (f32).
void hp_q4_row_segment(const hp_q4_weight *w, long n, long k0, long len, float *out) {
    long e = n * w->k + k0;
    for (long i = 0; i < len; i++, e++) {
        uint8_t byte = w->data[e >> 1];
        int q = (e & 1) ? (byte & 15) : (byte >> 4);
        long b = e / w->block;
        float v = w->code[q] * w->scale[b];
        if (w->zero) v += w->zero[b];
        out[i] = v;
    }
}

// ── packing ──────────────────────────────────────────────────────────────────────────────────────────────
void hp_pack_a(const hp_dispatch *dp, const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows, long K,
               void *dst) {
    const int MR = kr->mr;
    if (dp->pack_a_fast && dp->pack_a_fast(kr, a, r0, rows, K, dst)) return;
    if (kr->fmt == HP_PACK_AMX) {
        hp_amx_pack_a(kr, a, r0, rows, K, dst);
        return;
    }
    if (kr->fmt == HP_PACK_F32) {
        float *d = dst;
        if (rows < MR) memset(d, 0, sizeof(float) * (size_t)K * MR);
        if (!a->trans) {  // A(r, k) = p[r*ld + k]
            for (long i = 0; i < rows; i++) {
                long base = (r0 + i) * a->ld;
                if (a->dtype == HP_F32) {
                    const float *s = (const float *)a->p + base;
                    for (long k = 0; k < K; k++) d[k * MR + i] = s[k];
                } else {
                    const uint16_t *s = (const uint16_t *)a->p + base;
                    for (long k = 0; k < K; k++) d[k * MR + i] = hp_bf16f(s[k]);
                }
            }
        } else {  // A(r, k) = p[k*ld + r]
            for (long k = 0; k < K; k++)
                for (long i = 0; i < rows; i++) d[k * MR + i] = src_f(a, k * a->ld + r0 + i);
        }
    } else {
        uint32_t *d = dst;
        long KP = HP_CEIL_DIV(K, 2);
        if (rows < MR) memset(d, 0, sizeof(uint32_t) * (size_t)KP * MR);
        if (!a->trans && a->dtype == HP_BF16) {  // common case: pairs are adjacent in the row
            for (long i = 0; i < rows; i++) {
                const uint16_t *s = (const uint16_t *)a->p + (r0 + i) * a->ld;
                long kp = 0;
                for (; 2 * kp + 1 < K; kp++) {
                    uint32_t v;
                    memcpy(&v, s + 2 * kp, 4);
                    d[kp * MR + i] = v;
                }
                if (kp < KP) d[kp * MR + i] = s[2 * kp];
            }
            return;
        }
        for (long i = 0; i < rows; i++) {
            for (long kp = 0; kp < KP; kp++) {
                long k = 2 * kp;
                uint16_t lo, hi = 0;
                if (!a->trans) {
                    long base = (r0 + i) * a->ld;
                    lo = src_h(a, base + k);
                    if (k + 1 < K) hi = src_h(a, base + k + 1);
                } else {
                    lo = src_h(a, k * a->ld + r0 + i);
                    if (k + 1 < K) hi = src_h(a, (k + 1) * a->ld + r0 + i);
                }
                d[kp * MR + i] = (uint32_t)lo | ((uint32_t)hi << 16);
            }
        }
    }
}

static void pack_b_impl(const hp_dispatch *dp, const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols,
                        long K, void *dst);

void hp_pack_b(const hp_dispatch *dp, const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols, long K,
               void *dst) {
    pack_b_impl(dp, kr, b, c0, cols, K, dst);
    if (kr->fmt == HP_PACK_AMX) {  // the pair layout stops at ceil(K/2) pairs; AMX panels run to K rounded to 32
        long from = HP_CEIL_DIV(K, 2), to = HP_ROUND_UP(K, 32) / 2;
        if (to > from) memset((uint32_t *)dst + from * kr->nr, 0, sizeof(uint32_t) * (size_t)((to - from) * kr->nr));
    }
}

// B panels: f32 [K][NR], or bf16 pairs [ceil(K/2)][NR][2] (BF16PAIR and AMX).
static void pack_b_impl(const hp_dispatch *dp, const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols,
                        long K, void *dst) {
    const int NR = kr->nr;
    if (dp->pack_b_fast && dp->pack_b_fast(kr, b, c0, cols, K, dst)) return;
    if (b->q4) {
        const hp_q4_weight *w = b->q4;
        if (dp->pack_b_q4 && K == w->k && K % 2 == 0 && w->block % 32 == 0 && K % w->block == 0) {
            if (dp->pack_b_q4(kr, w, c0, cols, K, dst)) return;
        }
        // B(k, c) = W[c, k]: dequantise one weight row at a time into a small buffer, scatter into the panel.
        float row[512];
        if (kr->fmt == HP_PACK_F32) {
            float *d = dst;
            if (cols < NR) memset(d, 0, sizeof(float) * (size_t)K * NR);
            for (long j = 0; j < cols; j++)
                for (long k0 = 0; k0 < K; k0 += 512) {
                    long len = HP_MIN(512, K - k0);
                    hp_q4_row_segment(b->q4, c0 + j, k0, len, row);
                    for (long k = 0; k < len; k++) d[(k0 + k) * NR + j] = row[k];
                }
        } else {
            uint16_t *d = dst;
            long KP = HP_CEIL_DIV(K, 2);
            if (cols < NR || (K & 1)) memset(d, 0, sizeof(uint16_t) * (size_t)KP * 2 * NR);
            for (long j = 0; j < cols; j++)
                for (long k0 = 0; k0 < K; k0 += 512) {
                    long len = HP_MIN(512, K - k0);
                    hp_q4_row_segment(b->q4, c0 + j, k0, len, row);
                    for (long k = 0; k < len; k++) {
                        long kk = k0 + k;
                        d[((kk >> 1) * NR + j) * 2 + (kk & 1)] = hp_f2bf(row[k]);
                    }
                }
        }
        return;
    }
    if (kr->fmt == HP_PACK_F32) {
        float *d = dst;
        if (cols < NR) memset(d, 0, sizeof(float) * (size_t)K * NR);
        if (!b->trans) {  // B(k, c) = p[k*ld + c]
            for (long k = 0; k < K; k++) {
                long base = k * b->ld + c0;
                if (b->dtype == HP_F32)
                    memcpy(d + k * NR, (const float *)b->p + base, sizeof(float) * (size_t)cols);
                else
                    for (long j = 0; j < cols; j++) d[k * NR + j] = hp_bf16f(((const uint16_t *)b->p)[base + j]);
            }
        } else {  // B(k, c) = p[c*ld + k]
            for (long j = 0; j < cols; j++) {
                long base = (c0 + j) * b->ld;
                if (b->dtype == HP_F32) {
                    const float *s = (const float *)b->p + base;
                    for (long k = 0; k < K; k++) d[k * NR + j] = s[k];
                } else {
                    const uint16_t *s = (const uint16_t *)b->p + base;
                    for (long k = 0; k < K; k++) d[k * NR + j] = hp_bf16f(s[k]);
                }
            }
        }
    } else {
        uint16_t *d = dst;
        long KP = HP_CEIL_DIV(K, 2);
        if (cols < NR || (K & 1)) memset(d, 0, sizeof(uint16_t) * (size_t)KP * 2 * NR);
        if (!b->trans) {
            if (b->dtype == HP_BF16) {  // interleave rows k and k+1
                const uint16_t *p = b->p;
                for (long k = 0; k < K; k += 2) {
                    const uint16_t *r0 = p + k * b->ld + c0, *r1 = k + 1 < K ? r0 + b->ld : NULL;
                    uint16_t *row = d + (k >> 1) * NR * 2;
                    if (r1)
                        for (long j = 0; j < cols; j++) row[2 * j] = r0[j], row[2 * j + 1] = r1[j];
                    else
                        for (long j = 0; j < cols; j++) row[2 * j] = r0[j];
                }
                return;
            }
            for (long k = 0; k < K; k++) {
                long base = k * b->ld + c0;
                uint16_t *row = d + (k >> 1) * NR * 2 + (k & 1);
                for (long j = 0; j < cols; j++) row[2 * j] = src_h(b, base + j);
            }
        } else {
            for (long j = 0; j < cols; j++) {
                long base = (c0 + j) * b->ld;
                if (b->dtype == HP_BF16) {
                    const uint16_t *s = (const uint16_t *)b->p + base;
                    uint32_t *d32 = (uint32_t *)d;
                    long k = 0;
                    for (; k + 1 < K; k += 2) {
                        uint32_t v;
                        memcpy(&v, s + k, 4);
                        d32[(k >> 1) * NR + j] = v;
                    }
                    if (k < K) d[((k >> 1) * NR + j) * 2] = s[k];
                } else {
                    for (long k = 0; k < K; k++) d[((k >> 1) * NR + j) * 2 + (k & 1)] = src_h(b, base + k);
                }
            }
        }
    }
}

// ── driver ───────────────────────────────────────────────────────────────────────────────────────────────
typedef struct {
    const hp_dispatch *dp;
    const hp_gemm_kernel *kr;
    hp_epilogue_fn epi;
    long M, N, K, Kp;
    float alpha, beta;
    const hp_src *a, *b;
    float *C;
    long ldc;
    uint16_t *Cb;            // bf16 output (C unused) or NULL
    const float *bias;
    hp_act act;
    // current chunk: rows [m0, m0+mlen), columns [n0, n0+nlen)
    long m0, mlen, n0, nlen;
    char *apack, *bpack;
    size_t apanel, bpanel;   // bytes per packed panel
    long na, nb;             // panels to pack in this phase (na = 0 when A is already packed)
    long nt;                 // task width in columns (multiple of nr)
    long n_mblk, n_nblk;
    atomic_int oom;          // set by a task that could not get its tile buffer
} drv_t;

static void drv_pack_task(void *vctx, long t, int thread) {
    (void)thread;
    drv_t *x = vctx;
    const hp_gemm_kernel *kr = x->kr;
    if (t < x->na) {
        long r0 = t * kr->mr;
        hp_pack_a(x->dp, kr, x->a, x->m0 + r0, HP_MIN(kr->mr, x->mlen - r0), x->K, x->apack + t * x->apanel);
    } else {
        t -= x->na;
        long c0 = t * kr->nr;
        hp_pack_b(x->dp, kr, x->b, x->n0 + c0, HP_MIN(kr->nr, x->nlen - c0), x->K, x->bpack + t * x->bpanel);
    }
}

static void to_bf16_row(const hp_dispatch *dp, const float *src, uint16_t *dst, long n) {
    if (dp->to_bf16) dp->to_bf16(src, dst, n);
    else
        for (long i = 0; i < n; i++) dst[i] = hp_f2bf(src[i]);
}

static void drv_compute_task(void *vctx, long t, int thread) {
    (void)thread;
    drv_t *x = vctx;
    const hp_gemm_kernel *kr = x->kr;
    const int MR = kr->mr, NR = kr->nr;
    const size_t es = hp_pack_esize(kr);
    long ib = t % x->n_mblk, jb = t / x->n_mblk;
    long r0 = ib * kr->mc, r1 = HP_MIN(x->mlen, r0 + kr->mc);
    long c0 = jb * x->nt, c1 = HP_MIN(x->nlen, c0 + x->nt);
    float *Ct;
    long ldt;
    const hp_dispatch *dp = x->dp;
    if (x->Cb) {  // bf16 output: f32 tile buffer, seeded with beta * old C
        ldt = x->nt;
        Ct = hp_scratch(3, sizeof(float) * (size_t)kr->mc * (size_t)x->nt);
        if (!Ct) { atomic_store(&x->oom, 1); return; }
        if (x->beta != 0.0f)
            for (long i = 0; i < r1 - r0; i++) {
                const uint16_t *src = x->Cb + (x->m0 + r0 + i) * x->ldc + x->n0 + c0;
                for (long j = 0; j < c1 - c0; j++) Ct[i * ldt + j] = x->beta * hp_bf16f(src[j]);
            }
    } else {
        ldt = x->ldc;
        Ct = x->C + (x->m0 + r0) * x->ldc + x->n0 + c0;
        if (x->beta != 0.0f && x->beta != 1.0f)
            for (long i = 0; i < r1 - r0; i++)
                for (long j = 0; j < c1 - c0; j++) Ct[i * ldt + j] *= x->beta;
    }
    for (long k0 = 0; k0 < x->Kp; k0 += kr->kc) {
        long kc = HP_MIN(kr->kc, x->Kp - k0);
        int accum = k0 > 0 || x->beta != 0.0f;
        for (long c = c0; c < c1; c += NR) {
            const char *bp = x->bpack + (c / NR) * x->bpanel + (size_t)k0 * NR * es;
            int nrv = (int)HP_MIN(NR, c1 - c);
            for (long r = r0; r < r1; r += MR) {
                const char *ap = x->apack + (r / MR) * x->apanel + (size_t)k0 * MR * es;
                int mrv = (int)HP_MIN(MR, r1 - r);
                kr->ukr(kc, ap, bp, Ct + (r - r0) * ldt + (c - c0), ldt, x->alpha, accum, mrv, nrv);
            }
        }
    }
    if (x->bias || x->act != HP_ACT_NONE)
        x->epi(Ct, ldt, r1 - r0, c1 - c0, x->bias ? x->bias + x->n0 + c0 : NULL, x->act);
    if (x->Cb)
        for (long i = 0; i < r1 - r0; i++)
            to_bf16_row(dp, Ct + i * ldt, x->Cb + (x->m0 + r0 + i) * x->ldc + x->n0 + c0, c1 - c0);
}

static void run(long n, hp_task_fn fn, void *ctx, int parallel) {
    if (parallel) hp_parallel_for(n, fn, ctx);
    else
        for (long t = 0; t < n; t++) fn(ctx, t, 0);
}

// `bpre`: B's panels packed beforehand (hp_pack_weight) for this kernel, or NULL to pack B here.
static int driver(const hp_dispatch *dp, const hp_gemm_kernel *kr, long M, long N, long K, float alpha, const hp_src *a, const hp_src *b,
                  float beta, float *C, uint16_t *Cb, long ldc, const float *bias, hp_act act, int parallel,
                  const char *bpre) {
    if (M <= 0 || N <= 0) return HP_OK;
    if (K <= 0) {  // C = act(beta*C + bias)
        for (long i = 0; i < M; i++)
            for (long j = 0; j < N; j++) {
                float old = beta == 0.0f ? 0.0f : Cb ? hp_bf16f(Cb[i * ldc + j]) : C[i * ldc + j];
                float v = beta == 0.0f ? 0.0f : beta * old;
                if (bias) v += bias[j];
                v = hp_act_scalar(v, act);
                if (Cb) Cb[i * ldc + j] = hp_f2bf(v);
                else C[i * ldc + j] = v;
            }
        return HP_OK;
    }
    const long step = hp_kstep(kr);
    drv_t x = {.dp = dp, .kr = kr, .epi = dp->epilogue, .M = M, .N = N, .K = K, .Kp = HP_ROUND_UP(K, step),
               .alpha = alpha, .beta = beta, .a = a, .b = b, .C = C, .ldc = ldc, .Cb = Cb, .bias = bias, .act = act};
    const size_t es = hp_pack_esize(kr);
    x.apanel = (size_t)x.Kp * kr->mr * es;
    x.bpanel = (size_t)x.Kp * kr->nr * es;
    // Chunks keep each packed operand under ~24 MiB.
    const size_t cap = (size_t)24 << 20;
    long mch = HP_MAX(kr->mc, (long)(cap / x.apanel) * kr->mr / kr->mc * kr->mc);
    x.nt = (kr->nt > 0 ? kr->nt : 256) / kr->nr * kr->nr;
    long nch = HP_MAX(x.nt, (long)(cap / x.bpanel) * kr->nr / x.nt * x.nt);
    mch = HP_MIN(mch, HP_ROUND_UP(M, kr->mr));
    nch = HP_MIN(nch, HP_ROUND_UP(N, kr->nr));
    if (bpre) nch = HP_ROUND_UP(N, kr->nr);  // every panel is ready: one chunk over N
    x.apack = hp_scratch(0, x.apanel * (size_t)HP_CEIL_DIV(mch, kr->mr));
    x.bpack = bpre ? (char *)bpre : hp_scratch(1, x.bpanel * (size_t)HP_CEIL_DIV(nch, kr->nr));
    if (!x.apack || !x.bpack) return HP_ENOMEM;
    if (parallel && 2.0 * M * N * K < 4e5) parallel = 0;
    if (parallel && hp_threads_count() <= 1) parallel = 0;
    for (x.m0 = 0; x.m0 < M; x.m0 += mch) {
        x.mlen = HP_MIN(mch, M - x.m0);
        x.n_mblk = HP_CEIL_DIV(x.mlen, kr->mc);
        for (x.n0 = 0; x.n0 < N; x.n0 += nch) {
            x.nlen = HP_MIN(nch, N - x.n0);
            x.na = x.n0 == 0 ? HP_CEIL_DIV(x.mlen, kr->mr) : 0;
            x.nb = bpre ? 0 : HP_CEIL_DIV(x.nlen, kr->nr);
            run(x.na + x.nb, drv_pack_task, &x, parallel);
            x.n_nblk = HP_CEIL_DIV(x.nlen, x.nt);
            run(x.n_mblk * x.n_nblk, drv_compute_task, &x, parallel);
        }
    }
    return atomic_load(&x.oom) ? HP_ENOMEM : HP_OK;
}

int hp_gemm_driver(const hp_dispatch *dp, const hp_gemm_kernel *kr, long M, long N, long K, float alpha,
                   const hp_src *a, const hp_src *b, float beta, float *C, long ldc, const float *bias, hp_act act,
                   int parallel) {
    return driver(dp, kr, M, N, K, alpha, a, b, beta, C, NULL, ldc, bias, act, parallel, NULL);
}

int hp_gemm_driver_bf16out(const hp_dispatch *dp, const hp_gemm_kernel *kr, long M, long N, long K, float alpha,
                           const hp_src *a, const hp_src *b, float beta, uint16_t *C, long ldc, const float *bias,
                           hp_act act) {
    return driver(dp, kr, M, N, K, alpha, a, b, beta, NULL, C, ldc, bias, act, 1, NULL);
}

// ── public API ───────────────────────────────────────────────────────────────────────────────────────────
static int check_args(int ta, int tb, long M, long N, long K, const void *A, long lda, const void *B, long ldb,
                      const void *C, long ldc) {
    if (M < 0 || N < 0 || K < 0) return HP_EINVAL;
    if (M == 0 || N == 0) return HP_OK;
    if (!C || ldc < N) return HP_EINVAL;
    if (K == 0) return HP_OK;
    if (!A || !B) return HP_EINVAL;
    if (lda < (ta ? M : K) || ldb < (tb ? K : N)) return HP_EINVAL;
    return HP_OK;
}

int hp_gemm_f32(int trans_a, int trans_b, long M, long N, long K, float alpha, const float *A, long lda,
                const float *B, long ldb, float beta, float *C, long ldc, const float *bias, hp_act act) {
    int rc = check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    if (rc) return rc;
    const hp_dispatch *dp = hp_dispatch_current();
    hp_src a = {.p = A, .ld = lda, .trans = trans_a != 0, .dtype = HP_F32};
    hp_src b = {.p = B, .ld = ldb, .trans = trans_b != 0, .dtype = HP_F32};
    return hp_gemm_driver(dp, &dp->f32, M, N, K, alpha, &a, &b, beta, C, ldc, bias, act, 1);
}

int hp_gemm_f32_batched(int trans_a, int trans_b, long M, long N, long K, float alpha, const float *A, long lda,
                        long stride_a, const float *B, long ldb, long stride_b, float beta, float *C, long ldc,
                        long stride_c, const float *bias, hp_act act, long batch) {
    if (batch < 0) return HP_EINVAL;
    for (long i = 0; i < batch; i++) {
        int rc = hp_gemm_f32(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                             C + i * stride_c, ldc, bias, act);
        if (rc) return rc;
    }
    return HP_OK;
}

int hp_gemm_bf16(int trans_a, int trans_b, long M, long N, long K, float alpha, const uint16_t *A, long lda,
                 const uint16_t *B, long ldb, float beta, void *C, hp_dtype c_dtype, long ldc, const float *bias,
                 hp_act act) {
    int rc = check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    if (rc || M == 0 || N == 0) return rc;
    if (c_dtype != HP_F32 && c_dtype != HP_BF16) return HP_EINVAL;
    const hp_dispatch *dp = hp_dispatch_current();
    hp_src a = {.p = A, .ld = lda, .trans = trans_a != 0, .dtype = HP_BF16};
    hp_src b = {.p = B, .ld = ldb, .trans = trans_b != 0, .dtype = HP_BF16};
    if (c_dtype == HP_F32)
        return hp_gemm_driver(dp, &dp->bf16, M, N, K, alpha, &a, &b, beta, C, ldc, bias, act, 1);
    return hp_gemm_driver_bf16out(dp, &dp->bf16, M, N, K, alpha, &a, &b, beta, C, ldc, bias, act);
}

int hp_gemm_bf16_batched(int trans_a, int trans_b, long M, long N, long K, float alpha, const uint16_t *A,
                         long lda, long stride_a, const uint16_t *B, long ldb, long stride_b, float beta, void *C,
                         hp_dtype c_dtype, long ldc, long stride_c, const float *bias, hp_act act, long batch) {
    if (batch < 0) return HP_EINVAL;
    size_t cs = c_dtype == HP_F32 ? 4 : 2;
    for (long i = 0; i < batch; i++) {
        int rc = hp_gemm_bf16(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                              (char *)C + (size_t)(i * stride_c) * cs, c_dtype, ldc, bias, act);
        if (rc) return rc;
    }
    return HP_OK;
}

// ── prepacked weights ────────────────────────────────────────────────────────────────────────────────────
// A Linear weight W[N,K] used as B = Wᵀ is packed once into the current kernel's B panels (the panels are what
// every GEMM would otherwise rebuild from W on each call: ~6 % of an f32 SD3 forward).

static const hp_gemm_kernel *weight_kernel(const hp_dispatch *dp, hp_dtype dtype) {
    return dtype == HP_F32 ? &dp->f32 : dtype == HP_BF16 ? &dp->bf16 : NULL;
}

size_t hp_packed_weight_bytes(hp_dtype dtype, long n, long k) {
    const hp_gemm_kernel *kr = weight_kernel(hp_dispatch_current(), dtype);
    if (!kr || n <= 0 || k <= 0) return 0;
    return (size_t)HP_CEIL_DIV(n, kr->nr) * (size_t)HP_ROUND_UP(k, hp_kstep(kr)) * (size_t)kr->nr * hp_pack_esize(kr);
}

typedef struct { const hp_dispatch *dp; const hp_gemm_kernel *kr; hp_src b; long n, k; char *dst; size_t panel; } wpack_t;

static void wpack_task(void *v, long t, int thread) {
    (void)thread;
    const wpack_t *x = v;
    long c0 = t * x->kr->nr;
    hp_pack_b(x->dp, x->kr, &x->b, c0, HP_MIN(x->kr->nr, x->n - c0), x->k, x->dst + (size_t)t * x->panel);
}

int hp_pack_weight(hp_dtype dtype, const void *W, long n, long k, void *panels, hp_packed_weight *out) {
    const hp_dispatch *dp = hp_dispatch_current();
    const hp_gemm_kernel *kr = weight_kernel(dp, dtype);
    if (!kr || !W || !panels || !out || n <= 0 || k <= 0) return HP_EINVAL;
    wpack_t x = {.dp = dp, .kr = kr, .b = {.p = W, .ld = k, .trans = 1, .dtype = dtype}, .n = n, .k = k,
                 .dst = panels, .panel = (size_t)HP_ROUND_UP(k, hp_kstep(kr)) * (size_t)kr->nr * hp_pack_esize(kr)};
    hp_parallel_for(HP_CEIL_DIV(n, kr->nr), wpack_task, &x);
    *out = (hp_packed_weight){.kernel = kr, .dtype = dtype, .n = n, .k = k, .panels = panels};
    return HP_OK;
}

int hp_gemm_packed(long M, const void *A, long lda, const hp_packed_weight *w, void *C, hp_dtype c_dtype, long ldc,
                   const float *bias, hp_act act) {
    if (!w || M < 0 || !C || ldc < w->n || (c_dtype != HP_F32 && c_dtype != HP_BF16)) return HP_EINVAL;
    if (M == 0) return HP_OK;
    if (!A || lda < w->k) return HP_EINVAL;
    const hp_dispatch *dp = hp_dispatch_current();
    const hp_gemm_kernel *kr = weight_kernel(dp, w->dtype);
    if (kr != w->kernel) return HP_EUNSUPPORTED;  // packed under another ISA: the panel layout differs
    hp_src a = {.p = A, .ld = lda, .trans = 0, .dtype = w->dtype};
    hp_src b = {.p = NULL, .ld = w->k, .trans = 1, .dtype = w->dtype};
    if (c_dtype == HP_BF16) return driver(dp, kr, M, w->n, w->k, 1.0f, &a, &b, 0.0f, NULL, C, ldc, bias, act, 1, w->panels);
    return driver(dp, kr, M, w->n, w->k, 1.0f, &a, &b, 0.0f, C, NULL, ldc, bias, act, 1, w->panels);
}

int hp_unpack_weight(const hp_packed_weight *w, void *W) {
    if (!w || !W || !w->kernel) return HP_EINVAL;
    const hp_gemm_kernel *kr = w->kernel;
    const long NR = kr->nr, Kp = HP_ROUND_UP(w->k, hp_kstep(kr));
    const size_t panel = (size_t)Kp * (size_t)NR;   // elements per panel
    for (long n = 0; n < w->n; n++) {
        long t = n / NR, j = n % NR;
        for (long k = 0; k < w->k; k++) {
            float v;
            if (kr->fmt == HP_PACK_F32) v = ((const float *)w->panels)[t * panel + (size_t)(k * NR + j)];
            else v = hp_bf16f(((const uint16_t *)w->panels)[t * panel + (size_t)(((k >> 1) * NR + j) * 2 + (k & 1))]);
            if (w->dtype == HP_F32) ((float *)W)[n * w->k + k] = v;
            else ((uint16_t *)W)[n * w->k + k] = hp_f2bf(v);   // exact: v came from a bf16
        }
    }
    return HP_OK;
}

// ── references ───────────────────────────────────────────────────────────────────────────────────────────
// Plain triple loops, f32 products summed in double in increasing k, then the epilogue in f32.
static int gemm_ref(int ta, int tb, long M, long N, long K, float alpha, const hp_src *a, const hp_src *b,
                    float beta, void *C, hp_dtype c_dtype, long ldc, const float *bias, hp_act act) {
    for (long i = 0; i < M; i++)
        for (long j = 0; j < N; j++) {
            double s = 0;
            for (long k = 0; k < K; k++) {
                float av = src_f(a, ta ? k * a->ld + i : i * a->ld + k);
                float bv = src_f(b, tb ? j * b->ld + k : k * b->ld + j);
                s += (double)av * (double)bv;
            }
            float old = 0;
            if (beta != 0.0f)
                old = c_dtype == HP_F32 ? ((float *)C)[i * ldc + j] : hp_bf16f(((uint16_t *)C)[i * ldc + j]);
            float v = alpha * (float)s + (beta != 0.0f ? beta * old : 0.0f);
            if (bias) v += bias[j];
            v = hp_act_scalar(v, act);
            if (c_dtype == HP_F32) ((float *)C)[i * ldc + j] = v;
            else ((uint16_t *)C)[i * ldc + j] = hp_f2bf(v);
        }
    return HP_OK;
}

int hp_gemm_f32_ref(int trans_a, int trans_b, long M, long N, long K, float alpha, const float *A, long lda,
                    const float *B, long ldb, float beta, float *C, long ldc, const float *bias, hp_act act) {
    int rc = check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    if (rc) return rc;
    hp_src a = {.p = A, .ld = lda, .dtype = HP_F32}, b = {.p = B, .ld = ldb, .dtype = HP_F32};
    return gemm_ref(trans_a, trans_b, M, N, K, alpha, &a, &b, beta, C, HP_F32, ldc, bias, act);
}

int hp_gemm_bf16_ref(int trans_a, int trans_b, long M, long N, long K, float alpha, const uint16_t *A, long lda,
                     const uint16_t *B, long ldb, float beta, void *C, hp_dtype c_dtype, long ldc,
                     const float *bias, hp_act act) {
    int rc = check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    if (rc) return rc;
    hp_src a = {.p = A, .ld = lda, .dtype = HP_BF16}, b = {.p = B, .ld = ldb, .dtype = HP_BF16};
    return gemm_ref(trans_a, trans_b, M, N, K, alpha, &a, &b, beta, C, c_dtype, ldc, bias, act);
}
