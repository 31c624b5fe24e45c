// elementwise_philox.c — Philox 4x32-10 and the (seed, index) → standard-normal mapping, bit-identical to
// TensorCore/Philox.swift (which documents the mapping). Only IEEE f64 add/mul/div/sqrt are used (this target
// builds with -ffp-contract=off), so the values cannot depend on libm or on the thread count.
#include "hp_elementwise.h"
#include "hp_gemm_api.h"
#include <math.h>
#include <string.h>

void hp_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// 1/(2i+1) and 1/n! as correctly rounded f64 constants: the same bits as the divisions in Philox.swift.
static const double inv_odd[11] = { 1.0 / 1, 1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13, 1.0 / 15,
                                    1.0 / 17, 1.0 / 19, 1.0 / 21 };

static inline double det_log(double u) {
    uint64_t bits;
    memcpy(&bits, &u, 8);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    uint64_t mb = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m;
    memcpy(&m, &mb, 8);
    if (m > 1.4142135623730951) { m = m * 0.5; e += 1; }
    double f = m - 1.0, s = f / (2.0 + f), s2 = s * s, p = inv_odd[10];
    for (int k = 9; k >= 0; k--) p = p * s2 + inv_odd[k];
    return (double)e * 0.6931471805599453 + 2.0 * s * p;
}

static const double inv_sin_fact[9] = { 1.0 / 1, 1.0 / 6, 1.0 / 120, 1.0 / 5040, 1.0 / 362880, 1.0 / 39916800,
                                         1.0 / 6227020800.0, 1.0 / 1307674368000.0, 1.0 / 355687428096000.0 };
static const double inv_cos_fact[9] = { 1.0 / 1, 1.0 / 2, 1.0 / 24, 1.0 / 720, 1.0 / 40320, 1.0 / 3628800,
                                         1.0 / 479001600, 1.0 / 87178291200.0, 1.0 / 20922789888000.0 };

static inline void det_sincos_2pi(double t, double *cs, double *sn) {
    int k = (int)floor(t * 4.0 + 0.5);
    double r = t - (double)k * 0.25, x = r * 6.283185307179586, y = x * x;
    double sp = inv_sin_fact[8], cp = inv_cos_fact[8];
    for (int i = 7; i >= 0; i--) { sp = inv_sin_fact[i] - y * sp; cp = inv_cos_fact[i] - y * cp; }
    double s = x * sp, c = cp;
    switch (k & 3) {
    case 0: *cs = c; *sn = s; break;
    case 1: *cs = -s; *sn = c; break;
    case 2: *cs = -c; *sn = -s; break;
    default: *cs = s; *sn = -c; break;
    }
}

// The two normals of one (a, c) word pair.
static inline void box_muller(uint32_t a, uint32_t c, float *z0, float *z1) {
    double u1 = ((double)a + 0.5) * 0x1p-32, u2 = ((double)c + 0.5) * 0x1p-32;
    double rho = sqrt(-2.0 * det_log(u1)), cs, sn;
    det_sincos_2pi(u2, &cs, &sn);
    *z0 = (float)(rho * cs);
    *z1 = (float)(rho * sn);
}

static inline void block_normals(uint64_t seed, uint64_t b, float z[4]) {
    uint32_t ctr[4] = { (uint32_t)b, (uint32_t)(b >> 32), 0, 0 }, key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) }, r[4];
    hp_philox4x32_10(ctr, key, r);
    box_muller(r[0], r[1], &z[0], &z[1]);
    box_muller(r[2], r[3], &z[2], &z[3]);
}

float hp_randn_one(uint64_t seed, uint64_t index) {
    float z[4];
    block_normals(seed, index / 4, z);
    return z[index % 4];
}

typedef struct { float *y; int64_t n; uint64_t seed, offset; } randn_job;

#if defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void randn_range(void *v, int64_t b, int64_t e) {
    const randn_job *j = v;
    float z[4];
    uint64_t cached = UINT64_MAX;
    for (int64_t i = b; i < e; i++) {
        uint64_t idx = j->offset + (uint64_t)i, blk = idx / 4;
        if (blk != cached || i == b) { block_normals(j->seed, blk, z); cached = blk; }
        j->y[i] = z[idx % 4];
    }
}

#define RANDN_CHUNK 4096

static void randn_task(void *v, long task, int thread) {
    (void)thread;
    const randn_job *j = v;
    int64_t b = (int64_t)task * RANDN_CHUNK, e = b + RANDN_CHUNK < j->n ? b + RANDN_CHUNK : j->n;
    randn_range((void *)j, b, e);
}

void hp_randn_f32(float *y, int64_t n, uint64_t seed, uint64_t offset) {
    if (n <= 0) return;
    randn_job j = { y, n, seed, offset };
    hp_parallel_for((long)((n + RANDN_CHUNK - 1) / RANDN_CHUNK), randn_task, &j);
}
