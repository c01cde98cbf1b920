// Exact wide-integer matrix products from int8 digit planes: P = V·Wᵀ with V split into
// unsigned digit planes and W into signed base-256 (or base-128) digit planes, every plane product run at
// int8 SIMD speed with 32-bit accumulation and recombined with shifts into 128-bit integers.
#ifndef SRDIGITGEMM_H
#define SRDIGITGEMM_H
#include <stddef.h>
#include <stdint.h>

/// Outputs per packed column block, and inner elements per packed group (one 32-bit lane).
#define SRK_DIGIT_COLUMNS 16
#define SRK_DIGIT_GROUP 4
/// Inner elements one 32-bit accumulator sums before it is widened: 65 536 · 255 · 128 =
/// 2 139 095 040 < 2^31, so no product of an unsigned 8-bit and a signed 8-bit digit plane
/// can overflow within a block. Longer inner dimensions are split into blocks of this size.
#define SRK_DIGIT_INNER_BLOCK 65536

/// Bits per unsigned V digit: 8 at every level (`level` as `srk_int8_gemv_at` levels: 0
/// portable, 1 AVX2, 2 AVX-512BW, 3 AVX-512 VNNI; capped at what the CPU has).
int srk_digit_bits(int level);

/// Bits per signed W digit at a level (digits balanced in [−2^(b−1), 2^(b−1))): 8, except 7
/// where the kernel multiplies with vpmaddubsw, whose 16-bit pair sums saturate outside
/// [−32 768, 32 767] — with V digits ≤ 255 and W digits in [−64, 63] a pair is within
/// ±2 · 255 · 64 = ±32 640, so it never does. (Narrowing W rather than V: activations are
/// the wide operand, ~16 bits, two 8-bit planes instead of three 7-bit ones; weights at low
/// resolutions have ≤ 6 bits and stay one plane either way.)
int srk_digit_weight_bits(int level);

/// The level `srk_digit_gemm` really runs for a requested level (negative: the best).
int srk_digit_level(int level);

/// Bytes of one packed weight plane: ⌈n/16⌉ blocks of ⌈k/4⌉ groups of 16 × 4 bytes.
size_t srk_digit_packed_size(size_t n, size_t k);

/// Packs one signed digit plane w (n × k, row-major) so that the kernel streams it: block jb,
/// group g holds w[16·jb + j][4·g + t] at byte 64·(jb·⌈k/4⌉ + g) + 4·j + t, zero-padded.
void srk_digit_pack(const int8_t *w, size_t n, size_t k, int8_t *packed);

/// out[(i / group_rows)·group_stride + (i % group_rows)·ldr + j·ldc] = g(z_ij) with
///     z_ij = (((Σ_a Σ_b 2^{a_shift[a] + b_shift[b]} · A_a[i]·B_b[j]) − subtract[j]) << shift) + bias[j]
/// for i < m, j < n, as 128-bit two's complement (`out`, `subtract` and `bias` are __int128
/// arrays; `subtract` and `bias` may be NULL), and g the layer's epilogue: max(z, 0) if `relu`,
/// then, if `grid` > 0, rounding to the nearest multiple of 2^grid (ties up), in those
/// multiples: ⌊(z + 2^{grid−1}) / 2^grid⌋. Done here, on the value still in registers, it saves
/// a pass over a 16-byte-per-element output that cost as much as the product.
/// A_a: m × lda unsigned digits (lda = k rounded up to 4, padding zero, each digit <
/// 2^srk_digit_bits(level)); B_b: packed by `srk_digit_pack`, digits within
/// srk_digit_weight_bits(level) signed bits.
/// `narrow` ≠ 0 promises that the double sum is below 2^63 in magnitude, so it runs in
/// wrapping 64-bit arithmetic (exact modulo 2^64, hence exact); otherwise it is combined in
/// exact 64-bit groups of 20 shift bits and then in 128 bits, for shifts up to 199 and
/// a_count · b_count · ⌈k/65 536⌉ ≤ 4096 (the caller guarantees that z fits 128 bits).
void srk_digit_gemm(int level,
                    const uint8_t *const *a, const int *a_shift, size_t a_count, size_t m, size_t k,
                    const int8_t *const *b, const int *b_shift, size_t b_count, size_t n,
                    int narrow, const void *subtract, int shift,
                    const void *bias, int relu, int grid,
                    void *out, size_t group_rows, size_t group_stride, size_t ldr, size_t ldc);
#endif
