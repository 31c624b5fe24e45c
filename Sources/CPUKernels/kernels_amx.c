// AMX-BF16 kernel family and its emulation twin: a tile-op layer (real tile instructions, or a scalar model of
// the tile registers, LDTILECFG, TILELOADD, TDPBF16PS, TILESTORED, TILEZERO per the Intel SDM), the 32×32 GEMM
// microkernel written once over it (amx_ukr_body.h, compiled twice), the HP_PACK_AMX packers, and the tables.
// The real family is opt-in and has never been timed on AMX hardware; the emulated one runs on every CPU.
#include "hp_internal.h"
#include <stdio.h>
#include <stdlib.h>
#if HP_X86
#include <immintrin.h>
#endif

// ── tile configuration (palette 1) ───────────────────────────────────────────────────────────────────────
/// The 64-byte LDTILECFG memory operand.
typedef struct hp_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];   // bytes per row of tile i (<= 64 in palette 1)
    uint8_t rows[16];     // rows of tile i (<= 16)
} hp_tilecfg;
_Static_assert(sizeof(hp_tilecfg) == 64, "tile config is 64 bytes");

enum { TILE_ROWS = 16, TILE_COLSB = 64, TILE_COUNT = 8 };

// ── emulated tile layer ──────────────────────────────────────────────────────────────────────────────────
// Thread-local tile state, as the hardware's is per thread. Faults a real CPU would raise (#GP on a bad config,
// #UD on incompatible shapes or an unconfigured tile) trap here too: they are bugs in the caller.
typedef struct {
    hp_tilecfg cfg;
    int valid;                                   // a palette-1 config is loaded
    uint8_t t[TILE_COUNT][TILE_ROWS][TILE_COLSB];
} amxe_state;
static _Thread_local amxe_state tl_amxe;

static void amxe_fault(const char *what) {
    fprintf(stderr, "hprune: AMX emulation fault: %s (a real CPU raises #UD/#GP here)\n", what);
    __builtin_trap();
}

/// LDTILECFG: palette 0 releases; palette 1 checks every limit and zeroes all tiles.
static void amxe_ldtilecfg(const hp_tilecfg *c) {
    if (c->palette == 0) {
        memset(&tl_amxe, 0, sizeof tl_amxe);
        return;
    }
    if (c->palette != 1) amxe_fault("palette other than 0 or 1");
    for (int i = 0; i < 14; i++)
        if (c->reserved[i]) amxe_fault("reserved config bytes not zero");
    for (int i = 0; i < 16; i++) {
        int used = i < TILE_COUNT;
        if (!used && (c->rows[i] || c->colsb[i])) amxe_fault("tile 8..15 configured in palette 1");
        if (c->rows[i] > TILE_ROWS || c->colsb[i] > TILE_COLSB) amxe_fault("rows > 16 or colsb > 64");
        if ((c->rows[i] == 0) != (c->colsb[i] == 0)) amxe_fault("tile with rows xor colsb zero");
    }
    tl_amxe.cfg = *c;
    tl_amxe.cfg.start_row = 0;
    tl_amxe.valid = 1;
    memset(tl_amxe.t, 0, sizeof tl_amxe.t);
}

static inline void amxe_need(int t) {
    if (!tl_amxe.valid) amxe_fault("tile instruction without a loaded config");
    if (t < 0 || t >= TILE_COUNT || tl_amxe.cfg.rows[t] == 0) amxe_fault("tile not configured");
}

/// TILELOADD: rows × colsb bytes from base + r*stride; the rest of the register is zeroed.
static void amxe_tileloadd(int t, const void *base, long stride) {
    amxe_need(t);
    int rows = tl_amxe.cfg.rows[t], colsb = tl_amxe.cfg.colsb[t];
    memset(tl_amxe.t[t], 0, sizeof tl_amxe.t[t]);
    for (int r = 0; r < rows; r++) memcpy(tl_amxe.t[t][r], (const uint8_t *)base + r * stride, (size_t)colsb);
}

/// TILESTORED: rows × colsb bytes to base + r*stride.
static void amxe_tilestored(int t, void *base, long stride) {
    amxe_need(t);
    int rows = tl_amxe.cfg.rows[t], colsb = tl_amxe.cfg.colsb[t];
    for (int r = 0; r < rows; r++) memcpy((uint8_t *)base + r * stride, tl_amxe.t[t][r], (size_t)colsb);
}

static void amxe_tilezero(int t) {
    amxe_need(t);
    memset(tl_amxe.t[t], 0, sizeof tl_amxe.t[t]);
}

/// bf16 → f32 with DAZ (denormal inputs are treated as zero, sign kept).
static inline float amxe_bf16_daz(uint16_t h) {
    if ((h & 0x7f80u) == 0) h &= 0x8000u;
    return hp_bf16f(h);
}

/// Flush a denormal f32 to zero (sign kept): FTZ for results, DAZ for f32 inputs.
static inline float amxe_ftz(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    memcpy(&x, &u, 4);
    return x;
}

static inline uint16_t tile_bf16(int t, int r, int e) {
    uint16_t v;
    memcpy(&v, &tl_amxe.t[t][r][2 * e], 2);
    return v;
}

/// TDPBF16PS c, a, b as the SDM's pseudo-code: per row m, even and odd bf16 products are accumulated in two f32
/// temporaries per output column (FMA, RNE, DAZ, FTZ) over the k pairs in order, then added horizontally, then
/// added to C (each step rounded to nearest even, denormals flushed).
static void amxe_tdpbf16ps(int c, int a, int b) {
    amxe_need(c), amxe_need(a), amxe_need(b);
    if (c == a || c == b || a == b) amxe_fault("tdpbf16ps with repeated tile operands");
    const hp_tilecfg *g = &tl_amxe.cfg;
    int M = g->rows[c], Kp = g->colsb[a] / 4, Np = g->colsb[c] / 4;
    if (g->colsb[a] % 4 || g->colsb[c] % 4 || g->colsb[b] % 4) amxe_fault("colsb not a multiple of 4");
    if (g->rows[a] != M) amxe_fault("A rows != C rows");
    if (g->rows[b] != Kp) amxe_fault("B rows != A colsb / 4");
    if (g->colsb[b] != g->colsb[c]) amxe_fault("B colsb != C colsb");
    for (int m = 0; m < M; m++) {
        float tmp[2 * 16] = {0};
        for (int k = 0; k < Kp; k++) {
            float a0 = amxe_bf16_daz(tile_bf16(a, m, 2 * k)), a1 = amxe_bf16_daz(tile_bf16(a, m, 2 * k + 1));
            for (int n = 0; n < Np; n++) {
                float b0 = amxe_bf16_daz(tile_bf16(b, k, 2 * n)), b1 = amxe_bf16_daz(tile_bf16(b, k, 2 * n + 1));
                tmp[2 * n] = amxe_ftz(fmaf(a0, b0, tmp[2 * n]));
                tmp[2 * n + 1] = amxe_ftz(fmaf(a1, b1, tmp[2 * n + 1]));
            }
        }
        for (int n = 0; n < Np; n++) {
            float h = amxe_ftz(tmp[2 * n] + tmp[2 * n + 1]);
            float old;
            memcpy(&old, &tl_amxe.t[c][m][4 * n], 4);
            float v = amxe_ftz(amxe_ftz(old) + h);
            memcpy(&tl_amxe.t[c][m][4 * n], &v, 4);
        }
        memset(&tl_amxe.t[c][m][4 * Np], 0, (size_t)(TILE_COLSB - 4 * Np));   // write_row_and_zero
    }
    for (int m = M; m < TILE_ROWS; m++) memset(tl_amxe.t[c][m], 0, TILE_COLSB);   // zero_upper_rows
}

/// The config every GEMM microkernel uses: 8 tiles of 16 rows × 64 bytes.
static hp_tilecfg gemm_cfg(void) {
    hp_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < TILE_COUNT; i++) c.rows[i] = TILE_ROWS, c.colsb[i] = TILE_COLSB;
    return c;
}

// The microkernel on the emulated layer.
static _Thread_local int tl_emu_cfg;   // the GEMM config is loaded in this thread's emulated tiles
static void emu_setup(void) {
    if (tl_emu_cfg && tl_amxe.valid) return;
    hp_tilecfg c = gemm_cfg();
    amxe_ldtilecfg(&c);
    tl_emu_cfg = 1;
}
#define AMX_UKR_NAME ukr_amx_emu_32x32
#define AMX_ATTR
#define TILE_SETUP() emu_setup()
#define TILE_ZERO(t) amxe_tilezero(t)
#define TILE_LOAD(t, p, s) amxe_tileloadd(t, p, s)
#define TILE_STORE(t, p, s) amxe_tilestored(t, p, s)
#define TILE_DPBF16(c, a, b) amxe_tdpbf16ps(c, a, b)
#include "amx_ukr_body.h"
#undef AMX_UKR_NAME
#undef AMX_ATTR
#undef TILE_SETUP
#undef TILE_ZERO
#undef TILE_LOAD
#undef TILE_STORE
#undef TILE_DPBF16

// ── real tile layer ──────────────────────────────────────────────────────────────────────────────────────
// Only reached through the amx table, which hp_isa_supported grants only with amx_tile + amx_bf16 + the
// XTILEDATA permission (cpu_features.c).
#if HP_X86
static _Thread_local int tl_real_cfg;
HP_TARGET_AMX static void real_setup(void) {
    if (tl_real_cfg) return;
    hp_tilecfg c = gemm_cfg();
    _tile_loadconfig(&c);
    tl_real_cfg = 1;
}
#define AMX_UKR_NAME ukr_amx_32x32
#define AMX_ATTR HP_TARGET_AMX
#define TILE_SETUP() real_setup()
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_LOAD(t, p, s) _tile_loadd(t, p, s)
#define TILE_STORE(t, p, s) _tile_stored(t, p, s)
#define TILE_DPBF16(c, a, b) _tile_dpbf16ps(c, a, b)
#include "amx_ukr_body.h"
#undef AMX_UKR_NAME
#undef AMX_ATTR
#undef TILE_SETUP
#undef TILE_ZERO
#undef TILE_LOAD
#undef TILE_STORE
#undef TILE_DPBF16

/// One hardware TDPBF16PS on tiles 0 (C), 1 (A), 2 (B) shaped as in `cfg`; restores the GEMM config after.
HP_TARGET_AMX static void real_probe(const hp_tilecfg *cfg, float *C, long ldc_b, const uint16_t *A, long lda_b,
                                     const uint16_t *B, long ldb_b) {
    _tile_loadconfig(cfg);
    _tile_loadd(0, C, ldc_b);
    _tile_loadd(1, A, lda_b);
    _tile_loadd(2, B, ldb_b);
    _tile_dpbf16ps(0, 1, 2);
    _tile_stored(0, C, ldc_b);
    _tile_release();
    tl_real_cfg = 0;
}
#endif

int hp_amx_tdpbf16ps_probe(int real, int rows, int k_pairs, int n_pairs, float *C, long ldc, const uint16_t *A,
                           long lda, const uint16_t *B, long ldb) {
    if (rows < 1 || rows > 16 || k_pairs < 1 || k_pairs > 16 || n_pairs < 1 || n_pairs > 16 || !C || !A || !B)
        return HP_EINVAL;
    if (ldc < n_pairs || lda < 2 * k_pairs || ldb < 2 * n_pairs) return HP_EINVAL;
    hp_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.rows[0] = (uint8_t)rows, cfg.colsb[0] = (uint16_t)(4 * n_pairs);
    cfg.rows[1] = (uint8_t)rows, cfg.colsb[1] = (uint16_t)(4 * k_pairs);
    cfg.rows[2] = (uint8_t)k_pairs, cfg.colsb[2] = (uint16_t)(4 * n_pairs);
    if (real) {
#if HP_X86
        if (!hp_isa_supported(HP_ISA_AMX)) return HP_EUNSUPPORTED;
        real_probe(&cfg, C, ldc * 4, A, lda * 2, B, ldb * 2);
        return HP_OK;
#else
        return HP_EUNSUPPORTED;
#endif
    }
    amxe_state saved = tl_amxe;
    amxe_ldtilecfg(&cfg);
    amxe_tileloadd(0, C, ldc * 4);
    amxe_tileloadd(1, A, lda * 2);
    amxe_tileloadd(2, B, ldb * 2);
    amxe_tdpbf16ps(0, 1, 2);
    amxe_tilestored(0, C, ldc * 4);
    tl_amxe = saved;   // the GEMM microkernel's config stays as it was
    return HP_OK;
}

int hp_amx_selfcheck(void) {
    if (!hp_isa_supported(HP_ISA_AMX)) return -1;
    static int result = -2;   // computed once (benign race: every thread computes the same value)
    if (result != -2) return result;
    enum { R = 16, KP = 16, NP = 16 };
    uint16_t A[R * 2 * KP], B[KP * 2 * NP];
    float c_emu[R * NP], c_real[R * NP];
    uint32_t s = 12345;
    for (int i = 0; i < R * 2 * KP; i++) s = s * 1664525u + 1013904223u, A[i] = (uint16_t)(0x3c00 + (s >> 20) % 0x800) ^ (uint16_t)((s & 1) << 15);
    for (int i = 0; i < KP * 2 * NP; i++) s = s * 1664525u + 1013904223u, B[i] = (uint16_t)(0x3c00 + (s >> 20) % 0x800) ^ (uint16_t)((s & 2) << 14);
    for (int i = 0; i < R * NP; i++) s = s * 1664525u + 1013904223u, c_emu[i] = c_real[i] = (float)((int)(s >> 16) - 32768) / 4096.0f;
    if (hp_amx_tdpbf16ps_probe(0, R, KP, NP, c_emu, NP, A, 2 * KP, B, 2 * NP) != HP_OK) return result = 0;
    if (hp_amx_tdpbf16ps_probe(1, R, KP, NP, c_real, NP, A, 2 * KP, B, 2 * NP) != HP_OK) return result = 0;
    return result = memcmp(c_emu, c_real, sizeof c_emu) == 0 ? 1 : 0;
}

// ── packing for HP_PACK_AMX ──────────────────────────────────────────────────────────────────────────────
static inline uint16_t amx_src_h(const hp_src *s, long i) {
    return s->dtype == HP_BF16 ? ((const uint16_t *)s->p)[i] : hp_f2bf(((const float *)s->p)[i]);
}

/// A panel [kp/32][MR][32] bf16 of rows [r0, r0+rows) of op(A), zero padded (rows and k).
void hp_amx_pack_a(const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows, long K, void *dst) {
    const long MR = kr->mr, KP = HP_ROUND_UP(K, 32);
    uint16_t *d = dst;
    memset(d, 0, sizeof(uint16_t) * (size_t)(KP * MR));
    if (!a->trans && a->dtype == HP_BF16) {   // row-major bf16: 32-element runs are contiguous
        for (long i = 0; i < rows; i++) {
            const uint16_t *s = (const uint16_t *)a->p + (r0 + i) * a->ld;
            for (long k0 = 0; k0 < K; k0 += 32)
                memcpy(d + (k0 / 32) * MR * 32 + i * 32, s + k0, sizeof(uint16_t) * (size_t)HP_MIN(32, K - k0));
        }
        return;
    }
    for (long i = 0; i < rows; i++)
        for (long k = 0; k < K; k++) {
            long idx = a->trans ? k * a->ld + r0 + i : (r0 + i) * a->ld + k;
            d[(k / 32) * MR * 32 + i * 32 + (k % 32)] = amx_src_h(a, idx);
        }
}

// The tables' pack hooks. B panels share the BF16PAIR layout, so the base family's fast pack does the work on a
// pair-format copy of the kernel (hp_pack_b zeroes the k tail up to 32 after any AMX pack). A panels have their
// own layout: 0 here sends them to hp_pack_a's AMX branch (hp_amx_pack_a).
static const hp_dispatch *g_amx_base[2];   // [emu] the base family of each AMX table

static int amx_pack_b_with(const hp_dispatch *base, const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols,
                           long K, void *dst) {
    if (!base->pack_b_fast) return 0;
    if (kr->fmt != HP_PACK_AMX) return base->pack_b_fast(kr, b, c0, cols, K, dst);
    if (b->q4) return 0;   // 4-bit weights: hp_pack_b's q4 branch (pack_b_q4 below)
    hp_gemm_kernel pk = *kr;
    pk.fmt = HP_PACK_BF16PAIR;
    return base->pack_b_fast(&pk, b, c0, cols, K, dst);
}
static int amx_pack_b_emu(const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols, long K, void *dst) {
    return amx_pack_b_with(g_amx_base[1], kr, b, c0, cols, K, dst);
}
static int amx_pack_b_real(const hp_gemm_kernel *kr, const hp_src *b, long c0, long cols, long K, void *dst) {
    return amx_pack_b_with(g_amx_base[0], kr, b, c0, cols, K, dst);
}

static int amx_pack_a_with(const hp_dispatch *base, const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows,
                           long K, void *dst) {
    if (kr->fmt == HP_PACK_AMX || !base->pack_a_fast) return 0;
    return base->pack_a_fast(kr, a, r0, rows, K, dst);
}
static int amx_pack_a_emu(const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows, long K, void *dst) {
    return amx_pack_a_with(g_amx_base[1], kr, a, r0, rows, K, dst);
}
static int amx_pack_a_real(const hp_gemm_kernel *kr, const hp_src *a, long r0, long rows, long K, void *dst) {
    return amx_pack_a_with(g_amx_base[0], kr, a, r0, rows, K, dst);
}

/// Dequantising pack of a 4-bit B = Wᵀ straight into the AMX B panel of 32 columns (never the whole weight):
/// the base family's pair-format q4 pack when it has one that writes pairs (avx512_bf16), else 0 (generic path).
static int amx_pack_q4_with(const hp_dispatch *base, const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0,
                            long cols, long K, void *dst) {
    if (!base->pack_b_q4) return 0;
    if (kr->fmt != HP_PACK_AMX) return base->pack_b_q4(kr, w, c0, cols, K, dst);
    if (base->isa != HP_ISA_AVX512_BF16) return 0;   // only its q4 pack writes the pair format
    hp_gemm_kernel pk = *kr;
    pk.fmt = HP_PACK_BF16PAIR;
    return base->pack_b_q4(&pk, w, c0, cols, K, dst);
}
static int amx_pack_q4_emu(const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0, long cols, long K, void *dst) {
    return amx_pack_q4_with(g_amx_base[1], kr, w, c0, cols, K, dst);
}
static int amx_pack_q4_real(const hp_gemm_kernel *kr, const hp_q4_weight *w, long c0, long cols, long K, void *dst) {
    return amx_pack_q4_with(g_amx_base[0], kr, w, c0, cols, K, dst);
}

/// Scalar P → bf16 pair rows (attention PV) for bases without one.
static void pack_p_pairs_scalar(const float *S, long nk, long ncol, uint32_t *dst) {
    for (long p = 0; 2 * p < nk; p++)
        for (long c = 0; c < ncol; c++) {
            uint32_t lo = hp_f2bf(S[2 * p * ncol + c]);
            uint32_t hi = 2 * p + 1 < nk ? hp_f2bf(S[(2 * p + 1) * ncol + c]) : 0;
            dst[p * ncol + c] = lo | hi << 16;
        }
}

// AMX blocking (oneDNN brgemm / Intel's AMX guide: keep the B panel of one k block in L1 and the A block of a
// task in L2). kc = 512: a B panel is 32 KiB (L1d is 48 KiB on Sapphire Rapids), an A panel 32 KiB; mc = 256 rows
// → a 256 KiB A block; nt = 256 columns → a 256 KiB B block. kc fixes the summation order of the family; mc and nt
// are resized from L2 at start-up without changing results. None of this has been timed on AMX hardware.
enum { AMX_KC = 512, AMX_MC = 256, AMX_NT = 256 };

void hp_amx_make_table(hp_dispatch *out, const hp_dispatch *base, int emu) {
    *out = *base;
    g_amx_base[emu ? 1 : 0] = base;
    out->isa = emu ? HP_ISA_AMX_EMU : HP_ISA_AMX;
    out->base_isa = base->isa;
#if HP_X86
    hp_ukr_fn ukr = emu ? ukr_amx_emu_32x32 : ukr_amx_32x32;
#else
    hp_ukr_fn ukr = ukr_amx_emu_32x32;
#endif
    out->bf16 = (hp_gemm_kernel){.mr = 32, .nr = 32, .fmt = HP_PACK_AMX, .kc = AMX_KC, .mc = AMX_MC, .ukr = ukr,
                                 .nt = AMX_NT,
                                 .desc = emu ? "tdpbf16ps on emulated tiles (scalar model, slow; for tests)"
                                             : "tdpbf16ps (unmeasured: never timed on AMX hardware)"};
    out->pack_b_fast = emu ? amx_pack_b_emu : amx_pack_b_real;
    out->pack_a_fast = emu ? amx_pack_a_emu : amx_pack_a_real;
    out->pack_b_q4 = emu ? amx_pack_q4_emu : amx_pack_q4_real;
    if (!out->pack_p_pairs) out->pack_p_pairs = pack_p_pairs_scalar;
}
