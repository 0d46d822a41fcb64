/* SegFormer's efficient attention on the CPU in fp32 with AVX-512: softmax(q k^T * scale) v for every query row and
 * head, exactly as the plain attention computes it up to float rounding (no online rescaling: each query's scores
 * over all keys are kept, their maximum subtracted, exponentiated and summed, then multiplied into v).
 *
 * Built and loaded by models/segformer_native.py (which documents the layouts and when this runs); compiled with
 * -mavx512f -mavx512dq, called only where the CPU has them. Plain C11 and OpenMP, no Python or torch headers: loaded
 * into a process where torch has loaded its libgomp.so.1, the library's libgomp.so.1 is that one (the dynamic linker
 * matches the soname), so its threads are torch's own OpenMP threads, not a second set competing with them.
 *
 * Layouts (fp32, contiguous unless a stride is given):
 *   q    (nq, q_stride): query row i, head h at q[i * q_stride + h * D .. + D]
 *   kt   (heads, nkp / 32, D, 32): keys transposed in tiles of 32 keys; kt[h][t][d][j] = k[h][32 t + j][d]
 *   v    (heads, nkp, D)
 *   out  (nq, out_stride): like q
 * nkp is nk rounded up to a multiple of 32; the padding keys' scores are masked, their v rows must be finite.
 *
 * Work: items of (head, ROWS query rows), taken dynamically by `threads` threads (segformer_attention.h).
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "segformer_attention.h"

#define QB 8     /* query rows computed together: 16 score accumulators, 8 broadcasts per two key loads */
#define ROWS 128 /* query rows per work item */

/* 2^t for t <= 0 (scaled scores minus their maximum, in base 2), within 2.4e-7 relative; t below -126 gives 2^-126
 * (1.2e-38, the bottom of the normal fp32 range), nothing next to the row's maximum's 1. A NaN stays NaN (the
 * maximum's second operand). 2^t = 2^n 2^f for n = round(t) and f = t - n in [-1/2, 1/2], 2^f by a degree-5
 * polynomial fitted to it there (relative error, minimax) */
static inline __m512 exp2_nonpositive(__m512 t) {
    t = _mm512_max_ps(_mm512_set1_ps(-126.0f), t);
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.0013276416575536132f), f, _mm512_set1_ps(0.009675526060163975f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550713464617729f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022120237350464f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931469440460205f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_scalef_ps(p, n);
}

/* scores s[i][k] = q_i . k_k for up to QB query rows (rows past nq repeat row 0 and are never stored), one head;
 * padding keys get -inf */
static inline __attribute__((always_inline)) void scores(const float *q, long q_stride, long nq, const float *kt,
                                                         long nk, long nkp, int D, float *s, long ss) {
    const float *row[QB];
    for (int i = 0; i < QB; i++) row[i] = q + (i < nq ? i : 0) * q_stride;
    for (long k0 = 0; k0 < nkp; k0 += 32) {
        const float *tile = kt + k0 * D;
        __m512 acc[QB][2];
        for (int i = 0; i < QB; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        for (int d = 0; d < D; d++) {
            __m512 ka = _mm512_loadu_ps(tile + d * 32), kb = _mm512_loadu_ps(tile + d * 32 + 16);
            for (int i = 0; i < QB; i++) {
                __m512 b = _mm512_set1_ps(row[i][d]);
                acc[i][0] = _mm512_fmadd_ps(b, ka, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(b, kb, acc[i][1]);
            }
        }
        __mmask16 ma = real_keys(k0, nk), mb = real_keys(k0 + 16, nk);
        const __m512 minus_inf = _mm512_set1_ps(-INFINITY);
        for (int i = 0; i < QB; i++) {
            _mm512_storeu_ps(s + i * ss + k0, _mm512_mask_mov_ps(minus_inf, ma, acc[i][0]));
            _mm512_storeu_ps(s + i * ss + k0 + 16, _mm512_mask_mov_ps(minus_inf, mb, acc[i][1]));
        }
    }
}

/* the maximum of s[0..nkp), nkp a multiple of 32: four running maxima, so that the pass does not wait on one max's
 * latency for every vector */
static inline float row_max(const float *s, long nkp) {
    __m512 t0 = _mm512_set1_ps(-INFINITY), t1 = t0, t2 = t0, t3 = t0;
    long k0 = 0;
    for (; k0 + 64 <= nkp; k0 += 64) {
        t0 = _mm512_max_ps(t0, _mm512_loadu_ps(s + k0));
        t1 = _mm512_max_ps(t1, _mm512_loadu_ps(s + k0 + 16));
        t2 = _mm512_max_ps(t2, _mm512_loadu_ps(s + k0 + 32));
        t3 = _mm512_max_ps(t3, _mm512_loadu_ps(s + k0 + 48));
    }
    if (k0 < nkp) {
        t0 = _mm512_max_ps(t0, _mm512_loadu_ps(s + k0));
        t1 = _mm512_max_ps(t1, _mm512_loadu_ps(s + k0 + 16));
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(t0, t2), _mm512_max_ps(t1, t3)));
}

/* s[k] = e^(scale (s[k] - max s)) = 2^(scale log2(e) (s[k] - max s)) in place, nkp a multiple of 32; returns 1 / their
 * sum (two running sums) */
static inline float softmax_numerators(float *s, long nkp, float scale) {
    const float base2 = scale * 1.44269504088896341f;
    const __m512 factor = _mm512_set1_ps(base2), offset = _mm512_set1_ps(-row_max(s, nkp) * base2);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = sum0;
    for (long k0 = 0; k0 < nkp; k0 += 32) {
        __m512 e0 = exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(s + k0), factor, offset));
        __m512 e1 = exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(s + k0 + 16), factor, offset));
        sum0 = _mm512_add_ps(sum0, e0);
        sum1 = _mm512_add_ps(sum1, e1);
        _mm512_storeu_ps(s + k0, e0);
        _mm512_storeu_ps(s + k0 + 16, e1);
    }
    return 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

/* out_i = inv_i * sum_k s[i][k] v_k for up to QB rows (nq of them stored), 32 of the head's D columns at a time */
static inline __attribute__((always_inline)) void weighted_values(const float *s, long ss, const float *inv,
                                                                  const float *v, long nk, int D, float *out,
                                                                  long out_stride, long nq) {
    for (int c0 = 0; c0 < D; c0 += 32) {
        __m512 acc[QB][2];
        for (int i = 0; i < QB; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        for (long k = 0; k < nk; k++) {
            __m512 va = _mm512_loadu_ps(v + k * D + c0), vb = _mm512_loadu_ps(v + k * D + c0 + 16);
            for (int i = 0; i < QB; i++) {
                __m512 p = _mm512_set1_ps(s[i * ss + k]);
                acc[i][0] = _mm512_fmadd_ps(p, va, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(p, vb, acc[i][1]);
            }
        }
        for (int i = 0; i < QB && i < nq; i++) {
            __m512 f = _mm512_set1_ps(inv[i]);
            _mm512_storeu_ps(out + i * out_stride + c0, _mm512_mul_ps(acc[i][0], f));
            _mm512_storeu_ps(out + i * out_stride + c0 + 16, _mm512_mul_ps(acc[i][1], f));
        }
    }
}

static inline __attribute__((always_inline)) void rows(const float *q, long q_stride, long nq, const float *kt,
                                                       const float *v, long nk, long nkp, int D, float scale,
                                                       float *out, long out_stride, float *s) {
    const long ss = nkp + 16; /* rows of the score buffer 64 bytes off a multiple of 4 KiB apart */
    float inv[QB];
    for (long i0 = 0; i0 < nq; i0 += QB) {
        long n = nq - i0 < QB ? nq - i0 : QB;
        scores(q + i0 * q_stride, q_stride, n, kt, nk, nkp, D, s, ss);
        for (int i = 0; i < QB; i++) inv[i] = i < n ? softmax_numerators(s + i * ss, nkp, scale) : 0.0f;
        weighted_values(s, ss, inv, v, nk, D, out + i0 * out_stride, out_stride, n);
    }
}

static void worker(attention_job *job) {
    float *s = aligned_alloc(64, sizeof(float) * QB * (job->nkp + 16));
    if (s == NULL) return; /* the other threads take its items */
    long h, r0, n;
    while (next_item(job, &h, &r0, &n)) {
        const long D = job->D, nkp = job->nkp;
        const float *q = (const float *)job->q + r0 * job->q_stride + h * D;
        const float *kt = (const float *)job->kt + h * D * nkp, *v = (const float *)job->v + h * nkp * D;
        float *out = (float *)job->out + r0 * job->out_stride + h * D;
        if (D == 32) /* SegFormer's head dimension (MiT-B0..B5): unrolled for it */
            rows(q, job->q_stride, n, kt, v, job->nk, nkp, 32, job->scale, out, job->out_stride, s);
        else if (D == 64)
            rows(q, job->q_stride, n, kt, v, job->nk, nkp, 64, job->scale, out, job->out_stride, s);
        else
            rows(q, job->q_stride, n, kt, v, job->nk, nkp, (int)D, job->scale, out, job->out_stride, s);
    }
    free(s);
}

/* Returns 0 on success; 1 for a head dimension that is not a positive multiple of 32 or a bad count; 2 when no thread
 * could have its score buffer (the caller then computes the attention another way). */
int segbench_attention_f32(const float *q, long q_stride, const float *kt, const float *v, float *out,
                           long out_stride, long nq, long nk, int heads, int head_dim, float scale, int threads) {
    attention_job job =
        attention_job_of(q, q_stride, kt, v, out, out_stride, nq, nk, heads, head_dim, scale, ROWS, &threads);
    if (job.items < 0) return 1;
#pragma omp parallel num_threads(threads)
    worker(&job);
    return job.next >= job.items ? 0 : 2; /* every item was taken, hence done */
}
