// CUDA kernels that move bytes: dtype casts, permutes, strided block copies (concat/slice), patchify/unpatchify.
// Scalar twins: ReferenceBackend's cast/transpose/concat/slice/patchify (exact on every backend).
//
// Legend: n elements, rank ≤ 8, es element size in bytes (1, 2 or 4).

enum LayoutKernels {
    static let source = #"""
extern "C" __global__ void hp_cast_f32_bf16(const float *x, u16 *y, i64 n) { GRID_STRIDE(i, n) y[i] = f32_to_bf16(x[i]); }
extern "C" __global__ void hp_cast_f32_f16(const float *x, u16 *y, i64 n) { GRID_STRIDE(i, n) y[i] = f32_to_f16(x[i]); }
extern "C" __global__ void hp_cast_bf16_f32(const u16 *x, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = bf16_to_f32(x[i]); }
extern "C" __global__ void hp_cast_f16_f32(const u16 *x, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = f16_to_f32(x[i]); }
extern "C" __global__ void hp_cast_i8_f32(const signed char *x, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = (float)x[i]; }
extern "C" __global__ void hp_cast_u8_f32(const u8 *x, float *y, i64 n) { GRID_STRIDE(i, n) y[i] = (float)x[i]; }

extern "C" __global__ void hp_permute_4(const unsigned *x, unsigned *y, i64 n, Dims d) { GRID_STRIDE(i, n) y[i] = x[permuted_index(d, i)]; }
extern "C" __global__ void hp_permute_2(const u16 *x, u16 *y, i64 n, Dims d) { GRID_STRIDE(i, n) y[i] = x[permuted_index(d, i)]; }
extern "C" __global__ void hp_permute_1(const u8 *x, u8 *y, i64 n, Dims d) { GRID_STRIDE(i, n) y[i] = x[permuted_index(d, i)]; }

/* rows × width bytes from src (pitch sp) to dst (pitch dp): one concat input or one slice. */
extern "C" __global__ void hp_copy2d(u8 *dst, i64 dp, const u8 *src, i64 sp, i64 width, i64 rows) {
    GRID_STRIDE(i, rows * width) { const i64 r = i / width, c = i % width; dst[r * dp + c] = src[r * sp + c]; }
}

__device__ __forceinline__ i64 patch_index(int order, i64 c, i64 py, i64 px, i64 C, i64 p) {
    return order == 0 ? (c * p + py) * p + px : (py * p + px) * C + c;
}
/* x (B,C,h·p,w·p) ↔ y (B, h·w, C·p·p); one thread per image element. */
extern "C" __global__ void hp_patchify(const float *x, float *y, i64 B, i64 C, i64 h, i64 w, i64 p, int order, int inverse) {
    const i64 H = h * p, W = w * p, pv = C * p * p;
    GRID_STRIDE(i, B * C * H * W) {
        const i64 xx = i % W, yy = (i / W) % H, c = (i / (W * H)) % C, b = i / (W * H * C);
        const i64 t = (b * h * w + (yy / p) * w + xx / p) * pv + patch_index(order, c, yy % p, xx % p, C, p);
        if (inverse) y[i] = x[t]; else y[t] = x[i];
    }
}
"""#
    static let kernels = ["hp_cast_f32_bf16", "hp_cast_f32_f16", "hp_cast_bf16_f32", "hp_cast_f16_f32", "hp_cast_i8_f32",
                          "hp_cast_u8_f32", "hp_permute_4", "hp_permute_2", "hp_permute_1", "hp_copy2d", "hp_patchify"]
}
