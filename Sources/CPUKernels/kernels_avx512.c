// AVX-512 kernels: 14x32 f32 microkernel (28 zmm accumulators), 14x32 bf16 microkernel (vdpbf16ps, f32
// accumulation), transposing packs, vectorised epilogue / exp / online-softmax / attention-backward helpers, and
// the W4A16 kernels (small-M f32 and bf16-X variants, dequantising packs).
#include "hp_internal.h"
#if HP_X86
#include <immintrin.h>

#define MR 14
#define NR 32
// Block sizes (build-time tunables: -DHP_KC_F32=... etc.); k-blocks in elements, m-block = MR * HP_MC_MUL.
#ifndef HP_KC_F32
#define HP_KC_F32 256
#endif
#ifndef HP_KC_BF16
#define HP_KC_BF16 1024
#endif
#ifndef HP_MC_MUL
#define HP_MC_MUL 12
#endif

// exp(x) for x in [-87.3, 88.7] (clamped outside): Cody-Waite reduction, degree-6 polynomial, 2^n via scalef.
HP_TARGET_AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.72283f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

HP_TARGET_AVX512 static inline __m512 act512(__m512 x, hp_act act) {
    if (act == HP_ACT_GELU_TANH) {
        __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f),
                                 _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
        // tanh(u) = 1 - 2 / (exp(2u) + 1)
        __m512 e = exp512(_mm512_add_ps(u, u));
        __m512 t = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                                 _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
        return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), t));
    }
    if (act == HP_ACT_SILU) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    }
    return x;
}

static inline __mmask16 tail_mask(long n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

HP_TARGET_AVX512 static inline void store_tile(__m512 *acc0, __m512 *acc1, float *c, long ldc, float alpha,
                                               int accum, int mrv, int nrv) {
    __mmask16 m0 = tail_mask(nrv), m1 = nrv > 16 ? tail_mask(nrv - 16) : 0;
    __m512 va = _mm512_set1_ps(alpha);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i >= mrv) continue;
        float *cr = c + i * ldc;
        __m512 v0, v1;
        if (accum) {
            v0 = _mm512_fmadd_ps(va, acc0[i], _mm512_maskz_loadu_ps(m0, cr));
            v1 = _mm512_fmadd_ps(va, acc1[i], _mm512_maskz_loadu_ps(m1, cr + 16));
        } else {
            v0 = _mm512_mul_ps(va, acc0[i]);
            v1 = _mm512_mul_ps(va, acc1[i]);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

HP_TARGET_AVX512 static void ukr_f32_14x32(long kc, const void *av, const void *bv, float *c, long ldc, float alpha,
                                           int accum, int mrv, int nrv) {
    const float *a = av, *b = bv;
    __m512 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
#pragma clang loop unroll_count(2)
    for (long k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
            acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
        }
        a += MR;
        b += NR;
    }
    store_tile(acc0, acc1, c, ldc, alpha, accum, mrv, nrv);
}

HP_TARGET_AVX512BF16 static void ukr_bf16_14x32(long kc, const void *av, const void *bv, float *c, long ldc,
                                               float alpha, int accum, int mrv, int nrv) {
    const uint32_t *a = av;
    const uint16_t *b = bv;
    __m512 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
    long kp = kc >> 1;
#pragma clang loop unroll_count(2)
    for (long k = 0; k < kp; k++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
        }
        a += MR;
        b += 2 * NR;
    }
    store_tile(acc0, acc1, c, ldc, alpha, accum, mrv, nrv);
}

HP_TARGET_AVX512 static void epilogue512(float *c, long ldc, long rows, long cols, const float *bias, hp_act act) {
    for (long i = 0; i < rows; i++) {
        float *cr = c + i * ldc;
        for (long j = 0; j < cols; j += 16) {
            __mmask16 m = tail_mask(cols - j);
            __m512 v = _mm512_maskz_loadu_ps(m, cr + j);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
            _mm512_mask_storeu_ps(cr + j, m, act512(v, act));
        }
    }
}

HP_TARGET_AVX512 static void softmax_cols512(float *S, long rows, long ncol, float scale, float *m, float *l,
                                             float *corr) {
    __m512 vs = _mm512_set1_ps(scale);
    for (long j = 0; j < ncol; j += 16) {
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (long r = 0; r < rows; r++) mx = _mm512_max_ps(mx, _mm512_mul_ps(_mm512_loadu_ps(S + r * ncol + j), vs));
        __m512 mo = _mm512_loadu_ps(m + j);
        __m512 mn = _mm512_max_ps(mo, mx);
        __m512 cr = exp512(_mm512_sub_ps(mo, mn));
        cr = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mo, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ), cr,
                                  _mm512_setzero_ps());
        __m512 sum = _mm512_setzero_ps();
        for (long r = 0; r < rows; r++) {
            float *p = S + r * ncol + j;
            __m512 e = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(p), vs, mn));
            _mm512_storeu_ps(p, e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_storeu_ps(l + j, _mm512_fmadd_ps(_mm512_loadu_ps(l + j), cr, sum));
        _mm512_storeu_ps(m + j, mn);
        _mm512_storeu_ps(corr + j, cr);
    }
}

HP_TARGET_AVX512 static void scale_cols512(float *X, long rows, long ncol, const float *corr) {
    for (long j = 0; j < ncol; j += 16) {
        __m512 cr = _mm512_loadu_ps(corr + j);
        for (long r = 0; r < rows; r++) _mm512_storeu_ps(X + r * ncol + j, _mm512_mul_ps(_mm512_loadu_ps(X + r * ncol + j), cr));
    }
}

HP_TARGET_AVX512 static void bwd_ds512(float *S, float *dP, long rows, long ncol, float scale, const float *lse,
                                       const float *delta, int per_col) {
    __m512 vs = _mm512_set1_ps(scale);
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < ncol; c += 16) {
            __m512 l = per_col ? _mm512_loadu_ps(lse + c) : _mm512_set1_ps(lse[r]);
            __m512 dl = per_col ? _mm512_loadu_ps(delta + c) : _mm512_set1_ps(delta[r]);
            float *sp = S + r * ncol + c, *dp = dP + r * ncol + c;
            __m512 p = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(sp), vs, l));
            _mm512_storeu_ps(sp, p);
            _mm512_storeu_ps(dp, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(dp), dl)));
        }
}

HP_TARGET_AVX512BF16 static void pack_p_pairs512(const float *S, long nk, long ncol, uint32_t *dst) {
    for (long p = 0; 2 * p < nk; p++) {
        const float *r0 = S + 2 * p * ncol, *r1 = r0 + ncol;
        int has1 = 2 * p + 1 < nk;
        for (long c = 0; c < ncol; c += 16) {
            __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r0 + c)));
            __m512i hi = has1 ? _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r1 + c)))
                              : _mm512_setzero_si512();
            _mm512_storeu_si512(dst + p * ncol + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

HP_TARGET_AVX512BF16 static void to_bf16_512(const float *src, uint16_t *dst, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

/// One 16-byte chunk of a weight row (32 codes) against `mt` rows of X; `na` accumulators per X row break the
/// FMA dependency chains (4 when mt <= 4, 2 when mt <= 8), `set` picks which pair this chunk feeds.
HP_TARGET_AVX512 __attribute__((always_inline)) static inline void w4_chunk(const int mt, const int na, const int set, __m512 *acc,
                                             const __m512 table, const uint8_t *bytes, __m512 s, __m512 z,
                                             const float *xe, const float *xo, long K2) {
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)bytes));
    __m512 whi = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table), s, z);
    __m512 wlo = _mm512_fmadd_ps(_mm512_permutexvar_ps(q, table), s, z);
#pragma clang loop unroll(full)
    for (int m = 0; m < 16; m++) {
        if (m >= mt) continue;
        __m512 e = _mm512_loadu_ps(xe + m * K2), o = _mm512_loadu_ps(xo + m * K2);
        if (na == 4) {
            acc[m * 4 + 2 * set] = _mm512_fmadd_ps(whi, e, acc[m * 4 + 2 * set]);
            acc[m * 4 + 2 * set + 1] = _mm512_fmadd_ps(wlo, o, acc[m * 4 + 2 * set + 1]);
        } else if (na == 2) {
            acc[m * 2] = _mm512_fmadd_ps(whi, e, acc[m * 2]);
            acc[m * 2 + 1] = _mm512_fmadd_ps(wlo, o, acc[m * 2 + 1]);
        } else {
            acc[m] = _mm512_fmadd_ps(wlo, o, _mm512_fmadd_ps(whi, e, acc[m]));
        }
    }
}

// W4A16 small-M kernel. Requires K even, block % 32 == 0, K % block == 0 (blocks inside rows). For each weight
// row n: 16 bytes → 32 codes → two vectors of dequantised weights (high nibbles = even k, low = odd k), FMA'd
// with the even/odd halves of each X row; one horizontal sum per (row of X, row of W) at the end.
HP_TARGET_AVX512 __attribute__((always_inline)) static inline void w4_rows(const int mt, const float *xe, const float *xo, long K,
                                            const uint8_t *data, const float *scale, const float *zero,
                                            const float *code, long block, long n0, long n1, float *y, long ldy) {
    const int na = mt <= 4 ? 4 : mt <= 8 ? 2 : 1;
    const __m512 table = _mm512_loadu_ps(code);
    const long K2 = K / 2, bpr = K / block, bb = block / 2;  // bytes per row, blocks per row, bytes per block
    for (long n = n0; n < n1; n++) {
        __m512 acc[16];
#pragma clang loop unroll(full)
        for (int i = 0; i < 16; i++)
            if (i < mt * na) acc[i] = _mm512_setzero_ps();
        const uint8_t *row = data + n * K2;
        const float *sr = scale + n * bpr, *zr = zero ? zero + n * bpr : NULL;
        long j = 0;
        for (; j + 32 <= K2; j += 32) {
            __m512 s0 = _mm512_set1_ps(sr[j / bb]), s1 = _mm512_set1_ps(sr[(j + 16) / bb]);
            __m512 z0 = zr ? _mm512_set1_ps(zr[j / bb]) : _mm512_setzero_ps();
            __m512 z1 = zr ? _mm512_set1_ps(zr[(j + 16) / bb]) : _mm512_setzero_ps();
            w4_chunk(mt, na, 0, acc, table, row + j, s0, z0, xe + j, xo + j, K2);
            w4_chunk(mt, na, 1, acc, table, row + j + 16, s1, z1, xe + j + 16, xo + j + 16, K2);
        }
        for (; j < K2; j += 16) {
            __m512 s0 = _mm512_set1_ps(sr[j / bb]);
            __m512 z0 = zr ? _mm512_set1_ps(zr[j / bb]) : _mm512_setzero_ps();
            w4_chunk(mt, na, 0, acc, table, row + j, s0, z0, xe + j, xo + j, K2);
        }
#pragma clang loop unroll(full)
        for (int m = 0; m < 16; m++) {
            if (m >= mt) continue;
            __m512 t = acc[m * na];
            if (na >= 2) t = _mm512_add_ps(t, acc[m * na + 1]);
            if (na == 4) t = _mm512_add_ps(t, _mm512_add_ps(acc[m * 4 + 2], acc[m * 4 + 3]));
            y[m * ldy + n] = _mm512_reduce_add_ps(t);
        }
    }
}

// bf16-X variant: 32 bytes (64 codes, one block of 64) → u16 code indices → unpack high/low nibbles into index
// pairs (within 128-bit lanes, hence the permuted X) → vpermw on the bf16 code table → two vdpbf16ps; the block
// sum is scaled once. Codes are rounded to bf16 (X is bf16 already).
HP_TARGET_AVX512BF16 __attribute__((always_inline)) static inline void w4b_rows(
    const int mt, const uint32_t *xp, long K, const uint8_t *data, const float *scale, const float *code,
    long block, long n0, long n1, float *y, long ldy) {
    uint16_t tab[32] = {0};
    for (int i = 0; i < 16; i++) tab[i] = hp_f2bf(code[i]);
    const __m512i table = _mm512_loadu_si512(tab), nib = _mm512_set1_epi16(15);
    const long K2 = K / 2, bpr = K / block, cpb = block / 64;  // 32-byte chunks per block
    for (long n = n0; n < n1; n++) {
        __m512 tot[8];
#pragma clang loop unroll(full)
        for (int i = 0; i < 8; i++)
            if (i < 2 * mt) tot[i] = _mm512_setzero_ps();
        const uint8_t *row = data + n * K2;
        for (long blk = 0; blk < bpr; blk++) {
            __m512 s = _mm512_set1_ps(scale[n * bpr + blk]);
            __m512 part[4];
#pragma clang loop unroll(full)
            for (int m = 0; m < 4; m++)
                if (m < mt) part[m] = _mm512_setzero_ps();
            for (long c = blk * cpb; c < (blk + 1) * cpb; c++) {
                __m512i w16 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(row + 32 * c)));
                __m512i hi = _mm512_srli_epi16(w16, 4), lo = _mm512_and_si512(w16, nib);
                __m512bh wl = (__m512bh)_mm512_permutexvar_epi16(_mm512_unpacklo_epi16(hi, lo), table);
                __m512bh wh = (__m512bh)_mm512_permutexvar_epi16(_mm512_unpackhi_epi16(hi, lo), table);
#pragma clang loop unroll(full)
                for (int m = 0; m < 4; m++) {
                    if (m >= mt) continue;
                    const uint32_t *x = xp + m * K2 + 32 * c;
                    part[m] = _mm512_dpbf16_ps(part[m], wl, (__m512bh)_mm512_loadu_si512(x));
                    part[m] = _mm512_dpbf16_ps(part[m], wh, (__m512bh)_mm512_loadu_si512(x + 16));
                }
            }
#pragma clang loop unroll(full)
            for (int m = 0; m < 4; m++) {
                if (m >= mt) continue;
                int t = 2 * m + (int)(blk & 1);  // two running sums per row shorten the dependency chain
                tot[t] = _mm512_fmadd_ps(part[m], s, tot[t]);
            }
        }
#pragma clang loop unroll(full)
        for (int m = 0; m < 4; m++) {
            if (m >= mt) continue;
            y[m * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(tot[2 * m], tot[2 * m + 1]));
        }
    }
}

HP_TARGET_AVX512BF16 static void w4_gemv_bf16_512(long mt, const uint32_t *xp, long K, const uint8_t *data,
                                                   const float *scale, const float *code, long block, long n0,
                                                   long n1, float *y, long ldy) {
    switch (mt) {
    case 1: w4b_rows(1, xp, K, data, scale, code, block, n0, n1, y, ldy); break;
    case 2: w4b_rows(2, xp, K, data, scale, code, block, n0, n1, y, ldy); break;
    case 3: w4b_rows(3, xp, K, data, scale, code, block, n0, n1, y, ldy); break;
    default: w4b_rows(4, xp, K, data, scale, code, block, n0, n1, y, ldy); break;
    }
}

HP_TARGET_AVX512 static void w4_gemv512(long mt, const float *xe, const float *xo, long K, const uint8_t *data,
                                        const float *scale, const float *zero, const float *code, long block,
                                        long n0, long n1, float *y, long ldy) {
#define W4CASE(n) \
    case n: w4_rows(n, xe, xo, K, data, scale, zero, code, block, n0, n1, y, ldy); break;
    switch (mt) {
        W4CASE(1) W4CASE(2) W4CASE(3) W4CASE(4) W4CASE(5) W4CASE(6) W4CASE(7) W4CASE(8)
        W4CASE(9) W4CASE(10) W4CASE(11) W4CASE(12) W4CASE(13) W4CASE(14) W4CASE(15) W4CASE(16)
    default: break;
    }
#undef W4CASE
}

// In-register 16×16 transpose of 32-bit elements: r[i] lane c becomes r[c] lane i.
HP_TARGET_AVX512 static inline void tr16_regs(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

// 16×16 transpose of 32-bit elements: d[c*ld + r] = s[r*ls + c].
HP_TARGET_AVX512 static inline void tr16x16(const uint32_t *s, long ls, uint32_t *d, long ld) {
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(s + i * ls);
    tr16_regs(r);
    for (int i = 0; i < 16; i++) _mm512_storeu_si512(d + i * ld, r[i]);
}

/// Packs `rows` (<= MR) rows of 32-bit units into an A panel [units][MR]: d[u*MR + i] = row_i[u].
HP_TARGET_AVX512 static void pack_a_t32(const uint32_t *src, long ls, int rows, long units, uint32_t *d) {
    const __mmask16 m = (__mmask16)((1u << MR) - 1);
    long u = 0;
    for (; u + 16 <= units; u += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_si512(src + i * ls + u) : _mm512_setzero_si512();
        tr16_regs(r);
        for (int c = 0; c < 16; c++) _mm512_mask_storeu_epi32(d + (u + c) * MR, m, r[c]);
    }
    for (; u < units; u++)
        for (int i = 0; i < MR; i++) d[u * MR + i] = i < rows ? src[i * ls + u] : 0;
}

/// Fast A packs (op(A) stored [M,K]): f32 → f32 panels, bf16 → bf16-pair panels (K even). 0: not handled.
HP_TARGET_AVX512 static int pack_a_fast512(const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows, long K,
                                          void *dst) {
    if (a->trans || kr->mr != MR) return 0;
    if (kr->fmt == HP_PACK_F32 && a->dtype == HP_F32) {
        pack_a_t32((const uint32_t *)((const float *)a->p + r0 * a->ld), a->ld, (int)rows, K, dst);
        return 1;
    }
    if (kr->fmt == HP_PACK_BF16PAIR && a->dtype == HP_BF16 && K % 2 == 0 && a->ld % 2 == 0 &&
        ((uintptr_t)a->p & 3) == 0) {
        pack_a_t32((const uint32_t *)((const uint16_t *)a->p + r0 * a->ld), a->ld / 2, (int)rows, K / 2, dst);
        return 1;
    }
    return 0;
}

/// f32 transpose with 16×16 register blocks and a scalar rim.
HP_TARGET_AVX512 static void transpose512(const float *src, long ls, float *dst, long ld, long rows, long cols) {
    const uint32_t *s = (const uint32_t *)src;
    uint32_t *d = (uint32_t *)dst;
    long r = 0;
    for (; r + 16 <= rows; r += 16) {
        long c = 0;
        for (; c + 16 <= cols; c += 16) tr16x16(s + r * ls + c, ls, d + c * ld + r, ld);
        for (; c < cols; c++)
            for (long i = r; i < r + 16; i++) d[c * ld + i] = s[i * ls + c];
    }
    for (; r < rows; r++)
        for (long c = 0; c < cols; c++) d[c * ld + r] = s[r * ls + c];
}

/// Transposing pack of 32-bit units: rows [0, cols) of src (row j at src + j*ls, `units` u32 each) become
/// panel columns: d[u*NR + j] = src[j*ls + u]. Full 16×16 blocks use tr16x16, the rest is scalar.
HP_TARGET_AVX512 static void pack_t32(const uint32_t *src, long ls, long cols, long units, uint32_t *d) {
    long j0 = 0;
    for (; j0 + 16 <= cols; j0 += 16) {
        long u = 0;
        for (; u + 16 <= units; u += 16) tr16x16(src + j0 * ls + u, ls, d + u * NR + j0, NR);
        for (; u < units; u++)
            for (long j = j0; j < j0 + 16; j++) d[u * NR + j] = src[j * ls + u];
    }
    for (long j = j0; j < cols; j++)
        for (long u = 0; u < units; u++) d[u * NR + j] = src[j * ls + u];
}

// 32 weights from 16 code bytes of a row: the high nibbles (even k) into *hi, the low ones (odd k) into *lo, each
// code[q] * s + z (the block's scale and zero).
HP_TARGET_AVX512 static inline void dequant_q4x16(const uint8_t *bytes, __m512 table, __m512 s, __m512 z, __m512 *hi,
                                                  __m512 *lo) {
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)bytes));
    *hi = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table), s, z);
    *lo = _mm512_fmadd_ps(_mm512_permutexvar_ps(q, table), s, z);
}

// Dequantising pack of B = Wᵀ for the f32 panel format [k][32]: 16 bytes of a weight row give 32 values,
// scattered down the panel's column j (high nibble → even k, low nibble → odd k).
HP_TARGET_AVX512 static int pack_b_q4_f32(const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0, long cols,
                                           long K, void *dst) {
    (void)kr;
    float *d = dst;
    const __m512 table = _mm512_loadu_ps(w->code);
    const long K2 = K / 2, bpr = K / w->block, bb = w->block / 2;
    const __m512i vidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(2 * NR));
    if (cols < NR) memset(d, 0, sizeof(float) * (size_t)K * NR);
    for (long j = 0; j < cols; j++) {
        long n = c0 + j;
        const uint8_t *row = w->data + n * K2;
        for (long blk = 0; blk < bpr; blk++) {
            __m512 s = _mm512_set1_ps(w->scale[n * bpr + blk]);
            __m512 z = w->zero ? _mm512_set1_ps(w->zero[n * bpr + blk]) : _mm512_setzero_ps();
            for (long jj = blk * bb; jj < (blk + 1) * bb; jj += 16) {
                __m512 whi, wlo;
                dequant_q4x16(row + jj, table, s, z, &whi, &wlo);
                _mm512_i32scatter_ps(d + 2 * jj * NR + j, vidx, whi, 4);
                _mm512_i32scatter_ps(d + (2 * jj + 1) * NR + j, vidx, wlo, 4);
            }
        }
    }
    return 1;
}

// Same for the bf16-pair panel format [k/2][32][2]: each weight row is dequantised into a u32 row (even k |
// odd k << 16, one per byte), 16 rows at a time, then transposed into the panel.
HP_TARGET_AVX512BF16 static int pack_b_q4_pair(const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0, long cols,
                                                long K, void *dst) {
    if (kr->fmt == HP_PACK_F32) return pack_b_q4_f32(kr, w, c0, cols, K, dst);
    uint32_t *d = dst;
    const __m512 table = _mm512_loadu_ps(w->code);
    const long K2 = K / 2, bpr = K / w->block, bb = w->block / 2;
    uint32_t *tmp = hp_scratch(3, sizeof(uint32_t) * (size_t)(NR * K2));
    if (!tmp) return 0;
    if (cols < NR) memset(d, 0, sizeof(uint32_t) * (size_t)K2 * NR);
    for (long j = 0; j < cols; j++) {
        long n = c0 + j;
        const uint8_t *row = w->data + n * K2;
        for (long blk = 0; blk < bpr; blk++) {
            __m512 s = _mm512_set1_ps(w->scale[n * bpr + blk]);
            __m512 z = w->zero ? _mm512_set1_ps(w->zero[n * bpr + blk]) : _mm512_setzero_ps();
            for (long jj = blk * bb; jj < (blk + 1) * bb; jj += 16) {
                __m512 whi, wlo;
                dequant_q4x16(row + jj, table, s, z, &whi, &wlo);
                __m512i hb = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(whi));
                __m512i lb = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(wlo));
                _mm512_storeu_si512(tmp + j * K2 + jj, _mm512_or_si512(hb, _mm512_slli_epi32(lb, 16)));
            }
        }
    }
    pack_t32(tmp, K2, cols, K2, d);
    return 1;
}

/// Fast transposed-B packs (op(B) stored [N,K]): f32 → f32 panels, bf16 → bf16-pair panels (K even).
/// Returns 0 when the case is not handled here.
HP_TARGET_AVX512 static int pack_b_fast512(const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols, long K,
                                          void *dst) {
    if (b->q4 || kr->nr != NR) return 0;
    if (!b->trans) {
        if (kr->fmt != HP_PACK_BF16PAIR || b->dtype != HP_BF16) return 0;
        // Interleave rows k and k+1: u32 = B[k][j] | B[k+1][j] << 16.
        const uint16_t *p = (const uint16_t *)b->p + c0;
        uint32_t *d = dst;
        __mmask32 m = cols >= 32 ? 0xffffffffu : (__mmask32)((1u << cols) - 1);
        for (long k = 0; k < K; k += 2) {
            __m512i r0 = _mm512_maskz_loadu_epi16(m, p + k * b->ld);
            __m512i r1 = k + 1 < K ? _mm512_maskz_loadu_epi16(m, p + (k + 1) * b->ld) : _mm512_setzero_si512();
            __m512i lo = _mm512_or_si512(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(r0)),
                                         _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(r1)), 16));
            __m512i hi = _mm512_or_si512(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r0, 1)),
                                         _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r1, 1)), 16));
            _mm512_storeu_si512(d + (k >> 1) * NR, lo);
            _mm512_storeu_si512(d + (k >> 1) * NR + 16, hi);
        }
        return 1;
    }
    if (kr->fmt == HP_PACK_F32 && b->dtype == HP_F32) {
        if (cols < NR) memset(dst, 0, sizeof(float) * (size_t)K * NR);
        pack_t32((const uint32_t *)((const float *)b->p + c0 * b->ld), b->ld, cols, K, dst);
        return 1;
    }
    if (kr->fmt == HP_PACK_BF16PAIR && b->dtype == HP_BF16 && K % 2 == 0 && b->ld % 2 == 0 &&
        ((uintptr_t)b->p & 3) == 0) {
        if (cols < NR) memset(dst, 0, sizeof(uint32_t) * (size_t)(K / 2) * NR);
        pack_t32((const uint32_t *)((const uint16_t *)b->p + c0 * b->ld), b->ld / 2, cols, K / 2, dst);
        return 1;
    }
    return 0;
}

const hp_dispatch hp_dispatch_avx512 = {
    .isa = HP_ISA_AVX512,
    .f32 = {.mr = MR, .nr = NR, .fmt = HP_PACK_F32, .kc = HP_KC_F32, .mc = MR * HP_MC_MUL, .ukr = ukr_f32_14x32, .desc = "f32 fma (zmm)"},
    .bf16 = {.mr = MR, .nr = NR, .fmt = HP_PACK_F32, .kc = HP_KC_F32, .mc = MR * HP_MC_MUL, .ukr = ukr_f32_14x32, .desc = "f32 fma (zmm)"},
    .epilogue = epilogue512,
    .softmax_cols = softmax_cols512,
    .scale_cols = scale_cols512,
    .bwd_ds = bwd_ds512,
    .w4_gemv = w4_gemv512,
    .pack_b_q4 = pack_b_q4_f32,
    .pack_b_fast = pack_b_fast512,
    .pack_a_fast = pack_a_fast512,
    .transpose = transpose512,
};

const hp_dispatch hp_dispatch_avx512bf16 = {
    .isa = HP_ISA_AVX512_BF16,
    .f32 = {.mr = MR, .nr = NR, .fmt = HP_PACK_F32, .kc = HP_KC_F32, .mc = MR * HP_MC_MUL, .ukr = ukr_f32_14x32, .desc = "f32 fma (zmm)"},
    .bf16 = {.mr = MR, .nr = NR, .fmt = HP_PACK_BF16PAIR, .kc = HP_KC_BF16, .mc = MR * HP_MC_MUL, .ukr = ukr_bf16_14x32, .desc = "bf16 vdpbf16ps, f32 accumulate"},
    .epilogue = epilogue512,
    .softmax_cols = softmax_cols512,
    .scale_cols = scale_cols512,
    .bwd_ds = bwd_ds512,
    .w4_gemv = w4_gemv512,
    .pack_b_q4 = pack_b_q4_pair,
    .w4_gemv_bf16 = w4_gemv_bf16_512,
    .pack_p_pairs = pack_p_pairs512,
    .to_bf16 = to_bf16_512,
    .pack_b_fast = pack_b_fast512,
    .pack_a_fast = pack_a_fast512,
    .transpose = transpose512,
};
#endif
