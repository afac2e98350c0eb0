"""Multigrid training (Wu et al., CVPR 2020) with PySlowFast's MULTIGRID.* keys and semantics.

* Long cycle (MULTIGRID.LONG_CYCLE): training is split into phases of base shapes (frames T, crop S) from
  LONG_CYCLE_FACTORS; the per-process batch grows so that batch x T x S^2 stays about the default's, and the
  learning rate of a phase is its batch factor times the step's (SOLVER.LRS rebuilt from the schedule,
  SOLVER.STEPS / MAX_EPOCH too, as PySlowFast's init_multigrid). Needs SOLVER.LR_POLICY steps_with_relative_lrs.
* Short cycle (MULTIGRID.SHORT_CYCLE): iterations cycle through three spatial sizes, SHORT_CYCLE_FACTORS x the
  default crop, then the current crop, with batches round((S / s)^2) times larger for the smaller ones.
  Alone, it stretches SOLVER.STEPS and MAX_EPOCH by EPOCH_FACTOR (more epochs, fewer iterations each).

Every index the batch sampler yields carries its clip's shape (:class:`ShapedIndex`): the dataset decodes
T frames (dense sampling: at a rate drawn between DATA.SAMPLING_RATE and the rate that keeps the default
clip's span, PySlowFast's get_random_sampling_rate) and crops S, with the scale jitter scaled by S / the
default crop. The order of indices is TrainSampler's, so the batches of an epoch are a pure function of
(seed, epoch, phase) and a mid-epoch resume skips exactly the batches already done.

Not reproduced: PySlowFast's switch to sub-batch / synchronised BN over MULTIGRID.BN_BASE_SIZE clips when the
batch grows (vov3d has no sub-batch BN): BN statistics are over the whole per-process batch.
"""

import contextlib

from torch.utils.data import Sampler

from vov3d.datasets.sampling import SampleIndex


class ShapedIndex(SampleIndex):
    """A SampleIndex that also says the clip's shape: `frames`, `crop`, `max_rate` (0: DATA.SAMPLING_RATE)."""

    def __new__(cls, index, frames, crop, max_rate=0):
        obj = super().__new__(cls, int(index), index.epoch, index.seed)
        obj.frames, obj.crop, obj.max_rate = int(frames), int(crop), int(max_rate)
        return obj


def long_cycle_schedule(cfg):
    """Returns PySlowFast's long-cycle schedule: [(step index, [batch factor, frames, crop], end epoch), ...]."""
    m, steps = cfg.MULTIGRID, list(cfg.SOLVER.STEPS)
    t0, s0 = cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE
    default_size = float(t0 * s0 * s0)
    avg_bs, all_shapes = [], []
    for t_factor, s_factor in m.LONG_CYCLE_FACTORS:
        base_t, base_s = int(round(t0 * t_factor)), int(round(s0 * s_factor))
        shapes = [[base_t, s0 * m.SHORT_CYCLE_FACTORS[0]], [base_t, s0 * m.SHORT_CYCLE_FACTORS[1]], [base_t, base_s]] \
            if m.SHORT_CYCLE else [[base_t, base_s]]
        shapes = [[int(round(default_size / (t * s * s))), t, s] for t, s in shapes]
        avg_bs.append(sum(s[0] for s in shapes) / len(shapes))
        all_shapes.append(shapes)
    total_iters, schedule = 0.0, []
    for step_index in range(len(steps) - 1):
        step_epochs = steps[step_index + 1] - steps[step_index]
        for k, shapes in enumerate(all_shapes):
            cur_epochs = step_epochs * avg_bs[k] / sum(avg_bs)
            total_iters += cur_epochs / avg_bs[k]
            schedule.append((step_index, shapes[-1], cur_epochs))
    iter_saving = steps[-1] / total_iters
    ft_epochs = (cfg.SOLVER.MAX_EPOCH - steps[-1]) / iter_saving * avg_bs[-1]
    schedule.append((len(steps) - 1, all_shapes[-1][-1], ft_epochs))
    scale = cfg.SOLVER.MAX_EPOCH * m.EPOCH_FACTOR / sum(s[-1] for s in schedule)
    out, total = [], 0.0
    for step_index, shape, epochs in schedule:
        total += epochs * scale
        out.append((step_index, shape, int(round(total))))
    return out


def apply_multigrid_solver(cfg):
    """Sets SOLVER.STEPS / LRS / MAX_EPOCH for the multigrid schedule (PySlowFast's init_multigrid) on a
    defrosted `cfg`; returns the long-cycle schedule or None."""
    m, s = cfg.MULTIGRID, cfg.SOLVER
    if m.LONG_CYCLE:
        schedule = long_cycle_schedule(cfg)
        steps = [0] + [e[-1] for e in schedule]
        steps[-1] = (steps[-2] + steps[-1]) // 2  # PySlowFast: the last phase's LR drop halfway through it
        # PySlowFast: GAMMA ** step x batch factor; its multigrid configs have LRS[i] = GAMMA ** i, which vov3d
        # reads directly (any LRS works).
        lrs = [s.LRS[e[0]] * e[1][0] for e in schedule]
        lrs = lrs[:-1] + [lrs[-2], lrs[-1]]
        # Short schedules can round two boundaries to the same epoch: drop the empty interval (PySlowFast's
        # step lookup skips it too), so STEPS stay increasing.
        keep = [i for i in range(len(steps)) if i + 1 == len(steps) or steps[i] < steps[i + 1]]
        s.STEPS, s.LRS, s.MAX_EPOCH = [steps[i] for i in keep], [lrs[i] for i in keep], schedule[-1][-1]
        return schedule
    if m.SHORT_CYCLE:
        s.STEPS = [int(x * m.EPOCH_FACTOR) for x in s.STEPS]
        s.MAX_EPOCH = int(s.MAX_EPOCH * m.EPOCH_FACTOR)
    return None


def prepare_config(cfg):
    """Returns (cfg, long-cycle schedule or None): with MULTIGRID.LONG_CYCLE / SHORT_CYCLE, a copy of `cfg`
    whose SOLVER.STEPS / LRS / MAX_EPOCH follow the multigrid schedule; else `cfg` itself."""
    if not (cfg.MULTIGRID.LONG_CYCLE or cfg.MULTIGRID.SHORT_CYCLE):
        return cfg, None
    cfg = cfg.clone()
    cfg.defrost()
    schedule = apply_multigrid_solver(cfg)
    return cfg, schedule


@contextlib.contextmanager
def without_short_cycles(loader):
    """Runs the body with the loader's batches all of the current long-cycle shape (precise BN, as
    PySlowFast's precise-BN loader); a no-op for other loaders."""
    bs = loader.batch_sampler
    if not isinstance(bs, MultigridBatchSampler):
        yield
        return
    bs.short_cycle_on = False
    try:
        yield
    finally:
        bs.short_cycle_on = True


def shape_at_epoch(schedule, epoch):
    """Returns the long-cycle base shape [batch factor, frames, crop] of `epoch`."""
    for entry in schedule:
        if epoch < entry[-1]:
            return entry[1]
    return schedule[-1][1]


class MultigridBatchSampler(Sampler):
    """Batches of ShapedIndex from a TrainSampler: the long-cycle shape of the epoch (set_epoch) and, with
    short cycles, three shapes in turn per iteration. skip_batches() resumes mid-epoch."""

    def __init__(self, sampler, batch_size, cfg, schedule=None):
        self.sampler, self.base_batch = sampler, int(batch_size)
        m = cfg.MULTIGRID
        self.default_t, self.default_s = int(cfg.DATA.NUM_FRAMES), int(cfg.DATA.TRAIN_CROP_SIZE)
        self.rate = int(cfg.DATA.SAMPLING_RATE)
        self.short_factors = list(m.SHORT_CYCLE_FACTORS) if m.SHORT_CYCLE else []
        self.schedule = schedule
        self.short_cycle_on = True  # off while precise BN reads the loader (PySlowFast's precise-BN loader)
        self._skip = 0
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Sets the epoch of the index order and of the long-cycle shape; returns None."""
        self.sampler.set_epoch(epoch)
        factor, t, s = shape_at_epoch(self.schedule, epoch) if self.schedule else (1, self.default_t, self.default_s)
        self.batch, self.frames, self.crop = self.base_batch * int(factor), int(t), int(s)

    def shapes(self):
        """Returns the (batch size, frames, crop) of the iterations of one short cycle (one entry without)."""
        if not (self.short_factors and self.short_cycle_on):
            return [(self.batch, self.frames, self.crop)]
        out = []
        for f in self.short_factors:
            crop = int(round(f * self.default_s))
            out.append((self.batch * int(round((self.crop / crop) ** 2)), self.frames, crop))
        return out + [(self.batch, self.frames, self.crop)]

    def skip_batches(self, num_batches, batch_size=None):
        """Makes the next pass skip its first `num_batches` batches; returns None."""
        self._skip = int(num_batches)

    def __iter__(self):
        skip, self._skip = self._skip, 0
        shapes, order = self.shapes(), list(self.sampler)
        max_rate = self.rate * (self.default_t // self.frames) if self.frames < self.default_t else 0
        pos, k = 0, 0
        while True:
            size, t, s = shapes[k % len(shapes)]
            if pos + size > len(order):
                return  # the last partial batch is dropped, as for plain training
            if k >= skip:
                yield [ShapedIndex(i, t, s, max_rate) for i in order[pos : pos + size]]
            pos, k = pos + size, k + 1

    def __len__(self):
        shapes, n, pos, k = self.shapes(), len(self.sampler), 0, 0
        while pos + shapes[k % len(shapes)][0] <= n:
            pos, k = pos + shapes[k % len(shapes)][0], k + 1
        return k


def iterations_per_epoch(loader, epoch):
    """Returns the number of training iterations of `epoch` (long-cycle phases change it)."""
    bs = loader.batch_sampler
    if isinstance(bs, MultigridBatchSampler):
        bs.set_epoch(epoch)
    return len(loader)


def is_multigrid_eval_epoch(schedule, cur_epoch, eval_freq):
    """Returns True when PySlowFast evaluates (or checkpoints) after `cur_epoch` of a long-cycle schedule:
    EVAL_FREQ times per phase, the last epoch of each phase included."""
    prev = 0
    for entry in schedule:
        if cur_epoch < entry[-1]:
            period = max((entry[-1] - prev) // eval_freq + 1, 1)
            return (entry[-1] - 1 - cur_epoch) % period == 0
        prev = entry[-1]
    return False
