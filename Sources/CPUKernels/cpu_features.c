// CPU feature detection (cpuid + xgetbv, arch_prctl for AMX tile data), CPU identity and caches, and the run-time
// choice of kernels: one table per family (copies with blocking sized to the caches), the best-scoring eligible
// family chosen once at start-up (HPRUNE_ISA overrides; tests force one per thread); the per-op family report.
#include "hp_internal.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#if HP_X86
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static uint32_t g_features;
static char g_features_str[256];
static _Atomic(const hp_dispatch *) g_dispatch;       // process-wide choice (best ISA, or HPRUNE_ISA)
static _Thread_local const hp_dispatch *tl_override;  // hp_set_isa_override, per calling thread
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if HP_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect(void) {
    uint32_t f = 0, a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (d & (1u << 26)) f |= HP_CPU_SSE2;
    int osxsave = (c >> 27) & 1;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    int os_amx = (xcr0 & (3u << 17)) == (3u << 17);
    if (os_avx && fma) f |= HP_CPU_FMA;
    if (os_avx && f16c) f |= HP_CPU_F16C;
    uint32_t max_leaf = __get_cpuid_max(0, 0);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (os_avx && (b & (1u << 5))) f |= HP_CPU_AVX2;
        if (os_avx512) {
            if (b & (1u << 16)) f |= HP_CPU_AVX512F;
            if (b & (1u << 17)) f |= HP_CPU_AVX512DQ;
            if (b & (1u << 30)) f |= HP_CPU_AVX512BW;
            if (b & (1u << 31)) f |= HP_CPU_AVX512VL;
            if (c & (1u << 11)) f |= HP_CPU_AVX512_VNNI;
        }
        if (os_amx && (d & (1u << 24))) f |= HP_CPU_AMX_TILE;
        if (os_amx && (d & (1u << 22))) f |= HP_CPU_AMX_BF16;
        uint32_t sub = a;
        if (sub >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if (os_avx512 && (a & (1u << 5))) f |= HP_CPU_AVX512_BF16;
        }
    }
#ifdef __linux__
    if (f & HP_CPU_AMX_TILE) {
        // ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18: ask the kernel for the tile data state.
        if (syscall(SYS_arch_prctl, 0x1023, 18) == 0) f |= HP_CPU_AMX_PERMITTED;
    }
#endif
    return f;
}
#elif defined(__aarch64__)
static uint32_t detect(void) { return HP_CPU_NEON; }
#else
static uint32_t detect(void) { return 0; }
#endif

static const struct { uint32_t bit; const char *name; } k_names[] = {
    {HP_CPU_SSE2, "sse2"}, {HP_CPU_AVX2, "avx2"}, {HP_CPU_FMA, "fma"}, {HP_CPU_F16C, "f16c"},
    {HP_CPU_AVX512F, "avx512f"}, {HP_CPU_AVX512BW, "avx512bw"}, {HP_CPU_AVX512DQ, "avx512dq"},
    {HP_CPU_AVX512VL, "avx512vl"}, {HP_CPU_AVX512_BF16, "avx512_bf16"}, {HP_CPU_AVX512_VNNI, "avx512_vnni"},
    {HP_CPU_AMX_TILE, "amx_tile"}, {HP_CPU_AMX_BF16, "amx_bf16"}, {HP_CPU_AMX_PERMITTED, "amx_permitted"},
    {HP_CPU_NEON, "neon"},
};

static int isa_supported(uint32_t f, hp_isa isa) {
    const uint32_t avx512 = HP_CPU_AVX512F | HP_CPU_AVX512BW | HP_CPU_AVX512DQ | HP_CPU_AVX512VL | HP_CPU_FMA;
    const uint32_t amx = HP_CPU_AMX_TILE | HP_CPU_AMX_BF16 | HP_CPU_AMX_PERMITTED;
    switch (isa) {
    case HP_ISA_AUTO:
    case HP_ISA_SCALAR:
    case HP_ISA_AMX_EMU: return 1;
#if HP_X86
    case HP_ISA_AVX2: return (f & (HP_CPU_AVX2 | HP_CPU_FMA)) == (HP_CPU_AVX2 | HP_CPU_FMA);
    case HP_ISA_AVX512: return (f & avx512) == avx512;
    case HP_ISA_AVX512_BF16: return (f & (avx512 | HP_CPU_AVX512_BF16)) == (avx512 | HP_CPU_AVX512_BF16);
    case HP_ISA_AMX: return (f & (avx512 | HP_CPU_AVX512_BF16 | amx)) == (avx512 | HP_CPU_AVX512_BF16 | amx);
#endif
    default: (void)avx512, (void)amx; return 0;
    }
}

int hp_isa_supported(hp_isa isa) { return isa_supported(hp_cpu_features(), isa); }

// ── feature score (as ggml's cpu-feats): one table per family, the best-scoring eligible one wins ──────────
// amx scores highest but is not eligible for the automatic choice: it has been verified only through its
// emulation twin and never timed on AMX hardware (opt in with HPRUNE_ISA=amx). amx_emu is for tests.
static int isa_score(uint32_t f, hp_isa isa) {
    if (!isa_supported(f, isa) || isa == HP_ISA_AUTO) return 0;
    switch (isa) {
    case HP_ISA_SCALAR: return 1;
    case HP_ISA_AVX2: return 10;
    case HP_ISA_AVX512: return 20;
    case HP_ISA_AVX512_BF16: return 30;
    case HP_ISA_AMX: return 40;
    case HP_ISA_AMX_EMU: return 2;
    default: return 0;
    }
}
static int isa_auto_eligible(hp_isa isa) { return isa != HP_ISA_AMX && isa != HP_ISA_AMX_EMU && isa != HP_ISA_AUTO; }

int hp_isa_score(hp_isa isa) { return isa_score(hp_cpu_features(), isa); }
int hp_isa_auto_eligible(hp_isa isa) { return isa_auto_eligible(isa); }

static hp_isa best_isa(void) {
    hp_isa best = HP_ISA_SCALAR;
    for (int i = HP_ISA_SCALAR; i < HP_ISA_COUNT; i++)
        if (isa_auto_eligible((hp_isa)i) && isa_score(g_features, (hp_isa)i) > isa_score(g_features, best)) best = (hp_isa)i;
    return best;
}

// ── CPU identity and caches ──────────────────────────────────────────────────────────────────────────────
static hp_cpu_info g_info;

/// Reads cache sizes from /sys/devices/system/cpu/cpu0/cache/index*/ (level, type, size "48K"); 0 if absent.
static int caches_sysfs(long *l1d, long *l2, long *l3) {
    int found = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[32], type[32];
        long level = 0, size = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fscanf(f, "%ld", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        type[0] = 0;
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%31s", type) != 1) type[0] = 0;
            fclose(f);
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if ((f = fopen(path, "r"))) {
            char unit = 0;
            if (fscanf(f, "%31s", buf) == 1 && sscanf(buf, "%ld%c", &size, &unit) >= 1) {
                if (unit == 'K') size <<= 10;
                else if (unit == 'M') size <<= 20;
            }
            fclose(f);
        }
        if (level == 1 && strcmp(type, "Instruction") != 0) *l1d = size, found = 1;
        if (level == 2) *l2 = size, found = 1;
        if (level == 3) *l3 = size, found = 1;
    }
    return found;
}

#if HP_X86
/// Deterministic cache parameters (Intel leaf 4, AMD leaf 0x8000001D: same encoding).
static int caches_cpuid(uint32_t leaf, long *l1d, long *l2, long *l3) {
    int found = 0;
    for (uint32_t i = 0; i < 16; i++) {
        uint32_t a, b, c, d;
        __cpuid_count(leaf, i, a, b, c, d);
        uint32_t type = a & 31, level = (a >> 5) & 7;
        if (type == 0) break;
        long size = (long)(((b >> 22) & 1023) + 1) * (long)(((b >> 12) & 1023) + 1) * (long)((b & 4095) + 1) *
                    (long)((long)c + 1);
        if (level == 1 && type != 2) *l1d = size, found = 1;
        if (level == 2) *l2 = size, found = 1;
        if (level == 3) *l3 = size, found = 1;
    }
    return found;
}
#endif

static void detect_info(void) {
    memset(&g_info, 0, sizeof g_info);
#if HP_X86
    uint32_t a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        uint32_t max_leaf = a;
        memcpy(g_info.vendor, &b, 4), memcpy(g_info.vendor + 4, &d, 4), memcpy(g_info.vendor + 8, &c, 4);
        if (max_leaf >= 1) {
            __cpuid(1, a, b, c, d);
            int fam = (a >> 8) & 15, mod = (a >> 4) & 15;
            if (fam == 15) fam += (a >> 20) & 255;
            if (fam == 6 || fam >= 15) mod += ((a >> 16) & 15) << 4;
            g_info.family = fam, g_info.model = mod;
        }
    }
#endif
    g_info.cache_source = "none";
    if (caches_sysfs(&g_info.l1d, &g_info.l2, &g_info.l3)) g_info.cache_source = "sysfs";
#if HP_X86
    else if (strcmp(g_info.vendor, "GenuineIntel") == 0 && __get_cpuid_max(0, 0) >= 4 &&
             caches_cpuid(4, &g_info.l1d, &g_info.l2, &g_info.l3))
        g_info.cache_source = "cpuid";
    else if (strcmp(g_info.vendor, "AuthenticAMD") == 0 && __get_cpuid_max(0x80000000u, 0) >= 0x8000001Du &&
             caches_cpuid(0x8000001Du, &g_info.l1d, &g_info.l2, &g_info.l3))
        g_info.cache_source = "cpuid";
#endif
}

const hp_cpu_info *hp_cpu_info_get(void) {
    hp_cpu_features();
    return &g_info;
}

// ── run-time tables: copies of the per-ISA tables with blocking sized to this CPU ─────────────────────────
static hp_dispatch g_tables[HP_ISA_COUNT];
static int g_table_ok[HP_ISA_COUNT];

/// Rows per m-block so that one k-block of A (rows × kc × element bytes) takes about a quarter of L2, a multiple
/// of mr in [4·mr, 64·mr]. Changes only which rows a task owns, never an element's summation order.
static long mc_for_l2(const hp_gemm_kernel *kr, long l2) {
    long bytes = kr->kc * (long)hp_pack_esize(kr);
    long rows = (l2 / 4) / (bytes > 0 ? bytes : 1) / kr->mr * kr->mr;
    return HP_MAX(4L * kr->mr, HP_MIN(64L * kr->mr, rows));
}

/// Intel: size the m-blocks from L2 (2 MiB per core on Sapphire Rapids against Zen 4's 1 MiB). Zen 4 and any
/// CPU without cache information keep the blocking that was measured on Zen 4 (the defaults in the tables).
static void tune(hp_dispatch *t) {
    if (strcmp(g_info.vendor, "GenuineIntel") != 0 || g_info.l2 <= 0) return;
    t->f32.mc = mc_for_l2(&t->f32, g_info.l2);
    t->bf16.mc = mc_for_l2(&t->bf16, g_info.l2);
}

static hp_gemm_kernel g_startup_f32[HP_ISA_COUNT], g_startup_bf16[HP_ISA_COUNT];   // blocking after tune()

int hp_set_l2_blocking(hp_isa isa, long l2_bytes) {
    hp_cpu_features();
    if (isa <= HP_ISA_AUTO || isa >= HP_ISA_COUNT || !g_table_ok[isa]) return HP_EUNSUPPORTED;
    hp_dispatch *t = &g_tables[isa];
    t->f32.mc = l2_bytes > 0 ? mc_for_l2(&t->f32, l2_bytes) : g_startup_f32[isa].mc;
    t->bf16.mc = l2_bytes > 0 ? mc_for_l2(&t->bf16, l2_bytes) : g_startup_bf16[isa].mc;
    return HP_OK;
}

static const hp_dispatch *static_table(hp_isa isa) {
    switch (isa) {
#if HP_X86
    case HP_ISA_AVX2: return &hp_dispatch_avx2;
    case HP_ISA_AVX512: return &hp_dispatch_avx512;
    case HP_ISA_AVX512_BF16: return &hp_dispatch_avx512bf16;
#endif
    default: return &hp_dispatch_scalar;
    }
}

static void build_tables(void) {
    hp_isa best_plain = HP_ISA_SCALAR;
    for (int i = HP_ISA_SCALAR; i < HP_ISA_COUNT; i++) {
        hp_isa isa = (hp_isa)i;
        if (isa == HP_ISA_AMX || isa == HP_ISA_AMX_EMU || isa == HP_ISA_NEON || !isa_supported(g_features, isa)) continue;
        g_tables[i] = *static_table(isa);
        tune(&g_tables[i]);
        g_table_ok[i] = 1;
        if (isa_score(g_features, isa) > isa_score(g_features, best_plain)) best_plain = isa;
    }
    // The emulated AMX family rides on the best plain family here (f32 ops, epilogues, small-M W4A16 are
    // that family's); the real one on avx512_bf16, which every AMX CPU has.
    hp_amx_make_table(&g_tables[HP_ISA_AMX_EMU], &g_tables[best_plain], 1);
    tune(&g_tables[HP_ISA_AMX_EMU]);
    g_table_ok[HP_ISA_AMX_EMU] = 1;
    if (isa_supported(g_features, HP_ISA_AMX) && g_table_ok[HP_ISA_AVX512_BF16]) {
        hp_amx_make_table(&g_tables[HP_ISA_AMX], &g_tables[HP_ISA_AVX512_BF16], 0);
        tune(&g_tables[HP_ISA_AMX]);
        g_table_ok[HP_ISA_AMX] = 1;
    }
    for (int i = 0; i < HP_ISA_COUNT; i++) g_startup_f32[i] = g_tables[i].f32, g_startup_bf16[i] = g_tables[i].bf16;
}

static const hp_dispatch *table_for(hp_isa isa) {
    if (isa > HP_ISA_AUTO && isa < HP_ISA_COUNT && g_table_ok[isa]) return &g_tables[isa];
    return &g_tables[HP_ISA_SCALAR];
}

const hp_dispatch *hp_dispatch_for(hp_isa isa) {
    hp_cpu_features();
    return isa > HP_ISA_AUTO && isa < HP_ISA_COUNT && g_table_ok[isa] ? &g_tables[isa] : NULL;
}

static void init_once(void) {
    g_features = detect();
    detect_info();
    size_t len = 0;
    g_features_str[0] = 0;
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++) {
        if (!(g_features & k_names[i].bit)) continue;
        int w = snprintf(g_features_str + len, sizeof g_features_str - len, "%s%s", len ? " " : "", k_names[i].name);
        if (w > 0) len += (size_t)w;
    }
    g_info.blocking = strcmp(g_info.vendor, "GenuineIntel") == 0 && g_info.l2 > 0
                          ? "intel-l2 (m-blocks sized from L2; unmeasured on Intel)"
                          : "defaults (measured on AMD Zen 4)";
    build_tables();
    hp_isa isa = best_isa();
    const char *env = getenv("HPRUNE_ISA");
    if (env && *env && strcmp(env, "auto") != 0) {
        int known = 0;
        for (int i = HP_ISA_SCALAR; i < HP_ISA_COUNT; i++)
            if (strcmp(env, hp_isa_name((hp_isa)i)) == 0) {
                known = 1;
                if (isa_supported(g_features, (hp_isa)i) && g_table_ok[i]) isa = (hp_isa)i;
                else
                    fprintf(stderr, "hprune: HPRUNE_ISA=%s: this CPU cannot run that kernel family (features: %s); "
                                    "using %s. Unset HPRUNE_ISA or pick one `hprune backends` lists.\n",
                            env, g_features_str, hp_isa_name(isa));
            }
        if (!known)
            fprintf(stderr, "hprune: HPRUNE_ISA=%s is not a kernel family (scalar, avx2, avx512, avx512_bf16, amx, "
                            "amx_emu, auto); using %s.\n", env, hp_isa_name(isa));
    }
    atomic_store(&g_dispatch, table_for(isa));
}

uint32_t hp_cpu_features(void) {
    pthread_once(&g_once, init_once);
    return g_features;
}

const char *hp_cpu_features_string(void) {
    pthread_once(&g_once, init_once);
    return g_features_str;
}

const hp_dispatch *hp_dispatch_current(void) {
    pthread_once(&g_once, init_once);
    if (tl_override) return tl_override;
    return atomic_load_explicit(&g_dispatch, memory_order_acquire);
}

hp_isa hp_selected_isa_id(void) { return hp_dispatch_current()->isa; }
const char *hp_selected_isa(void) { return hp_isa_name(hp_selected_isa_id()); }

const char *hp_isa_name(hp_isa isa) {
    switch (isa) {
    case HP_ISA_AUTO: return "auto";
    case HP_ISA_SCALAR: return "scalar";
    case HP_ISA_AVX2: return "avx2";
    case HP_ISA_AVX512: return "avx512";
    case HP_ISA_AVX512_BF16: return "avx512_bf16";
    case HP_ISA_NEON: return "neon";
    case HP_ISA_AMX: return "amx";
    case HP_ISA_AMX_EMU: return "amx_emu";
    case HP_ISA_COUNT: break;
    }
    return "unknown";
}

int hp_set_isa_override(hp_isa isa) {
    pthread_once(&g_once, init_once);
    if (isa == HP_ISA_AUTO) {
        tl_override = NULL;
        return HP_OK;
    }
    if (!hp_isa_supported(isa) || !hp_dispatch_for(isa)) return HP_EUNSUPPORTED;
    tl_override = table_for(isa);
    return HP_OK;
}

hp_isa hp_get_isa_override(void) { return tl_override ? tl_override->isa : HP_ISA_AUTO; }

hp_isa hp_isa_base(hp_isa isa) {
    const hp_dispatch *t = hp_dispatch_for(isa == HP_ISA_AUTO ? hp_selected_isa_id() : isa);
    return t ? t->base_isa : HP_ISA_AUTO;
}

// ── per-op families (`hprune backends`) ──────────────────────────────────────────────────────────────────
const char *hp_kernel_op_name(hp_kernel_op op) {
    switch (op) {
    case HP_KOP_GEMM_F32: return "gemm_f32";
    case HP_KOP_GEMM_BF16: return "gemm_bf16";
    case HP_KOP_ATTN_F32: return "attention_f32";
    case HP_KOP_ATTN_BF16: return "attention_bf16";
    case HP_KOP_ATTN_BWD: return "attention_backward";
    case HP_KOP_W4A16_SMALL_M: return "w4a16_m<=16";
    case HP_KOP_W4A16: return "w4a16_m>16";
    case HP_KOP_COUNT: break;
    }
    return NULL;
}

static char g_op_desc[HP_ISA_COUNT][HP_KOP_COUNT][160];

static const char *kernel_desc(const hp_gemm_kernel *k, char *buf, size_t n, const char *fallback) {
    snprintf(buf, n, "%dx%d %s (kc %ld, mc %ld)", k->mr, k->nr, k->desc ? k->desc : fallback, k->kc, k->mc);
    return buf;
}

const char *hp_kernel_op_family(hp_isa isa, hp_kernel_op op) {
    if (isa == HP_ISA_AUTO) isa = hp_selected_isa_id();
    const hp_dispatch *t = hp_dispatch_for(isa);
    if (!t || op < 0 || op >= HP_KOP_COUNT) return NULL;
    char kf[128], kb[128];
    char nm[40];
    if (t->base_isa) snprintf(nm, sizeof nm, "%s(%s)", hp_isa_name(isa), hp_isa_name(t->base_isa));
    else snprintf(nm, sizeof nm, "%s", hp_isa_name(isa));
    const char *name = nm;
    kernel_desc(&t->f32, kf, sizeof kf, "f32");
    if (t->bf16.fmt == HP_PACK_F32) snprintf(kb, sizeof kb, "bf16 converted to f32 when packing, %s", kf);
    else kernel_desc(&t->bf16, kb, sizeof kb, "bf16");
    char *out = g_op_desc[isa][op];
    size_t n = sizeof g_op_desc[isa][op];
    switch (op) {
    case HP_KOP_GEMM_F32: snprintf(out, n, "%s %s", name, kf); break;
    case HP_KOP_GEMM_BF16: snprintf(out, n, "%s %s", name, kb); break;
    case HP_KOP_ATTN_F32: snprintf(out, n, "%s flash, %s", name, kf); break;
    case HP_KOP_ATTN_BF16:
        if (t->bf16.fmt != HP_PACK_F32 && t->pack_p_pairs) snprintf(out, n, "%s flash, QK^T and PV on %s", name, kb);
        else snprintf(out, n, "%s flash on f32 copies, %s", name, kf);
        break;
    case HP_KOP_ATTN_BWD: snprintf(out, n, "%s flash-2 recompute, %s (bf16 via f32 copies)", name, kf); break;
    case HP_KOP_W4A16_SMALL_M:
        if (t->w4_gemv_bf16) snprintf(out, n, "%s dequantising GEMV (bf16 X on vdpbf16ps, f32 X on fma)", name);
        else if (t->w4_gemv) snprintf(out, n, "%s dequantising GEMV (f32)", name);
        else snprintf(out, n, "%s dequantised panels + GEMM", name);
        break;
    case HP_KOP_W4A16:
        snprintf(out, n, "%s nibbles dequantised into GEMM B panels, bf16 X: %s", name, kb);
        break;
    case HP_KOP_COUNT: return NULL;
    }
    return out;
}

long hp_gemm_kblock(hp_isa isa, hp_dtype dtype) {
    const hp_dispatch *t = hp_dispatch_for(isa == HP_ISA_AUTO ? hp_selected_isa_id() : isa);
    if (!t) return 0;
    return dtype == HP_F32 ? t->f32.kc : t->bf16.kc;
}
