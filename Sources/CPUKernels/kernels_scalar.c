// Portable scalar kernels: the 4x16 f32 microkernel, epilogue and softmax helpers used by the scalar ISA
// (and by the other ISAs for odd edges). Plain C, no intrinsics.
#include "hp_internal.h"

void hp_ukr_f32_scalar_4x16(long kc, const void *av, const void *bv, float *c, long ldc, float alpha, int accum,
                            int mrv, int nrv) {
    const float *a = av, *b = bv;
    float acc[4][16] = {{0}};
    for (long k = 0; k < kc; k++) {
        for (int i = 0; i < 4; i++) {
            float ai = a[k * 4 + i];
            for (int j = 0; j < 16; j++) acc[i][j] += ai * b[k * 16 + j];
        }
    }
    for (int i = 0; i < mrv; i++)
        for (int j = 0; j < nrv; j++)
            c[i * ldc + j] = accum ? fmaf(alpha, acc[i][j], c[i * ldc + j]) : alpha * acc[i][j];
}

void hp_epilogue_scalar(float *c, long ldc, long rows, long cols, const float *bias, hp_act act) {
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) {
            float v = c[i * ldc + j];
            if (bias) v += bias[j];
            c[i * ldc + j] = hp_act_scalar(v, act);
        }
}

void hp_softmax_cols_scalar(float *S, long rows, long ncol, float scale, float *m, float *l, float *corr) {
    for (long j = 0; j < ncol; j++) {
        float mx = -INFINITY;
        for (long r = 0; r < rows; r++) mx = fmaxf(mx, S[r * ncol + j] * scale);
        float mn = fmaxf(m[j], mx);
        float cr = m[j] == -INFINITY ? 0.0f : expf(m[j] - mn);
        float sum = 0;
        for (long r = 0; r < rows; r++) {
            float p = expf(S[r * ncol + j] * scale - mn);
            S[r * ncol + j] = p;
            sum += p;
        }
        l[j] = l[j] * cr + sum;
        m[j] = mn;
        corr[j] = cr;
    }
}

void hp_scale_cols_scalar(float *X, long rows, long ncol, const float *corr) {
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < ncol; j++) X[r * ncol + j] *= corr[j];
}

void hp_bwd_ds_scalar(float *S, float *dP, long rows, long ncol, float scale, const float *lse, const float *delta,
                      int per_col) {
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < ncol; c++) {
            long i = per_col ? c : r;
            float p = expf(S[r * ncol + c] * scale - lse[i]);
            S[r * ncol + c] = p;
            dP[r * ncol + c] = p * (dP[r * ncol + c] - delta[i]);
        }
}

const hp_dispatch hp_dispatch_scalar = {
    .isa = HP_ISA_SCALAR,
    .f32 = {.mr = 4, .nr = 16, .fmt = HP_PACK_F32, .kc = 256, .mc = 64, .ukr = hp_ukr_f32_scalar_4x16, .desc = "f32 scalar C"},
    .bf16 = {.mr = 4, .nr = 16, .fmt = HP_PACK_F32, .kc = 256, .mc = 64, .ukr = hp_ukr_f32_scalar_4x16, .desc = "f32 scalar C"},
    .epilogue = hp_epilogue_scalar,
    .softmax_cols = hp_softmax_cols_scalar,
    .scale_cols = hp_scale_cols_scalar,
    .bwd_ds = hp_bwd_ds_scalar,
    .w4_gemv = NULL,
};
