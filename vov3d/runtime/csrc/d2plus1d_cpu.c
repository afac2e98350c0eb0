/* Fused CPU inference of a D(2+1)D bottleneck (VoV3D's unit, X3D with X3D.UNIT d2plus1d), BN folded:

     y   = b2(b1(relu(a(x))))                     front: 1x1x1 conv + bias, ReLU, depthwise 1x3x3
                                                  (stride s, pad 1), depthwise 3x1x1 (pad 1) + bias
     out = [relu]( c(swish(y * se)) + bias [+ x] ) back: optional SE scale, Swish, 1x1x1 conv + bias,
                                                  optional residual, optional ReLU

   Activations are channels-last: a clip is [T][H][W][C] with rows of C channels at a given row
   stride (a channel slice of a wider tensor is allowed, which is how a T-OSA block writes every unit
   straight into its concatenation). The stock path makes ~10 passes over memory per unit; this makes
   two: the front keeps the a / b1 outputs of three frames (of a band of their rows when whole frames
   outgrow the L2: band_rows) in a per-thread ring (cache resident) and writes y once, the back reads
   y once and writes the unit output. SE needs the mean of y over the
   whole clip, hence the split; a unit without SE does its back frame by frame inside the front
   (d2plus1d_unit), so y never leaves the cache. tosa_block runs a whole T-OSA block in one call.

   Internal buffers (y, weights) pad channels to a multiple of the vector width (d2plus1d_lanes())
   with zeros. Built by vov3d/runtime/kernels.py with the system C compiler (-O3 -march=native, OpenMP when available);
   plain C with GCC/Clang vector extensions, no fast-math (the process's FP state is left alone). */

#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* sysconf: the L2 size */
#ifdef _OPENMP
#include <omp.h>
#endif
#include "jobs.h"
#include "vectors.h"

/* exp(x) = 2^n 2^f with n = round(x log2 e), f = x log2 e - n in [-1/2, 1/2]: 2^f by a degree-5
   polynomial (least-squares fit of 2^f relative to its value, relative error 8e-8 before rounding),
   2^n added to the exponent bits. x is clamped to the range where the result is a
   normal float. One clamp by min / max, no range reduction in two parts (Cephes' exp) and one
   polynomial term less: Swish, the kernel's only transcendental, took 4.4 ns per 8 floats with
   Cephes' expf and 2.9 ns with this (AMD EPYC Zen 3, one core). */
static inline vf exp_v(vf x) {
  x = max_v(min_v(x, splat(88.0f)), splat(-87.0f));
  const vf magic = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
  const vf log2e = splat(1.44269502163e+0f), log2e_low = splat(1.92596299e-8f); /* log2 e in two parts */
  const vf tn = x * log2e + magic;
  const vi n = (vi)tn - (vi)magic;
  const vf f = (x * log2e - (tn - magic)) + x * log2e_low; /* FMAs: x * log2e is not rounded first */
  vf p = splat(1.326697039e-3f);
  p = p * f + splat(9.675459746e-3f);
  p = p * f + splat(5.550742616e-2f);
  p = p * f + splat(2.402212175e-1f);
  p = p * f + splat(6.931469492e-1f);
  p = p * f + splat(1.000000071f);
  return (vf)((vi)p + (n << 23));
}

/* A per-thread buffer of n floats on a 64-byte boundary (NULL when out of memory). */
static float *floats(size_t n) { return aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64); }

static inline vf swish_v(vf v) { return v / (splat(1.f) + exp_v(-v)); }

/* ------------------------------------------------------------------------------------------- */
/* GEMM with fused epilogue: C[M x N] = act(A[M x K] B[K x Np] + bias (+ Rsd)).                  */
/* B and bias are padded to Np (a multiple of VW) with zeros; only N columns of C are written.   */
/* ------------------------------------------------------------------------------------------- */

/* Half vectors (VW / 2 floats) for the last columns: a 20-wide output on 16-float vectors is one
   full and one half vector (24 columns computed) instead of two (32). */
#define VH (VW / 2)
typedef float vhf __attribute__((vector_size(VH * 4), aligned(4)));
typedef int vhi __attribute__((vector_size(VH * 4), aligned(4)));
static inline vhf splat_h(float a) {
#if VH == 8
  return (vhf){a, a, a, a, a, a, a, a};
#elif VH == 4
  return (vhf){a, a, a, a};
#else
  return (vhf){a, a};
#endif
}

#if defined(__AVX512F__) && defined(__AVX512VL__)
static inline vhf load_part_h(const float *p, int n) { return (vhf)_mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), p); }
static inline void store_part_h(float *p, vhf v, int n) { _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), (__m256)v); }
#elif defined(__AVX__) && !defined(__AVX512F__)
static inline vhf load_part_h(const float *p, int n) { return (vhf)_mm_maskload_ps(p, LANES4(n)); }
static inline void store_part_h(float *p, vhf v, int n) { _mm_maskstore_ps(p, LANES4(n), (__m128)v); }
#else
static inline vhf load_part_h(const float *p, int n) { vhf v = splat_h(0.f); memcpy(&v, p, n * sizeof(float)); return v; }
static inline void store_part_h(float *p, vhf v, int n) { memcpy(p, &v, n * sizeof(float)); }
#endif

/* out row i of a tile: act(acc + residual), the first n (<= width) columns stored. */
#define EPILOGUE(TYPE, ITYPE, WIDTH, SPLAT, LOAD_PART, STORE_PART, o, c, r, n)                 \
  do {                                                                                        \
    TYPE o_ = (o);                                                                            \
    const int full_ = (n) >= WIDTH;                                                           \
    if (r) o_ += full_ ? *(const TYPE *)(r) : LOAD_PART(r, n);                                \
    if (relu) o_ = (TYPE)((ITYPE)o_ & (ITYPE)(o_ > SPLAT(0.f)));                              \
    if (full_)                                                                                \
      *(TYPE *)(c) = o_;                                                                      \
    else                                                                                      \
      STORE_PART(c, o_, n);                                                                   \
  } while (0)

/* An R x (NV full + HV half vectors) tile; R, NV, HV are constants at every call site. */
static inline __attribute__((always_inline)) void gemm_tile(
    int R, int NV, int HV, const float *A, long lda, int K, const float *B, int Np, const float *bias, float *C,
    long ldc, int ncols, const float *Rsd, long ldr, int relu) {
  vf acc[6][2];
  vhf acch[6];
  for (int i = 0; i < R; i++) {
    for (int v = 0; v < NV; v++) acc[i][v] = LD(bias + v * VW);
    if (HV) acch[i] = *(const vhf *)(bias + NV * VW);
  }
  for (int k = 0; k < K; k++) {
    vf b[2];
    vhf bh = splat_h(0.f);
    for (int v = 0; v < NV; v++) b[v] = LD(B + (long)k * Np + v * VW);
    if (HV) bh = *(const vhf *)(B + (long)k * Np + NV * VW);
    for (int i = 0; i < R; i++) {
      const float a = A[i * lda + k];
      if (NV) {
        const vf av = splat(a);
        for (int v = 0; v < NV; v++) acc[i][v] += av * b[v];
      }
      if (HV) acch[i] += splat_h(a) * bh;
    }
  }
  for (int i = 0; i < R; i++) {
    for (int v = 0; v < NV; v++) {
      const int n = ncols - v * VW;
      if (n <= 0) break;
      const float *r = Rsd ? Rsd + i * ldr + v * VW : 0;
      EPILOGUE(vf, vi, VW, splat, load_part, store_part, acc[i][v], C + i * ldc + v * VW, r, n);
    }
    if (HV) {
      const int n = ncols - NV * VW;
      const float *r = Rsd ? Rsd + i * ldr + NV * VW : 0;
      if (n > 0) EPILOGUE(vhf, vhi, VH, splat_h, load_part_h, store_part_h, acch[i], C + i * ldc + NV * VW, r, n);
    }
  }
}

/* All rows of one column block of width NV * VW + HV * VH starting at column j0. */
static inline __attribute__((always_inline)) void gemm_columns(
    int NV, int HV, const float *A, long lda, long M, int K, const float *B, int Np, const float *bias, float *C,
    long ldc, int N, int j0, const float *Rsd, long ldr, int relu) {
#define TILE(R) gemm_tile(R, NV, HV, a, lda, K, B + j0, Np, bias + j0, c, ldc, N - j0, rs, ldr, relu)
  long m = 0;
  for (; m + 6 <= M; m += 6) {
    const float *a = A + m * lda;
    float *c = C + m * ldc + j0;
    const float *rs = Rsd ? Rsd + m * ldr + j0 : 0;
    TILE(6);
  }
  if (m < M) {
    const float *a = A + m * lda;
    float *c = C + m * ldc + j0;
    const float *rs = Rsd ? Rsd + m * ldr + j0 : 0;
    switch ((int)(M - m)) {
      case 1: TILE(1); break;
      case 2: TILE(2); break;
      case 3: TILE(3); break;
      case 4: TILE(4); break;
      default: TILE(5); break;
    }
  }
#undef TILE
}

static void gemm(const float *A, long lda, long M, int K, const float *B, int Np, const float *bias, float *C,
                 long ldc, int N, const float *Rsd, long ldr, int relu) {
  for (int j0 = 0; j0 < N;) {
    const int rest = N - j0; /* the narrowest block that covers the rest, up to two vectors */
    if (rest > VW + VH) {
      gemm_columns(2, 0, A, lda, M, K, B, Np, bias, C, ldc, N, j0, Rsd, ldr, relu);
      j0 += 2 * VW;
    } else if (rest > VW) {
      gemm_columns(1, 1, A, lda, M, K, B, Np, bias, C, ldc, N, j0, Rsd, ldr, relu);
      j0 += VW + VH;
    } else if (rest > VH) {
      gemm_columns(1, 0, A, lda, M, K, B, Np, bias, C, ldc, N, j0, Rsd, ldr, relu);
      j0 += VW;
    } else {
      gemm_columns(0, 1, A, lda, M, K, B, Np, bias, C, ldc, N, j0, Rsd, ldr, relu);
      j0 += VH;
    }
  }
}

/* Depthwise 1x3x3 conv, padding 1, stride s, no bias, output rows [h0, h0 + H) of a frame Hin rows
   high: in holds the frame's input rows from ir0 on ([..][Win][Cp]), out gets [H][W][Cp]; w [9][Cp].
   One channel vector at a time with its nine taps held in registers, so an output vector costs
   nine input loads and nine FMAs; the bounds are checked per row and at the two edge columns only. */
static void dw3x3(const float *in, int Hin, int Win, int Cp, const float *w, int s, float *out, int H, int W, int h0,
                  int ir0) {
  const long row = (long)Win * Cp;
  for (int c = 0; c < Cp; c += VW) {
    const vf k0 = LD(w + c), k1 = LD(w + Cp + c), k2 = LD(w + 2 * Cp + c), k3 = LD(w + 3 * Cp + c),
             k4 = LD(w + 4 * Cp + c), k5 = LD(w + 5 * Cp + c), k6 = LD(w + 6 * Cp + c), k7 = LD(w + 7 * Cp + c),
             k8 = LD(w + 8 * Cp + c);
    for (int h = 0; h < H; h++) {
      const int r = (h0 + h) * s - 1; /* the input row of the top taps */
      const float *mid = in + (long)(r + 1 - ir0) * row + c;
      const float *top = r >= 0 ? mid - row : 0, *bot = r + 2 < Hin ? mid + row : 0;
      float *o = out + (long)h * W * Cp + c;
      for (int x = 0; x < W; x++) {
        const int q = x * s - 1; /* the input column of the left taps */
        vf acc;
        if (q >= 0 && q + 2 < Win) {
          const long a = (long)q * Cp;
          acc = k3 * LD(mid + a) + k4 * LD(mid + a + Cp) + k5 * LD(mid + a + 2 * Cp);
          if (top) acc += k0 * LD(top + a) + k1 * LD(top + a + Cp) + k2 * LD(top + a + 2 * Cp);
          if (bot) acc += k6 * LD(bot + a) + k7 * LD(bot + a + Cp) + k8 * LD(bot + a + 2 * Cp);
        } else { /* an edge column: the taps outside the frame are zeros */
          const vf z = splat(0.f);
          const long a = (long)q * Cp;
          const int left = q >= 0, right = q + 2 < Win;
          acc = (left ? k3 * LD(mid + a) : z) + k4 * LD(mid + a + Cp) + (right ? k5 * LD(mid + a + 2 * Cp) : z);
          if (top) acc += (left ? k0 * LD(top + a) : z) + k1 * LD(top + a + Cp) + (right ? k2 * LD(top + a + 2 * Cp) : z);
          if (bot) acc += (left ? k6 * LD(bot + a) : z) + k7 * LD(bot + a + Cp) + (right ? k8 * LD(bot + a + 2 * Cp) : z);
        }
        ST(o + (long)x * Cp, acc);
      }
    }
  }
}

/* The row loops (back, 1x1x1 convs, shortcut) hand out their jobs dynamically: on a shared host one
   thread is often slowed for a while, and with a static split the other waits for it at the loop's
   end (the model 0.95-0.99x the time with dynamic, AMD EPYC Zen 3 VM, 2 threads). The front keeps a
   static split: its jobs are few (one clip each at res3-res5), so there is nothing to rebalance. */

/* Rows per job for M rows split among nthreads: about `target`, in whole 6-row GEMM tiles, with a
   job count that is a multiple of the threads when it can be (512 rows in 192-row jobs gave one
   thread twice the work of the other). */
static long rows_per_job(long M, long target, int nthreads) {
  long jobs = (M + target - 1) / target;
  jobs = (jobs + nthreads - 1) / nthreads * nthreads;
  const long rows = (M + jobs - 1) / jobs;
  return rows < 6 ? 6 : (rows + 5) / 6 * 6;
}

/* The back of a unit without SE, done frame by frame inside the front (the unit's intermediate y
   never goes to memory): see d2plus1d_back for the fields. */
struct unit_back {
  const float *Wc, *bc;
  int Coutp, Cout;
  const float *res;
  long ldr;
  float *out;
  long ldo;
  int relu;
};

static void swish_rows(float *z, long n) {
  for (long i = 0; i < n; i += VW) ST(z + i, swish_v(LD(z + i)));
}

/* Output rows a job computes per frame. Each thread keeps the a output of those rows' input, the b1
   output of three frames (the ring) and one frame of z in its L2. A frame whose buffers outgrow the L2
   (res2 at 28^2 x 40 channels: 0.6 MiB, on a 512 KiB L2) is split into bands of rows whose buffers take
   a quarter of it (the input rows next to a band have their a conv computed twice). Measured on AMD EPYC
   Zen 3 (512 KiB L2), 2 threads, res2's block at 2x16x56^2 in: bands of a quarter 1.13-1.14x faster,
   of an eighth 0.97x (the recomputed rows cost more), res3's first block banded as well 0.97x. */
static long l2_size = 0; /* bytes; 0: not looked up yet */

/* The L2 size the bands are cut for: the C library's answer, else 512 KiB; `set` > 0 replaces it
   (tests cut small clips into bands with it). */
long d2plus1d_l2_bytes(long set) {
  if (set > 0) l2_size = set;
  if (!l2_size) {
    long size = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    size = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    l2_size = size > 0 ? size : 512L << 10;
  }
  return l2_size;
}

static int band_rows(int H, int W, int Win, int Cp, int s) {
  const long per_row = 4L * Cp * ((long)s * Win + 4L * W), fixed = 4L * Cp * 2 * Win, l2 = d2plus1d_l2_bytes(0);
  if (fixed + per_row * H <= l2) return H;
  const long rows = (l2 / 4 - fixed) / per_row;
  return rows < 1 ? 1 : rows > H ? H : (int)rows;
}

/* Front. x: N clips of [T][Hin][Win] rows, row stride ldx (>= Cin). Wa [Cin][Cp], ba [Cp], W1 [9][Cp],
   W2 [3][Cp] (taps t-1, t, t+1), b2 [Cp]. y: [N][T][H][W][Cp]. ysum: [N][Cp], sums of y per clip.
   With `bk` (a unit without SE) each frame's back follows at once and y and ysum are not used. */
static int front_impl(const float *x, long ldx, int N, int T, int Hin, int Win, int Cin, const float *Wa,
                      const float *ba, int Cp, int s, const float *W1, const float *W2, const float *b2, float *y,
                      float *ysum, int nthreads, const struct unit_back *bk) {
  const int H = (Hin - 1) / s + 1, W = (Win - 1) / s + 1;
  const long P = (long)H * W, Pin = (long)Hin * Win;
  if (nthreads < 1) nthreads = 1;
  const int hb = band_rows(H, W, Win, Cp, s), bands = (H + hb - 1) / hb;
  /* Split clips into temporal chunks so that every thread has work (a chunk recomputes the a / b1
     outputs of its two neighbouring frames). */
  const int chunks = runs_per_clip(N * bands, T, nthreads);
  const int jobs = N * bands * chunks;
  const long Pb = (long)hb * W, Pinb = (long)(hb * s + 2 < Hin ? hb * s + 2 : Hin) * Win;
  float *partial = ysum ? calloc((size_t)jobs * Cp, sizeof(float)) : 0; /* per-job sums of y, for SE */
  if (ysum && !partial) return 1;
  int failed = 0;
#pragma omp parallel num_threads(nthreads)
  {
    float *bufA = floats((size_t)Pinb * Cp);
    float *ring = floats((size_t)3 * Pb * Cp);
    float *z = bk ? floats((size_t)Pb * Cp) : 0;
    if (!bufA || !ring || (bk && !z)) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int job = 0; job < jobs; job++) {
      if (!bufA || !ring || (bk && !z)) continue;
      const int n = job / (bands * chunks), band = job / chunks % bands, ch = job % chunks;
      const int t0 = (int)((long)T * ch / chunks), t1 = (int)((long)T * (ch + 1) / chunks);
      /* output rows [r0, r1) of every frame, from input rows [ir0, ir1) */
      const int r0 = band * hb, r1 = r0 + hb < H ? r0 + hb : H;
      const int ir0 = r0 * s - 1 > 0 ? r0 * s - 1 : 0, ir1 = (r1 - 1) * s + 2 < Hin ? (r1 - 1) * s + 2 : Hin;
      const long pb = (long)(r1 - r0) * W, p0 = (long)r0 * W;
      float *sum = partial ? partial + (long)job * Cp : 0;
      const float *xn = x + (long)n * T * Pin * ldx;
#define RING(f) (ring + (long)((f) % 3) * Pb * Cp)
#define MAKE_B1(f)                                                                                               \
  do {                                                                                                           \
    gemm(xn + ((long)(f) * Pin + (long)ir0 * Win) * ldx, ldx, (long)(ir1 - ir0) * Win, Cin, Wa, Cp, ba, bufA, Cp, \
         Cp, 0, 0, 1);                                                                                           \
    dw3x3(bufA, Hin, Win, Cp, W1, s, RING(f), r1 - r0, W, r0, ir0);                                              \
  } while (0)
      if (t0 > 0) MAKE_B1(t0 - 1);
      MAKE_B1(t0);
      for (int t = t0; t < t1; t++) {
        if (t + 1 < T) MAKE_B1(t + 1);
        const float *prev = t > 0 ? RING(t - 1) : 0, *cur = RING(t), *next = t + 1 < T ? RING(t + 1) : 0;
        const long frame = (long)n * T + t;
        float *yt = bk ? z : y + (frame * P + p0) * Cp;
        for (int c = 0; c < Cp; c += VW) {
          const vf w0 = LD(W2 + c), w1 = LD(W2 + Cp + c), w2 = LD(W2 + 2 * Cp + c), bb = LD(b2 + c);
          vf acc = splat(0.f);
          for (long p = 0; p < pb; p++) {
            const long o = p * Cp + c;
            vf v = bb + w1 * LD(cur + o);
            if (prev) v += w0 * LD(prev + o);
            if (next) v += w2 * LD(next + o);
            ST(yt + o, v);
            acc += v;
          }
          if (sum) ST(sum + c, LD(sum + c) + acc);
        }
        if (bk) { /* no SE: this frame's back now, from the cache */
          swish_rows(z, pb * Cp);
          gemm(z, Cp, pb, Cp, bk->Wc, bk->Coutp, bk->bc, bk->out + (frame * P + p0) * bk->ldo, bk->ldo, bk->Cout,
               bk->res ? bk->res + (frame * P + p0) * bk->ldr : 0, bk->ldr, bk->relu);
        }
      }
#undef MAKE_B1
#undef RING
    }
    free(bufA);
    free(ring);
    free(z);
  }
  for (int n = 0; n < N && ysum; n++)
    for (int c = 0; c < Cp; c++) {
      float acc = 0.f;
      for (int j = 0; j < bands * chunks; j++) acc += partial[((long)n * bands * chunks + j) * Cp + c];
      ysum[(long)n * Cp + c] = acc;
    }
  free(partial);
  return failed; /* 1: out of memory */
}

int d2plus1d_front(const float *x, long ldx, int N, int T, int Hin, int Win, int Cin, const float *Wa,
                   const float *ba, int Cp, int s, const float *W1, const float *W2, const float *b2, float *y,
                   float *ysum, int nthreads) {
  return front_impl(x, ldx, N, T, Hin, Win, Cin, Wa, ba, Cp, s, W1, W2, b2, y, ysum, nthreads, 0);
}

/* A whole unit without SE in one pass: front and back per frame (arguments as d2plus1d_front and
   d2plus1d_back; the residual rows are the input's when res == x). */
int d2plus1d_unit(const float *x, long ldx, int N, int T, int Hin, int Win, int Cin, const float *Wa, const float *ba,
                  int Cp, int s, const float *W1, const float *W2, const float *b2, const float *Wc, const float *bc,
                  int Coutp, int Cout, const float *res, long ldr, float *out, long ldo, int relu, int nthreads) {
  const struct unit_back bk = {Wc, bc, Coutp, Cout, res, ldr, out, ldo, relu};
  return front_impl(x, ldx, N, T, Hin, Win, Cin, Wa, ba, Cp, s, W1, W2, b2, 0, 0, nthreads, &bk);
}

/* Back. y: [N][T*P][Cp]; scale: [N][Cp] or NULL; Wc [Cp][Coutp], bc [Coutp]. out: N*T*P rows of Cout
   at row stride ldo; res (may be NULL): rows at stride ldr. */
int d2plus1d_back(const float *y, int N, long TP, int Cp, const float *scale, const float *Wc, const float *bc,
                   int Coutp, int Cout, const float *res, long ldr, float *out, long ldo, int relu, int nthreads) {
  const long M = (long)N * TP;
  if (nthreads < 1) nthreads = 1;
  const long rows = rows_per_job(M, 192, nthreads); /* a z tile of rows x Cp stays in L2 */
  const long jobs = (M + rows - 1) / rows;
  int failed = 0;
#pragma omp parallel num_threads(nthreads)
  {
    float *z = floats((size_t)rows * Cp);
    if (!z) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic)
    for (long job = 0; job < jobs; job++) {
      if (!z) continue;
      const long m0 = job * rows, m1 = m0 + rows < M ? m0 + rows : M;
      for (long m = m0; m < m1; m++) {
        const float *ym = y + m * Cp;
        const float *sc = scale ? scale + (m / TP) * Cp : 0;
        float *zm = z + (m - m0) * Cp;
        for (int c = 0; c < Cp; c += VW) {
          vf v = LD(ym + c);
          if (sc) v *= LD(sc + c);
          ST(zm + c, swish_v(v));
        }
      }
      gemm(z, Cp, m1 - m0, Cp, Wc, Coutp, bc, out + m0 * ldo, ldo, Cout, res ? res + m0 * ldr : 0, ldr, relu);
    }
    free(z);
  }
  return failed; /* 1: out of memory */
}

/* The head of X3D / VoV3D up to its global pooling, BN folded: pooled[n] = the mean over clip n's P
   rows of [relu](x W + bias). x: N*P rows at stride ldx; W [K][Np], bias [Np]; pooled [N][Nout]. The
   conv's output never goes to memory: each job (rows of one clip) sums its rows into its own slot,
   and the slots are added in job order (the same sums whichever thread ran a job). */
int pointwise_pool(const float *x, long ldx, int N, long P, int K, const float *W, int Np, const float *bias,
                   int Nout, int relu, float *pooled, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  const long rows = rows_per_job(P, 48, 1), per_clip = (P + rows - 1) / rows, jobs = (long)N * per_clip;
  float *partial = calloc((size_t)jobs * Np, sizeof(float));
  if (!partial) return 1;
  int failed = 0;
#pragma omp parallel num_threads(nthreads)
  {
    float *z = floats((size_t)rows * Np);
    if (!z) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic)
    for (long job = 0; job < jobs; job++) {
      if (!z) continue;
      const long n = job / per_clip, m0 = job % per_clip * rows, m1 = m0 + rows < P ? m0 + rows : P;
      gemm(x + (n * P + m0) * ldx, ldx, m1 - m0, K, W, Np, bias, z, Np, Np, 0, 0, relu);
      float *sum = partial + job * Np;
      for (long m = 0; m < m1 - m0; m++)
        for (int c = 0; c < Np; c += VW) ST(sum + c, LD(sum + c) + LD(z + m * Np + c));
    }
    free(z);
  }
  for (int n = 0; n < N; n++)
    for (int c = 0; c < Nout; c++) {
      float acc = 0.f;
      for (long j = 0; j < per_clip; j++) acc += partial[((long)n * per_clip + j) * Np + c];
      pooled[(long)n * Nout + c] = acc / (float)P;
    }
  free(partial);
  return failed; /* 1: out of memory */
}

/* A 1x1x1 conv on channels-last rows (a T-OSA block's aggregation conv, BN folded), with the
   residual and ReLU of the block that follows it: out[m] = [relu](x[m] W + bias [+ res[m]]) for M
   rows, where x[m] is the concatenation of nseg segments: segment s is M rows of K[s] channels at
   stride ld[s] from a[s] (the planes of a T-OSA block, or one segment of whole rows), and W's rows
   [sum K][Np] follow the segments in order; bias [Np]; out: rows of N at stride ldo; res (may be
   NULL): rows at stride ldr. Per job of rows the segments' products
   accumulate in the job's output rows (in L1 by then): the first adds the bias and the residual,
   the last applies the ReLU. */
static int pointwise_segments(int nseg, const float *const *a, const long *ld, const int *K, long M, const float *W,
                              int Np, const float *bias, float *out, long ldo, int N, const float *res, long ldr,
                              int relu, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  float *zero = calloc((size_t)Np, sizeof(float));
  if (!zero) return 1;
  /* ~48 rows per job: a slice of the input stays in L2 while the column blocks pass; with segments,
     fewer where the job's output rows would outgrow 8 KiB of L1 (they are read and written again
     by every segment) */
  const long fit = 2048 / Np < 12 ? 12 : 2048 / Np, target = nseg == 1 || fit > 48 ? 48 : fit;
  const long rows = rows_per_job(M, target, nthreads);
  const long jobs = (M + rows - 1) / rows;
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
  for (long job = 0; job < jobs; job++) {
    const long m0 = job * rows, m1 = m0 + rows < M ? m0 + rows : M;
    float *o = out + m0 * ldo;
    long k0 = 0;
    for (int s = 0; s < nseg; s++) {
      const float *r = s ? o : res ? res + m0 * ldr : 0;
      gemm(a[s] + m0 * ld[s], ld[s], m1 - m0, K[s], W + k0 * Np, Np, s ? zero : bias, o, ldo, N, r, s ? ldo : ldr,
           s == nseg - 1 ? relu : 0);
      k0 += K[s];
    }
  }
  free(zero);
  return 0;
}

/* The one-segment case: x rows of K at stride ldx. */
int pointwise_rows(const float *x, long ldx, long M, int K, const float *W, int Np, const float *bias, float *out,
                   long ldo, int N, const float *res, long ldr, int relu, int nthreads) {
  return pointwise_segments(1, &x, &ldx, &K, M, W, Np, bias, out, ldo, N, res, ldr, relu, nthreads);
}

/* ------------------------------------------------------------------------------------------- */
/* A whole T-OSA block in one call: every unit (front, SE gate, back) writes into the block's      */
/* concatenation, then the aggregation conv (+ the enclosing residual block's shortcut and ReLU)  */
/* reads it. One call per block instead of two per unit plus the SE gate's tensor ops.             */
/* Narrow units (under 64 channels: VoV3D's res2 and res3) keep the concatenation as planes, unit */
/* by unit, each rows of its own channels, and not as rows of all channels: a unit then reads its */
/* predecessor's output as contiguous rows, which the GEMM took 1.6x faster than a 20-channel     */
/* slice of 100-channel rows (rows a stride apart defeat the hardware prefetcher), and a stride-1 */
/* block's input is a plane as it is, not copied in; the aggregation adds the planes' products.   */
/* Measured on AMD EPYC Zen 3, 2 threads, blocks at 2x16 frames: res2 0.85-0.90x the time, res3  */
/* 0.95x; res4 / res5 (80 / 160 channels, rows of 320 / 640 bytes) 1.02-1.03x, so they keep rows. */
/* ------------------------------------------------------------------------------------------- */

/* The parameter table of a block (int64): a header, then one row of U_FIELDS per unit. Offsets
   index the block's one float parameter array; weights are packed as for d2plus1d_front / _back. */
enum { B_UNITS, B_KEEP_INPUT, B_CBUF, B_CIN, B_COUT, B_COUTP, B_AGG_W, B_AGG_B, B_FIELDS };
enum {
  U_CIN, U_INNER, U_CP, U_COUT, U_COUTP, U_STRIDE, U_RESIDUAL, U_RELU, U_SE, /* SE hidden width, 0: none */
  U_WA, U_BA, U_W1, U_W2, U_B2, U_WC, U_BC, U_SE_W1, U_SE_B1, U_SE_W2, U_SE_B2, U_FIELDS
};

/* SE gate per clip: scale = sigmoid(W2 relu(W1 mean + b1) + b2), mean = ysum / count; W1 [d][inner],
   W2 [inner][d] (the 1x1x1 convs' weights as they are). Padded channels get 0. */
static void se_gate(const float *ysum, int N, int inner, int Cp, long count, int d, const float *W1, const float *b1,
                    const float *W2, const float *b2, float *scale) {
  float hidden[d];
  for (int n = 0; n < N; n++) {
    const float *sum = ysum + (long)n * Cp;
    float *sc = scale + (long)n * Cp;
    for (int j = 0; j < d; j++) {
      float acc = 0.f;
      for (int c = 0; c < inner; c++) acc += W1[(long)j * inner + c] * (sum[c] / (float)count);
      acc += b1[j];
      hidden[j] = acc > 0.f ? acc : 0.f;
    }
    for (int c = 0; c < inner; c++) {
      float acc = 0.f;
      for (int j = 0; j < d; j++) acc += W2[(long)c * d + j] * hidden[j];
      acc += b2[c];
      sc[c] = 1.f / (1.f + exp_v(splat(-acc))[0]); /* the kernel's own exp: no libm needed */
    }
    for (int c = inner; c < Cp; c++) sc[c] = 0.f;
  }
}

/* The shortcut of a residual block around a T-OSA block, a 1x1x1 conv of stride s (BN folded):
   out[n][t][h][w] = x[n][t][h s][w s] W + bias, x rows of K at stride ldx, W [K][Np], out rows of
   Nout at stride ldo. One GEMM per output row: its W pixels are s input rows apart. */
static void shortcut_rows(const float *x, long ldx, int N, int T, int Hin, int Win, int s, int K, const float *Wsc,
                          int Np, const float *bsc, float *out, long ldo, int Nout, int nthreads) {
  const int H = (Hin - 1) / s + 1, W = (Win - 1) / s + 1;
  const long rows = (long)N * T * H;
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
  for (long r = 0; r < rows; r++) {
    const long f = r / H;
    const int h = (int)(r % H);
    gemm(x + (f * Hin * Win + (long)h * s * Win) * ldx, s * ldx, W, K, Wsc, Np, bsc, out + r * W * ldo, ldo, Nout, 0,
         0, 0);
  }
}

/* x: N clips of [T][Hin][Win] rows at stride ldx. buf: the concatenation, N*T*H*W*table[B_CBUF]
   floats: [N][T][H][W] rows of table[B_CBUF], or planes (unit i's output as rows of its Cout
   channels after the planes of the units before it); y: scratch of N*T*H*W*(largest Cp) floats; ysum, scale: N*(largest Cp). out: rows
   of table[B_COUT]; res (may be NULL): rows at stride ldr, added before the final ReLU (relu).
   sc_w (may be NULL): the enclosing residual block's shortcut conv, [B_CIN][B_COUTP] with its bias
   sc_b, of spatial stride sc_stride, computed into out and added as the residual (res unused). */
int tosa_block(const float *x, long ldx, int N, int T, int Hin, int Win, const float *p, const long *table,
               float *buf, float *y, float *ysum, float *scale, const float *res, long ldr, int relu, float *out,
               const float *sc_w, const float *sc_b, int sc_stride, int nthreads) {
  const long units = table[B_UNITS], cin = table[B_CIN];
  const long *u0 = table + B_FIELDS;
  const int s0 = (int)u0[U_STRIDE];
  const int H = (Hin - 1) / s0 + 1, W = (Win - 1) / s0 + 1;
  const long rows = (long)N * T * H * W;
  long widest = 0;
  for (long i = 0; i < units; i++) {
    const long cout = table[B_FIELDS + i * U_FIELDS + U_COUT];
    widest = cout > widest ? cout : widest;
  }
  const int planes = widest < 64;
  /* the aggregation's segments: planes: the block input (stride 1), then every unit's plane;
     rows: the whole concatenation */
  const float *seg[units + 1];
  long seg_ld[units + 1];
  int seg_k[units + 1], nseg = 0;
#define ADD_SEGMENT(a, ld, k) (seg[nseg] = (a), seg_ld[nseg] = (ld), seg_k[nseg++] = (int)(k))
  const long cbuf = table[B_CBUF];
  long offset = 0;
  if (!planes) ADD_SEGMENT(buf, cbuf, cbuf);
  if (table[B_KEEP_INPUT] && planes) { /* stride 1: the block input is the first segment as it is */
    ADD_SEGMENT(x, ldx, cin);
  } else if (table[B_KEEP_INPUT]) { /* stride 1: the block input is the first slice of the concatenation */
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long m = 0; m < rows; m++) memcpy(buf + m * cbuf, x + m * ldx, (size_t)cin * sizeof(float));
    offset = cin;
  }
  const float *in = x;
  long ld = ldx;
  int hin = Hin, win = Win;
  for (long i = 0; i < units; i++) {
    const long *u = table + B_FIELDS + i * U_FIELDS;
    const int cp = (int)u[U_CP], d = (int)u[U_SE], cout = (int)u[U_COUT];
    const float *unit_res = u[U_RESIDUAL] ? in : 0;
    float *plane = planes ? buf + rows * offset : buf + offset; /* this unit's output */
    const long ldp = planes ? cout : cbuf;
    int status;
    if (!d) { /* no SE: one pass, the unit's intermediate stays in the cache */
      status = d2plus1d_unit(in, ld, N, T, hin, win, (int)u[U_CIN], p + u[U_WA], p + u[U_BA], cp, (int)u[U_STRIDE],
                             p + u[U_W1], p + u[U_W2], p + u[U_B2], p + u[U_WC], p + u[U_BC], (int)u[U_COUTP],
                             cout, unit_res, ld, plane, ldp, (int)u[U_RELU], nthreads);
    } else {
      status = d2plus1d_front(in, ld, N, T, hin, win, (int)u[U_CIN], p + u[U_WA], p + u[U_BA], cp,
                              (int)u[U_STRIDE], p + u[U_W1], p + u[U_W2], p + u[U_B2], y, ysum, nthreads);
      if (!status) {
        se_gate(ysum, N, (int)u[U_INNER], cp, (long)T * H * W, d, p + u[U_SE_W1], p + u[U_SE_B1], p + u[U_SE_W2],
                p + u[U_SE_B2], scale);
        status = d2plus1d_back(y, N, (long)T * H * W, cp, scale, p + u[U_WC], p + u[U_BC], (int)u[U_COUTP], cout,
                               unit_res, ld, plane, ldp, (int)u[U_RELU], nthreads);
      }
    }
    if (status) return status;
    if (planes) ADD_SEGMENT(plane, cout, cout);
    in = plane; /* the next unit reads this one's output */
    ld = ldp;
    hin = H;
    win = W;
    offset += cout;
  }
  if (sc_w) { /* the aggregation GEMM then adds out to itself in place (each element read, then written) */
    shortcut_rows(x, ldx, N, T, Hin, Win, sc_stride, (int)cin, sc_w, (int)table[B_COUTP], sc_b, out, table[B_COUT],
                  (int)table[B_COUT], nthreads);
    res = out;
    ldr = table[B_COUT];
  }
#undef ADD_SEGMENT
  return pointwise_segments(nseg, seg, seg_ld, seg_k, rows, p + table[B_AGG_W], (int)table[B_COUTP], p + table[B_AGG_B],
                            out, table[B_COUT], (int)table[B_COUT], res, ldr, relu, nthreads);
}

/* ------------------------------------------------------------------------------------------- */
/* X3D's stem (VoV3D's too), BN folded: a 3x3 spatial conv (stride s, pad 1) of the clip's few    */
/* channels, a depthwise temporal conv (Kt taps, pad Kt / 2) + bias, ReLU. The stock route makes  */
/* four passes (a layout copy of the input, the two convs, the ReLU); this reads the input once,  */
/* in whatever layout it comes, and writes the output once.                                        */
/* ------------------------------------------------------------------------------------------- */

/* One output pixel of the 3x3 conv, NV channel vectors from c0, taps outside the frame skipped.
   xf: the frame's channel 0, sc / sh / sw its strides; w [Cin][3][3][Cp]; acc: NV vectors. */
static inline __attribute__((always_inline)) void stem_pixel(int NV, const float *xf, long sc, long sh, long sw,
                                                             int Cin, int Hin, int Win, int s, const float *w, int Cp,
                                                             int c0, int h, int x, vf *acc) {
  for (int c = 0; c < Cin; c++)
    for (int dy = 0; dy < 3; dy++) {
      const int iy = h * s - 1 + dy;
      if (iy < 0 || iy >= Hin) continue;
      for (int dx = 0; dx < 3; dx++) {
        const int ix = x * s - 1 + dx;
        if (ix < 0 || ix >= Win) continue;
        const vf a = splat(xf[c * sc + iy * sh + ix * sw]);
        const float *wt = w + (long)((c * 3 + dy) * 3 + dx) * Cp + c0;
        for (int v = 0; v < NV; v++) acc[v] += a * LD(wt + v * VW);
      }
    }
}

/* The 3x3 conv of output rows [h0, h0 + rows) of one frame, NV channel vectors from c0, into out
   ([rows][W][Cp]), bias b. Four pixels at a time where all their taps are inside the frame: a tap
   is four broadcasts and NV weight loads for 4 x NV FMAs (16 registers at NV = 3). */
static inline __attribute__((always_inline)) void stem_rows(int NV, const float *xf, long sc, long sh, long sw, int Cin,
                                                            int Hin, int Win, int s, const float *w, const float *b,
                                                            int Cp, int c0, float *out, int W, int h0, int rows) {
  const int inner_end = (Win - 2) / s + 1; /* columns [1, inner_end) have all three taps inside */
  for (int r = 0; r < rows; r++) {
    const int h = h0 + r;
    const int top = h * s - 1 >= 0, bottom = h * s + 1 < Hin;
    float *o = out + (long)r * W * Cp + c0;
    int x = 0;
    while (x < W) {
      if (x >= 1 && x + 4 <= inner_end && top && bottom) {
        vf acc[4][3];
        for (int q = 0; q < 4; q++)
          for (int v = 0; v < NV; v++) acc[q][v] = LD(b + c0 + v * VW);
        for (int c = 0; c < Cin; c++)
          for (int dy = 0; dy < 3; dy++) {
            const float *row = xf + c * sc + (long)(h * s - 1 + dy) * sh + (long)(x * s - 1) * sw;
            for (int dx = 0; dx < 3; dx++) {
              const float *wt = w + (long)((c * 3 + dy) * 3 + dx) * Cp + c0;
              vf wv[3];
              for (int v = 0; v < NV; v++) wv[v] = LD(wt + v * VW);
              for (int q = 0; q < 4; q++) {
                const vf a = splat(row[((long)q * s + dx) * sw]);
                for (int v = 0; v < NV; v++) acc[q][v] += a * wv[v];
              }
            }
          }
        for (int q = 0; q < 4; q++)
          for (int v = 0; v < NV; v++) ST(o + (long)(x + q) * Cp + v * VW, acc[q][v]);
        x += 4;
      } else {
        vf acc[3];
        for (int v = 0; v < NV; v++) acc[v] = LD(b + c0 + v * VW);
        stem_pixel(NV, xf, sc, sh, sw, Cin, Hin, Win, s, w, Cp, c0, h, x, acc);
        for (int v = 0; v < NV; v++) ST(o + (long)x * Cp + v * VW, acc[v]);
        x += 1;
      }
    }
  }
}

static void stem_xy(const float *xf, long sc, long sh, long sw, int Cin, int Hin, int Win, int s, const float *w,
                    const float *b, int Cp, float *out, int W, int h0, int rows) {
  for (int c0 = 0; c0 < Cp;) {
    const int left = (Cp - c0) / VW;
    if (left >= 3) {
      stem_rows(3, xf, sc, sh, sw, Cin, Hin, Win, s, w, b, Cp, c0, out, W, h0, rows);
      c0 += 3 * VW;
    } else if (left == 2) {
      stem_rows(2, xf, sc, sh, sw, Cin, Hin, Win, s, w, b, Cp, c0, out, W, h0, rows);
      c0 += 2 * VW;
    } else {
      stem_rows(1, xf, sc, sh, sw, Cin, Hin, Win, s, w, b, Cp, c0, out, W, h0, rows);
      c0 += VW;
    }
  }
}

/* The temporal conv + bias + ReLU of `pixels` pixels from the 3x3 conv's output of NK frames (w: their
   NK taps), stored as rows of Cout at stride ldo. A last vector of VW / 2 channels (20 of 24 on
   8-float vectors) is a half-vector store: a masked store costs more than the pixel's arithmetic. */
static inline __attribute__((always_inline)) void stem_temporal(int NK, const float *const *frame, const float *w,
                                                                const float *b, int Cp, int Cout, long pixels,
                                                                float *o, long ldo) {
  for (long q = 0; q < pixels; q++)
    for (int c = 0; c < Cp && c < Cout; c += VW) {
      vf v = LD(b + c);
      for (int k = 0; k < NK; k++) v += LD(w + (long)k * Cp + c) * LD(frame[k] + q * Cp + c);
      v = relu_v(v);
      float *dst = o + q * ldo + c;
      if (Cout - c >= VW)
        ST(dst, v);
      else if (Cout - c == VH)
        memcpy(dst, &v, VH * sizeof(float)); /* one 16-byte store */
      else
        store_part(dst, v, Cout - c);
    }
}

/* x: N clips of Cin x T x Hin x Win floats at strides sx[5] (clip, channel, frame, row, column: the
   loader's N x C x T x H x W batches as they are, or channels-last). Wxy [Cin][3][3][Cp], bxy [Cp]
   (zeros when the conv has no bias), Wt [Kt][Cp] (Kt odd), bt [Cp]. out: N*T*H*W rows of Cout at
   stride ldo. Each job keeps the 3x3 conv's output of Kt frames (a band of their rows: no halo is
   needed, the temporal taps are 1x1) in a per-thread ring. */
int x3d_stem(const float *x, const long *sx, int N, int Cin, int T, int Hin, int Win, int s, const float *Wxy,
             const float *bxy, int Cp, int Kt, const float *Wt, const float *bt, int Cout, float *out, long ldo,
             int nthreads) {
  const int H = (Hin - 1) / s + 1, W = (Win - 1) / s + 1, pad = Kt / 2;
  const long P = (long)H * W;
  if (nthreads < 1) nthreads = 1;
  /* a band's ring takes a quarter of the L2 */
  long hb = d2plus1d_l2_bytes(0) / 4 / (4L * Kt * W * Cp);
  hb = hb < 1 ? 1 : hb > H ? H : hb;
  const int bands = (int)((H + hb - 1) / hb);
  const int chunks = runs_per_clip(N * bands, T, nthreads); /* a chunk recomputes 2 * pad frames */
  const int jobs = N * bands * chunks;
  int failed = 0;
#pragma omp parallel num_threads(nthreads)
  {
    float *ring = floats((size_t)Kt * hb * W * Cp);
    if (!ring) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int job = 0; job < jobs; job++) {
      if (!ring) continue;
      const int n = job / (bands * chunks), band = job / chunks % bands, ch = job % chunks;
      const int t0 = (int)((long)T * ch / chunks), t1 = (int)((long)T * (ch + 1) / chunks);
      const int r0 = (int)(band * hb), r1 = r0 + (int)hb < H ? r0 + (int)hb : H;
      const long pb = (long)(r1 - r0) * W;
      int made = t0 - pad > 0 ? t0 - pad : 0; /* the next frame whose 3x3 conv goes into the ring */
      for (int t = t0; t < t1; t++) {
        for (; made < T && made <= t + pad; made++)
          stem_xy(x + n * sx[0] + made * sx[2], sx[1], sx[3], sx[4], Cin, Hin, Win, s, Wxy, bxy, Cp,
                  ring + (long)(made % Kt) * hb * W * Cp, W, r0, r1 - r0);
        const int k0 = t - pad < 0 ? pad - t : 0, k1 = t + pad >= T ? T - 1 - t + pad : Kt - 1; /* taps inside */
        const float *frame[Kt];
        for (int k = k0; k <= k1; k++) frame[k] = ring + (long)((t - pad + k) % Kt) * hb * W * Cp;
        float *o = out + (((long)n * T + t) * P + (long)r0 * W) * ldo;
        switch (k1 - k0 + 1) { /* the tap count a constant in each case: its loop unrolled */
          case 1: stem_temporal(1, frame + k0, Wt + (long)k0 * Cp, bt, Cp, Cout, pb, o, ldo); break;
          case 2: stem_temporal(2, frame + k0, Wt + (long)k0 * Cp, bt, Cp, Cout, pb, o, ldo); break;
          case 3: stem_temporal(3, frame + k0, Wt + (long)k0 * Cp, bt, Cp, Cout, pb, o, ldo); break;
          case 4: stem_temporal(4, frame + k0, Wt + (long)k0 * Cp, bt, Cp, Cout, pb, o, ldo); break;
          case 5: stem_temporal(5, frame + k0, Wt + (long)k0 * Cp, bt, Cp, Cout, pb, o, ldo); break;
          default: stem_temporal(k1 - k0 + 1, frame + k0, Wt + (long)k0 * Cp, bt, Cp, Cout, pb, o, ldo);
        }
      }
    }
    free(ring);
  }
  return failed; /* 1: out of memory */
}

/* The channel vector width the library was built with: packed weights and internal buffers pad
   channels to a multiple of it. */
int d2plus1d_lanes(void) { return VW; }

/* Lets the loader check that it has the library it built. */
int d2plus1d_cpu_abi_version(void) { return 8; }
