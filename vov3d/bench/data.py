"""Data-loading benchmark (``tools/benchmark.py --mode data``): loaders against the raw decode rate.

For each of train and test it measures, with the same files, batch size and DATA_LOADER.NUM_WORKERS:

* the real loader (``construct_loader``): decode + sampling + resize/crop/flip + normalise + collate;
* the raw decode of the same clips: the same ``decode_frames`` calls (same frames, same seeks) and
  nothing else - the physical limit of the pipeline on this machine.

Train reports clips/s and ``train_vs_raw`` (goal >= 0.7). Test reports videos/s, views/s and decodes per
video (1: every view of a video is cut from one decode). The first batch of each run is not timed
(worker start-up). ``args.num_iters`` caps the timed batches per run (0: BENCHMARK.NUM_EPOCHS epochs);
``args.synthetic`` (kinetics | ssv2 | ssv1) first writes a realistic synthetic dataset (textured
340x256 / 320x240 videos) into ``args.synthetic_dir`` (default: a temporary folder) and points the
config at it.
"""

import logging
import tempfile
import time

import torch

from vov3d.datasets import loader as loader_lib
from vov3d.datasets import synthetic

logger = logging.getLogger(__name__)

# Realistic sizes of the released data (data-formats.md): Kinetics 256p-ish 30 fps 10 s clips,
# SSv2 240p 12 fps VP9, SSv1 100 px JPEG frames.
SYNTHETIC = {
    "kinetics": dict(width=340, height=256, fps=30, frames_range=(300, 300), codec="h264", pattern="texture",
                     annotations=("pyslowfast",), audio_every=0),
    "ssv2": dict(width=320, height=240, fps=12, frames_range=(40, 60)),
    "ssv1": dict(width=132, height=100, frames_range=(30, 45)),
}


class _RawDecode(torch.utils.data.Dataset):
    """The dataset's decode calls without transforms: returns the number of frames decoded."""

    def __init__(self, dataset, all_views):
        self.dataset, self.all_views = dataset, all_views

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        d = self.dataset
        if self.all_views:
            return d.decode_record(d.records[i], "all", d.num_clips).frames.shape[0]
        return d.decode_record(d.records[i], None, 1).frames.shape[0]


def _list_collate(batch):
    return batch


def _time(iterable, max_batches, count):
    """Returns (items, seconds, batches) over the batches after the first (worker start-up excluded)."""
    items, batches, start = 0, 0, None
    for batch in iterable:
        if start is None:
            start = time.perf_counter()
            continue
        items += count(batch)
        batches += 1
        if max_batches and batches >= max_batches:
            break
    return items, (time.perf_counter() - start) if start else 0.0, batches


def _epochs(loader, n):
    for epoch in range(n):
        loader_lib.shuffle_dataset(loader, epoch)
        yield from loader


def _raw_loader(dataset, all_views, batch_size, workers, shuffle):
    return torch.utils.data.DataLoader(_RawDecode(dataset, all_views), batch_size=batch_size, shuffle=shuffle,
                                       num_workers=workers, collate_fn=_list_collate,
                                       worker_init_fn=loader_lib._worker_init, drop_last=shuffle)


def _rate(items, seconds):
    return round(items / seconds, 2) if seconds > 0 else None


def make_benchmark_data(kind, root):
    """Writes a realistic synthetic dataset of `kind` for the benchmark; returns the SyntheticDataset."""
    split = {"train": 16, "val": 6, "test": 0}
    if kind == "kinetics":
        return synthetic.make_kinetics(root, videos_per_split=split, **SYNTHETIC[kind])
    if kind == "ssv2":
        return synthetic.make_ssv2(root, videos_per_split=split, **SYNTHETIC[kind])
    if kind == "ssv1":
        return synthetic.make_ssv1(root, videos_per_split=split, **SYNTHETIC[kind])
    raise ValueError(f"--synthetic must be kinetics, ssv2 or ssv1, got {kind!r}")


def run_data_benchmark(cfg, args) -> dict:
    """Measures the train and test loaders and the raw decode of the same clips; returns the figures."""
    kind = getattr(args, "synthetic", "") or ""
    if kind:
        root = getattr(args, "synthetic_dir", "") or tempfile.mkdtemp(prefix=f"vov3d_bench_{kind}_")
        logger.info("writing a synthetic %s dataset to %s", kind, root)
        data = make_benchmark_data(kind, root)
        cfg = cfg.clone()
        cfg.merge_from_list(data.cfg_opts() + ["TRAIN.DATASET", kind, "TEST.DATASET", kind])
    max_batches = int(getattr(args, "num_iters", 0) or 0)
    epochs = max(1, int(cfg.BENCHMARK.NUM_EPOCHS))
    workers = cfg.DATA_LOADER.NUM_WORKERS
    result = {"dataset": cfg.TRAIN.DATASET, "num_workers": workers, "decoding_backend": cfg.DATA.DECODING_BACKEND,
              "num_frames": cfg.DATA.NUM_FRAMES, "train_batch_size": cfg.TRAIN.BATCH_SIZE,
              "test_batch_size": cfg.TEST.BATCH_SIZE, "test_views": cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS,
              "torch_threads": torch.get_num_threads()}

    splits = getattr(args, "splits", None) or ("train", "test")
    if "train" in splits:
        train = loader_lib.construct_loader(cfg, "train")
        clips, secs, n = _time(_epochs(train, epochs), max_batches, lambda b: b[0][0].shape[0])
        raw = _raw_loader(train.dataset, False, train.batch_size, workers, True)
        raw_clips, raw_secs, _ = _time(_epochs(raw, epochs), max_batches, len)
        result["train"] = {"clips_per_s": _rate(clips, secs), "clips": clips, "batches": n, "seconds": round(secs, 2)}
        result["train_raw_decode"] = {"clips_per_s": _rate(raw_clips, raw_secs), "clips": raw_clips,
                                      "seconds": round(raw_secs, 2)}
        if result["train"]["clips_per_s"] and result["train_raw_decode"]["clips_per_s"]:
            result["train_vs_raw"] = round(result["train"]["clips_per_s"] / result["train_raw_decode"]["clips_per_s"], 3)
        del train
    if "test" in splits:
        test = loader_lib.construct_loader(cfg, "test")
        decodes = []

        def count(batch):
            decodes.extend(batch[3]["num_decodes"])
            return batch[0][0].shape[0]

        videos, secs, n = _time(_epochs(test, 1), max_batches, count)
        raw = _raw_loader(test.dataset, True, test.batch_size, workers, False)
        raw_videos, raw_secs, _ = _time(_epochs(raw, 1), max_batches, len)
        views = result["test_views"]
        result["test"] = {"videos_per_s": _rate(videos, secs), "views_per_s": _rate(videos * views, secs),
                          "videos": videos, "seconds": round(secs, 2),
                          "decodes_per_video": (sum(decodes) / len(decodes)) if decodes else None}
        result["test_raw_decode"] = {"videos_per_s": _rate(raw_videos, raw_secs), "videos": raw_videos,
                                     "seconds": round(raw_secs, 2)}
    for key in ("train", "train_raw_decode", "train_vs_raw", "test", "test_raw_decode"):
        if key in result:
            logger.info("data benchmark %s: %s", key, result[key])
    return result
