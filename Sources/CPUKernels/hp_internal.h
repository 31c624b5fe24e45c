// Internal declarations shared by the kernel files: target attributes, the dispatch table of
// microkernels per ISA, scratch memory, and scalar helpers. Not part of the public API.
#pragma once
#include "cpu_kernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define HP_X86 1
#define HP_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define HP_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define HP_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")))
#define HP_TARGET_AMX __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma,amx-tile,amx-bf16")))
#else
#define HP_X86 0
#endif

#define HP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define HP_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define HP_ROUND_UP(a, b) (HP_CEIL_DIV(a, b) * (b))

static inline float hp_bf16f(uint16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t hp_f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/// Scalar activation used by the reference kernels and edge tiles.
static inline float hp_act_scalar(float x, hp_act act) {
    switch (act) {
    case HP_ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case HP_ACT_SILU: return x / (1.0f + expf(-x));
    default: return x;
    }
}

// ── GEMM microkernel configurations ─────────────────────────────────────────────────────────────────────
// A microkernel computes an MR×NR tile: C = (accum ? C : 0) + alpha * Apanel·Bpanel (fused multiply-add when
// accum), storing only the top-left mrv×nrv part (edge tiles use the same arithmetic as full ones). Panels are
// packed: f32 A panel [kc][MR], B panel [kc][NR]; bf16-pair panels A [kc/2][MR] of u32 (two bf16 along k),
// B [kc/2][NR][2] of u16. kc counts k elements (even for the pair format).
typedef void (*hp_ukr_fn)(long kc, const void *a, const void *b, float *c, long ldc, float alpha, int accum,
                          int mrv, int nrv);

/// HP_PACK_AMX (AMX tiles, kernels_amx.c): A panel [kp/32][MR][32] bf16 (one 16-row tile = 16 rows × 64 bytes
/// per 32-wide k step), B panel [kp/2][NR][2] bf16 (the BF16PAIR layout, which is the VNNI layout a B tile wants),
/// kp = K rounded up to 32 with zeros.
typedef enum { HP_PACK_F32 = 0, HP_PACK_BF16PAIR = 1, HP_PACK_AMX = 2 } hp_pack_fmt;

typedef struct hp_gemm_kernel {
    int mr, nr;
    hp_pack_fmt fmt;  // packed element format
    long kc, mc;      // k block, m block (multiple of mr)
    hp_ukr_fn ukr;
    long nt;          // columns per driver task (multiple of nr); 0 = 256. mc and nt never change the arithmetic.
    const char *desc; // "14x32 f32 fma" …, for `hprune backends`
} hp_gemm_kernel;

/// Applies bias + activation to rows×cols of C in place (vectorised per ISA).
typedef void (*hp_epilogue_fn)(float *c, long ldc, long rows, long cols, const float *bias, hp_act act);

/// Online-softmax step over columns laid out as [rows][ncol] (attention: rows = keys, lanes = queries).
/// For each column: m_new = max(m, s*max_r S); corr = exp(m - m_new); S[r] = exp(s*S[r] - m_new);
/// l = l*corr + Σ_r S[r]; writes corr[col]. ncol is the panel width (a multiple of 16).
typedef void (*hp_softmax_cols_fn)(float *S, long rows, long ncol, float scale, float *m, float *l, float *corr);
/// Multiplies rows of a [rows][ncol] panel by corr[col].
typedef void (*hp_scale_cols_fn)(float *X, long rows, long ncol, const float *corr);

struct hp_src;

/// Attention backward element step on a [rows][ncol] tile of scores S and dP (ncol a multiple of 16):
/// P = exp(scale*S - lse), dS = P * (dP - delta), written over S and dP; lse/delta are indexed by row
/// (per_col == 0) or by column (per_col != 0).
typedef void (*hp_bwd_ds_fn)(float *S, float *dP, long rows, long ncol, float scale, const float *lse,
                             const float *delta, int per_col);

typedef struct hp_dispatch {
    hp_isa isa;
    hp_isa base_isa;      // AMX tables: the family whose kernels they use for everything but bf16 GEMM; else 0
    hp_gemm_kernel f32;   // f32 GEMM (also bf16 inputs converted when packing if bf16 is absent)
    hp_gemm_kernel bf16;  // bf16 GEMM; fmt == HP_PACK_F32 means "convert to f32, use the f32 kernel"
    hp_epilogue_fn epilogue;
    hp_softmax_cols_fn softmax_cols;
    hp_scale_cols_fn scale_cols;
    hp_bwd_ds_fn bwd_ds;
    /// Converts f32 rows S[nk][ncol] to a bf16-pair B panel [ceil(nk/2)][ncol] (u32: row 2p | row 2p+1 << 16,
    /// a missing odd row is 0). NULL when the ISA has no bf16 kernel.
    void (*pack_p_pairs)(const float *S, long nk, long ncol, uint32_t *dst);
    /// dst[c*ld + r] = src[r*ls + c] for r < rows, c < cols (f32); NULL → scalar.
    void (*transpose)(const float *src, long ls, float *dst, long ld, long rows, long cols);
    /// f32 → bf16 (round to nearest even) of n values; NULL → scalar.
    void (*to_bf16)(const float *src, uint16_t *dst, long n);
    /// W4A16 small-M kernel: rows [n0,n1) of Y for `mt` (<= 16) rows of X, X pre-split into even/odd halves
    /// xe/xo [mt][K/2] (f32). NULL → generic path.
    void (*w4_gemv)(long mt, const float *xe, const float *xo, long K, const uint8_t *data, const float *scale,
                    const float *zero, const float *code, long block, long n0, long n1, float *y, long ldy);
    /// W4A16 small-M kernel for bf16 X on vdpbf16ps (no zero points; block % 64 == 0, K % block == 0): X rows
    /// pre-permuted by hp_w4_permute_x into xp [mt][K/2] u32 pairs; mt <= 4. NULL → w4_gemv.
    void (*w4_gemv_bf16)(long mt, const uint32_t *xp, long K, const uint8_t *data, const float *scale,
                         const float *code, long block, long n0, long n1, float *y, long ldy);
    /// Packs columns [c0, c0+cols) of B = Wᵀ (a 4-bit weight whose blocks lie inside rows, K even, block % 32
    /// == 0) into the B panel format of `kr`; returns 0 if it could not (then the scalar path in hp_pack_b runs).
    int (*pack_b_q4)(const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0, long cols, long K, void *dst);
    /// Optional faster hp_pack_b for some cases (transposed B); returns 0 when it does not handle the case.
    int (*pack_b_fast)(const hp_gemm_kernel *kr, const struct hp_src *b, long c0, long cols, long K, void *dst);
    int (*pack_a_fast)(const hp_gemm_kernel *kr, const struct hp_src *a, long r0, long rows, long K, void *dst);
} hp_dispatch;

/// The kernel table for the calling thread (its override, else the process-wide choice). A kernel call reads it
/// once and hands it to its tasks, so pool threads use the caller's table.
const hp_dispatch *hp_dispatch_current(void);

/// The run-time copy of `isa`'s table (blocking tuned to this CPU's caches), or NULL if the CPU cannot run it.
const hp_dispatch *hp_dispatch_for(hp_isa isa);

/// Builds the AMX family tables on top of `base` (the best non-AMX table): the bf16 GEMM on AMX tiles, the rest
/// from base. `emu` selects the emulated tile layer. Defined in kernels_amx.c.
void hp_amx_make_table(hp_dispatch *out, const hp_dispatch *base, int emu);
/// The HP_PACK_AMX A panel ([kp/32][mr][32] bf16, zero padded) of rows [r0, r0+rows) of op(A).
void hp_amx_pack_a(const hp_gemm_kernel *kr, const struct hp_src *a, long r0, long rows, long K, void *dst);

// Per-ISA tables (defined in the per-ISA files).
extern const hp_dispatch hp_dispatch_scalar;
#if HP_X86
extern const hp_dispatch hp_dispatch_avx2;
extern const hp_dispatch hp_dispatch_avx512;
extern const hp_dispatch hp_dispatch_avx512bf16;
#endif

// Scalar helpers shared by several ISAs.
void hp_epilogue_scalar(float *c, long ldc, long rows, long cols, const float *bias, hp_act act);
void hp_softmax_cols_scalar(float *S, long rows, long ncol, float scale, float *m, float *l, float *corr);
void hp_scale_cols_scalar(float *X, long rows, long ncol, const float *corr);
void hp_bwd_ds_scalar(float *S, float *dP, long rows, long ncol, float scale, const float *lse, const float *delta,
                      int per_col);
void hp_ukr_f32_scalar_4x16(long kc, const void *a, const void *b, float *c, long ldc, float alpha, int accum,
                            int mrv, int nrv);

// ── scratch memory: per-thread grow-only buffers (64-byte aligned) ───────────────────────────────────────
/// Returns a buffer of at least `bytes` for slot `slot` (0..3) of the calling thread; NULL on OOM.
void *hp_scratch(int slot, size_t bytes);

// ── internal GEMM entry used by attention and W4A16 ──────────────────────────────────────────────────────
/// Source descriptor of an operand for packing.
typedef struct hp_src {
    const void *p;
    long ld;
    int trans;        // 0: element (r, k) at p[r*ld + k] for A / (k, c) at p[k*ld + c] for B; 1: swapped
    hp_dtype dtype;
    const hp_q4_weight *q4;  // B only: 4-bit weight (B = Wᵀ), p/ld/trans ignored
} hp_src;

/// Dequantises elements [k0, k0+len) of row n of a 4-bit weight into out (f32), scalar.
void hp_q4_row_segment(const hp_q4_weight *w, long n, long k0, long len, float *out);

/// Packs rows [r0, r0+rows) (rows <= mr) of op(A), k in [0, kp) (kp = K rounded to the format's k-step) into
/// an A panel (zero padding).
void hp_pack_a(const hp_dispatch *dp, const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows, long K,
               void *dst);
/// Packs columns [c0, c0+cols) (cols <= nr) of op(B), all K, into a B panel.
void hp_pack_b(const hp_dispatch *dp, const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols, long K,
               void *dst);

/// Full GEMM on the given kernel (of table `dp`): C[M,N] f32 = act(alpha*op(A)op(B) + beta*C + bias).
/// `parallel` lets it use the pool. Every helper of one call comes from the same table `dp`.
int hp_gemm_driver(const hp_dispatch *dp, const hp_gemm_kernel *kr, long M, long N, long K, float alpha, const hp_src *a,
                   const hp_src *b, float beta, float *C, long ldc, const float *bias, hp_act act, int parallel);
/// Same with a bf16 C[M,N] (ldc): each task accumulates its tile in an f32 buffer and rounds it once.
int hp_gemm_driver_bf16out(const hp_dispatch *dp, const hp_gemm_kernel *kr, long M, long N, long K, float alpha, const hp_src *a,
                           const hp_src *b, float beta, uint16_t *C, long ldc, const float *bias, hp_act act);

static inline size_t hp_pack_esize(const hp_gemm_kernel *kr) { return kr->fmt == HP_PACK_F32 ? 4 : 2; }
static inline long hp_kstep(const hp_gemm_kernel *kr) { return kr->fmt == HP_PACK_F32 ? 1 : kr->fmt == HP_PACK_AMX ? 32 : 2; }
