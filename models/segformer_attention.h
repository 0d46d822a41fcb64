/* One attention call's work, shared by segformer_attention.c (fp32) and segformer_attention_amx.c (bf16): the tensors
 * (of the kernel's element type), their sizes, and work items of (head, rows_per_item query rows), head-major, taken
 * dynamically by the call's threads from one atomic counter, so that a thread slowed by another process takes fewer
 * items instead of holding the others up at the end. Also the mask of a 16-key vector's real keys (both kernels pad the
 * keys to a multiple of 32).
 */
#ifndef SEGBENCH_ATTENTION_H
#define SEGBENCH_ATTENTION_H

#include <immintrin.h>

typedef struct {
    const void *q, *kt, *v;
    void *out;
    long q_stride, out_stride, nq, nk, nkp; /* nkp: nk rounded up to a multiple of 32 */
    int heads, D;
    float scale;
    long rows_per_item, items;
    long next; /* the next work item, taken with an atomic add */
} attention_job;

/* the job of one call, or items = -1 for counts the kernels do not take (a head dimension that is not a positive
 * multiple of 32, a negative or zero count); *threads is cut to the items */
static inline attention_job attention_job_of(const void *q, long q_stride, const void *kt, const void *v, void *out,
                                             long out_stride, long nq, long nk, int heads, int head_dim, float scale,
                                             long rows_per_item, int *threads) {
    attention_job job = {q, kt, v, out, q_stride, out_stride, nq, nk, (nk + 31) / 32 * 32, heads, head_dim, scale,
                         rows_per_item, -1, 0};
    if (head_dim <= 0 || head_dim % 32 != 0 || nq < 0 || nk <= 0 || heads <= 0 || *threads <= 0) return job;
    job.items = heads * ((nq + rows_per_item - 1) / rows_per_item);
    if (*threads > job.items) *threads = (int)(job.items > 0 ? job.items : 1);
    return job;
}

/* the next item's head, first query row and row count; 0 when none is left */
static inline int next_item(attention_job *job, long *h, long *r0, long *n) {
    long item = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
    if (item >= job->items) return 0;
    long per_head = (job->nq + job->rows_per_item - 1) / job->rows_per_item;
    *h = item / per_head;
    *r0 = (item % per_head) * job->rows_per_item;
    *n = job->nq - *r0 < job->rows_per_item ? job->nq - *r0 : job->rows_per_item;
    return 1;
}

/* lanes of the 16 keys from k0 that are real keys (not padding) */
static inline __mmask16 real_keys(long k0, long nk) {
    if (k0 + 16 <= nk) return (__mmask16)0xffff;
    if (k0 >= nk) return 0;
    return (__mmask16)((1u << (nk - k0)) - 1);
}

#endif
