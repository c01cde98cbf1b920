// Vectorised exact int8 chunk-plane products (the paper's cost promise on real hardware):
// GEMV is memory-bound, so reading 1-byte chunks instead of 4-byte floats is the speed-up.
#ifndef SRKERNELS_H
#define SRKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Which implementation `srk_int8_gemv` uses on this CPU (chosen once, at first call):
/// 3 = AVX-512 VNNI, 2 = AVX-512BW, 1 = AVX2, 0 = portable C.
int srk_int8_level(void);

/// y[r] = Σ_c a[r·stride + c] · x[c] for r in [0, rows), exactly in 32-bit integers.
/// Requirements (checked by the Swift caller): stride is a multiple of 64, a and x are zero-padded
/// up to stride, |a|, |x| ≤ 127, and stride · 255 · 127 < 2^31 (stride < 66 000).
void srk_int8_gemv(const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y);

/// The same with an explicit implementation level (capped at what the CPU supports), so tests
/// can check every variant against a reference on one machine.
void srk_int8_gemv_at(int level, const int8_t *a, size_t rows, size_t stride, const int8_t *x, int32_t *y);

/// Coded blocks (issue F) are small integer combinations of int8 row blocks, stored as int16:
/// y[r] = Σ_c a[r·stride + c] · x[c] exactly in 64-bit integers, reading 2 bytes per element.
/// Requirements (checked by the Swift caller): stride is a multiple of 64, a and x zero-padded
/// up to stride, |x| ≤ 127. Any int16 a is exact (32-bit partial sums are widened every 2048
/// columns, before they can overflow).
void srk_int16_gemv(const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y);
void srk_int16_gemv_at(int level, const int16_t *a, size_t rows, size_t stride, const int8_t *x, int64_t *y);
#endif
