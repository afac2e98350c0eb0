/* Depthwise convolutions of channels-last clips for training and inference, forward and backward
   (MODEL.DEPTHWISE_IMPL kernel): the two depthwise convs of a D(2+1)D unit,

     spatial   1x3x3, padding 1, stride s (1 or 2), over the N*T frames of a clip
     temporal  3x1x1, padding 1, stride 1, over the T frames of each clip

   A channels-last clip is [N][T][H][W][C] floats. oneDNN runs these convs (as depthwise Conv2d)
   channel block by channel block with its weights reloaded per tap, and its backward passes, the
   larger part of the time, over the whole clip once per product: together they were a fifth of a
   VoV3D-M train step (AMD EPYC Zen 3, AVX2, 2 threads, 2x16x112^2). Here one channel vector's taps
   stay in registers while it walks a frame (the spatial convs) or a block of positions (the
   temporal ones), and the weight gradients are summed per thread in registers, then across threads.

   Weights are tap-major: spatial w [9][C] (tap (i, j) at i * 3 + j, i the row), temporal w [3][C]
   (taps t - 1, t, t + 1). The input gradient of a stride-1 conv is the forward conv of the output
   gradient with the taps reversed (the caller passes them reversed); a stride-2 one has its own
   loop (dw_spatial_input_grad). Any C: the last channel block of a row is a masked vector. Built by
   vov3d/runtime/kernels.py; called by vov3d/runtime/depthwise.py. Returns 0, or 1 when out of memory. */

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "jobs.h"
#include "vectors.h"

/* Loads and stores of channel block c: full vectors, or the first n lanes of the last block. `full`
   and `n` are constants in every specialised copy of a block function (always_inline). */
#define LDN(p) (full ? LD(p) : load_part(p, n))
#define STN(p, v) \
  do {                                    \
    if (full)                             \
      ST(p, v);                           \
    else                                  \
      store_part(p, v, n);                \
  } while (0)
/* An input load with the ReLU in front of the conv applied (relu_in, a constant in every copy). */
#define LDI(p) (relu_in ? relu_v(LDN(p)) : LDN(p))
/* acc where the ReLU in front passed its input (m: that input, at acc's position; NULL: no ReLU). */
#define MASKED(acc, m) ((m) ? (vf)((vi)(acc) & (vi)(LDN(m) > splat(0.f))) : (acc))
/* Calls BLOCK(c, full, n) for every channel block of a row of C channels. */
#define FOR_CHANNEL_BLOCKS(C, BLOCK)                   \
  for (int c_ = 0; c_ < (C); c_ += VW) {               \
    if (c_ + VW <= (C))                                \
      BLOCK(c_, 1, VW);                                \
    else                                               \
      BLOCK(c_, 0, (C) - c_);                          \
  }

static int thread_count(int nthreads) { return nthreads < 1 ? 1 : nthreads; }

static int thread_id(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/* dw[k][c] = sum over threads of part[thread][k][c]. */
static void sum_parts(const float *part, int nthreads, long size, float *dw) {
  for (long i = 0; i < size; i++) {
    float s = 0.f;
    for (int t = 0; t < nthreads; t++) s += part[t * size + i];
    dw[i] = s;
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Spatial 1x3x3                                                                               */
/* ------------------------------------------------------------------------------------------- */

/* One frame, channel block c: out [H][W][C] = conv(relu_in ? relu(in) : in [Hin][Win][C], w), padding 1,
   stride s, masked by `mask` (see MASKED; [H][W][C]) when given. The nine taps stay in registers;
   bounds are checked per row and at the edge columns only. */
static inline __attribute__((always_inline)) void spatial_block(const float *in, int Hin, int Win, int C,
                                                                const float *w, int s, float *out, int H,
                                                                int W, const float *mask, int c, int full,
                                                                int n, int relu_in) {
  const long row = (long)Win * C;
  vf k[9];
  for (int t = 0; t < 9; t++) k[t] = LDN(w + t * C + c);
  const vf z = splat(0.f);
  for (int h = 0; h < H; h++) {
    const int r = h * s - 1; /* the input row of the top taps */
    const float *mid = in + (long)(r + 1) * row + c;
    const float *top = r >= 0 ? mid - row : 0, *bot = r + 2 < Hin ? mid + row : 0;
    float *o = out + (long)h * W * C + c;
    const float *m = mask ? mask + (long)h * W * C + c : 0;
    for (int x = 0; x < W; x++) {
      const int q = x * s - 1; /* the input column of the left taps */
      const long a = (long)q * C;
      vf acc;
      if (q >= 0 && q + 2 < Win) {
        acc = k[3] * LDI(mid + a) + k[4] * LDI(mid + a + C) + k[5] * LDI(mid + a + 2 * C);
        if (top) acc += k[0] * LDI(top + a) + k[1] * LDI(top + a + C) + k[2] * LDI(top + a + 2 * C);
        if (bot) acc += k[6] * LDI(bot + a) + k[7] * LDI(bot + a + C) + k[8] * LDI(bot + a + 2 * C);
      } else { /* an edge column: the taps outside the frame are zeros */
        const int left = q >= 0, right = q + 2 < Win;
        acc = (left ? k[3] * LDI(mid + a) : z) + k[4] * LDI(mid + a + C) + (right ? k[5] * LDI(mid + a + 2 * C) : z);
        if (top)
          acc += (left ? k[0] * LDI(top + a) : z) + k[1] * LDI(top + a + C) + (right ? k[2] * LDI(top + a + 2 * C) : z);
        if (bot)
          acc += (left ? k[6] * LDI(bot + a) : z) + k[7] * LDI(bot + a + C) + (right ? k[8] * LDI(bot + a + 2 * C) : z);
      }
      STN(o + (long)x * C, MASKED(acc, m ? m + (long)x * C : 0));
    }
  }
}

/* y [F][H][W][C] = conv(x [F][Hin][Win][C], w [9][C]), padding 1, stride s; H = (Hin - 1) / s + 1. */
static void spatial_frame(const float *in, int Hin, int Win, int C, const float *w, int s, float *out, int H, int W,
                          const float *mask, int relu_in) {
#define BLOCK(c, full, n)                                                          \
  do {                                                                             \
    if (relu_in)                                                                   \
      spatial_block(in, Hin, Win, C, w, s, out, H, W, mask, c, full, n, 1);        \
    else                                                                           \
      spatial_block(in, Hin, Win, C, w, s, out, H, W, mask, c, full, n, 0);        \
  } while (0)
  FOR_CHANNEL_BLOCKS(C, BLOCK)
#undef BLOCK
}

int dw_spatial(const float *x, long F, int Hin, int Win, int C, const float *w, int s, float *y, int H, int W,
               int nthreads) {
  nthreads = thread_count(nthreads);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (long f = 0; f < F; f++) spatial_frame(x + f * Hin * Win * C, Hin, Win, C, w, s, y + f * H * W * C, H, W, 0, 0);
  return 0;
}

/* One frame, channel block c, stride 2: input position (2h + a, 2w + b), a, b in {0, 1}, gets the
   taps that reach it from output positions (h, w), (h, w + 1), (h + 1, w), (h + 1, w + 1):
     (2h, 2w): k4 g[h][w]                         (2h, 2w + 1): k3 g[h][w + 1] + k5 g[h][w]
     (2h + 1, 2w): k1 g[h + 1][w] + k7 g[h][w]    (2h + 1, 2w + 1): k0 g[h + 1][w + 1] + k2 g[h + 1][w]
                                                                    + k6 g[h][w + 1] + k8 g[h][w]
   (k = i * 3 + j, tap row i, column j; g outside the output is zero), masked by `mask` ([Hin][Win][C],
   see MASKED) when given. */
static inline __attribute__((always_inline)) void spatial_input_grad_s2_block(const float *g, int H, int W, int C,
                                                                             const float *w, float *dx, int Hin,
                                                                             int Win, const float *mask, int c,
                                                                             int full, int n) {
  vf k[9];
  for (int t = 0; t < 9; t++) k[t] = LDN(w + t * C + c);
  const vf z = splat(0.f);
  for (int h = 0; h < H; h++) {
    const float *g0 = g + (long)h * W * C + c, *g1 = h + 1 < H ? g0 + (long)W * C : 0;
    float *even = dx + (long)(2 * h) * Win * C + c, *odd = 2 * h + 1 < Hin ? even + (long)Win * C : 0;
    const float *me = mask ? mask + (long)(2 * h) * Win * C + c : 0, *mo = me && odd ? me + (long)Win * C : 0;
    for (int x = 0; x < W; x++) {
      const long a = (long)x * C;
      const int right = x + 1 < W;
      const vf g00 = LDN(g0 + a), g01 = right ? LDN(g0 + a + C) : z;
      const vf g10 = g1 ? LDN(g1 + a) : z, g11 = g1 && right ? LDN(g1 + a + C) : z;
      STN(even + 2 * a, MASKED(k[4] * g00, me ? me + 2 * a : 0));
      if (2 * x + 1 < Win) STN(even + 2 * a + C, MASKED(k[3] * g01 + k[5] * g00, me ? me + 2 * a + C : 0));
      if (odd) {
        STN(odd + 2 * a, MASKED(k[1] * g10 + k[7] * g00, mo ? mo + 2 * a : 0));
        if (2 * x + 1 < Win)
          STN(odd + 2 * a + C, MASKED(k[0] * g11 + k[2] * g10 + k[6] * g01 + k[8] * g00, mo ? mo + 2 * a + C : 0));
      }
    }
  }
}

/* dx [F][Hin][Win][C] = the input gradient of dw_spatial with stride 2 for output gradient g
   [F][H][W][C] (of stride 1: dw_spatial of g with the taps reversed). */
static void spatial_input_grad_s2_frame(const float *g, int H, int W, int C, const float *w, float *dx, int Hin,
                                        int Win, const float *mask) {
#define BLOCK(c, full, n) spatial_input_grad_s2_block(g, H, W, C, w, dx, Hin, Win, mask, c, full, n)
  FOR_CHANNEL_BLOCKS(C, BLOCK)
#undef BLOCK
}

int dw_spatial_input_grad(const float *g, long F, int H, int W, int C, const float *w, float *dx, int Hin, int Win,
                          int nthreads) {
  nthreads = thread_count(nthreads);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (long f = 0; f < F; f++) spatial_input_grad_s2_frame(g + f * H * W * C, H, W, C, w, dx + f * Hin * Win * C, Hin, Win, 0);
  return 0;
}

/* One frame, channel block c: part[tap][c] += sum over output positions of g * the input under tap
   (relu(input) with relu_in). */
static inline __attribute__((always_inline)) void spatial_weight_grad_block(
    const float *g, int H, int W, int C, const float *in, int Hin, int Win, int s, float *part, int c, int full,
    int n, int relu_in) {
  const long row = (long)Win * C;
  vf acc[9];
  for (int t = 0; t < 9; t++) acc[t] = splat(0.f);
  for (int h = 0; h < H; h++) {
    const int r = h * s - 1;
    const float *mid = in + (long)(r + 1) * row + c;
    const float *top = r >= 0 ? mid - row : 0, *bot = r + 2 < Hin ? mid + row : 0;
    const float *gr = g + (long)h * W * C + c;
    for (int x = 0; x < W; x++) {
      const int q = x * s - 1;
      const long a = (long)q * C;
      const vf gv = LDN(gr + (long)x * C);
      if (q >= 0 && q + 2 < Win) {
        acc[3] += gv * LDI(mid + a), acc[4] += gv * LDI(mid + a + C), acc[5] += gv * LDI(mid + a + 2 * C);
        if (top) acc[0] += gv * LDI(top + a), acc[1] += gv * LDI(top + a + C), acc[2] += gv * LDI(top + a + 2 * C);
        if (bot) acc[6] += gv * LDI(bot + a), acc[7] += gv * LDI(bot + a + C), acc[8] += gv * LDI(bot + a + 2 * C);
      } else {
        const int left = q >= 0, right = q + 2 < Win;
        for (int i = 0; i < 3; i++) {
          const float *rp = i == 0 ? top : i == 1 ? mid : bot;
          if (!rp) continue;
          if (left) acc[3 * i] += gv * LDI(rp + a);
          acc[3 * i + 1] += gv * LDI(rp + a + C);
          if (right) acc[3 * i + 2] += gv * LDI(rp + a + 2 * C);
        }
      }
    }
  }
  for (int t = 0; t < 9; t++) STN(part + t * C + c, LDN(part + t * C + c) + acc[t]);
}

static void spatial_weight_grad_frame(const float *g, int H, int W, int C, const float *in, int Hin, int Win, int s,
                                      float *part, int relu_in) {
#define BLOCK(c, full, n)                                                          \
  do {                                                                             \
    if (relu_in)                                                                   \
      spatial_weight_grad_block(g, H, W, C, in, Hin, Win, s, part, c, full, n, 1); \
    else                                                                           \
      spatial_weight_grad_block(g, H, W, C, in, Hin, Win, s, part, c, full, n, 0); \
  } while (0)
  FOR_CHANNEL_BLOCKS(C, BLOCK)
#undef BLOCK
}

/* dw [9][C] = the weight gradient of dw_spatial for output gradient g [F][H][W][C] and input x. */
int dw_spatial_weight_grad(const float *g, const float *x, long F, int H, int W, int C, int Hin, int Win, int s,
                           float *dw, int nthreads) {
  nthreads = thread_count(nthreads);
  float *part = calloc((size_t)nthreads * 9 * C, sizeof(float));
  if (!part) return 1;
#pragma omp parallel num_threads(nthreads)
  {
    float *mine = part + (long)thread_id() * 9 * C;
#pragma omp for schedule(static)
    for (long f = 0; f < F; f++) spatial_weight_grad_frame(g + f * H * W * C, H, W, C, x + f * Hin * Win * C, Hin, Win, s, mine, 0);
  }
  sum_parts(part, nthreads, 9L * C, dw);
  free(part);
  return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Temporal 3x1x1                                                                              */
/* ------------------------------------------------------------------------------------------- */

#define CHUNK 64 /* positions per block of a frame: four frames' blocks of them stay in L1 */

/* Positions [p0, p1) of frame t: out = w0 x[t - 1] + w1 x[t] + w2 x[t + 1] (zeros outside the clip). */
static inline __attribute__((always_inline)) void temporal_block(const float *prev, const float *cur,
                                                                 const float *next, const float *w, int C,
                                                                 float *out, long p0, long p1, int c, int full,
                                                                 int n) {
  const vf k0 = LDN(w + c), k1 = LDN(w + C + c), k2 = LDN(w + 2 * C + c);
  for (long p = p0; p < p1; p++) {
    const long a = p * C + c;
    vf acc = k1 * LDN(cur + a);
    if (prev) acc += k0 * LDN(prev + a);
    if (next) acc += k2 * LDN(next + a);
    STN(out + a, acc);
  }
}

static void temporal_frame(const float *prev, const float *cur, const float *next, const float *w, int C, float *out,
                           long p0, long p1) {
#define BLOCK(c, full, n) temporal_block(prev, cur, next, w, C, out, p0, p1, c, full, n)
  FOR_CHANNEL_BLOCKS(C, BLOCK)
#undef BLOCK
}

/* y [N][T][P][C] = conv(x, w [3][C]) along T, padding 1 (P = H * W positions a frame). */
int dw_temporal(const float *x, int N, int T, long P, int C, const float *w, float *y, int nthreads) {
  nthreads = thread_count(nthreads);
  const long chunks = (P + CHUNK - 1) / CHUNK, frame = P * C;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (long job = 0; job < (long)N * T * chunks; job++) {
    const long f = job / chunks, p0 = job % chunks * CHUNK, p1 = p0 + CHUNK < P ? p0 + CHUNK : P;
    const int t = (int)(f % T);
    const float *cur = x + f * frame, *prev = t > 0 ? cur - frame : 0, *next = t + 1 < T ? cur + frame : 0;
    temporal_frame(prev, cur, next, w, C, y + f * frame, p0, p1);
  }
  return 0;
}

static inline __attribute__((always_inline)) void temporal_weight_grad_block(const float *g, const float *prev,
                                                                             const float *cur, const float *next,
                                                                             int C, float *part, long p0, long p1,
                                                                             int c, int full, int n) {
  vf a0 = splat(0.f), a1 = splat(0.f), a2 = splat(0.f);
  for (long p = p0; p < p1; p++) {
    const long a = p * C + c;
    const vf gv = LDN(g + a);
    a1 += gv * LDN(cur + a);
    if (prev) a0 += gv * LDN(prev + a);
    if (next) a2 += gv * LDN(next + a);
  }
  STN(part + c, LDN(part + c) + a0);
  STN(part + C + c, LDN(part + C + c) + a1);
  STN(part + 2 * C + c, LDN(part + 2 * C + c) + a2);
}

static void temporal_weight_grad_frame(const float *g, const float *prev, const float *cur, const float *next, int C,
                                       float *part, long p0, long p1) {
#define BLOCK(c, full, n) temporal_weight_grad_block(g, prev, cur, next, C, part, p0, p1, c, full, n)
  FOR_CHANNEL_BLOCKS(C, BLOCK)
#undef BLOCK
}

/* dw [3][C] = the weight gradient of dw_temporal for output gradient g [N][T][P][C] and input x. */
int dw_temporal_weight_grad(const float *g, const float *x, int N, int T, long P, int C, float *dw, int nthreads) {
  nthreads = thread_count(nthreads);
  float *part = calloc((size_t)nthreads * 3 * C, sizeof(float));
  if (!part) return 1;
  const long chunks = (P + CHUNK - 1) / CHUNK, frame = P * C;
#pragma omp parallel num_threads(nthreads)
  {
    float *mine = part + (long)thread_id() * 3 * C;
#pragma omp for schedule(static)
    for (long job = 0; job < (long)N * T * chunks; job++) {
      const long f = job / chunks, p0 = job % chunks * CHUNK, p1 = p0 + CHUNK < P ? p0 + CHUNK : P;
      const int t = (int)(f % T);
      const float *cur = x + f * frame, *prev = t > 0 ? cur - frame : 0, *next = t + 1 < T ? cur + frame : 0;
      temporal_weight_grad_frame(g + f * frame, prev, cur, next, C, mine, p0, p1);
    }
  }
  sum_parts(part, nthreads, 3L * C, dw);
  free(part);
  return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Spatial then temporal in one pass: a D(2+1)D unit's b1 and b2                                */
/* ------------------------------------------------------------------------------------------- */

/* y = temporal(spatial(x)) never stores z = spatial(x): each thread walks consecutive frames of a
   clip with the three frames of z the temporal taps read (t - 1, t, t + 1) in a ring, so z lives in
   the cache; the backward pass computes z again the same way. Against the two convs one after the
   other this saves writing z, reading it twice and keeping it for the backward pass, and in the
   backward pass writing and reading z's gradient twice. With `relu_in` the pair takes the ReLU in
   front of it too (a unit's a_relu): it reads relu(x) and masks dx where x <= 0, saving the ReLU's
   pass over x and its backward pass. */

/* The frames [t0, t1) of clip `job`'s run. */
static void job_frames(long job, int parts, int T, int *n, int *t0, int *t1) {
  const int part = (int)(job % parts);
  *n = (int)(job / parts);
  *t0 = (int)((long)T * part / parts);
  *t1 = (int)((long)T * (part + 1) / parts);
}

/* Fills the ring of z frames (slot t % 3) of one clip up to frame `last`, from frame *next on. */
static void fill_ring(const float *x, int Hin, int Win, int C, const float *ws, int s, float *ring, int H, int W,
                      int *next, int last, int relu_in) {
  const long fin = (long)Hin * Win * C, fout = (long)H * W * C;
  for (; *next <= last; (*next)++)
    spatial_frame(x + *next * fin, Hin, Win, C, ws, s, ring + (*next % 3) * fout, H, W, 0, relu_in);
}

/* One pass over every clip, runs of frames split among the threads: the forward pass (g NULL: y =
   temporal(spatial(x)) into y) or the backward pass (g the output gradient: dx, and the weight
   gradients summed per thread into spart [threads][9][C] and tpart [threads][3][C]). Returns 1 when
   out of memory. */
static int pair_pass(const float *x, const float *g, int N, int T, int Hin, int Win, int C, const float *ws,
                     const float *ws_rev, int s, const float *wt, const float *wt_rev, float *y, float *dx,
                     float *spart, float *tpart, int H, int W, int relu_in, int nthreads) {
  const int parts = runs_per_clip(N, T, nthreads);
  const long fin = (long)Hin * Win * C, fout = (long)H * W * C, P = (long)H * W;
  int failed = 0;
#pragma omp parallel num_threads(nthreads)
  {
    float *ring = malloc(sizeof(float) * (g ? 4 : 3) * fout); /* z of frames t - 1, t, t + 1; dz */
    if (!ring) {
#pragma omp atomic write
      failed = 1;
    }
    float *dz = ring ? ring + 3 * fout : 0, *sp = 0, *tp = 0;
    if (g) sp = spart + (long)thread_id() * 9 * C, tp = tpart + (long)thread_id() * 3 * C;
#pragma omp for schedule(static)
    for (long job = 0; job < (long)N * parts; job++) {
      if (!ring) continue;
      int n, t0, t1;
      job_frames(job, parts, T, &n, &t0, &t1);
      const float *xc = x + n * T * fin;
      int next = t0 > 0 ? t0 - 1 : 0;
      for (int t = t0; t < t1; t++) {
        fill_ring(xc, Hin, Win, C, ws, s, ring, H, W, &next, t + 1 < T ? t + 1 : T - 1, relu_in);
        const float *zp = t > 0 ? ring + (t - 1) % 3 * fout : 0, *zt = ring + t % 3 * fout;
        const float *zn = t + 1 < T ? ring + (t + 1) % 3 * fout : 0;
        const long frame = (long)n * T + t;
        if (!g) {
          for (long p0 = 0; p0 < P; p0 += CHUNK)
            temporal_frame(zp, zt, zn, wt, C, y + frame * fout, p0, p0 + CHUNK < P ? p0 + CHUNK : P);
          continue;
        }
        const float *gt = g + frame * fout, *gp = t > 0 ? gt - fout : 0, *gn = t + 1 < T ? gt + fout : 0;
        for (long p0 = 0; p0 < P; p0 += CHUNK) {
          const long p1 = p0 + CHUNK < P ? p0 + CHUNK : P;
          temporal_frame(gp, gt, gn, wt_rev, C, dz, p0, p1); /* dz = the temporal conv's input gradient */
          temporal_weight_grad_frame(gt, zp, zt, zn, C, tp, p0, p1);
        }
        const float *mask = relu_in ? xc + t * fin : 0;
        if (dx && s == 1)
          spatial_frame(dz, H, W, C, ws_rev, 1, dx + frame * fin, Hin, Win, mask, 0);
        else if (dx)
          spatial_input_grad_s2_frame(dz, H, W, C, ws, dx + frame * fin, Hin, Win, mask);
        spatial_weight_grad_frame(dz, H, W, C, xc + t * fin, Hin, Win, s, sp, relu_in);
      }
    }
    free(ring);
  }
  return failed;
}

/* y [N][T][H][W][C] = temporal(spatial(x [N][T][Hin][Win][C] (relu(x) with relu_in), ws, stride s), wt). */
int dw_spatial_temporal(const float *x, int N, int T, int Hin, int Win, int C, const float *ws, int s, const float *wt,
                        float *y, int H, int W, int relu_in, int nthreads) {
  return pair_pass(x, 0, N, T, Hin, Win, C, ws, 0, s, wt, 0, y, 0, 0, 0, H, W, relu_in, thread_count(nthreads));
}

/* The gradients of dw_spatial_temporal for output gradient g: dx (input), dws [9][C] and dwt [3][C]
   (weights). ws_rev / wt_rev: the taps in reverse order; relu_in as in dw_spatial_temporal. */
int dw_spatial_temporal_backward(const float *g, const float *x, int N, int T, int Hin, int Win, int C,
                                 const float *ws, const float *ws_rev, int s, const float *wt, const float *wt_rev,
                                 float *dx, float *dws, float *dwt, int H, int W, int relu_in, int nthreads) {
  nthreads = thread_count(nthreads);
  float *spart = calloc((size_t)nthreads * 9 * C, sizeof(float)), *tpart = calloc((size_t)nthreads * 3 * C, sizeof(float));
  int failed = !spart || !tpart;
  if (!failed)
    failed = pair_pass(x, g, N, T, Hin, Win, C, ws, ws_rev, s, wt, wt_rev, 0, dx, spart, tpart, H, W, relu_in, nthreads);
  if (!failed) {
    if (dws) sum_parts(spart, nthreads, 9L * C, dws);
    if (dwt) sum_parts(tpart, nthreads, 3L * C, dwt);
  }
  free(spart);
  free(tpart);
  return failed;
}

int depthwise_cpu_abi_version(void) { return 3; }
