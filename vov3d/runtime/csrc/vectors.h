/* Vector types and helpers shared by the CPU kernels of this directory (GCC/Clang vector
   extensions): the width follows the ISA the library is compiled for (-march=native). */
#ifndef VOV3D_VECTORS_H
#define VOV3D_VECTORS_H

#include <string.h>
#ifdef __AVX__
#include <immintrin.h> /* masked loads and stores */
#endif

/* The vector width follows the ISA the library is compiled for: 16 floats (one zmm register) with
   AVX-512, 8 (one ymm register) with AVX/AVX2, else 4 (SSE, NEON). A 16-float vector on an
   AVX2 machine is two ymm registers, so a 6 x 2 GEMM tile of them needs 24 of the 16 ymm registers
   and spills its accumulators. */
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4 /* SSE / NEON: 16-byte registers */
#endif
typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));
typedef int vi __attribute__((vector_size(VW * 4), aligned(4)));

#define LD(p) (*(const vf *)(p))
#define ST(p, v) (*(vf *)(p) = (v))

/* One broadcast. Written as an initializer: a loop setting lane by lane (v[i] = a) was compiled by
   GCC 12 into a chain of masked broadcasts (AVX-512) or lane inserts (AVX2) in the GEMM's inner
   loop, which ran at 12 GFLOP/s instead of 110 on one Zen 4 core (3x slower than stock ops). */
static inline vf splat(float a) {
#if VW == 16
  return (vf){a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a};
#elif VW == 8
  return (vf){a, a, a, a, a, a, a, a};
#else
  return (vf){a, a, a, a};
#endif
}
static inline vf relu_v(vf v) { return (vf)((vi)v & (vi)(v > splat(0.f))); }
static inline vf select_v(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* Lane-wise min / max: one instruction where the ISA has it (a compare and a blend, two or three,
   otherwise). With a NaN in `a` the result is `b`. */
#if defined(__AVX512F__)
static inline vf min_v(vf a, vf b) { return (vf)_mm512_min_ps((__m512)a, (__m512)b); }
static inline vf max_v(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); }
#elif defined(__AVX__)
static inline vf min_v(vf a, vf b) { return (vf)_mm256_min_ps((__m256)a, (__m256)b); }
static inline vf max_v(vf a, vf b) { return (vf)_mm256_max_ps((__m256)a, (__m256)b); }
#else
static inline vf min_v(vf a, vf b) { return select_v(a < b, a, b); }
static inline vf max_v(vf a, vf b) { return select_v(a > b, a, b); }
#endif

/* Partial loads and stores, for the last columns of a row: the first n (< the vector's width)
   lanes; a load's other lanes are zero. Masked moves where the ISA has them: a loop over lanes
   indexes the vector in memory, and GCC then kept every accumulator of a tile on the stack
   through the epilogue. Elsewhere (SSE, NEON) a memcpy of n floats. */
#if defined(__AVX512F__)
static inline vf load_part(const float *p, int n) { return (vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }
static inline void store_part(float *p, vf v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v); }
#elif defined(__AVX__)
static const int lane_mask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
#define LANES8(n) _mm256_loadu_si256((const __m256i *)(lane_mask + 8 - (n)))
#define LANES4(n) _mm_loadu_si128((const __m128i *)(lane_mask + 8 - (n)))
static inline vf load_part(const float *p, int n) { return (vf)_mm256_maskload_ps(p, LANES8(n)); }
static inline void store_part(float *p, vf v, int n) { _mm256_maskstore_ps(p, LANES8(n), (__m256)v); }
#else
static inline vf load_part(const float *p, int n) { vf v = splat(0.f); memcpy(&v, p, n * sizeof(float)); return v; }
static inline void store_part(float *p, vf v, int n) { memcpy(p, &v, n * sizeof(float)); }
#endif

#endif /* VOV3D_VECTORS_H */
