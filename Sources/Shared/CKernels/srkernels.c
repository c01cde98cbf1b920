// Exact int8 GEMV with runtime dispatch: one variant per instruction set, compiled with
// target attributes so the binary stays portable (no -march=native), chosen by cpuid at start.
#include "srkernels.h"
#include <immintrin.h>

static void gemv_portable(const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y) {
    for (size_t r = 0; r < rows; r++) {
        const int8_t *row = a + r * stride;
        int32_t sum = 0;
        for (size_t c = 0; c < stride; c++) sum += (int32_t)row[c] * (int32_t)x[c];
        y[r] = sum;
    }
}

// AVX2: sign-extend 16 bytes to 16-bit lanes, multiply-add pairs into 32-bit lanes.
__attribute__((target("avx2")))
static void gemv_avx2(const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y) {
    for (size_t r = 0; r < rows; r++) {
        const int8_t *row = a + r * stride;
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        for (size_t c = 0; c < stride; c += 32) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(row + c));
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + c));
            __m256i a0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(av));
            __m256i a1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(av, 1));
            __m256i x0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv));
            __m256i x1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, x0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, x1));
        }
        __m256i acc = _mm256_add_epi32(acc0, acc1);
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        s = _mm_hadd_epi32(s, s);
        s = _mm_hadd_epi32(s, s);
        y[r] = _mm_cvtsi128_si32(s);
    }
}

// AVX-512BW: the same with 32 lanes of 16 bits per step.
__attribute__((target("avx512f,avx512bw")))
static void gemv_avx512bw(const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y) {
    for (size_t r = 0; r < rows; r++) {
        const int8_t *row = a + r * stride;
        __m512i acc = _mm512_setzero_si512();
        for (size_t c = 0; c < stride; c += 64) {
            __m512i av = _mm512_loadu_si512((const void *)(row + c));
            __m512i xv = _mm512_loadu_si512((const void *)(x + c));
            __m512i a0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(av));
            __m512i a1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(av, 1));
            __m512i x0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(xv));
            __m512i x1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(xv, 1));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(a0, x0));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(a1, x1));
        }
        y[r] = _mm512_reduce_add_epi32(acc);
    }
}

// AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, so A is biased by +128 (to
// 0…255) and the bias is removed exactly afterwards: Σ(a+128)·x − 128·Σx.
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void gemv_vnni(const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y) {
    int32_t xsum = 0;
    for (size_t c = 0; c < stride; c++) xsum += x[c];
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (size_t r = 0; r < rows; r++) {
        const int8_t *row = a + r * stride;
        __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
        size_t c = 0;
        for (; c + 128 <= stride; c += 128) {
            __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(row + c)), bias);
            __m512i a1 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(row + c + 64)), bias);
            acc0 = _mm512_dpbusd_epi32(acc0, a0, _mm512_loadu_si512((const void *)(x + c)));
            acc1 = _mm512_dpbusd_epi32(acc1, a1, _mm512_loadu_si512((const void *)(x + c + 64)));
        }
        for (; c < stride; c += 64) {
            __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(row + c)), bias);
            acc0 = _mm512_dpbusd_epi32(acc0, a0, _mm512_loadu_si512((const void *)(x + c)));
        }
        y[r] = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)) - 128 * xsum;
    }
}

typedef void (*gemv_fn)(const int8_t *, size_t, size_t, const int8_t *, int32_t *);

static int detected_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return 3;
    if (__builtin_cpu_supports("avx512bw")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
    return 0;
}

int srk_int8_level(void) {
    static int level = -1;   // benign race: every thread computes the same value
    if (level < 0) level = detected_level();
    return level;
}

static const gemv_fn table[4] = {gemv_portable, gemv_avx2, gemv_avx512bw, gemv_vnni};

void srk_int8_gemv(const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y) {
    table[srk_int8_level()](a, rows, stride, x, y);
}

void srk_int8_gemv_at(int level, const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y) {
    int top = srk_int8_level();
    table[level < 0 ? 0 : level > top ? top : level](a, rows, stride, x, y);
}

// ---- int16 coded blocks × int8 vectors ----------------------------------------------------
// One madd lane adds two products of ≤ 32768 · 128 = 2^22; 2048 columns put at most 128 of
// them (AVX2: 8 lanes of 2 products per 16 columns) in a lane: ≤ 2^29, so 32-bit lanes are
// exact within a block of 2048 columns and are widened to 64 bits after each block.
enum { INT16_BLOCK = 2048 };

static void gemv16_portable(const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y) {
    for (size_t r = 0; r < rows; r++) {
        const int16_t *row = a + r * stride;
        int64_t sum = 0;
        for (size_t c = 0; c < stride; c++) sum += (int64_t)row[c] * (int64_t)x[c];
        y[r] = sum;
    }
}

__attribute__((target("avx2")))
static void gemv16_avx2(const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y) {
    for (size_t r = 0; r < rows; r++) {
        const int16_t *row = a + r * stride;
        __m256i wide = _mm256_setzero_si256();
        for (size_t start = 0; start < stride; start += INT16_BLOCK) {
            size_t end = start + INT16_BLOCK < stride ? start + INT16_BLOCK : stride;
            __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
            for (size_t c = start; c < end; c += 32) {
                __m256i a0 = _mm256_loadu_si256((const __m256i *)(row + c));
                __m256i a1 = _mm256_loadu_si256((const __m256i *)(row + c + 16));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + c));
                __m256i x0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv));
                __m256i x1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1));
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, x0));
                acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, x1));
            }
            __m256i acc = _mm256_add_epi32(acc0, acc1);   // ≤ 2 · 2^29: still exact
            wide = _mm256_add_epi64(wide, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc)));
            wide = _mm256_add_epi64(wide, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc, 1)));
        }
        int64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, wide);
        y[r] = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
}

__attribute__((target("avx512f,avx512bw")))
static void gemv16_avx512bw(const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y) {
    for (size_t r = 0; r < rows; r++) {
        const int16_t *row = a + r * stride;
        __m512i wide = _mm512_setzero_si512();
        for (size_t start = 0; start < stride; start += INT16_BLOCK) {
            size_t end = start + INT16_BLOCK < stride ? start + INT16_BLOCK : stride;
            __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
            for (size_t c = start; c < end; c += 64) {
                __m512i a0 = _mm512_loadu_si512((const void *)(row + c));
                __m512i a1 = _mm512_loadu_si512((const void *)(row + c + 32));
                __m512i xv = _mm512_loadu_si512((const void *)(x + c));
                __m512i x0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(xv));
                __m512i x1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(xv, 1));
                acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, x0));
                acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a1, x1));
            }
            __m512i acc = _mm512_add_epi32(acc0, acc1);
            wide = _mm512_add_epi64(wide, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc)));
            wide = _mm512_add_epi64(wide, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc, 1)));
        }
        y[r] = _mm512_reduce_add_epi64(wide);
    }
}

typedef void (*gemv16_fn)(const int16_t *, size_t, size_t, const int8_t *, int64_t *);
// VNNI has no int16 × int8 form: level 3 uses the AVX-512BW variant.
static const gemv16_fn table16[4] = {gemv16_portable, gemv16_avx2, gemv16_avx512bw, gemv16_avx512bw};

void srk_int16_gemv(const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y) {
    table16[srk_int8_level()](a, rows, stride, x, y);
}

void srk_int16_gemv_at(int level, const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y) {
    int top = srk_int8_level();
    table16[level < 0 ? 0 : level > top ? top : level](a, rows, stride, x, y);
}
