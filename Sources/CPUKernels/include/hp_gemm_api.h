// hp_gemm_api.h — the C entry points the CPU backend expects from the fast-kernel work (GEMM, W4A16, attention,
// thread pool, CPU features). Until that branch merges, gemm_fallback.c implements every function here with plain
// blocked loops; at merge time gemm_fallback.c is deleted and the fast kernels provide these exact symbols.
//
// Contract for all kernels: results must not depend on the thread count (each output element is reduced in a
// fixed order), and calls may come from several threads at once.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ── threads ─────────────────────────────────────────────────────────────────────────────────────
/// A half-open range [begin, end) of work items handed to one thread.
typedef void (*hp_range_fn)(void *ctx, int64_t begin, int64_t end);
/// Sets the number of threads used by every kernel (including the caller); n <= 0 means all cores.
void hp_threads_init(int n);
/// The number of threads kernels use now.
int hp_threads_count(void);
/// Runs fn over [0, n) split into at most hp_threads_count() contiguous ranges of at least `grain` items.
/// Blocks until all ranges are done. Nested calls run inline on the calling thread.
void hp_parallel_for(int64_t n, int64_t grain, hp_range_fn fn, void *ctx);

// ── CPU features ────────────────────────────────────────────────────────────────────────────────
/// Space-separated ISA features the kernels can use on this machine, e.g. "avx2 fma avx512f avx512bf16 amx-bf16".
/// Returns a static string.
const char *hp_cpu_features_string(void);

// ── GEMM ────────────────────────────────────────────────────────────────────────────────────────
/// Epilogue activations (after bias).
enum { HP_ACT_NONE = 0, HP_ACT_GELU_TANH = 1, HP_ACT_SILU = 2 };

/// Batched f32 GEMM:  C[p] (M,N) = act(op(A[p]) · op(B[p]) + bias)   (or C[p] += … when accumulate != 0,
/// in which case bias and act must be NULL / HP_ACT_NONE).
/// op(A) is (M,K): A is stored (M,K) with row stride lda, or (K,M) when transA (row stride lda).
/// op(B) is (K,N): B is stored (K,N) with row stride ldb, or (N,K) when transB.
/// strideA/strideB/strideC: elements between consecutive batch items (strideB = 0 shares one B).
/// bias: (N) or NULL.
void hp_gemm_f32(int64_t batch, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, int64_t strideA, int transA,
                 const float *B, int64_t ldb, int64_t strideB, int transB,
                 float *C, int64_t ldc, int64_t strideC,
                 const float *bias, int act, int accumulate);

/// As hp_gemm_f32 with A and B in bf16 (uint16 bit patterns), f32 accumulation and f32 output.
void hp_gemm_bf16(int64_t batch, int64_t M, int64_t N, int64_t K,
                  const uint16_t *A, int64_t lda, int64_t strideA, int transA,
                  const uint16_t *B, int64_t ldb, int64_t strideB, int transB,
                  float *C, int64_t ldc, int64_t strideC,
                  const float *bias, int act, int accumulate);

// ── W4A16 ───────────────────────────────────────────────────────────────────────────────────────
/// Activation dtypes for hp_gemm_w4a16.
enum { HP_DT_F32 = 0, HP_DT_BF16 = 1, HP_DT_F16 = 2 };

/// Y (M,N) f32 = act(X (M,K) · Wᵀ + bias) with W (N,K) stored 4-bit, dequantised on the fly, never materialised:
/// element i = n*K + k of W has code q = (i even ? packed[i/2] >> 4 : packed[i/2] & 15) and value
/// codebook[q] * absmax[i / blocksize]  (bitsandbytes nf4/fp4 layout; int4 uses its own 16-entry codebook).
/// X is f32, bf16 or f16 per x_dtype (row stride K). bias: (N) or NULL.
void hp_gemm_w4a16(int64_t M, int64_t N, int64_t K,
                   const void *X, int x_dtype,
                   const uint8_t *packed, const float *absmax, int64_t blocksize, const float codebook[16],
                   float *Y, const float *bias, int act);

// ── attention ───────────────────────────────────────────────────────────────────────────────────
/// Fused attention forward, never storing Lq×Lk: for each (b,h): O = softmax(Q·Kᵀ·scale)·V.
/// Q (B,H,Lq,D), K, V (B,H,Lk,D) contiguous, f32 or bf16 per `dtype` (HP_DT_F32 / HP_DT_BF16).
/// O (B,H,Lq,D) f32; LSE (B,H,Lq) f32 = log Σ_j exp(scale·q·k_j) (natural log).
void hp_attention_fwd(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D,
                      const void *Q, const void *K, const void *V, int dtype, float scale,
                      float *O, float *LSE);

/// Fused attention backward (f32): given dO, Q, K, V, O, LSE from the forward, writes dQ (B,H,Lq,D),
/// dK, dV (B,H,Lk,D) (overwritten, not accumulated).
void hp_attention_bwd(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D,
                      const float *dO, const float *Q, const float *K, const float *V,
                      const float *O, const float *LSE, float scale,
                      float *dQ, float *dK, float *dV);

#ifdef __cplusplus
}
#endif
