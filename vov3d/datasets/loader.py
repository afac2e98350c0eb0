"""Data loaders (PySlowFast API): ``construct_loader(cfg, split)``, ``shuffle_dataset(loader, epoch)``.

* Per-process batch: ``TRAIN.BATCH_SIZE // world_size`` (train, val) or ``TEST.BATCH_SIZE // world_size``
  (test); world size from ``torch.distributed`` when initialised, else 1.
* Train uses :class:`TrainSampler` for any world size: DistributedSampler's order (shuffled by RNG_SEED and
  the epoch, ``set_epoch`` via :func:`shuffle_dataset`), indices tagged with the epoch and seed
  (:class:`SampleIndex`) so each sample's augmentation draws are a pure function of (seed, epoch, index)
  whatever the number of loader workers, and ``skip_batches`` to resume mid-epoch on the same order.
  Val/test use :class:`ShardSampler` - rank r gets videos r, r + W, r + 2W, ... with **no padding
  duplicates**, so gathered per-video results are identical for any world size.
* Train drops the last partial batch; val/test keep every video.
* ``pin_memory`` only when ``cfg.NUM_GPUS > 0`` (and DATA_LOADER.PIN_MEMORY). Any
  ``DATA_LOADER.NUM_WORKERS`` (0 = in-process); train workers are persistent.

Batches (:func:`collate`): ``(inputs, labels, indices, meta)`` - ``inputs`` a list (one per pathway) of
stacked float tensors ``(N, C, T, H, W)`` (test: ``(N, V, C, T, H, W)``), ``labels`` / ``indices`` int64
``(N,)``, and ``meta`` a **dict of lists**, one value per sample: ``meta["video_id"][i]``,
``meta["valid"][i]``, ``meta["error"][i]``, ``meta["bad_samples"][i]`` (list of (path, reason)), ...
"""

import atexit
import collections
import logging
import multiprocessing
import signal

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, default_collate

from vov3d.datasets.base import PreallocatedBatch
from vov3d.datasets.build import build_dataset
from vov3d.datasets.sampling import SampleIndex

logger = logging.getLogger(__name__)


def world_info():
    """Returns (rank, world size) of torch.distributed, or (0, 1) when it is not initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardSampler(Sampler):
    """Gives each rank a disjoint, in-order slice (rank::world) of the dataset, without padding."""

    def __init__(self, dataset, rank=None, world_size=None):
        r, w = world_info()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        self.num_samples = len(dataset)

    def __iter__(self):
        return iter(range(self.rank, self.num_samples, self.world_size))

    def __len__(self):
        return len(range(self.rank, self.num_samples, self.world_size))


class TrainSampler(DistributedSampler):
    """DistributedSampler (any world size, 1 included) yielding :class:`SampleIndex` values; after
    ``skip_batches(n, batch_size)`` the next pass starts past the epoch's first n batches (one pass only)."""

    def __init__(self, dataset, num_replicas, rank, seed):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0

    def skip_batches(self, num_batches, batch_size):
        """Makes the next pass skip `num_batches` batches of `batch_size` (a mid-epoch resume); returns None."""
        self._skip = int(num_batches) * int(batch_size)

    def __iter__(self):
        skip, self._skip = self._skip, 0
        order = list(super().__iter__())[skip:]
        return iter([SampleIndex(i, self.epoch, self.seed) for i in order])


def collate(batch):
    """Returns (inputs list of stacked tensors, labels, indices, meta dict of per-sample lists)."""
    inputs, labels, indices, metas = zip(*batch)
    if isinstance(batch, PreallocatedBatch):
        stacked = [batch.inputs]  # the clips were written into it already (dataset.__getitems__)
    else:
        # default_collate stacks straight into shared memory inside workers (no extra copy to send).
        stacked = [default_collate([x[p] for x in inputs]) for p in range(len(inputs[0]))]
    meta = {key: [m[key] for m in metas] for key in metas[0]}
    return stacked, torch.as_tensor(labels, dtype=torch.long), torch.as_tensor(indices, dtype=torch.long), meta


def _worker_init(_):
    # Each worker is one of NUM_WORKERS processes sharing the cores: intra-op threads would only contend.
    torch.set_num_threads(1)
    # A scheduler signals every process of the job: the main process decides when to stop (after the
    # current iteration, vov3d.engine.signals) and ends its workers then; a worker must not die first.
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def _kill_leftover_workers():
    # Loader workers ignore SIGTERM (above), so multiprocessing's own exit handler, which terminates
    # daemonic children with SIGTERM and then joins them, would wait forever for a worker whose loader
    # was never shut down (e.g. one still referenced by an error's traceback). Registered after
    # multiprocessing's handler, this one runs first. PyTorch's SIGCHLD handler would report each kill.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for p in multiprocessing.active_children():
        if p.daemon:
            p.kill()


_EXIT_HANDLER = []


def construct_loader(cfg, split, multigrid_schedule=None):
    """Returns the torch DataLoader of split train | val | test (see the module docstring); with
    MULTIGRID.LONG_CYCLE / SHORT_CYCLE the train loader's batches come from a MultigridBatchSampler
    (`multigrid_schedule`: the long-cycle schedule of vov3d.datasets.multigrid.prepare_config)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    name = cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET
    dataset = build_dataset(name, cfg, split)
    rank, world = world_info()
    total = cfg.TEST.BATCH_SIZE if split == "test" else cfg.TRAIN.BATCH_SIZE
    batch_size = total // world
    if batch_size < 1:
        raise ValueError(f"batch size {total} is smaller than the world size {world}")
    train = split == "train"
    sampler = None
    if train:
        sampler = TrainSampler(dataset, world, rank, cfg.RNG_SEED)
    elif world > 1:
        sampler = ShardSampler(dataset, rank, world)
    if train and len(dataset) // world < batch_size:
        logger.warning("%s train: %d videos per process is less than one batch of %d; epochs will be empty",
                       name, len(dataset) // world, batch_size)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    batching = {"batch_size": batch_size, "shuffle": train and sampler is None, "sampler": sampler, "drop_last": train}
    if train and (cfg.MULTIGRID.LONG_CYCLE or cfg.MULTIGRID.SHORT_CYCLE):
        from vov3d.datasets.multigrid import MultigridBatchSampler

        batching = {"batch_sampler": MultigridBatchSampler(sampler, batch_size, cfg, multigrid_schedule)}
    if workers > 0 and not _EXIT_HANDLER:
        _EXIT_HANDLER.append(atexit.register(_kill_leftover_workers))
    return DataLoader(
        dataset,
        **batching,
        num_workers=workers,
        pin_memory=bool(cfg.DATA_LOADER.PIN_MEMORY) and cfg.NUM_GPUS > 0,
        collate_fn=collate,
        worker_init_fn=_worker_init,
        persistent_workers=train and workers > 0,
        # Its own generator: the workers' base seed is not drawn from (and does not advance) the global
        # torch RNG, which a resumed run restores from the checkpoint.
        generator=torch.Generator().manual_seed(cfg.RNG_SEED + rank),
    )


def _sampler(loader):
    return loader.sampler if loader.batch_sampler is None else loader.batch_sampler.sampler


def shuffle_dataset(loader, cur_epoch, skip_batches=0):
    """Sets the epoch of the loader's sampler (a new shuffle per epoch) and, for a mid-epoch resume, makes
    its next pass skip the epoch's first `skip_batches` batches; returns None."""
    # A multigrid batch sampler owns the epoch (its long-cycle shape) and counts skipped batches itself.
    sampler = loader.batch_sampler if hasattr(loader.batch_sampler, "skip_batches") else _sampler(loader)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(cur_epoch)
    if skip_batches:
        if not hasattr(sampler, "skip_batches"):
            raise ValueError(f"cannot resume mid-epoch with a {type(sampler).__name__}")
        sampler.skip_batches(skip_batches, loader.batch_size)


def summarize_bad_samples(bad_samples):
    """Returns a one-line summary of (path, reason) failures (e.g. meta["bad_samples"] of an epoch), "" if none."""
    bad_samples = list(bad_samples)
    if not bad_samples:
        return ""
    reasons = collections.Counter(reason.split(":")[0] for _, reason in bad_samples)
    paths = list(dict.fromkeys(p for p, _ in bad_samples))
    return (f"{len(bad_samples)} bad samples substituted ({len(paths)} files; "
            + ", ".join(f"{r}: {n}" for r, n in reasons.most_common())
            + f"); first: {', '.join(paths[:3])}")
