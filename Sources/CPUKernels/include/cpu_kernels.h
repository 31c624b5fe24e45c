// CPU kernels: the C API the CPU backend calls (GEMM f32/bf16, W4A16 GEMM, fused attention, thread pool,
// run-time ISA dispatch). Every fast kernel has a scalar `_ref` twin that the tests hold it to.
//
// Conventions (all kernels):
//   - row-major storage; `ld*` are leading dimensions (elements between consecutive rows as stored);
//   - bf16 is stored as uint16_t (upper half of an IEEE f32); f32 -> bf16 rounds to nearest even;
//   - results are bit-identical for any thread count (each output element is reduced in a fixed order by one
//     thread); different ISA paths may differ in the last bits (they are compared with tolerances);
//   - functions return 0 on success and a negative HP_E* code on invalid arguments (never abort).
// Dimension legend: M rows of the output, N columns of the output, K the reduced dimension,
//   B batch, H heads, Lq/Lk query/key lengths, D head dimension.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ── errors ───────────────────────────────────────────────────────────────────────────────────────────────
enum { HP_OK = 0, HP_EINVAL = -1, HP_ENOMEM = -2, HP_EUNSUPPORTED = -3 };

// ── CPU features and dispatch ────────────────────────────────────────────────────────────────────────────
/// Bits of `hp_cpu_features()` (CPU support *and* OS-enabled register state).
enum {
    HP_CPU_SSE2 = 1u << 0,
    HP_CPU_AVX2 = 1u << 1,
    HP_CPU_FMA = 1u << 2,
    HP_CPU_F16C = 1u << 3,
    HP_CPU_AVX512F = 1u << 4,
    HP_CPU_AVX512BW = 1u << 5,
    HP_CPU_AVX512DQ = 1u << 6,
    HP_CPU_AVX512VL = 1u << 7,
    HP_CPU_AVX512_BF16 = 1u << 8,
    HP_CPU_AVX512_VNNI = 1u << 9,
    HP_CPU_AMX_TILE = 1u << 10,
    HP_CPU_AMX_BF16 = 1u << 11,
    HP_CPU_AMX_PERMITTED = 1u << 12,  // the kernel granted XTILEDATA via arch_prctl
    HP_CPU_NEON = 1u << 13,
};

/// Kernel families, best last. `HP_ISA_AUTO` picks the best the CPU supports.
typedef enum {
    HP_ISA_AUTO = 0,
    HP_ISA_SCALAR = 1,       // portable C, blocked (4x16 microkernel); the `_ref` twins are separate
    HP_ISA_AVX2 = 2,         // AVX2 + FMA, 6x16 f32 microkernel (bf16 converted to f32 when packing)
    HP_ISA_AVX512 = 3,       // AVX-512F/BW/DQ/VL, 14x32 f32 microkernel (bf16 converted to f32 when packing)
    HP_ISA_AVX512_BF16 = 4,  // AVX-512 + vdpbf16ps: bf16 GEMM/attention in bf16 with f32 accumulation
    HP_ISA_NEON = 5,         // reserved: no NEON kernels yet (arm64 runs the scalar family)
    HP_ISA_AMX = 6,          // AMX-BF16 tiles (tdpbf16ps, 32x32) for bf16 GEMM / attention / W4A16 (M > 16), the
                             // rest from avx512_bf16. Needs amx_bf16 + the OS tile permission. Opt-in only
                             // (HPRUNE_ISA=amx): verified through its emulation twin, never timed on AMX hardware.
    HP_ISA_AMX_EMU = 7,      // the same AMX code path on an emulated tile layer (scalar model of the tile
                             // registers and tdpbf16ps), on any CPU; the rest from the best family. For tests.
    HP_ISA_COUNT = 8,
} hp_isa;

uint32_t hp_cpu_features(void);
/// Space-separated names of the detected features, e.g. "sse2 avx2 fma avx512f ... avx512_bf16".
const char *hp_cpu_features_string(void);
/// The ISA the kernels currently dispatch to.
hp_isa hp_selected_isa_id(void);
/// Name of the current ISA: "scalar", "avx2", "avx512", "avx512_bf16", "neon".
const char *hp_selected_isa(void);
const char *hp_isa_name(hp_isa isa);
/// Whether this CPU can run `isa`.
int hp_isa_supported(hp_isa isa);
/// Forces an ISA for kernels called from the calling thread (tests, benchmarks); HP_ISA_AUTO removes the
/// override. Returns HP_EUNSUPPORTED if the CPU lacks it. Other threads are not affected (the pool threads
/// working for this thread's call use its choice). The environment variable
/// HPRUNE_ISA=scalar|avx2|avx512|avx512_bf16|amx|amx_emu sets the process-wide start-up choice (an unknown or
/// unsupported name is reported on stderr once and ignored).
int hp_set_isa_override(hp_isa isa);
/// The calling thread's override (HP_ISA_AUTO when none), so callers can restore it.
hp_isa hp_get_isa_override(void);
/// Feature score of `isa` on this CPU (0: cannot run; the automatic choice is the highest-scoring family that
/// is eligible for it; amx and amx_emu never are).
int hp_isa_score(hp_isa isa);
/// Whether the automatic choice may pick `isa` (0 for amx, which is unmeasured, and amx_emu).
int hp_isa_auto_eligible(hp_isa isa);
/// The family whose kernels `isa`'s table uses for everything it does not replace (amx: avx512_bf16; amx_emu: the
/// best plain family here); HP_ISA_AUTO for a plain family or one without a table on this CPU. HP_ISA_AUTO asks about
/// the selected family. Action keys name both (CPUBackend/CPUKernelFamilies.swift).
hp_isa hp_isa_base(hp_isa isa);

/// CPU identity and caches read once at start-up (sysfs, else cpuid leaf 4 / 0x8000001D). Sizes in bytes, 0 if
/// unknown. The GEMM m/n blocking of each family is sized from l2 on Intel (never the k blocking, so results do
/// not depend on it); AMD and unknown CPUs keep the blocking measured on Zen 4.
typedef struct hp_cpu_info {
    char vendor[16];     // "GenuineIntel", "AuthenticAMD", ""
    int family, model;   // display family / model (cpuid leaf 1)
    long l1d, l2, l3;    // per-core L1d and L2, L3 as reported
    const char *cache_source;  // "sysfs", "cpuid", "none"
    const char *blocking;      // "zen4-measured (defaults)" or "intel-l2 (sized from L2, unmeasured)" …
} hp_cpu_info;
const hp_cpu_info *hp_cpu_info_get(void);

/// Re-sizes `isa`'s GEMM m-blocks as the start-up tuning would for an L2 of `l2_bytes` (0: back to the start-up
/// blocking). For tests (the Intel rule checked on any CPU: results must not change); not thread-safe against
/// running kernels. HP_EUNSUPPORTED if this CPU cannot run `isa`.
int hp_set_l2_blocking(hp_isa isa, long l2_bytes);

/// Kernel entry points whose family `hprune backends` reports.
typedef enum {
    HP_KOP_GEMM_F32 = 0, HP_KOP_GEMM_BF16, HP_KOP_ATTN_F32, HP_KOP_ATTN_BF16, HP_KOP_ATTN_BWD,
    HP_KOP_W4A16_SMALL_M, HP_KOP_W4A16, HP_KOP_COUNT
} hp_kernel_op;
const char *hp_kernel_op_name(hp_kernel_op op);
/// The family and microkernel that run `op` under `isa`, e.g. "avx512_bf16 14x32 vdpbf16ps (kc 1024, mc 168)";
/// NULL if this CPU cannot run `isa`.
const char *hp_kernel_op_family(hp_isa isa, hp_kernel_op op);

// ── AMX tile emulation (the twin the AMX family runs on without AMX hardware) ──────────────────────────────
/// One TDPBF16PS on tiles configured as C rows×(n_pairs*4 bytes), A rows×(k_pairs*4), B k_pairs×(n_pairs*4)
/// (palette 1: rows <= 16, k_pairs, n_pairs <= 16): loads C (f32, ldc), A (bf16 pairs, lda in elements) and B
/// (bf16 pairs as [k_pairs][n_pairs][2], ldb in elements) into tiles 0, 1, 2, runs tdpbf16ps, stores C back.
/// `real` != 0 runs the hardware instruction (HP_EUNSUPPORTED without AMX permission), else the emulation.
/// On a CPU with usable AMX: one full 16×16×32 TDPBF16PS on fixed data, real against emulated; 1 = bit-identical,
/// 0 = they differ, -1 = no usable AMX here. Computed once per process.
int hp_amx_selfcheck(void);
int hp_amx_tdpbf16ps_probe(int real, int rows, int k_pairs, int n_pairs, float *C, long ldc, const uint16_t *A,
                           long lda, const uint16_t *B, long ldb);

// ── thread pool ──────────────────────────────────────────────────────────────────────────────────────────
/// (Re)starts the persistent pool with `n` threads in all (the caller counts as one); n <= 0 means
/// $HPRUNE_THREADS when set to a positive integer, else one per online CPU. Must not be called while kernels
/// run. Returns the thread count.
int hp_threads_init(int n);
int hp_threads_count(void);
/// task in [0, n_tasks), thread in [0, hp_threads_count()).
typedef void (*hp_task_fn)(void *ctx, long task, int thread);
/// Runs fn(ctx, t, thread) for every t, spread over the pool; returns when all are done. Nested calls (from
/// inside a task) and calls made while another caller holds the pool run serially on the calling thread.
void hp_parallel_for(long n_tasks, hp_task_fn fn, void *ctx);
/// Kernels keep grow-only per-thread work buffers (packed panels, tiles) between calls; this frees the calling
/// thread's. Pool threads keep theirs until hp_threads_init restarts them.
void hp_release_thread_buffers(void);

// ── common enums and bf16 helpers ────────────────────────────────────────────────────────────────────────
typedef enum { HP_F32 = 0, HP_BF16 = 1 } hp_dtype;
typedef enum { HP_ACT_NONE = 0, HP_ACT_GELU_TANH = 1, HP_ACT_SILU = 2 } hp_act;

/// Round-to-nearest-even f32 -> bf16 (NaN stays NaN).
uint16_t hp_f32_to_bf16(float x);
float hp_bf16_to_f32(uint16_t x);
void hp_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n);
void hp_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n);

// ── GEMM ─────────────────────────────────────────────────────────────────────────────────────────────────
// C[M,N] = act(alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N])
//   op(A): trans_a == 0 → A stored [M,K] (lda >= K); trans_a != 0 → A stored [K,M] (lda >= M).
//   op(B): trans_b == 0 → B stored [K,N] (ldb >= N); trans_b != 0 → B stored [N,K] (ldb >= K).
//   C stored [M,N] (ldc >= N). beta == 0 ignores C's old contents (NaN included). bias may be NULL.
// Reduction order: K is summed in fixed blocks in increasing order, independent of the thread count.

/// The k block of `isa`'s GEMM for `dtype` inputs (the unit of its summation order), 0 if unavailable.
long hp_gemm_kblock(hp_isa isa, hp_dtype dtype);

int hp_gemm_f32(int trans_a, int trans_b, long M, long N, long K, float alpha,
                const float *A, long lda, const float *B, long ldb, float beta, float *C, long ldc,
                const float *bias, hp_act act);
/// Batched: matrix b uses A + b*stride_a, B + b*stride_b, C + b*stride_c (strides in elements; 0 broadcasts).
int hp_gemm_f32_batched(int trans_a, int trans_b, long M, long N, long K, float alpha,
                        const float *A, long lda, long stride_a, const float *B, long ldb, long stride_b,
                        float beta, float *C, long ldc, long stride_c, const float *bias, hp_act act, long batch);
int hp_gemm_f32_ref(int trans_a, int trans_b, long M, long N, long K, float alpha,
                    const float *A, long lda, const float *B, long ldb, float beta, float *C, long ldc,
                    const float *bias, hp_act act);

/// bf16 inputs, f32 accumulation; C is f32 (c_dtype HP_F32) or bf16 (HP_BF16, rounded to nearest even once,
/// after the epilogue). With beta != 0 the old C is read in c_dtype.
int hp_gemm_bf16(int trans_a, int trans_b, long M, long N, long K, float alpha,
                 const uint16_t *A, long lda, const uint16_t *B, long ldb, float beta,
                 void *C, hp_dtype c_dtype, long ldc, const float *bias, hp_act act);
int hp_gemm_bf16_batched(int trans_a, int trans_b, long M, long N, long K, float alpha,
                         const uint16_t *A, long lda, long stride_a, const uint16_t *B, long ldb, long stride_b,
                         float beta, void *C, hp_dtype c_dtype, long ldc, long stride_c,
                         const float *bias, hp_act act, long batch);
int hp_gemm_bf16_ref(int trans_a, int trans_b, long M, long N, long K, float alpha,
                     const uint16_t *A, long lda, const uint16_t *B, long ldb, float beta,
                     void *C, hp_dtype c_dtype, long ldc, const float *bias, hp_act act);

// ── prepacked Linear weights (inference) ─────────────────────────────────────────────────────────────────
// y[M,N] = act(x[M,K] · Wᵀ + bias) with W[N,K] packed once into the B panels of the kernel the calling thread
// dispatches to (the work every hp_gemm_* call with trans_b redoes on each call). The reference twin is
// hp_gemm_f32_ref / hp_gemm_bf16_ref with trans_b = 1 on the unpacked W.
typedef struct hp_packed_weight {
    const void *kernel;    // the kernel the panels are laid out for (opaque identity)
    hp_dtype dtype;        // of W, and of x at use
    long n, k;             // W is [n, k]
    const void *panels;    // hp_packed_weight_bytes(dtype, n, k) bytes, owned by the caller
} hp_packed_weight;

/// Bytes the panels of W[n,k] take for the current kernel (0 for invalid sizes or dtype).
size_t hp_packed_weight_bytes(hp_dtype dtype, long n, long k);
/// Packs W[n,k] (row-major, dense) into `panels` (hp_packed_weight_bytes bytes, 64-byte aligned) and describes
/// them in *out. W may be freed afterwards.
int hp_pack_weight(hp_dtype dtype, const void *W, long n, long k, void *panels, hp_packed_weight *out);
/// C[M,n] (c_dtype, ldc) = act(A[M,k] (w->dtype, lda) · Wᵀ + bias[n]); a bf16 C is rounded to nearest even once,
/// after the epilogue. HP_EUNSUPPORTED when the calling thread now dispatches to another kernel than the one `w`
/// was packed for (an ISA override changed): pack again, or unpack.
int hp_gemm_packed(long M, const void *A, long lda, const hp_packed_weight *w, void *C, hp_dtype c_dtype, long ldc,
                   const float *bias, hp_act act);
/// Writes the dense W[n,k] (w->dtype) back out of its panels (exact), e.g. to run under another ISA.
int hp_unpack_weight(const hp_packed_weight *w, void *W);

// ── 4-bit weights (W4A16) ────────────────────────────────────────────────────────────────────────────────
// Weight W[N,K] flattened row-major into N*K elements e = n*K + k. Codes q[e] in 0..15 are packed two per byte,
// FIRST element in the HIGH nibble (bitsandbytes): byte[j] = q[2j] << 4 | q[2j+1]; ceil(N*K/2) bytes.
// Blocks are `block` consecutive flattened elements (they may straddle rows; the last may be partial), with
// one f32 scale per block (bitsandbytes absmax) and an optional f32 zero per block:
//     w[e] = code[q[e]] * scale[e / block] (+ zero[e / block])
// NF4/FP4: code = hp_code_nf4 / hp_code_fp4, scale = absmax, zero = NULL.
// int4 group-wise symmetric: code = hp_code_int4 (-8..7), scale per group, zero = NULL.
// int4 with a zero point z (w = (q - z) * s): code = hp_code_uint4 (0..15), scale = s, zero = -z * s.
typedef struct hp_q4_weight {
    const uint8_t *data;   // [ceil(n*k/2)] packed codes
    const float *scale;    // [ceil(n*k/block)]
    const float *zero;     // [ceil(n*k/block)] or NULL
    const float *code;     // [16] code table
    long n, k;             // W is [n, k]
    long block;            // elements per block (> 0; 64 is bitsandbytes' default)
} hp_q4_weight;

extern const float hp_code_nf4[16];
extern const float hp_code_fp4[16];
extern const float hp_code_int4[16];   // -8 .. 7
extern const float hp_code_uint4[16];  // 0 .. 15
typedef enum { HP_CODE_NF4 = 0, HP_CODE_FP4 = 1, HP_CODE_INT4 = 2, HP_CODE_UINT4 = 3 } hp_code_kind;
/// The 16-entry table of `kind` (the arrays above; handy from Swift, which imports C arrays as tuples).
const float *hp_code_table(hp_code_kind kind);

/// Blockwise absmax quantisation of w[count] to the nearest entry of `code` (as bitsandbytes: x / absmax,
/// nearest code; ties to the lower index, except that a zero is written as -0 when the table has both, as
/// bitsandbytes' FP4 does);
/// writes data[ceil(count/2)] and absmax[ceil(count/block)]. Matches bitsandbytes' bytes (tested on a fixture).
int hp_quantize_4bit(const float *w, long count, long block, const float *code, uint8_t *data, float *absmax);
/// Dequantises rows [n0, n0+rows) of W into out[rows, k] (f32). For tests and small uses.
int hp_dequantize_4bit_rows(const hp_q4_weight *w, long n0, long rows, float *out);

/// Y[M,N] = act(X[M,K] · Wᵀ + bias[N]); X is f32 or bf16 (ldx >= K), Y is f32 or bf16 (ldy >= N).
/// The weight is dequantised in registers / in cache-sized panels; the full-precision W is never stored.
int hp_gemm_w4a16(long M, const void *X, hp_dtype x_dtype, long ldx, const hp_q4_weight *W,
                  const float *bias, hp_act act, void *Y, hp_dtype y_dtype, long ldy);
int hp_gemm_w4a16_ref(long M, const void *X, hp_dtype x_dtype, long ldx, const hp_q4_weight *W,
                      const float *bias, hp_act act, void *Y, hp_dtype y_dtype, long ldy);

// ── fused attention ──────────────────────────────────────────────────────────────────────────────────────
// O[b,h,i,:] = Σ_j softmax_j(s · Q[b,h,i,:]·K[b,h,j,:]) V[b,h,j,:],   lse[b,h,i] = log Σ_j exp(s · q_i·k_j)
// Tensors are [B,H,L,D] views: element (b,h,l,d) at ptr[b*sb + h*sh + l*sl + d] (d contiguous). A stride of 0
// means "contiguous [B,H,L,D]" for that tensor. lse is always contiguous [B,H,Lq] f32 (may be NULL in forward).
// Flash-style: key tiles with an online softmax; the Lq×Lk matrix is never stored.
typedef struct hp_attn_args {
    long B, H, Lq, Lk, D;
    float scale;          // usually 1/sqrt(D)
    hp_dtype dtype;       // of q, k, v, o (and dout/dq/dk/dv in backward; bf16 backward runs on f32 copies)
    const void *q; long q_sb, q_sh, q_sl;   // [B,H,Lq,D]
    const void *k; long k_sb, k_sh, k_sl;   // [B,H,Lk,D]
    const void *v; long v_sb, v_sh, v_sl;   // [B,H,Lk,D]
    void *o; long o_sb, o_sh, o_sl;         // [B,H,Lq,D]
    float *lse;                             // [B,H,Lq]
    // backward only (same strides as o for do; as q for dq; as k for dk; as v for dv):
    const void *dout;   // [B,H,Lq,D]
    void *dq;           // [B,H,Lq,D]
    void *dk;           // [B,H,Lk,D]
    void *dv;           // [B,H,Lk,D]
} hp_attn_args;

int hp_attention_forward(const hp_attn_args *args);
int hp_attention_forward_ref(const hp_attn_args *args);
/// Flash-attention-2 backward by recomputation from (q, k, v, o, lse, dout); writes dq, dk, dv (overwritten).
/// Deterministic: dk/dv are reduced per key block, dq per query block, in a fixed order.
int hp_attention_backward(const hp_attn_args *args);
int hp_attention_backward_ref(const hp_attn_args *args);

#ifdef __cplusplus
}
#endif
