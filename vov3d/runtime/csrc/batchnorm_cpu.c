/* Training BatchNorm on channels-last clips with few channels (MODEL.BATCHNORM_IMPL).

   A channels-last clip is M rows of C channels, one flat array in which the channel pattern repeats
   every C floats. PyTorch's CPU kernels vectorise along the channels of one row; with 20 or 40
   channels that leaves a scalar remainder in every row (20 = 16 + 4 with AVX-512) and measured
   2-3x slower than the same BN on NCTHW tensors (AMD EPYC, 2 threads, 2 x 20 x 16 x 28^2). Here
   the flat array is walked in blocks of L = lcm(C, VW) floats, whose channel pattern is the same in
   every block, so every load is a full vector and the per-channel parameters are L / VW vectors
   prepared once.

   Four passes, each parallel over blocks (OpenMP): statistics of x (sums of x - shift and its
   square in doubles, shift = a sample of each channel, so the sums do not cancel),
   y = x * a + b, and in the backward pass the sums of g and g * (x - mean), then
   dx = g * a + x * b + c. Built and loaded by vov3d/runtime/kernels.py. */

#include <stdlib.h>
#include "jobs.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));
#define LD(p) (*(const vf *)(p))
#define ST(p, v) (*(vf *)(p) = (v))
#define MAXV 64 /* vectors per block at most: C up to 64 * VW / gcd(C, VW) */
/* Sums are accumulated in doubles, element by element (as PyTorch's CPU BatchNorm does): float
   partial sums lost ~3% of the gradient of a 20-channel layer whose incoming gradient had a large
   common part (sum of g * (x - mean) is a small difference of large terms). */
typedef double vd __attribute__((vector_size(VW * 8), aligned(8)));


/* Floats per block, or 0 when C is too wide for the per-thread vectors. */
static int block_size(int C) {
  const int L = C / gcd(C, VW) * VW;
  return C > 0 && L / VW <= MAXV ? L : 0;
}

static void fill_pattern(float *pat, int L, int C, const float *per_channel) {
  for (int i = 0; i < L; i++) pat[i] = per_channel[i % C];
}

static void fold(const vd *s, const vd *q, int NV, int C, double *ls, double *lq) {
  for (int v = 0; v < NV; v++)
    for (int l = 0; l < VW; l++) {
      ls[(v * VW + l) % C] += s[v][l];
      lq[(v * VW + l) % C] += q[v][l];
    }
}

/* Per channel: sum of u and of u * w over the M rows, u = x - shift and w = u (statistics of x,
   g == NULL) or u = g, w = x - shift (gradient sums). Results in double. */
static int channel_sums(const float *x, const float *g, long M, int C, const float *shift, double *sum_u,
                        double *sum_uw, int nthreads) {
  const int L = block_size(C), NV = L / VW;
  if (!L) return 2;
  const long total = M * C, blocks = total / L;
  float pat[MAXV * VW];
  fill_pattern(pat, L, C, shift);
  if (nthreads < 1) nthreads = 1;
  /* One row of partial sums per thread, added in thread order afterwards: the same sums in the same
     order on every run (bit-exact resumes), which a critical section would not give. */
  double *partial = calloc((size_t)nthreads * 2 * C, sizeof(double));
  if (!partial) return 1;
#pragma omp parallel num_threads(nthreads)
  {
    vd s[MAXV], q[MAXV];
    int me = 0;
#ifdef _OPENMP
    me = omp_get_thread_num();
#endif
    double *ls = partial + (long)me * 2 * C, *lq = ls + C;
    for (int v = 0; v < NV; v++) s[v] = q[v] = (vd){0};
#pragma omp for schedule(static)
    for (long bl = 0; bl < blocks; bl++) {
      const float *xp = x + bl * L, *gp = g ? g + bl * L : 0;
      for (int v = 0; v < NV; v++) {
        const vd d = __builtin_convertvector(LD(xp + v * VW), vd) - __builtin_convertvector(LD(pat + v * VW), vd);
        const vd u = gp ? __builtin_convertvector(LD(gp + v * VW), vd) : d;
        s[v] += u;
        q[v] += u * d;
      }
    }
    fold(s, q, NV, C, ls, lq);
  }
  for (int c = 0; c < C; c++) {
    double a = 0.0, b = 0.0;
    for (int t = 0; t < nthreads; t++) {
      a += partial[(long)t * 2 * C + c];
      b += partial[(long)t * 2 * C + C + c];
    }
    sum_u[c] = a;
    sum_uw[c] = b;
  }
  free(partial);
  for (long i = blocks * L; i < total; i++) { /* the tail shorter than a block */
    const int c = (int)(i % C);
    const double d = (double)x[i] - shift[c], u = g ? g[i] : d;
    sum_u[c] += u;
    sum_uw[c] += u * d;
  }
  return 0;
}

/* Statistics: sum and sum of squares of x - shift per channel. */
int bn_stats(const float *x, long M, int C, const float *shift, double *sum, double *sumsq, int nthreads) {
  return channel_sums(x, 0, M, C, shift, sum, sumsq, nthreads);
}

/* Gradient sums: sum of g and of g * (x - mean) per channel. */
int bn_grad_sums(const float *g, const float *x, long M, int C, const float *mean, double *sum_g, double *sum_gx,
                 int nthreads) {
  return channel_sums(x, g, M, C, mean, sum_g, sum_gx, nthreads);
}

/* out = (u - cu) * a + [(v - cv) * b] + c per channel (v, cv, b may be NULL; cu NULL: 0): the
   forward (y = (x - mean) * scale + bias) and the input gradient (dx = g * scale + (x - mean) * b
   + c). Centering before scaling keeps a large mean from cancelling in float. */
int bn_apply(const float *u, const float *cu, const float *v, const float *cv, long M, int C, const float *a,
             const float *b, const float *c, float *out, int nthreads) {
  const int L = block_size(C), NV = L / VW;
  if (!L) return 2;
  const long total = M * C, blocks = total / L;
  float pa[MAXV * VW], pb[MAXV * VW], pc[MAXV * VW], pcu[MAXV * VW], pcv[MAXV * VW];
  fill_pattern(pa, L, C, a);
  fill_pattern(pc, L, C, c);
  for (int i = 0; i < L; i++) pcu[i] = cu ? cu[i % C] : 0.f;
  if (v) {
    fill_pattern(pb, L, C, b);
    fill_pattern(pcv, L, C, cv);
  }
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (long bl = 0; bl < blocks; bl++) {
    const float *up = u + bl * L, *vp = v ? v + bl * L : 0;
    float *o = out + bl * L;
    for (int k = 0; k < NV; k++) {
      vf r = (LD(up + k * VW) - LD(pcu + k * VW)) * LD(pa + k * VW) + LD(pc + k * VW);
      if (vp) r += (LD(vp + k * VW) - LD(pcv + k * VW)) * LD(pb + k * VW);
      ST(o + k * VW, r);
    }
  }
  for (long i = blocks * L; i < total; i++) {
    const int ch = (int)(i % C);
    out[i] = (u[i] - (cu ? cu[ch] : 0.f)) * a[ch] + c[ch] + (v ? (v[i] - cv[ch]) * b[ch] : 0.f);
  }
  return 0;
}

/* Lets the loader check that it has the library it built. */
int batchnorm_cpu_abi_version(void) { return 4; }
