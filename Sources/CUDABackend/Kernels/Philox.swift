// CUDA kernel for `randomNormal`: Philox4x32-10 and the exact (seed, index) → normal mapping of
// TensorCore/Philox.swift (scalar twin: Philox.normal; C twin: hp_randn_f32). Compiled with -fmad=false and
// written with __dadd_rn/__dmul_rn/__ddiv_rn so that no contraction or libm call can change a bit.

enum PhiloxKernels {
    static let source = #"""
__device__ __forceinline__ void philox_block(unsigned c[4], unsigned k0, unsigned k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const u64 p0 = (u64)0xD2511F53u * c[0], p1 = (u64)0xCD9E8D57u * c[2];
        const unsigned hi0 = (unsigned)(p0 >> 32), lo0 = (unsigned)p0, hi1 = (unsigned)(p1 >> 32), lo1 = (unsigned)p1;
        const unsigned n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}
/* Natural log for u in (0, 1], IEEE add/mul/div only (Philox.detLog). */
__device__ double det_log(double u) {
    const u64 bits = (u64)__double_as_longlong(u);
    int e = (int)((bits >> 52) & 0x7FF) - 1023;
    double m = __longlong_as_double((long long)((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull));
    if (m > 1.4142135623730951) { m = __dmul_rn(m, 0.5); e += 1; }
    const double f = __dadd_rn(m, -1.0);
    const double s = __ddiv_rn(f, __dadd_rn(2.0, f));
    const double s2 = __dmul_rn(s, s);
    double p = __ddiv_rn(1.0, 21.0);
    for (int k = 19; k >= 1; k -= 2) p = __dadd_rn(__dmul_rn(p, s2), __ddiv_rn(1.0, (double)k));
    return __dadd_rn(__dmul_rn((double)e, 0.6931471805599453), __dmul_rn(__dmul_rn(2.0, s), p));
}
__constant__ double hp_sin_fact[9] = {1.0, 6.0, 120.0, 5040.0, 362880.0, 39916800.0, 6227020800.0, 1307674368000.0,
                                      355687428096000.0};
__constant__ double hp_cos_fact[9] = {1.0, 2.0, 24.0, 720.0, 40320.0, 3628800.0, 479001600.0, 87178291200.0,
                                      20922789888000.0};
/* (cos 2πt, sin 2πt), IEEE add/mul/div only (Philox.detSinCos2Pi). */
__device__ void det_sincos_2pi(double t, double *cs, double *sn) {
    const int k = (int)floor(__dadd_rn(__dmul_rn(t, 4.0), 0.5));
    const double r = __dadd_rn(t, -__dmul_rn((double)k, 0.25));
    const double x = __dmul_rn(r, 6.283185307179586), y = __dmul_rn(x, x);
    double sp = __ddiv_rn(1.0, hp_sin_fact[8]), cp = __ddiv_rn(1.0, hp_cos_fact[8]);
    for (int i = 7; i >= 0; i--) {
        sp = __dadd_rn(__ddiv_rn(1.0, hp_sin_fact[i]), -__dmul_rn(y, sp));
        cp = __dadd_rn(__ddiv_rn(1.0, hp_cos_fact[i]), -__dmul_rn(y, cp));
    }
    const double s = __dmul_rn(x, sp), c = cp;
    switch (k & 3) {
    case 0: *cs = c; *sn = s; break;
    case 1: *cs = -s; *sn = c; break;
    case 2: *cs = -c; *sn = -s; break;
    default: *cs = s; *sn = -c; break;
    }
}
/* y[i] = Philox.normal(seed, offset + i). */
extern "C" __global__ void hp_randn(float *y, i64 n, u64 seed, u64 offset) {
    GRID_STRIDE(i, n) {
        const u64 idx = offset + (u64)i, blk = idx / 4;
        const int lane = (int)(idx % 4);
        unsigned c[4] = {(unsigned)blk, (unsigned)(blk >> 32), 0u, 0u};
        philox_block(c, (unsigned)seed, (unsigned)(seed >> 32));
        const unsigned a = lane < 2 ? c[0] : c[2], b = lane < 2 ? c[1] : c[3];
        const double u1 = __dmul_rn(__dadd_rn((double)a, 0.5), 0x1p-32);
        const double u2 = __dmul_rn(__dadd_rn((double)b, 0.5), 0x1p-32);
        const double rho = __dsqrt_rn(__dmul_rn(-2.0, det_log(u1)));
        double cs, sn;
        det_sincos_2pi(u2, &cs, &sn);
        y[i] = __double2float_rn(lane % 2 == 0 ? __dmul_rn(rho, cs) : __dmul_rn(rho, sn));
    }
}
"""#
    static let kernels = ["hp_randn"]
    static let options = ["-fmad=false"]
}
