// CUDA kernels for fused attention, flash style (the score matrix is never stored): the forward keeps a running
// max and sum per query (online softmax) over key tiles staged in shared memory and writes out and the row
// log-sum-exp; the backward recomputes P from lse in two deterministic passes (dK,dV per key; dQ per query).
// Scalar twins: ReferenceBackend.attention / attentionBackward.
//
// Legend: q (B,H,Lq,D), k, v (B,H,Lk,D), lse (B,H,Lq); one thread per query (or key) row, HP_AT_TILE rows per block,
// D ≤ HP_AT_MAXD.

enum AttentionKernels {
    static let source = #"""
#define HP_AT_TILE 64
#define HP_AT_MAXD 128
__device__ __forceinline__ float at_load(const void *p, int bf16, i64 i) {
    return bf16 ? bf16_to_f32(((const u16 *)p)[i]) : ((const float *)p)[i];
}
/* grid (ceil(Lq / HP_AT_TILE), B·H); dynamic shared memory 2·HP_AT_TILE·D floats (a K and a V tile). */
extern "C" __global__ void hp_attention_forward(const void *q, const void *k, const void *v, void *o, float *lse,
                                                i64 Lq, i64 Lk, i64 D, float scale, int bf16) {
    extern __shared__ float tile[];
    float *ks = tile, *vs = tile + HP_AT_TILE * D;
    const i64 bh = blockIdx.y, i = (i64)blockIdx.x * HP_AT_TILE + threadIdx.x;
    const bool live = i < Lq;
    float qr[HP_AT_MAXD], acc[HP_AT_MAXD];
    for (i64 c = 0; c < D; c++) { qr[c] = live ? at_load(q, bf16, (bh * Lq + i) * D + c) : 0.f; acc[c] = 0.f; }
    float m = -__int_as_float(0x7f800000), l = 0.f;
    for (i64 j0 = 0; j0 < Lk; j0 += HP_AT_TILE) {
        const i64 tn = Lk - j0 < HP_AT_TILE ? Lk - j0 : HP_AT_TILE;
        __syncthreads();
        for (i64 t = threadIdx.x; t < tn * D; t += blockDim.x) {
            ks[t] = at_load(k, bf16, (bh * Lk + j0) * D + t);
            vs[t] = at_load(v, bf16, (bh * Lk + j0) * D + t);
        }
        __syncthreads();
        if (!live) continue;
        for (i64 j = 0; j < tn; j++) {
            float s = 0.f;
            for (i64 c = 0; c < D; c++) s += qr[c] * ks[j * D + c];
            s *= scale;
            const float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
            l = l * corr + p;
            for (i64 c = 0; c < D; c++) acc[c] = acc[c] * corr + p * vs[j * D + c];
            m = mn;
        }
    }
    if (!live) return;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (i64 c = 0; c < D; c++) {
        const i64 oi = (bh * Lq + i) * D + c;
        if (bf16) ((u16 *)o)[oi] = f32_to_bf16(acc[c] * inv); else ((float *)o)[oi] = acc[c] * inv;
    }
    lse[bh * Lq + i] = m + logf(l);
}
/* rowdot[bh·Lq + i] = Σ_c dout·out (the D_i term of the backward). */
extern "C" __global__ void hp_attention_rowdot(const float *g, const float *o, float *rowdot, i64 rows, i64 D) {
    GRID_STRIDE(r, rows) {
        double s = 0.0;
        for (i64 c = 0; c < D; c++) s += (double)g[r * D + c] * (double)o[r * D + c];
        rowdot[r] = (float)s;
    }
}
/* dK, dV for one key per thread; query tiles (q, dout) staged in shared memory. grid (ceil(Lk / TILE), B·H);
   dynamic shared memory 2·TILE·D + 2·TILE floats. */
extern "C" __global__ void hp_attention_backward_kv(const float *g, const float *q, const float *k, const float *v,
                                                    const float *lse, const float *rowdot, float *dk, float *dv,
                                                    i64 Lq, i64 Lk, i64 D, float scale) {
    extern __shared__ float tile[];
    float *qs = tile, *gs = tile + HP_AT_TILE * D, *ls = gs + HP_AT_TILE * D, *ds = ls + HP_AT_TILE;
    const i64 bh = blockIdx.y, j = (i64)blockIdx.x * HP_AT_TILE + threadIdx.x;
    const bool live = j < Lk;
    float kr[HP_AT_MAXD], vr[HP_AT_MAXD], dkr[HP_AT_MAXD], dvr[HP_AT_MAXD];
    for (i64 c = 0; c < D; c++) {
        kr[c] = live ? k[(bh * Lk + j) * D + c] : 0.f;
        vr[c] = live ? v[(bh * Lk + j) * D + c] : 0.f;
        dkr[c] = 0.f; dvr[c] = 0.f;
    }
    for (i64 i0 = 0; i0 < Lq; i0 += HP_AT_TILE) {
        const i64 tn = Lq - i0 < HP_AT_TILE ? Lq - i0 : HP_AT_TILE;
        __syncthreads();
        for (i64 t = threadIdx.x; t < tn * D; t += blockDim.x) {
            qs[t] = q[(bh * Lq + i0) * D + t];
            gs[t] = g[(bh * Lq + i0) * D + t];
        }
        for (i64 t = threadIdx.x; t < tn; t += blockDim.x) { ls[t] = lse[bh * Lq + i0 + t]; ds[t] = rowdot[bh * Lq + i0 + t]; }
        __syncthreads();
        if (!live) continue;
        for (i64 i = 0; i < tn; i++) {
            float s = 0.f, dp = 0.f;
            for (i64 c = 0; c < D; c++) { s += qs[i * D + c] * kr[c]; dp += gs[i * D + c] * vr[c]; }
            const float p = expf(s * scale - ls[i]), dsc = p * (dp - ds[i]) * scale;
            for (i64 c = 0; c < D; c++) { dvr[c] += p * gs[i * D + c]; dkr[c] += dsc * qs[i * D + c]; }
        }
    }
    if (!live) return;
    for (i64 c = 0; c < D; c++) { dk[(bh * Lk + j) * D + c] = dkr[c]; dv[(bh * Lk + j) * D + c] = dvr[c]; }
}
/* dQ for one query per thread; key tiles (k, v) staged in shared memory. grid (ceil(Lq / TILE), B·H);
   dynamic shared memory 2·TILE·D floats. */
extern "C" __global__ void hp_attention_backward_q(const float *g, const float *q, const float *k, const float *v,
                                                   const float *lse, const float *rowdot, float *dq,
                                                   i64 Lq, i64 Lk, i64 D, float scale) {
    extern __shared__ float tile[];
    float *ks = tile, *vs = tile + HP_AT_TILE * D;
    const i64 bh = blockIdx.y, i = (i64)blockIdx.x * HP_AT_TILE + threadIdx.x;
    const bool live = i < Lq;
    float qr[HP_AT_MAXD], gr[HP_AT_MAXD], dqr[HP_AT_MAXD];
    for (i64 c = 0; c < D; c++) {
        qr[c] = live ? q[(bh * Lq + i) * D + c] : 0.f;
        gr[c] = live ? g[(bh * Lq + i) * D + c] : 0.f;
        dqr[c] = 0.f;
    }
    const float li = live ? lse[bh * Lq + i] : 0.f, di = live ? rowdot[bh * Lq + i] : 0.f;
    for (i64 j0 = 0; j0 < Lk; j0 += HP_AT_TILE) {
        const i64 tn = Lk - j0 < HP_AT_TILE ? Lk - j0 : HP_AT_TILE;
        __syncthreads();
        for (i64 t = threadIdx.x; t < tn * D; t += blockDim.x) {
            ks[t] = k[(bh * Lk + j0) * D + t];
            vs[t] = v[(bh * Lk + j0) * D + t];
        }
        __syncthreads();
        if (!live) continue;
        for (i64 j = 0; j < tn; j++) {
            float s = 0.f, dp = 0.f;
            for (i64 c = 0; c < D; c++) { s += qr[c] * ks[j * D + c]; dp += gr[c] * vs[j * D + c]; }
            const float p = expf(s * scale - li), dsc = p * (dp - di) * scale;
            for (i64 c = 0; c < D; c++) dqr[c] += dsc * ks[j * D + c];
        }
    }
    if (!live) return;
    for (i64 c = 0; c < D; c++) dq[(bh * Lq + i) * D + c] = dqr[c];
}
"""#
    static let kernels = ["hp_attention_forward", "hp_attention_rowdot", "hp_attention_backward_kv", "hp_attention_backward_q"]
}
