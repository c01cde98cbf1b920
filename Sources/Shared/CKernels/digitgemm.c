// Exact digit-plane GEMM with runtime dispatch. One driver (tiling, combining with shifts)
// is instantiated per instruction set by inlining it into a function compiled for that set,
// so its combine loops are vectorised with the same instructions as the micro-kernel.
#include "srdigitgemm.h"
#include "srkernels.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define MR 8                    // rows per tile (one accumulator register per row and 16 outputs)
#define NR SRK_DIGIT_COLUMNS
#define GROUP_BITS 20           // wide mode: shifts are combined exactly in 64 bits within 20 bits
#define MAX_GROUPS 10           // shifts ≤ 199

#define INLINE static inline __attribute__((always_inline))

static size_t round4(size_t k) { return (k + 3) & ~(size_t)3; }

static int32_t load32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

// ---- micro-kernels: acc[r][j] = Σ_{k0 ≤ c < k1} rows[r][c] · w[j][c], exactly in int32 ----

INLINE void tile_portable(const uint8_t *const *rows, size_t k0, size_t k1, const int8_t *panel,
                          int32_t acc[MR][NR]) {
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = 0;
    for (size_t c = k0; c < k1; c += 4) {
        const int8_t *w = panel + c * NR;    // group c/4 starts at 64 · c/4 = 16 · c
        for (int r = 0; r < MR; r++) {
            const uint8_t *a = rows[r] + c;
            for (int j = 0; j < NR; j++) {
                acc[r][j] += a[0] * w[4 * j] + a[1] * w[4 * j + 1] + a[2] * w[4 * j + 2] + a[3] * w[4 * j + 3];
            }
        }
    }
}

// AVX2: vpmaddubsw multiplies unsigned 8-bit digits by signed 7-bit digits and adds pairs
// into 16 bits (within ±32 640, never saturating), vpmaddwd by ones adds the pairs into 32 bits. Four rows at a
// time: 8 accumulators + 2 weight registers + ones fit the 16 ymm registers.
__attribute__((target("avx2")))
INLINE void tile_avx2(const uint8_t *const *rows, size_t k0, size_t k1, const int8_t *panel,
                      int32_t acc[MR][NR]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < MR; h += 4) {
        __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
        __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
        for (size_t c = k0; c < k1; c += 4) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(panel + c * NR));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(panel + c * NR + 32));
            __m256i a;
#define STEP(r, x0, x1) \
            a = _mm256_set1_epi32(load32(rows[h + r] + c)); \
            x0 = _mm256_add_epi32(x0, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w0), ones)); \
            x1 = _mm256_add_epi32(x1, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w1), ones));
            STEP(0, c00, c01) STEP(1, c10, c11) STEP(2, c20, c21) STEP(3, c30, c31)
#undef STEP
        }
        _mm256_storeu_si256((__m256i *)acc[h], c00);
        _mm256_storeu_si256((__m256i *)(acc[h] + 8), c01);
        _mm256_storeu_si256((__m256i *)acc[h + 1], c10);
        _mm256_storeu_si256((__m256i *)(acc[h + 1] + 8), c11);
        _mm256_storeu_si256((__m256i *)acc[h + 2], c20);
        _mm256_storeu_si256((__m256i *)(acc[h + 2] + 8), c21);
        _mm256_storeu_si256((__m256i *)acc[h + 3], c30);
        _mm256_storeu_si256((__m256i *)(acc[h + 3] + 8), c31);
    }
}

// AVX-512 VNNI: vpdpbusd adds four u8 · s8 products into each 32-bit lane (non-saturating),
// 16 outputs per register, one register per row.
__attribute__((target("avx512f,avx512bw,avx512vnni")))
INLINE void tile_vnni(const uint8_t *const *rows, size_t k0, size_t k1, const int8_t *panel,
                      int32_t acc[MR][NR]) {
    __m512i c[MR];
    for (int r = 0; r < MR; r++) c[r] = _mm512_setzero_si512();
    for (size_t k = k0; k < k1; k += 4) {
        const __m512i w = _mm512_loadu_si512((const void *)(panel + k * NR));
        for (int r = 0; r < MR; r++)
            c[r] = _mm512_dpbusd_epi32(c[r], _mm512_set1_epi32(load32(rows[r] + k)), w);
    }
    for (int r = 0; r < MR; r++) _mm512_storeu_si512((void *)acc[r], c[r]);
}

// ---- the driver: tiles, pairs of planes, exact combination ----

typedef struct {
    const uint8_t *const *a; const int *a_shift; size_t a_count; size_t m; size_t k;
    const int8_t *const *b; const int *b_shift; size_t b_count; size_t n;
    int narrow; const __int128 *subtract; int shift;
    const __int128 *bias; int relu; int grid;
    __int128 *out; size_t group_rows, group_stride, ldr, ldc;
} gemm_args;

typedef void (*tile_fn)(const uint8_t *const *, size_t, size_t, const int8_t *, int32_t[MR][NR]);

INLINE void driver(const gemm_args *g, const uint8_t *zero, tile_fn tile) {
    const size_t kp = round4(g->k), blocks = (g->n + NR - 1) / NR;
    int max_shift = 0;
    for (size_t a = 0; a < g->a_count; a++)
        for (size_t b = 0; b < g->b_count; b++)
            if (g->a_shift[a] + g->b_shift[b] > max_shift) max_shift = g->a_shift[a] + g->b_shift[b];
    const int groups = g->narrow ? 1 : max_shift / GROUP_BITS + 1;
    // Unsigned: wrapping is defined, and in narrow mode it is what makes the sum exact.
    uint64_t q[MAX_GROUPS][MR][NR];
    int32_t acc[MR][NR];
    for (size_t i0 = 0; i0 < g->m; i0 += MR) {
        const size_t valid = g->m - i0 < MR ? g->m - i0 : MR;
        for (size_t jb = 0; jb < blocks; jb++) {
            memset(q, 0, sizeof(q[0]) * (size_t)groups);
            for (size_t a = 0; a < g->a_count; a++) {
                const uint8_t *rows[MR];
                for (size_t r = 0; r < MR; r++) rows[r] = r < valid ? g->a[a] + (i0 + r) * kp : zero;
                for (size_t b = 0; b < g->b_count; b++) {
                    const int s = g->a_shift[a] + g->b_shift[b];
                    // Narrow: a term at 2^64 or above is 0 modulo 2^64.
                    if (g->narrow && s >= 64) continue;
                    const int gi = g->narrow ? 0 : s / GROUP_BITS, sh = g->narrow ? s : s % GROUP_BITS;
                    const int8_t *panel = g->b[b] + jb * kp * NR;
                    for (size_t k0 = 0; k0 < kp; k0 += SRK_DIGIT_INNER_BLOCK) {
                        const size_t k1 = kp - k0 < SRK_DIGIT_INNER_BLOCK ? kp : k0 + SRK_DIGIT_INNER_BLOCK;
                        tile(rows, k0, k1, panel, acc);
                        for (int r = 0; r < MR; r++)
                            for (int j = 0; j < NR; j++)
                                q[gi][r][j] += (uint64_t)(int64_t)acc[r][j] << sh;
                    }
                }
            }
            const size_t cols = g->n - jb * NR < NR ? g->n - jb * NR : NR;
            for (size_t r = 0; r < valid; r++) {
                const size_t i = i0 + r;
                __int128 *row = g->out + (i / g->group_rows) * g->group_stride + (i % g->group_rows) * g->ldr;
                for (size_t j = 0; j < cols; j++) {
                    unsigned __int128 v = 0;
                    for (int gi = 0; gi < groups; gi++)
                        v += (unsigned __int128)(__int128)(int64_t)q[gi][r][j] << (GROUP_BITS * gi);
                    if (g->subtract) v -= (unsigned __int128)g->subtract[jb * NR + j];
                    v <<= g->shift;
                    if (g->bias) v += (unsigned __int128)g->bias[jb * NR + j];
                    __int128 z = (__int128)v;
                    if (g->relu && z < 0) z = 0;
                    if (g->grid > 0) z = (z + ((__int128)1 << (g->grid - 1))) >> g->grid;
                    row[(jb * NR + j) * g->ldc] = z;
                }
            }
        }
    }
}

static void gemm_portable(const gemm_args *g, const uint8_t *zero) { driver(g, zero, tile_portable); }

__attribute__((target("avx2")))
static void gemm_avx2(const gemm_args *g, const uint8_t *zero) { driver(g, zero, tile_avx2); }

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void gemm_vnni(const gemm_args *g, const uint8_t *zero) { driver(g, zero, tile_vnni); }

int srk_digit_level(int level) {
    int top = srk_int8_level();
    return level < 0 || level > top ? top : level;
}

int srk_digit_bits(int level) {
    (void)level;
    return 8;
}

int srk_digit_weight_bits(int level) {
    int l = srk_digit_level(level);
    return l == 1 || l == 2 ? 7 : 8;   // AVX2 and AVX-512BW without VNNI use vpmaddubsw
}

size_t srk_digit_packed_size(size_t n, size_t k) {
    return (n + NR - 1) / NR * round4(k) * NR;
}

void srk_digit_pack(const int8_t *w, size_t n, size_t k, int8_t *packed) {
    const size_t kp = round4(k), blocks = (n + NR - 1) / NR;
    memset(packed, 0, blocks * kp * NR);
    for (size_t o = 0; o < n; o++) {
        int8_t *block = packed + (o / NR) * kp * NR + (o % NR) * 4;
        for (size_t c = 0; c < k; c++) block[(c / 4) * 4 * NR + c % 4] = w[o * k + c];
    }
}

void srk_digit_gemm(int level,
                    const uint8_t *const *a, const int *a_shift, size_t a_count, size_t m, size_t k,
                    const int8_t *const *b, const int *b_shift, size_t b_count, size_t n,
                    int narrow, const void *subtract, int shift,
                    const void *bias, int relu, int grid,
                    void *out, size_t group_rows, size_t group_stride, size_t ldr, size_t ldc) {
    const gemm_args g = {a, a_shift, a_count, m, k, b, b_shift, b_count, n, narrow,
                         (const __int128 *)subtract, shift, (const __int128 *)bias, relu, grid,
                         (__int128 *)out, group_rows, group_stride, ldr, ldc};
    // Rows past m read this zero row, so every tile is full and no kernel needs an edge case.
    uint8_t *zero = calloc(round4(k) + 64, 1);
    if (!zero) abort();
    switch (srk_digit_level(level)) {
    case 3: gemm_vnni(&g, zero); break;
    case 1: case 2: gemm_avx2(&g, zero); break;
    default: gemm_portable(&g, zero); break;
    }
    free(zero);
}
