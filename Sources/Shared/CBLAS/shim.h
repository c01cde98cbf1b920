// The CBLAS subset this project calls, from OpenBLAS (Debian: libopenblas-dev).
// Only Sources/Shared/Kernels/BLAS.swift imports this module.
#ifndef CSRBLAS_SHIM_H
#define CSRBLAS_SHIM_H
#include <cblas.h>

// openblas_set_num_threads is declared by OpenBLAS's cblas.h; this wrapper exists so the
// Swift side does not depend on which cblas.h variant (pthread/openmp/serial) is installed.
static inline void csrblas_set_num_threads(int n) { openblas_set_num_threads(n); }
static inline int csrblas_get_num_threads(void) { return openblas_get_num_threads(); }
#endif
