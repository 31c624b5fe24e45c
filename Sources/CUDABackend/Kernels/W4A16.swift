// CUDA kernel for `matmulW4A16`: x (M,K) f32/bf16 times a 4-bit weight (N,K)ᵀ, dequantised in registers (never
// materialised): value = code[q]·scale[e/block] (+ zero[e/block]) for element e = n·K + k, two codes per byte,
// first in the high nibble (bitsandbytes layout, Packed4BitWeight). Scalar twin: ReferenceBackend.matmulW4A16.
//
// One warp computes HP_W4_ROWS rows of x against one output column n: lanes walk K two codes (one byte) at a time,
// so a GEMV (M = 1) reads each weight byte once, coalesced; larger M reuses the dequantised value across rows.

enum W4A16Kernels {
    static let source = #"""
#define HP_W4_ROWS 8
/* out (M,N) f32 = act(x·Wᵀ + bias); grid (ceil(N / warps per block), ceil(M / HP_W4_ROWS)). */
extern "C" __global__ void hp_w4a16(const void *xv, int xbf16, const u8 *packed, const float *scale, const float *zero,
                                    const float *code, const float *bias, int act, float *out, i64 M, i64 N, i64 K,
                                    i64 block) {
    __shared__ float cb[16];
    if (threadIdx.x < 16) cb[threadIdx.x] = code[threadIdx.x];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const i64 n = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const i64 m0 = (i64)blockIdx.y * HP_W4_ROWS;
    if (n >= N) return;
    const int rows = (int)(M - m0 < HP_W4_ROWS ? M - m0 : HP_W4_ROWS);
    float acc[HP_W4_ROWS];
    for (int r = 0; r < HP_W4_ROWS; r++) acc[r] = 0.f;
    const float *xf = (const float *)xv;
    const u16 *xh = (const u16 *)xv;
    const i64 e0 = n * K;
    for (i64 k = lane; k < K; k += 32) {
        const i64 e = e0 + k;
        const u8 byte = packed[e >> 1];
        const int q = (e & 1) ? (byte & 15) : (byte >> 4);
        const i64 blk = e / block;
        const float w = cb[q] * scale[blk] + (zero ? zero[blk] : 0.f);
        for (int r = 0; r < rows; r++) {
            const i64 xi = (m0 + r) * K + k;
            acc[r] += (xbf16 ? bf16_to_f32(xh[xi]) : xf[xi]) * w;
        }
    }
    for (int r = 0; r < rows; r++) {
        float s = acc[r];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) out[(m0 + r) * N + n] = (float)act_apply((double)s + (bias ? (double)bias[n] : 0.0), act);
    }
}
"""#
    static let kernels = ["hp_w4a16"]
}
