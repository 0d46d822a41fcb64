/* SegFormer's efficient attention on the CPU in bf16 with AMX: softmax(q k^T * scale) v for every query row and head,
 * for a bf16 model (the deploy grid's fast bf16), computed as PyTorch's bf16 attention computes it: the scores
 * accumulated in fp32 from bf16 queries and keys, the softmax in fp32, its weights rounded to bf16 for the product
 * with the values, accumulated in fp32, divided by the fp32 sum and rounded to bf16.
 *
 * Built with segformer_attention.c into one library by models/segformer_native.py, which documents when it runs.
 * The AMX code is compiled for AMX by function attribute only (the library's other code must load on any AVX-512 CPU)
 * and is called only after segbench_amx_ready() returned 1. A compiler without AMX intrinsics builds the library with
 * segbench_amx_ready() returning 0.
 *
 * Per block of 16 query rows of one head:
 *   scores: tile products (16 rows x 32 of the head's channels) x (32 channels x 16 keys) accumulated into 16 x 16
 *           fp32 tiles, stored into a score buffer of 16 rows by all keys;
 *   weights: per row, the maximum, then 2^(scale log2(e) (s - max)) by a degree-3 polynomial (8e-5 relative, below
 *           bf16's 2e-3 rounding), their fp32 sum, and the weights in bf16;
 *   values:  tile products (16 rows x 32 keys of weights) x (32 keys x 16 channels), 64 channels at a time.
 *
 * Layouts (bf16 as uint16_t, contiguous unless a stride is given; nkp = nk rounded up to a multiple of 32):
 *   q    (nq, q_stride): query row i, head h at q[i * q_stride + h * D .. + D]
 *   kt   (heads, nkp / 16, D / 32, 16, 16, 2): keys in AMX's pair-interleaved layout, 16 keys by 32 channels per tile;
 *        kt[h][g][c][p][j][e] = k[h][16 g + j][32 c + 2 p + e]
 *   v    (heads, nkp / 32, D / 16, 16, 16, 2): values likewise, 32 keys by 16 channels per tile;
 *        v[h][g][c][p][j][e] = v[h][32 g + 2 p + e][16 c + j]
 *   out  (nq, out_stride): like q
 * The padding keys' weights are 0 (their keys and values must be finite).
 *
 * Work: items of (head, ITEM query rows), taken dynamically by `threads` OpenMP threads (torch's own;
 * segformer_attention.h).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define SEGBENCH_HAVE_AMX 1
#endif

#ifdef SEGBENCH_HAVE_AMX
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "segformer_attention.h"

#define AMX_CODE __attribute__((target("amx-tile,amx-bf16,avx512f,avx512dq,avx512bw,avx512vl,avx512bf16")))
#define ITEM 64 /* query rows per work item: four blocks of 16 */
#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux's arch_prctl code for a dynamically enabled state component */
#define XFEATURE_XTILEDATA 18      /* AMX's tile data */

/* 1 where the CPU has AMX-TILE, AMX-BF16 and AVX512-BF16 and Linux lets this process use the tile registers */
int segbench_amx_ready(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((d >> 24) & 1) || !((d >> 22) & 1)) return 0; /* AMX-TILE, AMX-BF16 */
    __cpuid_count(7, 1, a, b, c, d);
    if (!((a >> 5) & 1)) return 0; /* AVX512-BF16 */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* 2^t for t <= 0 (clamped at 2^-126), within 8e-5 relative: 2^n times 2^f for f = t - round(t) in [-1/2, 1/2], by a
 * degree-3 polynomial fitted to it there; a NaN stays NaN (the maximum's second operand) */
AMX_CODE static inline __m512 exp2_nonpositive(__m512 t) {
    t = _mm512_max_ps(_mm512_set1_ps(-126.0f), t);
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.05517083778977394f), f, _mm512_set1_ps(0.24260935187339783f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6932609677314758f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999281764030457f));
    return _mm512_scalef_ps(p, n);
}

/* s (16 rows, stride ss) = the scores of 16 query rows (qa, row stride qs) against all nkp keys: tiles 0 (queries),
 * 1-2 (keys), 4-7 (four groups of 16 keys) */
AMX_CODE static void scores16(const uint16_t *qa, long qs, const uint16_t *kt, long nkp, int D, float *s, long ss) {
    const long group = (long)(D / 32) * 512; /* one group of 16 keys in kt */
    for (long k0 = 0; k0 < nkp; k0 += 64) {
        const int four = nkp - k0 >= 64; /* else 32 keys left */
        const uint16_t *b = kt + (k0 / 16) * group;
        _tile_zero(4);
        _tile_zero(5);
        if (four) {
            _tile_zero(6);
            _tile_zero(7);
        }
        for (int c = 0; c < D / 32; c++) {
            _tile_loadd(0, qa + c * 32, qs * 2);
            _tile_loadd(1, b + c * 512, 64);
            _tile_dpbf16ps(4, 0, 1);
            _tile_loadd(2, b + group + c * 512, 64);
            _tile_dpbf16ps(5, 0, 2);
            if (four) {
                _tile_loadd(1, b + 2 * group + c * 512, 64);
                _tile_dpbf16ps(6, 0, 1);
                _tile_loadd(2, b + 3 * group + c * 512, 64);
                _tile_dpbf16ps(7, 0, 2);
            }
        }
        _tile_stored(4, s + k0, ss * 4);
        _tile_stored(5, s + k0 + 16, ss * 4);
        if (four) {
            _tile_stored(6, s + k0 + 32, ss * 4);
            _tile_stored(7, s + k0 + 48, ss * 4);
        }
    }
}

/* e0, e1 = the weights of keys k0..k0+32 of row s (0 for padding keys), added into sum0, sum1 and stored in bf16 */
#define WEIGHTS_32(mask0, mask1)                                                                                       \
    do {                                                                                                               \
        __m512 e0 = _mm512_maskz_mov_ps(mask0, exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(s + k0), fac, off)));  \
        __m512 e1 =                                                                                                    \
            _mm512_maskz_mov_ps(mask1, exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(s + k0 + 16), fac, off)));     \
        sum0 = _mm512_add_ps(sum0, e0);                                                                                \
        sum1 = _mm512_add_ps(sum1, e1);                                                                                \
        _mm512_storeu_si512((void *)(p + k0), (__m512i)_mm512_cvtne2ps_pbh(e1, e0));                                   \
    } while (0)

/* p (bf16) = the softmax weights of score row s before division, 0 for the padding keys; returns 1 / their fp32 sum */
AMX_CODE static float weights_row(const float *s, long nk, long nkp, float scale, uint16_t *p) {
    const long full = nk / 32 * 32; /* keys in whole chunks of 32 real keys */
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    for (long k0 = 0; k0 < full; k0 += 32) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + k0));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + k0 + 16));
    }
    if (full < nkp) {
        m0 = _mm512_mask_max_ps(m0, real_keys(full, nk), m0, _mm512_loadu_ps(s + full));
        m1 = _mm512_mask_max_ps(m1, real_keys(full + 16, nk), m1, _mm512_loadu_ps(s + full + 16));
    }
    const float factor = scale * 1.44269504088896341f; /* e^(scale x) = 2^(scale log2(e) x) */
    const __m512 fac = _mm512_set1_ps(factor);
    const __m512 off = _mm512_set1_ps(-_mm512_reduce_max_ps(_mm512_max_ps(m0, m1)) * factor);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = sum0;
    long k0 = 0;
    for (; k0 < full; k0 += 32) WEIGHTS_32((__mmask16)0xffff, (__mmask16)0xffff);
    if (k0 < nkp) WEIGHTS_32(real_keys(k0, nk), real_keys(k0 + 16, nk));
    return 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

/* out rows 0..n (of the 16) = inv_i * (p_i v), 64 of the D channels at a time: tiles 0 (weights), 1-2 (values),
 * 4-7 (four groups of 16 channels); o: a 16 x 64 fp32 scratch */
AMX_CODE static void values16(const uint16_t *p, long ps, const uint16_t *v, long nkp, int D, const float *inv, long n,
                              uint16_t *out, long out_stride, float *o) {
    for (int c0 = 0; c0 < D; c0 += 64) {
        const int four = D - c0 >= 64; /* else 32 channels left */
        _tile_zero(4);
        _tile_zero(5);
        if (four) {
            _tile_zero(6);
            _tile_zero(7);
        }
        for (long k0 = 0; k0 < nkp; k0 += 32) {
            const uint16_t *b = v + ((k0 / 32) * (D / 16) + c0 / 16) * 512;
            _tile_loadd(0, p + k0, ps * 2);
            _tile_loadd(1, b, 64);
            _tile_dpbf16ps(4, 0, 1);
            _tile_loadd(2, b + 512, 64);
            _tile_dpbf16ps(5, 0, 2);
            if (four) {
                _tile_loadd(1, b + 1024, 64);
                _tile_dpbf16ps(6, 0, 1);
                _tile_loadd(2, b + 1536, 64);
                _tile_dpbf16ps(7, 0, 2);
            }
        }
        _tile_stored(4, o, 256);
        _tile_stored(5, o + 16, 256);
        if (four) {
            _tile_stored(6, o + 32, 256);
            _tile_stored(7, o + 48, 256);
        }
        for (long i = 0; i < n; i++) {
            const __m512 f = _mm512_set1_ps(inv[i]);
            for (int j = 0; j < (four ? 4 : 2); j++) {
                __m256bh y = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(o + i * 64 + j * 16), f));
                _mm256_storeu_si256((__m256i *)(out + i * out_stride + c0 + j * 16), (__m256i)y);
            }
        }
    }
}

/* one thread's share: items until none is left. Its buffers: scores (16 rows of nkp + 16 fp32: rows 64 bytes off a
 * multiple of 4 KiB apart), the 16 x 64 fp32 output scratch, the weights (16 rows of nkp + 32 bf16) and a
 * zero-padded copy of a last block's fewer than 16 query rows */
AMX_CODE static void worker(attention_job *job) {
    const long nkp = job->nkp, ss = nkp + 16, ps = nkp + 32;
    const int D = job->D;
    float *s = aligned_alloc(64, sizeof(float) * (16 * ss + 16 * 64));
    uint16_t *p = aligned_alloc(64, sizeof(uint16_t) * (16 * ps + 16 * D));
    if (s == NULL || p == NULL) { /* the other threads take its items */
        free(s);
        free(p);
        return;
    }
    float *o = s + 16 * ss, inv[16];
    uint16_t *padded = p + 16 * ps;
    tile_config cfg = {.palette = 1};
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16; /* every tile 16 rows of 64 bytes */
    _tile_loadconfig(&cfg);
    long h, r0, rows;
    while (next_item(job, &h, &r0, &rows)) {
        const uint16_t *kt = (const uint16_t *)job->kt + h * D * nkp, *v = (const uint16_t *)job->v + h * nkp * D;
        uint16_t *out = (uint16_t *)job->out;
        for (long i0 = 0; i0 < rows; i0 += 16) {
            long n = rows - i0 < 16 ? rows - i0 : 16, qs = job->q_stride;
            const uint16_t *q = (const uint16_t *)job->q + (r0 + i0) * qs + h * D;
            if (n < 16) {
                memset(padded, 0, sizeof(uint16_t) * 16 * D);
                for (long i = 0; i < n; i++) memcpy(padded + i * D, q + i * qs, sizeof(uint16_t) * D);
                q = padded, qs = D;
            }
            scores16(q, qs, kt, nkp, D, s, ss);
            for (int i = 0; i < 16; i++) inv[i] = weights_row(s + i * ss, job->nk, nkp, job->scale, p + i * ps);
            values16(p, ps, v, nkp, D, inv, n, out + (r0 + i0) * job->out_stride + h * D, job->out_stride, o);
        }
    }
    _tile_release();
    free(s);
    free(p);
}

/* Returns 0 on success; 1 for a head dimension that is not a positive multiple of 32 or a bad count; 2 when no thread
 * could have its buffers (the caller then computes the attention another way). */
int segbench_attention_bf16(const uint16_t *q, long q_stride, const uint16_t *kt, const uint16_t *v, uint16_t *out,
                            long out_stride, long nq, long nk, int heads, int head_dim, float scale, int threads) {
    attention_job job =
        attention_job_of(q, q_stride, kt, v, out, out_stride, nq, nk, heads, head_dim, scale, ITEM, &threads);
    if (job.items < 0) return 1;
#pragma omp parallel num_threads(threads)
    worker(&job);
    return job.next >= job.items ? 0 : 2; /* every item was taken, hence done */
}

#else /* no AMX intrinsics in this compiler, or not x86-64 */

int segbench_amx_ready(void) { return 0; }

int segbench_attention_bf16(const uint16_t *q, long q_stride, const uint16_t *kt, const uint16_t *v, uint16_t *out,
                            long out_stride, long nq, long nk, int heads, int head_dim, float scale, int threads) {
    (void)q, (void)q_stride, (void)kt, (void)v, (void)out, (void)out_stride, (void)nq, (void)nk, (void)heads;
    (void)head_dim, (void)scale, (void)threads;
    return 1;
}

#endif
