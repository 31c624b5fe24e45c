// The AMX-BF16 GEMM microkernel, written once over the tile-op layer of kernels_amx.c and included twice: with the
// real tile instructions and with their emulation. Include only from kernels_amx.c, after defining
// AMX_UKR_NAME, AMX_ATTR, TILE_SETUP(), TILE_ZERO(t), TILE_LOAD(t, p, stride), TILE_STORE(t, p, stride),
// TILE_DPBF16(c, a, b) (tile numbers are literals).
//
// Tile use (palette 1, every tile 16 rows × 64 bytes): C tiles 0..3 = the 32×32 f32 output as [2][2] 16×16
// blocks, A tiles 4, 5 = rows 0-15 / 16-31 of a 32-wide k step, B tiles 6, 7 = columns 0-15 / 16-31.
// Panels (HP_PACK_AMX): A [kc/32][32 rows][32 k] bf16 → the A tile of a k step is 16 rows × 64 bytes, stride 64;
// B [kc/2][32 cols][2] bf16 → the B tile is 16 k-pairs × 16 cols × 4 bytes, stride 128 (the panel row).
// Edge tiles (mrv <= 16 or nrv <= 16) skip the unused half; the arithmetic of every computed element is the same.

AMX_ATTR static void AMX_UKR_NAME(long kc, const void *av, const void *bv, float *c, long ldc, float alpha,
                                  int accum, int mrv, int nrv) {
    const uint8_t *a = av, *b = bv;
    const int two_m = mrv > 16, two_n = nrv > 16;
    float buf[32 * 32] __attribute__((aligned(64)));   // the 32×32 C block as stored from the tiles
    TILE_SETUP();
    TILE_ZERO(0);
    TILE_ZERO(1);
    TILE_ZERO(2);
    TILE_ZERO(3);
    for (long k = 0; k < kc; k += 32) {
        const uint8_t *ak = a + k * 64, *bk = b + k * 64;   // 32 rows × 32 k × 2 bytes; 16 pairs × 32 cols × 4 bytes
        TILE_LOAD(4, ak, 64);
        TILE_LOAD(6, bk, 128);
        TILE_DPBF16(0, 4, 6);
        if (two_n) {
            TILE_LOAD(7, bk + 64, 128);
            TILE_DPBF16(1, 4, 7);
        }
        if (two_m) {
            TILE_LOAD(5, ak + 16 * 64, 64);
            TILE_DPBF16(2, 5, 6);
            if (two_n) TILE_DPBF16(3, 5, 7);
        }
    }
    TILE_STORE(0, buf, 128);
    if (two_n) TILE_STORE(1, buf + 16, 128);
    if (two_m) TILE_STORE(2, buf + 16 * 32, 128);
    if (two_m && two_n) TILE_STORE(3, buf + 16 * 32 + 16, 128);
    for (int i = 0; i < mrv; i++) {
        float *cr = c + i * ldc;
        const float *br = buf + i * 32;
        if (accum)
            for (int j = 0; j < nrv; j++) cr[j] = __builtin_fmaf(alpha, br[j], cr[j]);
        else
            for (int j = 0; j < nrv; j++) cr[j] = alpha * br[j];
    }
}
