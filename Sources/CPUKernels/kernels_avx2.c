// AVX2+FMA kernels: 6x16 f32 microkernel (12 ymm accumulators), vectorised epilogue / exp / online-softmax
// helpers. bf16 inputs are converted to f32 when packing.
#include "hp_internal.h"
#if HP_X86
#include <immintrin.h>

#define MR 6
#define NR 16

HP_TARGET_AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.72283f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // 2^n by building the exponent: n in [-126, 128] after the clamp; split to stay in range.
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

HP_TARGET_AVX2 static inline __m256 act256(__m256 x, hp_act act) {
    if (act == HP_ACT_GELU_TANH) {
        __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
        __m256 e = exp256(_mm256_add_ps(u, u));
        __m256 t = _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), t));
    }
    if (act == HP_ACT_SILU) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
        return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
    return x;
}

HP_TARGET_AVX2 static void ukr_f32_6x16(long kc, const void *av, const void *bv, float *c, long ldc, float alpha,
                                        int accum, int mrv, int nrv) {
    const float *a = av, *b = bv;
    __m256 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
#pragma clang loop unroll_count(4)
    for (long k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
            acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
        }
        a += MR;
        b += NR;
    }
    __m256 va = _mm256_set1_ps(alpha);
    if (mrv == MR && nrv == NR) {
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            float *cr = c + i * ldc;
            __m256 v0 = accum ? _mm256_fmadd_ps(va, acc0[i], _mm256_loadu_ps(cr)) : _mm256_mul_ps(va, acc0[i]);
            __m256 v1 = accum ? _mm256_fmadd_ps(va, acc1[i], _mm256_loadu_ps(cr + 8)) : _mm256_mul_ps(va, acc1[i]);
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        }
        return;
    }
    // Edge tile: same arithmetic on a copy, then the valid part is written.
    float tmp[MR * NR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps();
        if (accum && i < mrv)
            for (int j = 0; j < nrv; j++) tmp[i * NR + j] = c[i * ldc + j];
        if (accum && i < mrv) { o0 = _mm256_loadu_ps(tmp + i * NR); o1 = _mm256_loadu_ps(tmp + i * NR + 8); }
        __m256 v0 = accum ? _mm256_fmadd_ps(va, acc0[i], o0) : _mm256_mul_ps(va, acc0[i]);
        __m256 v1 = accum ? _mm256_fmadd_ps(va, acc1[i], o1) : _mm256_mul_ps(va, acc1[i]);
        _mm256_storeu_ps(tmp + i * NR, v0);
        _mm256_storeu_ps(tmp + i * NR + 8, v1);
    }
    for (int i = 0; i < mrv; i++)
        for (int j = 0; j < nrv; j++) c[i * ldc + j] = tmp[i * NR + j];
}

HP_TARGET_AVX2 static void epilogue256(float *c, long ldc, long rows, long cols, const float *bias, hp_act act) {
    for (long i = 0; i < rows; i++) {
        float *cr = c + i * ldc;
        long j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m256 v = _mm256_loadu_ps(cr + j);
            if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(cr + j, act256(v, act));
        }
        if (j < cols) {
            float t[8] = {0}, bt[8] = {0};
            for (long q = j; q < cols; q++) { t[q - j] = cr[q]; if (bias) bt[q - j] = bias[q]; }
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(t), _mm256_loadu_ps(bt));
            _mm256_storeu_ps(t, act256(v, act));
            for (long q = j; q < cols; q++) cr[q] = t[q - j];
        }
    }
}

HP_TARGET_AVX2 static void softmax_cols256(float *S, long rows, long ncol, float scale, float *m, float *l,
                                           float *corr) {
    __m256 vs = _mm256_set1_ps(scale);
    for (long j = 0; j < ncol; j += 8) {
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (long r = 0; r < rows; r++) mx = _mm256_max_ps(mx, _mm256_mul_ps(_mm256_loadu_ps(S + r * ncol + j), vs));
        __m256 mo = _mm256_loadu_ps(m + j);
        __m256 mn = _mm256_max_ps(mo, mx);
        __m256 cr = exp256(_mm256_sub_ps(mo, mn));
        cr = _mm256_blendv_ps(cr, _mm256_setzero_ps(), _mm256_cmp_ps(mo, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ));
        __m256 sum = _mm256_setzero_ps();
        for (long r = 0; r < rows; r++) {
            float *p = S + r * ncol + j;
            __m256 e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(p), vs, mn));
            _mm256_storeu_ps(p, e);
            sum = _mm256_add_ps(sum, e);
        }
        _mm256_storeu_ps(l + j, _mm256_fmadd_ps(_mm256_loadu_ps(l + j), cr, sum));
        _mm256_storeu_ps(m + j, mn);
        _mm256_storeu_ps(corr + j, cr);
    }
}

HP_TARGET_AVX2 static void scale_cols256(float *X, long rows, long ncol, const float *corr) {
    for (long j = 0; j < ncol; j += 8) {
        __m256 cr = _mm256_loadu_ps(corr + j);
        for (long r = 0; r < rows; r++) _mm256_storeu_ps(X + r * ncol + j, _mm256_mul_ps(_mm256_loadu_ps(X + r * ncol + j), cr));
    }
}

HP_TARGET_AVX2 static void bwd_ds256(float *S, float *dP, long rows, long ncol, float scale, const float *lse,
                                     const float *delta, int per_col) {
    __m256 vs = _mm256_set1_ps(scale);
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < ncol; c += 8) {
            __m256 l = per_col ? _mm256_loadu_ps(lse + c) : _mm256_set1_ps(lse[r]);
            __m256 dl = per_col ? _mm256_loadu_ps(delta + c) : _mm256_set1_ps(delta[r]);
            float *sp = S + r * ncol + c, *dp = dP + r * ncol + c;
            __m256 p = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(sp), vs, l));
            _mm256_storeu_ps(sp, p);
            _mm256_storeu_ps(dp, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dp), dl)));
        }
}

// 16-entry table lookup on 8 lanes: vpermps reaches 8 entries, bit 3 of the index picks the half.
HP_TARGET_AVX2 static inline __m256 lut16(__m256 tlo, __m256 thi, __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(tlo, idx), b = _mm256_permutevar8x32_ps(thi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/// Dequantises 8 bytes (16 codes) → even-k and odd-k weights.
HP_TARGET_AVX2 static inline void q4_8bytes(const uint8_t *bytes, __m256 tlo, __m256 thi, __m256 s, __m256 z,
                                            __m256 *whi, __m256 *wlo) {
    __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)bytes));
    *whi = _mm256_fmadd_ps(lut16(tlo, thi, _mm256_srli_epi32(q, 4)), s, z);
    *wlo = _mm256_fmadd_ps(lut16(tlo, thi, q), s, z);
}

// W4A16 small-M kernel (same contract as the AVX-512 one): rows [n0, n1) of Y for mt <= 4 rows of X.
HP_TARGET_AVX2 __attribute__((always_inline)) static inline void w4_rows256(
    const int mt, const float *xe, const float *xo, long K, const uint8_t *data, const float *scale,
    const float *zero, const float *code, long block, long n0, long n1, float *y, long ldy) {
    const __m256 tlo = _mm256_loadu_ps(code), thi = _mm256_loadu_ps(code + 8);
    const long K2 = K / 2, bpr = K / block, bb = block / 2;
    for (long n = n0; n < n1; n++) {
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        const uint8_t *row = data + n * K2;
        for (long blk = 0; blk < bpr; blk++) {
            __m256 sv = _mm256_set1_ps(scale[n * bpr + blk]);
            __m256 zv = zero ? _mm256_set1_ps(zero[n * bpr + blk]) : _mm256_setzero_ps();
            for (long j = blk * bb; j < (blk + 1) * bb; j += 8) {
                __m256 whi, wlo;
                q4_8bytes(row + j, tlo, thi, sv, zv, &whi, &wlo);
                for (int m = 0; m < 4; m++) {
                    if (m >= mt) continue;
                    acc[2 * m] = _mm256_fmadd_ps(whi, _mm256_loadu_ps(xe + m * K2 + j), acc[2 * m]);
                    acc[2 * m + 1] = _mm256_fmadd_ps(wlo, _mm256_loadu_ps(xo + m * K2 + j), acc[2 * m + 1]);
                }
            }
        }
        for (int m = 0; m < 4; m++) {
            if (m >= mt) continue;
            __m256 t = _mm256_add_ps(acc[2 * m], acc[2 * m + 1]);
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            y[m * ldy + n] = _mm_cvtss_f32(h);
        }
    }
}

HP_TARGET_AVX2 static void w4_gemv256(long mt, const float *xe, const float *xo, long K, const uint8_t *data,
                                      const float *scale, const float *zero, const float *code, long block,
                                      long n0, long n1, float *y, long ldy) {
    // Up to 4 rows of X per pass (16 ymm registers); larger M loops over groups of 4.
    for (long m0 = 0; m0 < mt; m0 += 4) {
        long g = HP_MIN(4, mt - m0);
        const long K2 = K / 2;
        const float *e = xe + m0 * K2, *o = xo + m0 * K2;
        float *yy = y + m0 * ldy;
        switch (g) {
        case 1: w4_rows256(1, e, o, K, data, scale, zero, code, block, n0, n1, yy, ldy); break;
        case 2: w4_rows256(2, e, o, K, data, scale, zero, code, block, n0, n1, yy, ldy); break;
        case 3: w4_rows256(3, e, o, K, data, scale, zero, code, block, n0, n1, yy, ldy); break;
        default: w4_rows256(4, e, o, K, data, scale, zero, code, block, n0, n1, yy, ldy); break;
        }
    }
}

/// Dequantising pack of B = Wᵀ into f32 panels [k][16]: each row dequantised 16 values at a time into even/odd
/// buffers, then written down the panel column.
HP_TARGET_AVX2 static int pack_b_q4_256(const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0, long cols,
                                        long K, void *dst) {
    if (kr->fmt != HP_PACK_F32) return 0;
    float *d = dst;
    const __m256 tlo = _mm256_loadu_ps(w->code), thi = _mm256_loadu_ps(w->code + 8);
    const long K2 = K / 2, bpr = K / w->block, bb = w->block / 2;
    float *tmp = hp_scratch(3, sizeof(float) * (size_t)K);
    if (!tmp) return 0;
    float *te = tmp, *to = tmp + K2;
    if (cols < NR) memset(d, 0, sizeof(float) * (size_t)K * NR);
    for (long j = 0; j < cols; j++) {
        long n = c0 + j;
        const uint8_t *row = w->data + n * K2;
        for (long blk = 0; blk < bpr; blk++) {
            __m256 sv = _mm256_set1_ps(w->scale[n * bpr + blk]);
            __m256 zv = w->zero ? _mm256_set1_ps(w->zero[n * bpr + blk]) : _mm256_setzero_ps();
            for (long jj = blk * bb; jj < (blk + 1) * bb; jj += 8) {
                __m256 whi, wlo;
                q4_8bytes(row + jj, tlo, thi, sv, zv, &whi, &wlo);
                _mm256_storeu_ps(te + jj, whi);
                _mm256_storeu_ps(to + jj, wlo);
            }
        }
        for (long kk = 0; kk < K2; kk++) {
            d[(2 * kk) * NR + j] = te[kk];
            d[(2 * kk + 1) * NR + j] = to[kk];
        }
    }
    return 1;
}

const hp_dispatch hp_dispatch_avx2 = {
    .isa = HP_ISA_AVX2,
    .f32 = {.mr = MR, .nr = NR, .fmt = HP_PACK_F32, .kc = 256, .mc = MR * 24, .ukr = ukr_f32_6x16, .desc = "f32 fma (avx2)"},
    .bf16 = {.mr = MR, .nr = NR, .fmt = HP_PACK_F32, .kc = 256, .mc = MR * 24, .ukr = ukr_f32_6x16, .desc = "f32 fma (avx2)"},
    .epilogue = epilogue256,
    .softmax_cols = softmax_cols256,
    .scale_cols = scale_cols256,
    .bwd_ds = bwd_ds256,
    .w4_gemv = w4_gemv256,
    .pack_b_q4 = pack_b_q4_256,
};
#endif
