// W4A16 GEMM: Y[M,N] = act(X[M,K] · Wᵀ + bias) with W[N,K] in bitsandbytes-style 4-bit blocks (NF4, FP4,
// int4 with scale/zero). Small M: a kernel that dequantises 32 codes at a time in registers (vpermps on the
// 16-entry code table) and streams the packed bytes once. Larger M: the weight is dequantised panel by panel
// into the GEMM's packed B format (f32 or bf16 pairs), never as a whole.
#include "hp_internal.h"
#include <stdlib.h>

const float hp_code_nf4[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};
const float hp_code_fp4[16] = {
    0.0f, 0.0625f / 12, 8.0f / 12, 12.0f / 12, 4.0f / 12, 6.0f / 12, 2.0f / 12, 3.0f / 12,
    -0.0f, -0.0625f / 12, -8.0f / 12, -12.0f / 12, -4.0f / 12, -6.0f / 12, -2.0f / 12, -3.0f / 12};
const float hp_code_int4[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};
const float hp_code_uint4[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

const float *hp_code_table(hp_code_kind kind) {
    switch (kind) {
    case HP_CODE_FP4: return hp_code_fp4;
    case HP_CODE_INT4: return hp_code_int4;
    case HP_CODE_UINT4: return hp_code_uint4;
    default: return hp_code_nf4;
    }
}

int hp_quantize_4bit(const float *w, long count, long block, const float *code, uint8_t *data, float *absmax) {
    if (!w || !data || !absmax || !code || count < 0 || block <= 0) return HP_EINVAL;
    memset(data, 0, (size_t)HP_CEIL_DIV(count, 2));
    for (long b0 = 0, bi = 0; b0 < count; b0 += block, bi++) {
        long b1 = HP_MIN(count, b0 + block);
        float mx = 0;
        for (long e = b0; e < b1; e++) mx = fmaxf(mx, fabsf(w[e]));
        absmax[bi] = mx;
        for (long e = b0; e < b1; e++) {
            float x = mx > 0 ? w[e] / mx : 0.0f;
            int best = 0;
            float bd = INFINITY;
            for (int q = 0; q < 16; q++) {
                float d = fabsf(x - code[q]);
                // Ties go to the lower index, except between +0 and -0 (FP4 has both): bitsandbytes writes -0.
                if (d < bd || (d == bd && code[q] == 0.0f && signbit(code[q]))) { bd = d; best = q; }
            }
            data[e >> 1] |= (uint8_t)((e & 1) ? best : best << 4);
        }
    }
    return HP_OK;
}

static int check_w(const hp_q4_weight *w) {
    if (!w || !w->data || !w->scale || !w->code || w->n <= 0 || w->k <= 0 || w->block <= 0) return HP_EINVAL;
    return HP_OK;
}

int hp_dequantize_4bit_rows(const hp_q4_weight *w, long n0, long rows, float *out) {
    if (check_w(w) || !out || n0 < 0 || rows < 0 || n0 + rows > w->n) return HP_EINVAL;
    for (long r = 0; r < rows; r++) hp_q4_row_segment(w, n0 + r, 0, w->k, out + r * w->k);
    return HP_OK;
}

static int check_args(long M, const void *X, hp_dtype xd, long ldx, const hp_q4_weight *W, const void *Y,
                      hp_dtype yd, long ldy) {
    if (check_w(W)) return HP_EINVAL;
    if (M < 0 || (xd != HP_F32 && xd != HP_BF16) || (yd != HP_F32 && yd != HP_BF16)) return HP_EINVAL;
    if (M > 0 && (!X || !Y || ldx < W->k || ldy < W->n)) return HP_EINVAL;
    return HP_OK;
}

static inline float x_at(const void *X, hp_dtype xd, long i) {
    return xd == HP_F32 ? ((const float *)X)[i] : hp_bf16f(((const uint16_t *)X)[i]);
}

int hp_gemm_w4a16_ref(long M, const void *X, hp_dtype x_dtype, long ldx, const hp_q4_weight *W, const float *bias,
                      hp_act act, void *Y, hp_dtype y_dtype, long ldy) {
    int rc = check_args(M, X, x_dtype, ldx, W, Y, y_dtype, ldy);
    if (rc || M == 0) return rc;
    float *row = malloc(sizeof(float) * (size_t)W->k);
    if (!row) return HP_ENOMEM;
    for (long n = 0; n < W->n; n++) {
        hp_q4_row_segment(W, n, 0, W->k, row);
        for (long m = 0; m < M; m++) {
            double s = 0;
            for (long k = 0; k < W->k; k++) s += (double)x_at(X, x_dtype, m * ldx + k) * row[k];
            float v = (float)s + (bias ? bias[n] : 0.0f);
            v = hp_act_scalar(v, act);
            if (y_dtype == HP_F32) ((float *)Y)[m * ldy + n] = v;
            else ((uint16_t *)Y)[m * ldy + n] = hp_f2bf(v);
        }
    }
    free(row);
    return HP_OK;
}

typedef struct {
    const hp_dispatch *dp;
    long mt, K;
    const float *xe, *xo;
    const hp_q4_weight *w;
    float *y;
    long ldy, rows_per_task;
} gemv_t;

static void gemv_task(void *vctx, long t, int thread) {
    (void)thread;
    gemv_t *g = vctx;
    long n0 = t * g->rows_per_task, n1 = HP_MIN(g->w->n, n0 + g->rows_per_task);
    g->dp->w4_gemv(g->mt, g->xe, g->xo, g->K, g->w->data, g->w->scale, g->w->zero, g->w->code, g->w->block, n0, n1,
                   g->y, g->ldy);
}

#define W4_SMALL_M 4

typedef struct {
    const hp_dispatch *dp;
    long mt, K;
    const uint32_t *xp;
    const hp_q4_weight *w;
    float *y;
    long ldy, rows_per_task;
} gemvb_t;

static void gemvb_task(void *vctx, long t, int thread) {
    (void)thread;
    gemvb_t *g = vctx;
    long n0 = t * g->rows_per_task, n1 = HP_MIN(g->w->n, n0 + g->rows_per_task);
    g->dp->w4_gemv_bf16(g->mt, g->xp, g->K, g->w->data, g->w->scale, g->w->code, g->w->block, n0, n1, g->y, g->ldy);
}

/// Reorders bf16 X row pairs for w4_gemv_bf16: in each 32-pair chunk, pairs 0-3, 8-11, 16-19, 24-27 first, then
/// 4-7, 12-15, 20-23, 28-31 (the order unpacklo/unpackhi produce within 128-bit lanes).
static void permute_x_pairs(const uint16_t *x, long K, uint32_t *xp) {
    const long chunks = K / 64;
    for (long c = 0; c < chunks; c++)
        for (int half = 0; half < 2; half++)
            for (int lane = 0; lane < 4; lane++)
                for (int t = 0; t < 4; t++) {
                    long pair = 32 * c + 8 * lane + 4 * half + t;
                    uint32_t v;
                    memcpy(&v, x + 2 * pair, 4);
                    xp[32 * c + 16 * half + 4 * lane + t] = v;
                }
}

int hp_gemm_w4a16(long M, const void *X, hp_dtype x_dtype, long ldx, const hp_q4_weight *W, const float *bias,
                  hp_act act, void *Y, hp_dtype y_dtype, long ldy) {
    int rc = check_args(M, X, x_dtype, ldx, W, Y, y_dtype, ldy);
    if (rc || M == 0) return rc;
    const hp_dispatch *dp = hp_dispatch_current();
    const long N = W->n, K = W->k;
    int fast = dp->w4_gemv && M <= W4_SMALL_M && K % 2 == 0 && W->block % 32 == 0 && K % W->block == 0;
    if (!fast) {  // dequantising GEMM: panels of W are dequantised into the packed B format
        const hp_gemm_kernel *kr = x_dtype == HP_BF16 ? &dp->bf16 : &dp->f32;
        hp_src a = {.p = X, .ld = ldx, .trans = 0, .dtype = x_dtype};
        hp_src b = {.q4 = W};
        if (y_dtype == HP_BF16) return hp_gemm_driver_bf16out(dp, kr, M, N, K, 1.0f, &a, &b, 0.0f, Y, ldy, bias, act);
        return hp_gemm_driver(dp, kr, M, N, K, 1.0f, &a, &b, 0.0f, Y, ldy, bias, act, 1);
    }
    const long K2 = K / 2;
    if (dp->w4_gemv_bf16 && x_dtype == HP_BF16 && !W->zero && W->block % 64 == 0) {
        // bf16 X: products on vdpbf16ps, X kept as bf16 pairs.
        float *yf = y_dtype == HP_F32 ? Y : malloc(sizeof(float) * (size_t)M * (size_t)N);
        long ldyf = y_dtype == HP_F32 ? ldy : N;
        uint32_t *xp = hp_scratch(2, sizeof(uint32_t) * (size_t)(M * K2));
        if (!yf || !xp) {
            if (yf != Y) free(yf);
            return HP_ENOMEM;
        }
        for (long m = 0; m < M; m++) permute_x_pairs((const uint16_t *)X + m * ldx, K, xp + m * K2);
        gemvb_t g = {.dp = dp, .mt = M, .K = K, .xp = xp, .w = W, .y = yf, .ldy = ldyf};
        g.rows_per_task = HP_MAX(8, HP_MIN(64, N / (8 * hp_threads_count()) + 1));
        long tasks = HP_CEIL_DIV(N, g.rows_per_task);
        if ((double)M * N * K < 2e5)
            for (long t = 0; t < tasks; t++) gemvb_task(&g, t, 0);
        else
            hp_parallel_for(tasks, gemvb_task, &g);
        if (bias || act != HP_ACT_NONE) dp->epilogue(yf, ldyf, M, N, bias, act);
        if (y_dtype != HP_F32) {
            for (long m = 0; m < M; m++) hp_f32_to_bf16_array(yf + m * N, (uint16_t *)Y + m * ldy, (size_t)N);
            free(yf);
        }
        return HP_OK;
    }
    // Small M: X rows split into even/odd elements (f32), since the high nibble of byte j is element 2j.
    float *yf = y_dtype == HP_F32 ? Y : malloc(sizeof(float) * (size_t)M * (size_t)N);
    long ldyf = y_dtype == HP_F32 ? ldy : N;
    float *xs = hp_scratch(2, sizeof(float) * (size_t)(2 * M * K2));
    if (!yf || !xs) {
        if (yf != Y) free(yf);
        return HP_ENOMEM;
    }
    float *xe = xs, *xo = xs + M * K2;
    for (long m = 0; m < M; m++)
        for (long j = 0; j < K2; j++) {
            xe[m * K2 + j] = x_at(X, x_dtype, m * ldx + 2 * j);
            xo[m * K2 + j] = x_at(X, x_dtype, m * ldx + 2 * j + 1);
        }
    gemv_t g = {.dp = dp, .mt = M, .K = K, .xe = xe, .xo = xo, .w = W, .y = yf, .ldy = ldyf};
    g.rows_per_task = HP_MAX(8, HP_MIN(64, N / (8 * hp_threads_count()) + 1));
    long tasks = HP_CEIL_DIV(N, g.rows_per_task);
    if ((double)M * N * K < 2e5)
        for (long t = 0; t < tasks; t++) gemv_task(&g, t, 0);
    else
        hp_parallel_for(tasks, gemv_task, &g);
    if (bias || act != HP_ACT_NONE) dp->epilogue(yf, ldyf, M, N, bias, act);
    if (y_dtype != HP_F32) {
        for (long m = 0; m < M; m++) hp_f32_to_bf16_array(yf + m * N, (uint16_t *)Y + m * ldy, (size_t)N);
        free(yf);
    }
    return HP_OK;
}
