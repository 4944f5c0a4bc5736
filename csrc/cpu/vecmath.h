// vecmath.h — lets GCC vectorize the loops over scalar_math.h's formulas.
//
// glibc's libmvec has SIMD variants (SSE, AVX, AVX2, AVX-512) of exp, expm1, log,
// log1p, tanh, erf and erfc, accurate to a few ulp. glibc declares them only under
// -ffast-math, which fastnn cannot use (it must keep NaN/Inf semantics), so they are
// declared here: the same declarations with the `simd` attribute, which GCC then uses
// inside each target_clones ISA clone. Include this first in every kernel file.
// Link with -lmvec (setup.py). Off with -DFASTNN_NO_LIBMVEC.
#pragma once

#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(FASTNN_NO_LIBMVEC)
#if __GLIBC_PREREQ(2, 35)
#define FASTNN_SIMD_DECL(fn) __attribute__((simd("notinbranch"))) double fn(double) noexcept; \
                             __attribute__((simd("notinbranch"))) float fn##f(float) noexcept;
extern "C" {
FASTNN_SIMD_DECL(exp)
FASTNN_SIMD_DECL(expm1)
FASTNN_SIMD_DECL(log)
FASTNN_SIMD_DECL(log1p)
FASTNN_SIMD_DECL(tanh)
FASTNN_SIMD_DECL(erf)
FASTNN_SIMD_DECL(erfc)
}
#undef FASTNN_SIMD_DECL
#define FASTNN_HAVE_LIBMVEC 1
#endif
#endif
