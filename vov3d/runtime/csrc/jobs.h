/* How the CPU kernels of this directory split clips among threads. */
#ifndef VOV3D_JOBS_H
#define VOV3D_JOBS_H

static inline int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

/* Runs of consecutive frames to cut each clip's T frames into when `pieces` independent pieces (clips,
   or clips x bands of rows) share `nthreads`: pieces * runs is a multiple of the threads where T allows
   (two clips on two threads: one run each; one clip: its two halves). A run recomputes what its first
   frame needs of the frame before it, so the fewer runs, the less recomputation. */
static inline int runs_per_clip(int pieces, int T, int nthreads) {
  int runs = nthreads / gcd(pieces, nthreads);
  if (runs > T) runs = T;
  return runs < 1 ? 1 : runs;
}

#endif /* VOV3D_JOBS_H */
