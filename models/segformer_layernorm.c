/* LayerNorm over the last dimension on the CPU with AVX-512, for SegFormer's tokens: rows of C channels (C a multiple of
 * 16), y = (x - mean) / sqrt(var + eps) * weight + bias, in fp32 or bf16 (widened to fp32, rounded once to bf16), as
 * torch.nn.functional.layer_norm computes it up to float rounding (the biased variance, computed around the mean).
 *
 * Built with segformer_attention.c into one library by models/segformer_native.py, which documents when it runs.
 * PyTorch's kernel reaches 14-28 GB/s on SegFormer's widths of 32 to 160 channels on the 2-core machine this was
 * written on (it is made for wide rows); here each row is read once into registers and written once.
 *
 * Layouts: x, y (rows, C) contiguous; weight, bias (C); all fp32 or all bf16.
 * Work: blocks of rows, handed out dynamically to `threads` OpenMP threads (torch's own, as for the attention).
 */
#include <immintrin.h>
#include <stdint.h>

#include "segformer_simd.h"

#define MAX_VECTORS 32 /* channels kept in registers: up to 512 */
#define ROW_BLOCK 64

/* every lane = the sum of v's 16 lanes (kept in the register: no trip through a scalar) */
static inline __m512 sum_lanes(__m512 v) {
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* 1 / sqrt(sum of squares / C + eps) in every lane, as IEEE sqrt and division round it */
static inline __m512 inverse_std(__m512 squares, long C, float eps) {
    __m512 var = _mm512_add_ps(_mm512_div_ps(sum_lanes(squares), _mm512_set1_ps((float)C)), _mm512_set1_ps(eps));
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(var));
}

/* one row of C channels; C a constant at the unrolled call sites, up to 16 * MAX_VECTORS */
static inline __attribute__((always_inline)) void norm_row(const void *x, void *y, long row, long C, const void *w,
                                                           const void *b, float eps, int bf16) {
    __m512 v[MAX_VECTORS];
    const long n = C / 16, at = row * C;
    __m512 sum = _mm512_setzero_ps();
    for (long j = 0; j < n; j++) sum = _mm512_add_ps(sum, v[j] = load16(x, at + 16 * j, bf16));
    const __m512 mean = _mm512_div_ps(sum_lanes(sum), _mm512_set1_ps((float)C));
    __m512 squares = _mm512_setzero_ps();
    for (long j = 0; j < n; j++) {
        v[j] = _mm512_sub_ps(v[j], mean);
        squares = _mm512_fmadd_ps(v[j], v[j], squares);
    }
    const __m512 scale = inverse_std(squares, C, eps);
    for (long j = 0; j < n; j++) {
        __m512 out = _mm512_fmadd_ps(_mm512_mul_ps(v[j], scale), load16(w, 16 * j, bf16), load16(b, 16 * j, bf16));
        store16(y, at + 16 * j, out, bf16);
    }
}

/* one row of any width: the same three steps through memory (the row stays in the L1 cache) */
static inline __attribute__((always_inline)) void norm_wide_row(const void *x, void *y, long row, long C,
                                                                const void *w, const void *b, float eps, int bf16) {
    const long at = row * C;
    __m512 sum = _mm512_setzero_ps();
    for (long j = 0; j < C; j += 16) sum = _mm512_add_ps(sum, load16(x, at + j, bf16));
    const __m512 mean = _mm512_div_ps(sum_lanes(sum), _mm512_set1_ps((float)C));
    __m512 squares = _mm512_setzero_ps();
    for (long j = 0; j < C; j += 16) {
        __m512 d = _mm512_sub_ps(load16(x, at + j, bf16), mean);
        squares = _mm512_fmadd_ps(d, d, squares);
    }
    const __m512 scale = inverse_std(squares, C, eps);
    for (long j = 0; j < C; j += 16) {
        __m512 d = _mm512_sub_ps(load16(x, at + j, bf16), mean);
        store16(y, at + j, _mm512_fmadd_ps(_mm512_mul_ps(d, scale), load16(w, j, bf16), load16(b, j, bf16)), bf16);
    }
}

/* rows [r0, r1), unrolled for MiT's widths (B0: 32, 64, 160, 256; B1-B5: 64, 128, 320, 512) */
#define ROWS_OF(CONST_C)                                                                                               \
    for (long r = r0; r < r1; r++) norm_row(x, y, r, CONST_C, w, b, eps, bf16);                                        \
    return

static inline __attribute__((always_inline)) void norm_rows(const void *x, void *y, long r0, long r1, long C,
                                                            const void *w, const void *b, float eps, int bf16) {
    switch (C) {
    case 32: ROWS_OF(32);
    case 64: ROWS_OF(64);
    case 128: ROWS_OF(128);
    case 160: ROWS_OF(160);
    case 256: ROWS_OF(256);
    case 320: ROWS_OF(320);
    case 512: ROWS_OF(512);
    default:
        for (long r = r0; r < r1; r++) norm_wide_row(x, y, r, C, w, b, eps, bf16);
    }
}

static int layer_norm(const void *x, void *y, long rows, long C, const void *w, const void *b, float eps,
                      int threads, int bf16) {
    if (C <= 0 || C % 16 != 0 || rows < 0 || threads <= 0 || !(eps >= 0.0f)) return 1;
    const long blocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4) if (blocks > 1)
    for (long k = 0; k < blocks; k++) {
        long r0 = k * ROW_BLOCK, r1 = r0 + ROW_BLOCK < rows ? r0 + ROW_BLOCK : rows;
        if (bf16)
            norm_rows(x, y, r0, r1, C, w, b, eps, 1);
        else
            norm_rows(x, y, r0, r1, C, w, b, eps, 0);
    }
    return 0;
}

/* Returns 0 on success; 1 for counts it does not take (C not a positive multiple of 16, a negative eps). */
int segbench_layer_norm_f32(const float *x, float *y, long rows, long C, const float *w, const float *b, float eps,
                            int threads) {
    return layer_norm(x, y, rows, C, w, b, eps, threads, 0);
}

int segbench_layer_norm_bf16(const uint16_t *x, uint16_t *y, long rows, long C, const uint16_t *w, const uint16_t *b,
                             float eps, int threads) {
    return layer_norm(x, y, rows, C, w, b, eps, threads, 1);
}
