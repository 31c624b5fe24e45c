// CPU feature detection (cpuid + xgetbv, arch_prctl for AMX tile data) and the run-time choice of kernels:
// the best ISA the CPU and OS support is chosen once at start-up; tests can force another.
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
    switch (isa) {
    case HP_ISA_AUTO:
    case HP_ISA_SCALAR: return 1;
#if HP_X86
    case HP_ISA_AVX2: return (f & (HP_CPU_AVX2 | HP_CPU_FMA)) == (HP_CPU_AVX2 | HP_CPU_FMA);
    case HP_ISA_AVX512: return (f & avx512) == avx512;
    case HP_ISA_AVX512_BF16: return (f & (avx512 | HP_CPU_AVX512_BF16)) == (avx512 | HP_CPU_AVX512_BF16);
#endif
    default: (void)avx512; return 0;
    }
}

int hp_isa_supported(hp_isa isa) { return isa_supported(hp_cpu_features(), isa); }

static const hp_dispatch *table_for(hp_isa isa) {
    switch (isa) {
#if HP_X86
    case HP_ISA_AVX2: return &hp_dispatch_avx2;
    case HP_ISA_AVX512: return &hp_dispatch_avx512;
    case HP_ISA_AVX512_BF16: return &hp_dispatch_avx512bf16;
#endif
    default: return &hp_dispatch_scalar;
    }
}

static hp_isa best_isa(void) {
    static const hp_isa order[] = {HP_ISA_AVX512_BF16, HP_ISA_AVX512, HP_ISA_AVX2, HP_ISA_SCALAR};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (isa_supported(g_features, order[i])) return order[i];
    return HP_ISA_SCALAR;
}

static void init_once(void) {
    g_features = detect();
    size_t len = 0;
    g_features_str[0] = 0;
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++) {
        if (!(g_features & k_names[i].bit)) continue;
        int w = snprintf(g_features_str + len, sizeof g_features_str - len, "%s%s", len ? " " : "", k_names[i].name);
        if (w > 0) len += (size_t)w;
    }
    hp_isa isa = best_isa();
    const char *env = getenv("HPRUNE_ISA");
    if (env) {
        for (int i = HP_ISA_SCALAR; i <= HP_ISA_NEON; i++)
            if (strcmp(env, hp_isa_name((hp_isa)i)) == 0 && isa_supported(g_features, (hp_isa)i)) isa = (hp_isa)i;
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
    }
    return "unknown";
}

int hp_set_isa_override(hp_isa isa) {
    pthread_once(&g_once, init_once);
    if (isa == HP_ISA_AUTO) {
        tl_override = NULL;
        return HP_OK;
    }
    if (!hp_isa_supported(isa)) return HP_EUNSUPPORTED;
    tl_override = table_for(isa);
    return HP_OK;
}
