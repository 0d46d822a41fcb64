/* Helpers shared by segbench's AVX-512 kernels (segformer_upsample.c, segformer_layernorm.c): 16 values of an fp32 or
 * bf16 array in and out of an fp32 register. `bf16` is a constant at every call site, so each caller compiles to a
 * loop for one precision. Plain AVX-512F: no AVX512-BF16 instruction is needed.
 */
#ifndef SEGBENCH_SIMD_H
#define SEGBENCH_SIMD_H

#include <immintrin.h>
#include <stdint.h>

/* 16 values of an fp32 or bf16 (`bf16`) array from element i, in fp32 (bf16 is fp32's upper half: widening is exact) */
static inline __attribute__((always_inline)) __m512 load16(const void *a, long i, int bf16) {
    if (!bf16) return _mm512_loadu_ps((const float *)a + i);
    __m256i half = _mm256_loadu_si256((const __m256i *)((const uint16_t *)a + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

/* x stored at element i of an fp32 or bf16 (`bf16`) array: bf16 rounded to nearest even, a NaN kept a NaN */
static inline __attribute__((always_inline)) void store16(void *a, long i, __m512 x, int bf16) {
    if (!bf16) {
        _mm512_storeu_ps((float *)a + i, x);
        return;
    }
    __m512i bits = _mm512_castps_si512(x);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
    _mm256_storeu_si256((__m256i *)((uint16_t *)a + i), _mm512_cvtepi32_epi16(rounded));
}

#endif
