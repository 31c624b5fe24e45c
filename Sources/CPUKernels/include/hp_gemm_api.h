// hp_gemm_api.h — the C entry points the CPU backend expects from the fast-kernel branch: thread pool, CPU
// features, GEMM f32/bf16, W4A16, fused attention. The declarations are copied from that branch's
// include/cpu_kernels.h (same names, types and semantics), so the swap at merge is mechanical:
//   1. delete Sources/CPUKernels/gemm_fallback.c (the temporary plain-C implementations of everything below);
//   2. replace this file's body with `#pragma once` + `#include "cpu_kernels.h"`.
// Contract: results independent of the thread count; functions return HP_OK (0) or a negative HP_E* code.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { HP_OK = 0, HP_EINVAL = -1, HP_ENOMEM = -2, HP_EUNSUPPORTED = -3 };

// ── CPU features ────────────────────────────────────────────────────────────────────────────────────────────
/// Space-separated names of the detected features, e.g. "sse2 avx2 fma avx512f ... avx512_bf16".
const char *hp_cpu_features_string(void);

// ── thread pool ─────────────────────────────────────────────────────────────────────────────────────────────
/// (Re)starts the persistent pool with `n` threads in all (the caller counts as one); n <= 0 means one per
/// online CPU. Returns the thread count.
int hp_threads_init(int n);
int hp_threads_count(void);
/// task in [0, n_tasks), thread in [0, hp_threads_count()).
typedef void (*hp_task_fn)(void *ctx, long task, int thread);
/// Runs fn(ctx, t, thread) for every t, spread over the pool; returns when all are done. Nested calls and calls
/// made while another caller holds the pool run serially on the calling thread.
void hp_parallel_for(long n_tasks, hp_task_fn fn, void *ctx);

// ── common enums ────────────────────────────────────────────────────────────────────────────────────────────
typedef enum { HP_F32 = 0, HP_BF16 = 1 } hp_dtype;
typedef enum { HP_ACT_NONE = 0, HP_ACT_GELU_TANH = 1, HP_ACT_SILU = 2 } hp_act;

// ── GEMM ────────────────────────────────────────────────────────────────────────────────────────────────────
// C[M,N] = act(alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N])
//   op(A): trans_a == 0 → A stored [M,K] (lda >= K); trans_a != 0 → A stored [K,M] (lda >= M).
//   op(B): trans_b == 0 → B stored [K,N] (ldb >= N); trans_b != 0 → B stored [N,K] (ldb >= K).
//   C stored [M,N] (ldc >= N). beta == 0 ignores C's old contents (NaN included). bias may be NULL.
/// Batched: matrix b uses A + b*stride_a, B + b*stride_b, C + b*stride_c (strides in elements; 0 broadcasts).
int hp_gemm_f32_batched(int trans_a, int trans_b, long M, long N, long K, float alpha,
                        const float *A, long lda, long stride_a, const float *B, long ldb, long stride_b,
                        float beta, float *C, long ldc, long stride_c, const float *bias, hp_act act, long batch);
/// bf16 inputs, f32 accumulation; C is f32 (c_dtype HP_F32) or bf16 (HP_BF16, rounded to nearest even once,
/// after the epilogue). With beta != 0 the old C is read in c_dtype.
int hp_gemm_bf16_batched(int trans_a, int trans_b, long M, long N, long K, float alpha,
                         const uint16_t *A, long lda, long stride_a, const uint16_t *B, long ldb, long stride_b,
                         float beta, void *C, hp_dtype c_dtype, long ldc, long stride_c,
                         const float *bias, hp_act act, long batch);

// ── 4-bit weights (W4A16) ───────────────────────────────────────────────────────────────────────────────────
// W[N,K] flattened row-major (e = n*K + k), codes packed two per byte, FIRST element in the HIGH nibble
// (bitsandbytes); `block` consecutive flattened elements share scale (and optional zero):
//     w[e] = code[q[e]] * scale[e / block] (+ zero[e / block])
typedef struct hp_q4_weight {
    const uint8_t *data;   // [ceil(n*k/2)] packed codes
    const float *scale;    // [ceil(n*k/block)]
    const float *zero;     // [ceil(n*k/block)] or NULL
    const float *code;     // [16] code table
    long n, k;             // W is [n, k]
    long block;            // elements per block (> 0)
} hp_q4_weight;

/// Y[M,N] = act(X[M,K] · Wᵀ + bias[N]); X is f32 or bf16 (ldx >= K), Y is f32 or bf16 (ldy >= N).
/// The full-precision W is never stored.
int hp_gemm_w4a16(long M, const void *X, hp_dtype x_dtype, long ldx, const hp_q4_weight *W,
                  const float *bias, hp_act act, void *Y, hp_dtype y_dtype, long ldy);

// ── fused attention ─────────────────────────────────────────────────────────────────────────────────────────
// O[b,h,i,:] = Σ_j softmax_j(s · Q[b,h,i,:]·K[b,h,j,:]) V[b,h,j,:],   lse[b,h,i] = log Σ_j exp(s · q_i·k_j)
// Tensors are [B,H,L,D] views: element (b,h,l,d) at ptr[b*sb + h*sh + l*sl + d]. A stride of 0 means
// "contiguous [B,H,L,D]" for that tensor. lse is contiguous [B,H,Lq] f32. The Lq×Lk matrix is never stored.
typedef struct hp_attn_args {
    long B, H, Lq, Lk, D;
    float scale;          // usually 1/sqrt(D)
    hp_dtype dtype;       // of q, k, v, o (and do/dq/dk/dv in backward; backward supports HP_F32 only)
    const void *q; long q_sb, q_sh, q_sl;   // [B,H,Lq,D]
    const void *k; long k_sb, k_sh, k_sl;   // [B,H,Lk,D]
    const void *v; long v_sb, v_sh, v_sl;   // [B,H,Lk,D]
    void *o; long o_sb, o_sh, o_sl;         // [B,H,Lq,D]
    float *lse;                             // [B,H,Lq]
    const void *dout;   // [B,H,Lq,D]  (backward only; strides as o)
    void *dq;           // [B,H,Lq,D]  (strides as q)
    void *dk;           // [B,H,Lk,D]  (strides as k)
    void *dv;           // [B,H,Lk,D]  (strides as v)
} hp_attn_args;

int hp_attention_forward(const hp_attn_args *args);
/// Backward by recomputation from (q, k, v, o, lse, dout); writes dq, dk, dv (overwritten). Deterministic.
int hp_attention_backward(const hp_attn_args *args);

#ifdef __cplusplus
}
#endif
