/* The folded SegFormer decoder's sum of upsampled maps on the CPU in fp32 with AVX-512: rows [r0, r1) of
 * sum_k upsample(map_k), each map bilinearly upsampled to H x W as torch.nn.functional.interpolate(mode="bilinear",
 * align_corners=False) does for a given output size (PyTorch's source coordinate: scale (dst + 0.5) - 0.5 with
 * scale = in / out in float, clamped at 0; the next pixel clamped to the map's last), written into a band buffer that
 * the decoder's 1x1 conv then adds to. One pass writes the band once, where upsampling each map into a buffer and
 * adding it writes and reads the band once per map.
 *
 * Built with segformer_attention.c into one library by models/segformer_native.py, which documents when it runs.
 * Bilinear interpolation is separable: for each output row, each map's two source rows are blended into a row of the
 * map's own width, then every output pixel blends two pixels of each blended row. The rounding differs from
 * PyTorch's four-term sum by a few float ulps.
 *
 * Layouts (NHWC, contiguous): maps[k] (heights[k], widths[k], C); out (r1 - r0, W, C). C a multiple of 16.
 * Precision: fp32 maps and out (segbench_upsample_sum_f32), or bf16 (segbench_upsample_sum_bf16, a bf16 model's
 * decoder): bf16 values are widened to fp32, blended and summed in fp32, and the sum rounded to bf16 once (to nearest
 * even), where PyTorch rounds each upsampled map and each partial sum.
 * Work: output rows, handed out dynamically to `threads` OpenMP threads (torch's own, as for the attention).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "segformer_simd.h"

#define MAX_MAPS 8
#define CB 128 /* channels per output block: 8 accumulators */

/* the two source indices along an axis of n pixels for output pixel dst, and their weights */
static inline void taps(long dst, long n, float scale, long *i0, long *i1, float *w0, float *w1) {
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    long i = (long)src;
    *i0 = i;
    *i1 = i + (i < n - 1 ? 1 : 0);
    *w1 = src - (float)i;
    *w0 = 1.0f - *w1;
}

/* tmp (w, C) = wy0 row y0 + wy1 row y1 of one map (fp32 or bf16), for output row r */
static inline __attribute__((always_inline)) void blend_rows(const void *map, long h, long w, long C, long r, long H,
                                                             float *tmp, int bf16) {
    long y0, y1;
    float wy0, wy1;
    taps(r, h, (float)h / (float)H, &y0, &y1, &wy0, &wy1);
    const long a = y0 * w * C, b = y1 * w * C;
    const __m512 v0 = _mm512_set1_ps(wy0), v1 = _mm512_set1_ps(wy1);
    for (long j = 0; j < w * C; j += 16)
        _mm512_store_ps(tmp + j, _mm512_fmadd_ps(v1, load16(map, b + j, bf16), _mm512_mul_ps(v0, load16(map, a + j, bf16))));
}

typedef struct {
    long n, C, W;
    const long *offset; /* each map's blended row in the thread's buffer */
    const long *xi;     /* (n, W, 2) source columns */
    const float *xw;    /* (n, W, 2) their weights */
} plan_t;

/* one output row (fp32 or bf16) from the n blended rows in tmp */
static inline __attribute__((always_inline)) void output_row(const plan_t *p, const float *tmp, void *row, int bf16) {
    const long C = p->C;
    for (long x = 0; x < p->W; x++) {
        const long o = x * C;
        long c0 = 0;
        for (; c0 + CB <= C; c0 += CB) {
            __m512 acc[CB / 16];
            for (int j = 0; j < CB / 16; j++) acc[j] = _mm512_setzero_ps();
            for (long k = 0; k < p->n; k++) {
                const long *i = p->xi + 2 * (k * p->W + x);
                const float *wt = p->xw + 2 * (k * p->W + x);
                const float *a = tmp + p->offset[k] + i[0] * C + c0, *b = tmp + p->offset[k] + i[1] * C + c0;
                const __m512 w0 = _mm512_set1_ps(wt[0]), w1 = _mm512_set1_ps(wt[1]);
                for (int j = 0; j < CB / 16; j++)
                    acc[j] = _mm512_fmadd_ps(w1, _mm512_load_ps(b + 16 * j),
                                             _mm512_fmadd_ps(w0, _mm512_load_ps(a + 16 * j), acc[j]));
            }
            for (int j = 0; j < CB / 16; j++) store16(row, o + c0 + 16 * j, acc[j], bf16);
        }
        for (; c0 < C; c0 += 16) { /* channels past the last whole block, 16 at a time */
            __m512 acc = _mm512_setzero_ps();
            for (long k = 0; k < p->n; k++) {
                const long *i = p->xi + 2 * (k * p->W + x);
                const float *wt = p->xw + 2 * (k * p->W + x);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(wt[0]), _mm512_load_ps(tmp + p->offset[k] + i[0] * C + c0), acc);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(wt[1]), _mm512_load_ps(tmp + p->offset[k] + i[1] * C + c0), acc);
            }
            store16(row, o + c0, acc, bf16);
        }
    }
}

/* Returns 0 on success; 1 for counts it does not take (C not a positive multiple of 16, no maps or more than
 * MAX_MAPS, rows outside [0, H)); 2 when memory for its tables ran out (the caller then upsamples another way). */
static int upsample_sum(void *out, long r0, long r1, long H, long W, long C, const void *const *maps,
                        const long *heights, const long *widths, int n, int threads, int bf16) {
    if (C <= 0 || C % 16 != 0 || n <= 0 || n > MAX_MAPS || r0 < 0 || r1 > H || r0 > r1 || W <= 0 || threads <= 0)
        return 1;
    long offset[MAX_MAPS], size = 0;
    for (int k = 0; k < n; k++) {
        if (heights[k] <= 0 || widths[k] <= 0) return 1;
        offset[k] = size;
        size += widths[k] * C;
    }
    long *xi = malloc(sizeof(long) * 2 * n * W);
    float *xw = malloc(sizeof(float) * 2 * n * W);
    int failed = xi == NULL || xw == NULL;
    for (int k = 0; k < n && !failed; k++)
        for (long x = 0; x < W; x++) {
            long *i = xi + 2 * (k * W + x);
            float *wt = xw + 2 * (k * W + x);
            taps(x, widths[k], (float)widths[k] / (float)W, i, i + 1, wt, wt + 1);
        }
    const plan_t plan = {n, C, W, offset, xi, xw};
#pragma omp parallel num_threads(threads) if (!failed)
    {
        float *tmp = aligned_alloc(64, sizeof(float) * size); /* size is a multiple of 16 floats */
        if (tmp == NULL) __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
#pragma omp for schedule(dynamic, 1)
        for (long r = r0; r < r1; r++) {
            if (tmp == NULL || __atomic_load_n(&failed, __ATOMIC_RELAXED)) continue;
            const long at = (r - r0) * W * C;
            if (bf16) {
                for (int k = 0; k < n; k++) blend_rows(maps[k], heights[k], widths[k], C, r, H, tmp + offset[k], 1);
                output_row(&plan, tmp, (uint16_t *)out + at, 1);
            } else {
                for (int k = 0; k < n; k++) blend_rows(maps[k], heights[k], widths[k], C, r, H, tmp + offset[k], 0);
                output_row(&plan, tmp, (float *)out + at, 0);
            }
        }
        free(tmp);
    }
    free(xi);
    free(xw);
    return failed ? 2 : 0;
}

int segbench_upsample_sum_f32(float *out, long r0, long r1, long H, long W, long C, const float *const *maps,
                              const long *heights, const long *widths, int n, int threads) {
    return upsample_sum(out, r0, r1, H, W, C, (const void *const *)maps, heights, widths, n, threads, 0);
}

int segbench_upsample_sum_bf16(uint16_t *out, long r0, long r1, long H, long W, long C, const uint16_t *const *maps,
                               const long *heights, const long *widths, int n, int threads) {
    return upsample_sum(out, r0, r1, H, W, C, (const void *const *)maps, heights, widths, n, threads, 1);
}
