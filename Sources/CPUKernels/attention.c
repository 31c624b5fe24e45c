// Fused attention forward/backward (flash-attention style: key tiles, online softmax, the Lq×Lk matrix is never
// stored) built on the GEMM microkernels, plus the scalar references.
// Legend: B batch, H heads, Lq queries, Lk keys, D head dim; MR×NR microkernel tile; per (b,h) "head".
//
// Forward works on transposed scores: Sᵀ[keys, queries] = K·Qᵀ, so a microkernel row is a key and its lanes
// are queries. The softmax then runs down columns (no horizontal reductions), and the Sᵀ tile, written with
// ldc = NR, is already in the packed-B layout that Oᵀ[D, queries] += Vᵀ·Pᵀ consumes.
#include "hp_internal.h"
#include <stdatomic.h>
#include <stdlib.h>

static inline long dflt(long s, long v) { return s ? s : v; }

/// Fills zero strides with the contiguous [B,H,L,D] ones.
static void norm_strides(hp_attn_args *a) {
    long D = a->D;
    a->q_sl = dflt(a->q_sl, D), a->q_sh = dflt(a->q_sh, a->Lq * D), a->q_sb = dflt(a->q_sb, a->H * a->Lq * D);
    a->k_sl = dflt(a->k_sl, D), a->k_sh = dflt(a->k_sh, a->Lk * D), a->k_sb = dflt(a->k_sb, a->H * a->Lk * D);
    a->v_sl = dflt(a->v_sl, D), a->v_sh = dflt(a->v_sh, a->Lk * D), a->v_sb = dflt(a->v_sb, a->H * a->Lk * D);
    a->o_sl = dflt(a->o_sl, D), a->o_sh = dflt(a->o_sh, a->Lq * D), a->o_sb = dflt(a->o_sb, a->H * a->Lq * D);
}

static int check(const hp_attn_args *a, int backward) {
    if (!a || a->B < 0 || a->H < 0 || a->Lq < 0 || a->Lk < 0 || a->D <= 0) return HP_EINVAL;
    if (a->dtype != HP_F32 && a->dtype != HP_BF16) return HP_EINVAL;
    if (a->B == 0 || a->H == 0 || a->Lq == 0) return HP_OK;
    if (a->Lk == 0) return HP_EINVAL;  // softmax over nothing
    if (!a->q || !a->k || !a->v || !a->o) return HP_EINVAL;
    if (backward && (!a->lse || !a->dout || !a->dq || !a->dk || !a->dv)) return HP_EINVAL;
    return HP_OK;
}

static inline size_t esz(hp_dtype t) { return t == HP_F32 ? 4 : 2; }
static inline const void *at(const void *p, hp_dtype t, long off) { return (const char *)p + (size_t)off * esz(t); }
static inline float ld_el(const void *p, hp_dtype t, long off) {
    return t == HP_F32 ? ((const float *)p)[off] : hp_bf16f(((const uint16_t *)p)[off]);
}
static inline void st_el(void *p, hp_dtype t, long off, float v) {
    if (t == HP_F32) ((float *)p)[off] = v;
    else ((uint16_t *)p)[off] = hp_f2bf(v);
}

// ── references ───────────────────────────────────────────────────────────────────────────────────────────
int hp_attention_forward_ref(const hp_attn_args *args) {
    int rc = check(args, 0);
    if (rc || args->B == 0 || args->H == 0 || args->Lq == 0) return rc;
    hp_attn_args a = *args;
    norm_strides(&a);
    const long Lk = a.Lk, D = a.D;
    double *s = malloc(sizeof(double) * (size_t)Lk), *o = malloc(sizeof(double) * (size_t)D);
    if (!s || !o) { free(s); free(o); return HP_ENOMEM; }
    for (long b = 0; b < a.B; b++)
        for (long h = 0; h < a.H; h++)
            for (long i = 0; i < a.Lq; i++) {
                long qo = b * a.q_sb + h * a.q_sh + i * a.q_sl;
                double mx = -INFINITY;
                for (long j = 0; j < Lk; j++) {
                    long ko = b * a.k_sb + h * a.k_sh + j * a.k_sl;
                    double d = 0;
                    for (long c = 0; c < D; c++) d += (double)ld_el(a.q, a.dtype, qo + c) * ld_el(a.k, a.dtype, ko + c);
                    s[j] = d * a.scale;
                    if (s[j] > mx) mx = s[j];
                }
                double l = 0;
                for (long c = 0; c < D; c++) o[c] = 0;
                for (long j = 0; j < Lk; j++) {
                    double p = exp(s[j] - mx);
                    l += p;
                    long vo = b * a.v_sb + h * a.v_sh + j * a.v_sl;
                    for (long c = 0; c < D; c++) o[c] += p * ld_el(a.v, a.dtype, vo + c);
                }
                long oo = b * a.o_sb + h * a.o_sh + i * a.o_sl;
                for (long c = 0; c < D; c++) st_el(a.o, a.dtype, oo + c, (float)(o[c] / l));
                if (a.lse) a.lse[(b * a.H + h) * a.Lq + i] = (float)(mx + log(l));
            }
    free(s);
    free(o);
    return HP_OK;
}

static int backward_ref_f32(const hp_attn_args *args) {
    int rc = check(args, 1);
    if (rc || args->B == 0 || args->H == 0 || args->Lq == 0) return rc;
    hp_attn_args a = *args;
    norm_strides(&a);
    const long Lq = a.Lq, Lk = a.Lk, D = a.D;
    double *p = malloc(sizeof(double) * (size_t)Lk), *ds = malloc(sizeof(double) * (size_t)Lk);
    double *dk = malloc(sizeof(double) * (size_t)(Lk * D)), *dv = malloc(sizeof(double) * (size_t)(Lk * D));
    if (!p || !ds || !dk || !dv) { free(p); free(ds); free(dk); free(dv); return HP_ENOMEM; }
    const float *Q = a.q, *K = a.k, *V = a.v, *O = a.o, *dO = a.dout;
    float *dQ = a.dq, *dK = a.dk, *dV = a.dv;
    for (long b = 0; b < a.B; b++)
        for (long h = 0; h < a.H; h++) {
            memset(dk, 0, sizeof(double) * (size_t)(Lk * D));
            memset(dv, 0, sizeof(double) * (size_t)(Lk * D));
            const float *q = Q + b * a.q_sb + h * a.q_sh, *k = K + b * a.k_sb + h * a.k_sh;
            const float *v = V + b * a.v_sb + h * a.v_sh, *o = O + b * a.o_sb + h * a.o_sh;
            const float *dout = dO + b * a.o_sb + h * a.o_sh;
            const float *lse = a.lse + (b * a.H + h) * Lq;
            for (long i = 0; i < Lq; i++) {
                const float *qi = q + i * a.q_sl, *doi = dout + i * a.o_sl, *oi = o + i * a.o_sl;
                double delta = 0;
                for (long c = 0; c < D; c++) delta += (double)doi[c] * oi[c];
                for (long j = 0; j < Lk; j++) {
                    double sdot = 0, dp = 0;
                    for (long c = 0; c < D; c++) {
                        sdot += (double)qi[c] * k[j * a.k_sl + c];
                        dp += (double)doi[c] * v[j * a.v_sl + c];
                    }
                    p[j] = exp(sdot * a.scale - lse[i]);
                    ds[j] = p[j] * (dp - delta);
                }
                float *dqi = dQ + b * a.q_sb + h * a.q_sh + i * a.q_sl;
                for (long c = 0; c < D; c++) {
                    double acc = 0;
                    for (long j = 0; j < Lk; j++) acc += ds[j] * k[j * a.k_sl + c];
                    dqi[c] = (float)(acc * a.scale);
                }
                for (long j = 0; j < Lk; j++)
                    for (long c = 0; c < D; c++) {
                        dk[j * D + c] += ds[j] * a.scale * qi[c];
                        dv[j * D + c] += p[j] * doi[c];
                    }
            }
            for (long j = 0; j < Lk; j++)
                for (long c = 0; c < D; c++) {
                    dK[b * a.k_sb + h * a.k_sh + j * a.k_sl + c] = (float)dk[j * D + c];
                    dV[b * a.v_sb + h * a.v_sh + j * a.v_sl + c] = (float)dv[j * D + c];
                }
        }
    free(p);
    free(ds);
    free(dk);
    free(dv);
    return HP_OK;
}

// ── forward ──────────────────────────────────────────────────────────────────────────────────────────────
// With bf16 inputs on a CPU with vdpbf16ps both products run in bf16 (f32 accumulation): K, Qᵀ and Vᵀ are
// packed as bf16 pairs, and P is rounded to bf16 pairs before Oᵀ += Vᵀ·Pᵀ (as flash-attention does).
typedef struct {
    hp_attn_args a;
    const hp_gemm_kernel *kr;
    const hp_dispatch *dp;
    int bf;                  // bf16-pair path
    long h0, nh;             // heads [h0, h0+nh) of the flattened B*H in this group
    long nkp, nvp;           // K panels (rows = keys), Vᵀ panels (rows = d)
    long dk, lkp;            // k extents of the two GEMMs as packed: D and Lk rounded to the k-step
    size_t head_bytes;       // packed bytes per head
    char *pack;              // [nh][head_bytes]: K panels then Vᵀ panels
    long nq, qtiles;         // queries per task, tiles per head
    long kb;                 // keys per block (multiple of MR, even)
    atomic_int oom;          // set by a task that could not get its buffers
} fwd_t;

static void fwd_pack_task(void *vctx, long t, int thread) {
    (void)thread;
    fwd_t *x = vctx;
    const hp_gemm_kernel *kr = x->kr;
    const int MR = kr->mr;
    const size_t es = hp_pack_esize(kr);
    long hh = t / 2, bh = x->h0 + hh, b = bh / x->a.H, h = bh % x->a.H;
    char *dst = x->pack + hh * x->head_bytes;
    const long D = x->a.D, Lk = x->a.Lk;
    if (t % 2 == 0) {  // K as A panels: rows = keys, k = d
        hp_src s = {.p = at(x->a.k, x->a.dtype, b * x->a.k_sb + h * x->a.k_sh), .ld = x->a.k_sl, .dtype = x->a.dtype};
        for (long p = 0; p < x->nkp; p++)
            hp_pack_a(x->dp, kr, &s, p * MR, HP_MIN(MR, Lk - p * MR), D, dst + p * x->dk * MR * es);
    } else {  // Vᵀ as A panels: rows = d, k = keys
        hp_src s = {.p = at(x->a.v, x->a.dtype, b * x->a.v_sb + h * x->a.v_sh), .ld = x->a.v_sl, .trans = 1,
                    .dtype = x->a.dtype};
        char *vd = dst + x->nkp * x->dk * MR * es;
        for (long p = 0; p < x->nvp; p++)
            hp_pack_a(x->dp, kr, &s, p * MR, HP_MIN(MR, D - p * MR), Lk, vd + p * x->lkp * MR * es);
    }
}

static void fwd_task(void *vctx, long t, int thread) {
    (void)thread;
    fwd_t *x = vctx;
    const hp_gemm_kernel *kr = x->kr;
    const int MR = kr->mr, NR = kr->nr;
    const size_t es = hp_pack_esize(kr);
    const hp_attn_args *a = &x->a;
    const long D = a->D, KB = x->kb, Dp = x->nvp * MR, dk = x->dk;
    long hh = t / x->qtiles, bh = x->h0 + hh, b = bh / a->H, h = bh % a->H;
    long q0 = (t % x->qtiles) * x->nq, nq = HP_MIN(x->nq, a->Lq - q0), nqp = HP_CEIL_DIV(nq, NR);
    const char *Kp = x->pack + hh * x->head_bytes, *Vp = Kp + x->nkp * dk * MR * es;
    // Per-task buffers: Q panels [nqp][dk][NR], Sᵀ [nqp][KB][NR] f32, bf16 Pᵀ pairs [KB/2][NR], Oᵀ [nqp][Dp][NR],
    // m, l, corr [nqp*NR].
    size_t bQ = HP_ROUND_UP((size_t)nqp * dk * NR * es, 64), nS = (size_t)nqp * KB * NR;
    size_t nP = x->bf ? (size_t)(KB / 2) * NR : 0, nO = (size_t)nqp * Dp * NR, nv = (size_t)nqp * NR;
    char *Qp = hp_scratch(2, bQ + sizeof(float) * (nS + nP + nO + 3 * nv));
    if (!Qp) { atomic_store(&x->oom, 1); return; }
    float *St = (float *)(Qp + bQ), *Pp = St + nS, *Ot = Pp + nP, *m = Ot + nO, *l = m + nv, *corr = l + nv;
    hp_src qs = {.p = at(a->q, a->dtype, b * a->q_sb + h * a->q_sh + q0 * a->q_sl), .ld = a->q_sl, .trans = 1,
                 .dtype = a->dtype};
    for (long p = 0; p < nqp; p++) hp_pack_b(x->dp, kr, &qs, p * NR, HP_MIN(NR, nq - p * NR), D, Qp + p * dk * NR * es);
    for (size_t i = 0; i < nv; i++) m[i] = -INFINITY, l[i] = 0;
    for (long k0 = 0; k0 < a->Lk; k0 += KB) {
        long nk = HP_MIN(KB, a->Lk - k0);
        for (long jr = 0; jr < nqp; jr++) {
            float *Sj = St + jr * KB * NR;
            for (long ir = 0; ir * MR < nk; ir++)  // Sᵀ rows = keys k0+ir*MR.., lanes = queries
                kr->ukr(dk, Kp + (k0 / MR + ir) * dk * MR * es, Qp + jr * dk * NR * es, Sj + ir * MR * NR, NR, 1.0f,
                        0, MR, NR);
            x->dp->softmax_cols(Sj, nk, NR, a->scale, m + jr * NR, l + jr * NR, corr + jr * NR);
            float *Oj = Ot + jr * Dp * NR;
            if (k0 > 0) x->dp->scale_cols(Oj, Dp, NR, corr + jr * NR);
            const void *Pb = Sj;
            long kc = nk;
            if (x->bf) {
                x->dp->pack_p_pairs(Sj, nk, NR, (uint32_t *)Pp);
                Pb = Pp;
                kc = HP_ROUND_UP(nk, hp_kstep(kr));   // AMX: whole 32-key tile steps, the tail pairs zeroed
                long done = HP_CEIL_DIV(nk, 2);
                if (kc / 2 > done) memset((uint32_t *)Pp + done * NR, 0, sizeof(uint32_t) * (size_t)((kc / 2 - done) * NR));
            }
            for (long ir = 0; ir < x->nvp; ir++)  // Oᵀ rows = d, += Vᵀ[d, keys] · Pᵀ[keys, queries]
                kr->ukr(kc, Vp + (ir * x->lkp + k0) * MR * es, Pb, Oj + ir * MR * NR, NR, 1.0f, k0 > 0, MR, NR);
        }
    }
    for (long i = 0; i < nq; i++) {
        long jr = i / NR, c = i % NR;
        float inv = 1.0f / l[i];
        long oo = b * a->o_sb + h * a->o_sh + (q0 + i) * a->o_sl;
        const float *Oj = Ot + jr * Dp * NR + c;
        if (a->dtype == HP_F32)
            for (long d = 0; d < D; d++) ((float *)a->o)[oo + d] = Oj[d * NR] * inv;
        else
            for (long d = 0; d < D; d++) ((uint16_t *)a->o)[oo + d] = hp_f2bf(Oj[d * NR] * inv);
        if (a->lse) a->lse[bh * a->Lq + q0 + i] = m[i] + logf(l[i]);
    }
}

int hp_attention_forward(const hp_attn_args *args) {
    int rc = check(args, 0);
    if (rc || args->B == 0 || args->H == 0 || args->Lq == 0) return rc;
    fwd_t x = {.a = *args};
    norm_strides(&x.a);
    x.dp = hp_dispatch_current();
    x.bf = x.a.dtype == HP_BF16 && x.dp->bf16.fmt != HP_PACK_F32 && x.dp->pack_p_pairs;
    x.kr = x.bf ? &x.dp->bf16 : &x.dp->f32;
    const int MR = x.kr->mr, NR = x.kr->nr;
    const size_t es = hp_pack_esize(x.kr);
    const long D = x.a.D, Lk = x.a.Lk, BH = x.a.B * x.a.H, step = hp_kstep(x.kr);
    x.nkp = HP_CEIL_DIV(Lk, MR);
    x.nvp = HP_CEIL_DIV(D, MR);
    x.dk = HP_ROUND_UP(D, step);
    x.lkp = HP_ROUND_UP(Lk, step);
    x.head_bytes = HP_ROUND_UP((size_t)x.nkp * MR * x.dk * es + (size_t)x.nvp * MR * x.lkp * es, 64);
    x.kb = HP_MAX(1, 224 / (2 * MR)) * 2 * MR;  // even, so bf16 key pairs never straddle blocks
    x.nq = 4 * NR;
    x.qtiles = HP_CEIL_DIV(x.a.Lq, x.nq);
    long group = HP_MAX(1, (long)(((size_t)64 << 20) / x.head_bytes));
    group = HP_MIN(group, BH);
    x.pack = hp_scratch(0, x.head_bytes * (size_t)group);
    if (!x.pack) return HP_ENOMEM;
    for (x.h0 = 0; x.h0 < BH; x.h0 += group) {
        x.nh = HP_MIN(group, BH - x.h0);
        hp_parallel_for(2 * x.nh, fwd_pack_task, &x);
        hp_parallel_for(x.nh * x.qtiles, fwd_task, &x);
    }
    return atomic_load(&x.oom) ? HP_ENOMEM : HP_OK;
}

// ── backward ─────────────────────────────────────────────────────────────────────────────────────────────
// Flash-attention-2 by recomputation, deterministic without atomics. A task owns (head, a fixed range of key
// blocks); the number of ranges per head depends only on the shape, never on the thread count. For each key
// block and each query block it recomputes, with queries as rows and keys in lanes:
//     S = Q·Kᵀ, dP = dO·Vᵀ, P = exp(s·S - lse), dS = P∘(dP - Δ)          Δ[i] = Σ_d dO[i,d]·O[i,d]
// and accumulates dVᵀ[D, keys] += dOᵀ·P and dKᵀ[D, keys] += s·Qᵀ·dS (written out when the key block ends),
// plus the task's partial dQᵀ[D, queries] += s·Kᵀ·dSᵀ (dS transposed per tile). A last pass sums the partial
// dQ of each head in range order.
typedef struct {
    hp_attn_args a;
    const hp_gemm_kernel *kr;
    const hp_dispatch *dp;
    long h0, nh;
    long nqA, nkB, nd, nqB;        // panel counts: queries as A (MR), keys as B (NR), d as A (MR), queries as B
    size_t off[8];                 // float offsets of the packed operands within a head's block
    size_t head;                   // floats per head
    float *pack;
    float *dqt;                    // [nh][splits][nd*MR][nqB*NR] partial dQᵀ
    long kb, qb;                   // keys per key block (multiple of NR), queries per query block (lcm(MR, NR)·j)
    long nkb, splits, kps;         // key blocks per head, ranges per head, key blocks per range
    long rq;                       // queries per reduction task
    atomic_int oom;                // set by a task that could not get its buffers
} bwd_t;

enum { P_QA, P_dOA, P_KBt, P_VBt, P_dOTA, P_QTA, P_KTA, P_DELTA, P_COUNT };

static inline hp_src view(const bwd_t *x, const void *base, long sb, long sh, long sl, long bh, int trans) {
    long b = bh / x->a.H, h = bh % x->a.H;
    hp_src s = {.p = (const float *)base + b * sb + h * sh, .ld = sl, .trans = trans, .dtype = HP_F32};
    return s;
}

static void bwd_pack_task(void *vctx, long t, int thread) {
    (void)thread;
    bwd_t *x = vctx;
    const hp_gemm_kernel *kr = x->kr;
    const int MR = kr->mr, NR = kr->nr;
    const hp_attn_args *a = &x->a;
    const long D = a->D, Lq = a->Lq, Lk = a->Lk;
    long hh = t / P_COUNT, which = t % P_COUNT, bh = x->h0 + hh;
    float *dst = x->pack + hh * x->head + x->off[which];
    hp_src q = view(x, a->q, a->q_sb, a->q_sh, a->q_sl, bh, 0), k = view(x, a->k, a->k_sb, a->k_sh, a->k_sl, bh, 0);
    hp_src v = view(x, a->v, a->v_sb, a->v_sh, a->v_sl, bh, 0);
    hp_src dO = view(x, a->dout, a->o_sb, a->o_sh, a->o_sl, bh, 0);
    switch (which) {
    case P_QA: case P_dOA: {  // rows = queries, k = d
        const hp_src *s = which == P_QA ? &q : &dO;
        for (long p = 0; p < x->nqA; p++) hp_pack_a(x->dp, kr, s, p * MR, HP_MIN(MR, Lq - p * MR), D, dst + p * D * MR);
        break;
    }
    case P_KBt: case P_VBt: {  // columns = keys, k = d
        hp_src s = which == P_KBt ? k : v;
        s.trans = 1;
        for (long p = 0; p < x->nkB; p++) hp_pack_b(x->dp, kr, &s, p * NR, HP_MIN(NR, Lk - p * NR), D, dst + p * D * NR);
        break;
    }
    case P_dOTA: case P_QTA: {  // rows = d, k = queries
        hp_src s = which == P_dOTA ? dO : q;
        s.trans = 1;
        for (long p = 0; p < x->nd; p++) hp_pack_a(x->dp, kr, &s, p * MR, HP_MIN(MR, D - p * MR), Lq, dst + p * Lq * MR);
        break;
    }
    case P_KTA: {  // rows = d, k = keys
        hp_src s = k;
        s.trans = 1;
        for (long p = 0; p < x->nd; p++) hp_pack_a(x->dp, kr, &s, p * MR, HP_MIN(MR, D - p * MR), Lk, dst + p * Lk * MR);
        break;
    }
    case P_DELTA: {
        hp_src o = view(x, a->o, a->o_sb, a->o_sh, a->o_sl, bh, 0);
        const float *op = o.p, *gp = dO.p;
        for (long i = 0; i < Lq; i++) {
            float sum = 0;
            for (long d = 0; d < D; d++) sum += op[i * a->o_sl + d] * gp[i * a->o_sl + d];
            dst[i] = sum;
        }
        break;
    }
    }
}

static void transpose_f32(const hp_dispatch *dp, const float *src, long ls, float *dst, long ld, long rows, long cols) {
    if (dp->transpose) dp->transpose(src, ls, dst, ld, rows, cols);
    else
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < cols; c++) dst[c * ld + r] = src[r * ls + c];
}

static void bwd_task(void *vctx, long t, int thread) {
    (void)thread;
    bwd_t *x = vctx;
    const hp_gemm_kernel *kr = x->kr;
    const hp_dispatch *dp = x->dp;
    const int MR = kr->mr, NR = kr->nr;
    const hp_attn_args *a = &x->a;
    const long D = a->D, Lq = a->Lq, Lk = a->Lk, QB = x->qb, KB = x->kb;
    long hh = t / x->splits, split = t % x->splits, bh = x->h0 + hh, b = bh / a->H, h = bh % a->H;
    long kb0 = split * x->kps, kb1 = HP_MIN(x->nkb, kb0 + x->kps);
    const float *base = x->pack + hh * x->head;
    const float *QA = base + x->off[P_QA], *dOA = base + x->off[P_dOA], *KBt = base + x->off[P_KBt];
    const float *VBt = base + x->off[P_VBt], *dOTA = base + x->off[P_dOTA], *QTA = base + x->off[P_QTA];
    const float *KTA = base + x->off[P_KTA], *delta = base + x->off[P_DELTA], *lse = a->lse + bh * Lq;
    const long nkpMax = KB / NR, ldt = KB, Dp = x->nd * MR, ldq = x->nqB * NR;
    float *dQT = x->dqt + (hh * x->splits + split) * Dp * ldq;
    // Buffers: P and dS tiles [KB/NR][QB][NR], dSᵀ [QB/NR][KB][NR], dVᵀ and dKᵀ [Dp][KB].
    size_t nT = (size_t)nkpMax * QB * NR, nO = (size_t)Dp * ldt;
    float *Pb = hp_scratch(2, sizeof(float) * (3 * nT + 2 * nO));
    if (!Pb) { atomic_store(&x->oom, 1); return; }
    float *Db = Pb + nT, *DT = Db + nT, *dVT = DT + nT, *dKT = dVT + nO;
    for (long kb = kb0; kb < kb1; kb++) {
        long k0 = kb * KB, nk = HP_MIN(KB, Lk - k0), nkp = HP_CEIL_DIV(nk, NR);
        for (long q0 = 0; q0 < Lq; q0 += QB) {
            long nq = HP_MIN(QB, Lq - q0), nqa = HP_CEIL_DIV(nq, MR), nqp = HP_CEIL_DIV(nq, NR);
            for (long jr = 0; jr < nkp; jr++) {
                const float *kbp = KBt + (k0 / NR + jr) * D * NR, *vbp = VBt + (k0 / NR + jr) * D * NR;
                float *Pj = Pb + jr * QB * NR, *Dj = Db + jr * QB * NR;
                for (long ir = 0; ir < nqa; ir++) {
                    long pa = (q0 / MR + ir) * D * MR;
                    kr->ukr(D, QA + pa, kbp, Pj + ir * MR * NR, NR, 1.0f, 0, MR, NR);
                    kr->ukr(D, dOA + pa, vbp, Dj + ir * MR * NR, NR, 1.0f, 0, MR, NR);
                }
                dp->bwd_ds(Pj, Dj, nq, NR, a->scale, lse + q0, delta + q0, 0);
                for (long ir = 0; ir < x->nd; ir++) {
                    int acc = q0 > 0;
                    kr->ukr(nq, dOTA + ir * Lq * MR + q0 * MR, Pj, dVT + ir * MR * ldt + jr * NR, ldt, 1.0f, acc, MR, NR);
                    kr->ukr(nq, QTA + ir * Lq * MR + q0 * MR, Dj, dKT + ir * MR * ldt + jr * NR, ldt, a->scale, acc, MR, NR);
                }
                // dSᵀ tile: rows = keys of this panel, lanes = queries, one [KB][NR] panel per query panel.
                for (long jq = 0; jq < nqp; jq++)
                    transpose_f32(dp, Dj + jq * NR * NR, NR, DT + jq * KB * NR + jr * NR * NR, NR, NR, NR);
            }
            // dQᵀ[d, queries] (+)= s · Kᵀ[d, keys of this block] · dSᵀ[keys, queries]
            int acc = kb > kb0;
            for (long jq = 0; jq < nqp; jq++)
                for (long ir = 0; ir < x->nd; ir++)
                    kr->ukr(nk, KTA + ir * Lk * MR + k0 * MR, DT + jq * KB * NR,
                            dQT + ir * MR * ldq + q0 + jq * NR, ldq, a->scale, acc, MR, NR);
        }
        float *dK = (float *)a->dk + b * a->k_sb + h * a->k_sh, *dV = (float *)a->dv + b * a->v_sb + h * a->v_sh;
        for (long j = 0; j < nk; j++)
            for (long d = 0; d < D; d++) {
                dK[(k0 + j) * a->k_sl + d] = dKT[d * ldt + j];
                dV[(k0 + j) * a->v_sl + d] = dVT[d * ldt + j];
            }
    }
}

/// dQ[q, d] = Σ_ranges dQᵀ_range[d, q], ranges summed in increasing order.
static void bwd_reduce_task(void *vctx, long t, int thread) {
    (void)thread;
    bwd_t *x = vctx;
    const hp_attn_args *a = &x->a;
    const long D = a->D, Lq = a->Lq, Dp = x->nd * x->kr->mr, ldq = x->nqB * x->kr->nr;
    long per = HP_CEIL_DIV(Lq, x->rq);
    long hh = t / per, q0 = (t % per) * x->rq, q1 = HP_MIN(Lq, q0 + x->rq), bh = x->h0 + hh;
    long b = bh / a->H, h = bh % a->H;
    float *dQ = (float *)a->dq + b * a->q_sb + h * a->q_sh;
    const float *parts = x->dqt + hh * x->splits * Dp * ldq;
    for (long q = q0; q < q1; q++)
        for (long d = 0; d < D; d++) {
            float s = parts[d * ldq + q];
            for (long r = 1; r < x->splits; r++) s += parts[(r * Dp + d) * ldq + q];
            dQ[q * a->q_sl + d] = s;
        }
}

static long gcd(long a, long b) { return b ? gcd(b, a % b) : a; }

static int backward_f32(const hp_attn_args *args) {
    int rc = check(args, 1);
    if (rc || args->B == 0 || args->H == 0 || args->Lq == 0) return rc;
    bwd_t x = {.a = *args};
    norm_strides(&x.a);
    x.dp = hp_dispatch_current();
    x.kr = &x.dp->f32;
    const int MR = x.kr->mr, NR = x.kr->nr;
    const long D = x.a.D, Lq = x.a.Lq, Lk = x.a.Lk, BH = x.a.B * x.a.H;
    x.nqA = HP_CEIL_DIV(Lq, MR), x.nkB = HP_CEIL_DIV(Lk, NR), x.nd = HP_CEIL_DIV(D, MR), x.nqB = HP_CEIL_DIV(Lq, NR);
    size_t sz[P_COUNT] = {
        [P_QA] = (size_t)x.nqA * MR * D, [P_dOA] = (size_t)x.nqA * MR * D, [P_KBt] = (size_t)x.nkB * NR * D,
        [P_VBt] = (size_t)x.nkB * NR * D, [P_dOTA] = (size_t)x.nd * MR * Lq, [P_QTA] = (size_t)x.nd * MR * Lq,
        [P_KTA] = (size_t)x.nd * MR * Lk, [P_DELTA] = (size_t)Lq};
    size_t total = 0;
    for (int i = 0; i < P_COUNT; i++) {
        x.off[i] = total;
        total += HP_ROUND_UP(sz[i], 16);
    }
    x.head = total;
    long l = (long)MR * NR / gcd(MR, NR);  // query blocks align with both MR rows and NR-lane panels
    x.qb = HP_MAX(1, 224 / l) * l;
    x.kb = 4 * NR;
    x.nkb = HP_CEIL_DIV(Lk, x.kb);
    // Ranges of key blocks per head: enough tasks for any pool, fixed by the shape alone (determinism).
    x.splits = HP_MIN(x.nkb, HP_MAX(1, HP_CEIL_DIV(16, BH)));
    x.kps = HP_CEIL_DIV(x.nkb, x.splits);
    x.splits = HP_CEIL_DIV(x.nkb, x.kps);
    x.rq = 64;
    size_t dqt_head = (size_t)x.splits * x.nd * MR * x.nqB * NR;
    long group = HP_MAX(1, (long)(((size_t)96 << 20) / ((x.head + dqt_head) * 4)));
    group = HP_MIN(group, BH);
    x.pack = hp_scratch(0, sizeof(float) * x.head * (size_t)group);
    x.dqt = hp_scratch(1, sizeof(float) * dqt_head * (size_t)group);
    if (!x.pack || !x.dqt) return HP_ENOMEM;
    for (x.h0 = 0; x.h0 < BH; x.h0 += group) {
        x.nh = HP_MIN(group, BH - x.h0);
        hp_parallel_for(P_COUNT * x.nh, bwd_pack_task, &x);
        hp_parallel_for(x.nh * x.splits, bwd_task, &x);
        hp_parallel_for(x.nh * HP_CEIL_DIV(Lq, x.rq), bwd_reduce_task, &x);
    }
    return atomic_load(&x.oom) ? HP_ENOMEM : HP_OK;
}

// ── bf16 backward: through f32 copies ────────────────────────────────────────────────────────────────────
/// Copies a [B,H,L,D] view (bf16) into a contiguous f32 array, or back (to_bf16).
static void view_copy(const hp_attn_args *a, long L, const void *src, long sb, long sh, long sl, float *f32,
                      void *dst, int to_bf16) {
    const long D = a->D;
    for (long b = 0; b < a->B; b++)
        for (long h = 0; h < a->H; h++)
            for (long l = 0; l < L; l++) {
                long off = b * sb + h * sh + l * sl;
                float *f = f32 + ((b * a->H + h) * L + l) * D;
                if (to_bf16) hp_f32_to_bf16_array(f, (uint16_t *)dst + off, (size_t)D);
                else hp_bf16_to_f32_array((const uint16_t *)src + off, f, (size_t)D);
            }
}

static int backward_bf16(const hp_attn_args *args, int (*f32fn)(const hp_attn_args *)) {
    hp_attn_args a = *args;
    norm_strides(&a);
    const size_t nq = (size_t)(a.B * a.H * a.Lq * a.D), nk = (size_t)(a.B * a.H * a.Lk * a.D);
    float *buf = malloc(sizeof(float) * (4 * nq + 4 * nk));
    if (!buf) return HP_ENOMEM;
    float *q = buf, *o = q + nq, *g = o + nq, *dq = g + nq, *k = dq + nq, *v = k + nk, *dk = v + nk, *dv = dk + nk;
    view_copy(&a, a.Lq, a.q, a.q_sb, a.q_sh, a.q_sl, q, NULL, 0);
    view_copy(&a, a.Lq, a.o, a.o_sb, a.o_sh, a.o_sl, o, NULL, 0);
    view_copy(&a, a.Lq, a.dout, a.o_sb, a.o_sh, a.o_sl, g, NULL, 0);
    view_copy(&a, a.Lk, a.k, a.k_sb, a.k_sh, a.k_sl, k, NULL, 0);
    view_copy(&a, a.Lk, a.v, a.v_sb, a.v_sh, a.v_sl, v, NULL, 0);
    hp_attn_args f = {.B = a.B, .H = a.H, .Lq = a.Lq, .Lk = a.Lk, .D = a.D, .scale = a.scale, .dtype = HP_F32,
                      .q = q, .k = k, .v = v, .o = o, .lse = a.lse, .dout = g, .dq = dq, .dk = dk, .dv = dv};
    int rc = f32fn(&f);
    if (rc == HP_OK) {
        view_copy(&a, a.Lq, NULL, a.q_sb, a.q_sh, a.q_sl, dq, a.dq, 1);
        view_copy(&a, a.Lk, NULL, a.k_sb, a.k_sh, a.k_sl, dk, a.dk, 1);
        view_copy(&a, a.Lk, NULL, a.v_sb, a.v_sh, a.v_sl, dv, a.dv, 1);
    }
    free(buf);
    return rc;
}

int hp_attention_backward(const hp_attn_args *args) {
    int rc = check(args, 1);
    if (rc || args->B == 0 || args->H == 0 || args->Lq == 0) return rc;
    return args->dtype == HP_BF16 ? backward_bf16(args, backward_f32) : backward_f32(args);
}

int hp_attention_backward_ref(const hp_attn_args *args) {
    int rc = check(args, 1);
    if (rc || args->B == 0 || args->H == 0 || args->Lq == 0) return rc;
    return args->dtype == HP_BF16 ? backward_bf16(args, backward_ref_f32) : backward_ref_f32(args);
}
