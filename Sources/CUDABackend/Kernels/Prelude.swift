// CUDA C shared by every kernel family: types, bf16/f16 conversions (PTX cvt, round-to-nearest-even), the
// matmul-epilogue activations, a double-precision block reduction. Prepended to each family's source.
// No #include: NVRTC's built-in device functions are enough, so compiling needs no CUDA headers. The parts that
// only exist on a GPU are inside `#ifdef __CUDACC_RTC__`, so the grid-stride kernels also build for the host
// (CUDAHostKernelTests runs them there against the reference backend).

enum KernelPrelude {
    static let source = #"""
typedef long long i64;
typedef unsigned long long u64;
typedef unsigned short u16;
typedef unsigned char u8;

/* Shapes and strides passed by value: v[0] = rank, v[1..8] = output shape, v[9..16] = input strides (elements).
   (The host build passes them by reference: a plain pointer in the C ABI.) */
#ifdef __CUDACC_RTC__
struct Dims { i64 v[17]; };
#else
struct DimsS { i64 v[17]; };
typedef const DimsS &Dims;
#endif

#ifdef __CUDACC_RTC__
__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((unsigned)h) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float f) { u16 r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r; }
__device__ __forceinline__ u16 f32_to_f16(float f) { u16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r; }
__device__ __forceinline__ float f16_to_f32(u16 h) { float r; asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(h)); return r; }
#endif

/* Activation codes shared with the Swift side: 0 none, 1 GELU (tanh approximation), 2 SiLU. */
#define HP_GELU_C 0.7978845608028654
__device__ __forceinline__ double act_apply(double v, int act) {
    if (act == 1) return 0.5 * v * (1.0 + tanh(HP_GELU_C * (v + 0.044715 * v * v * v)));
    if (act == 2) return v / (1.0 + exp(-v));
    return v;
}

#ifdef __CUDACC_RTC__
/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024); sh holds 32 doubles. Every thread gets it. */
__device__ double block_sum(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    v = threadIdx.x < nw ? sh[threadIdx.x] : 0.0;
    if (w == 0) for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    const double r = sh[0];
    __syncthreads();
    return r;
}

/* Maximum of v over the block, as block_sum. */
__device__ float block_max(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    v = threadIdx.x < nw ? sh[threadIdx.x] : -__int_as_float(0x7f800000);
    if (w == 0) for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    const float r = sh[0];
    __syncthreads();
    return r;
}
#endif

/* out[i] = x[Σ_k idx_k(i) · stride_k]: d.v[1..rank] the output shape, d.v[9..] the input stride of each output axis. */
__device__ __forceinline__ i64 permuted_index(const Dims &d, i64 i) {
    const int rank = (int)d.v[0];
    i64 src = 0;
    for (int k = rank - 1; k >= 0; k--) {
        const i64 s = d.v[1 + k];
        src += (i % s) * d.v[9 + k];
        i /= s;
    }
    return src;
}
#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

"""#
}
