"""What every vov3d video dataset shares: splits, paths, missing files, sampling, bad data, item format.

A dataset subclass only reads its annotation layout (``_load``) into :class:`VideoRecord` rows and says
how it samples time (``sampling = "segment" | "dense"``); everything below is common.

Items (see vov3d.datasets.loader for batching)
    train / val: ``(inputs, label, index, meta)`` - ``inputs`` is ``[float32 (C, T, H, W)]``; val is one
    deterministic view (sampling view 0 of 1, centre crop of TEST_CROP_SIZE after resizing the short
    side to TEST_CROP_SIZE). A bad video (missing, empty, truncated, undecodable, too few frames) is
    replaced by another index - random for train, the next one for val - at most
    ``DATA.MAX_BAD_SAMPLE_RETRIES`` times; ``index`` is the sample actually returned and
    ``meta["bad_samples"]`` lists the ``(path, reason)`` failures met on the way.

    test: one item per video with all views from one decode - ``inputs`` is ``[float32 (V, C, T, H, W)]``,
    ``V = NUM_ENSEMBLE_VIEWS * NUM_SPATIAL_CROPS``, clip-major (``view = clip * num_crops + crop``). A bad
    video is not substituted: its views are zeros and ``meta["valid"]`` is False, ``meta["error"]`` says why.

    ``meta`` always holds: ``video_id`` (str), ``path`` (str), ``valid`` (bool), ``error`` (str, "" when
    valid), ``bad_samples`` (list of (path, reason)), ``num_decodes`` (decodes spent on this item).

Labels are ints; -1 means "no label" (e.g. an unlabelled test annotation file).
"""

import dataclasses
import logging
import os
import random
from typing import List, Union

import torch

from vov3d.datasets import sampling
from vov3d.datasets.decode import DecodeError, FrameFolder, decode_frames, resolve_backend
from vov3d.datasets.transforms import ClipTransform
from vov3d.runtime.layout import clip_memory_format, empty_clip_batch

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_ANNOTATION_KEYS = {"train": "DATA.TRAIN_ANNOTATION", "val": "DATA.VAL_ANNOTATION", "test": "DATA.TEST_ANNOTATION"}

# Bad files already logged by this process: each is reported once, not once per epoch.
_REPORTED_BAD = set()


class UnusableDatasetError(RuntimeError):
    """The data cannot feed the run at all (no listed video exists, or every substitute is bad too)."""


@dataclasses.dataclass
class VideoRecord:
    video_id: str
    label: int
    source: Union[str, FrameFolder, None]  # video file, frame folder, or None when it could not be resolved
    line: int = 0  # where the annotation file lists it (1-based line, or entry for JSON; 0: not from a file)

    @property
    def path(self):
        if isinstance(self.source, FrameFolder):
            return self.source.path
        return self.source or ""


def report_bad(path, reason, what="bad video"):
    """Logs a bad file once per process; returns (path, reason)."""
    if path not in _REPORTED_BAD:
        _REPORTED_BAD.add(path)
        logger.warning("%s %s: %s", what, path, reason)
    return (str(path), reason)


def check_labels(records, num_classes, annotation_path, unlabelled_ok):
    """Raises ValueError naming file, line and value of the first label outside [0, num_classes)
    (-1, "no label", is accepted when unlabelled_ok): a bad label must stop a run before its first step,
    not as an IndexError (or a device-side assert) mid-epoch."""
    bad = [r for r in records if not (0 <= r.label < num_classes or (r.label == -1 and unlabelled_ok))]
    if bad:
        first = bad[0]
        if not first.line:
            where = f"{annotation_path} ({first.video_id})"
        elif annotation_path.endswith(".json"):
            where = f"{annotation_path} (entry {first.line}, id {first.video_id})"
        else:
            where = f"{annotation_path}:{first.line}"
        what = "no label in a training list" if first.label == -1 else \
            f"label {first.label} is outside [0, {num_classes}) (MODEL.NUM_CLASSES)"
        more = f"; {len(bad) - 1} more such lines" if len(bad) > 1 else ""
        raise ValueError(f"{where}: {what}{more}")


class VideoClipDataset(torch.utils.data.Dataset):
    """Base class of the registered datasets; subclasses implement ``_load`` and set ``sampling``."""

    sampling = "segment"  # segment (Something-Something) | dense (Kinetics)
    # Channel order the official loader of this dataset decoded (OpenCV JPEG frames: BGR); with
    # DATA.REVERSE_INPUT_CHANNEL it decides what the model sees (vov3d.datasets.transforms).
    official_bgr = False
    name = "video"

    def __init__(self, cfg, split, data_dir=None, media_dir=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.cfg = cfg
        self.split = split
        self.data_dir = data_dir or cfg.DATA.PATH_TO_DATA_DIR
        if not self.data_dir or not os.path.isdir(self.data_dir):
            raise FileNotFoundError(
                f"{self.name}: annotation folder {self.data_dir!r} does not exist (set DATA.PATH_TO_DATA_DIR)"
            )
        self.media_dir = media_dir or cfg.DATA.PATH_PREFIX or self.data_dir
        if not os.path.isdir(self.media_dir):
            raise FileNotFoundError(f"{self.name}: media folder {self.media_dir!r} does not exist (set DATA.PATH_PREFIX)")

        d = cfg.DATA
        self.num_frames = int(d.NUM_FRAMES)
        self.num_clips = int(cfg.TEST.NUM_ENSEMBLE_VIEWS)
        self.num_crops = int(cfg.TEST.NUM_SPATIAL_CROPS)
        self.backend = resolve_backend(d.DECODING_BACKEND)
        self.view_offset = d.SS_TEST_VIEW_OFFSET
        self.max_retries = int(d.MAX_BAD_SAMPLE_RETRIES)
        # Official sampling repeats frames of a video shorter than its clip (config/defaults.py).
        self.min_frames = 1 if d.MIN_VIDEO_FRAMES < 0 else max(int(d.MIN_VIDEO_FRAMES), 1)
        self.decode_threads = int(d.DECODE_THREADS)
        self.transform = ClipTransform(cfg, official_bgr=self.official_bgr)
        if d.TEMPORAL_SAMPLING != "auto":
            if d.TEMPORAL_SAMPLING not in ("segment", "dense"):
                raise ValueError(f"DATA.TEMPORAL_SAMPLING must be auto, segment or dense, got {d.TEMPORAL_SAMPLING!r}")
            self.sampling = d.TEMPORAL_SAMPLING

        records, self.class_names = self._load()
        self.num_classes = int(cfg.MODEL.NUM_CLASSES)
        check_labels(records, self.num_classes, self.annotation_path, unlabelled_ok=split != "train")
        self.records, self.missing = self._drop_missing(records)
        if not self.records:
            raise UnusableDatasetError(
                f"{self.name} {split}: none of the {len(records)} listed videos exists under {self.media_dir!r} "
                "(check DATA.PATH_PREFIX)"
            )
        logger.info("%s %s: %d videos, %d classes (annotations %s, media %s)", self.name, split,
                    len(self.records), len(self.class_names), self.annotation_path, self.media_dir)

    # ----------------------------------------------------------------------------------------- #
    # For subclasses
    # ----------------------------------------------------------------------------------------- #
    annotation_path = ""

    def _load(self):
        """Returns (list of VideoRecord, class names in index order); sets self.annotation_path."""
        raise NotImplementedError

    def find_annotation(self, candidates, search_dirs=("", "labels")):
        """Returns the split's annotation file: the DATA.<SPLIT>_ANNOTATION override or the first candidate found."""
        key = _ANNOTATION_KEYS[self.split]
        override = self.cfg.DATA[key.split(".")[1]]
        if override:
            path = override if os.path.isabs(override) else os.path.join(self.data_dir, override)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{self.name} {self.split}: annotation file {path!r} not found (set by {key})")
            return path
        return self.find_file(candidates, search_dirs, f"the {self.split} annotation file (or set {key})")

    def find_file(self, candidates, search_dirs=("", "labels"), what="annotation file"):
        """Returns the first existing data_dir/<search dir>/<candidate>; FileNotFoundError listing what was tried."""
        tried = []
        for name in candidates:
            for sub in search_dirs:
                path = os.path.join(self.data_dir, sub, name)
                if os.path.isfile(path):
                    return path
                tried.append(path)
        raise FileNotFoundError(
            f"{self.name} {self.split}: {what} not found in DATA.PATH_TO_DATA_DIR={self.data_dir!r}; tried "
            + ", ".join(tried)
        )

    def release_subdir(self, name):
        """Returns media_dir/name when the released folder sits inside PATH_PREFIX, else media_dir."""
        inner = os.path.join(self.media_dir, name)
        return inner if os.path.isdir(inner) else self.media_dir

    # ----------------------------------------------------------------------------------------- #
    # Public
    # ----------------------------------------------------------------------------------------- #
    def __len__(self):
        return len(self.records)

    @property
    def num_videos(self):
        return len(self.records)

    @property
    def video_ids(self) -> List[str]:
        return [r.video_id for r in self.records]

    @property
    def labels(self) -> List[int]:
        return [r.label for r in self.records]

    @property
    def num_views(self):
        return self.num_clips * self.num_crops if self.split == "test" else 1

    def __getitem__(self, index):
        if self.split == "test":
            return self._test_item(index)
        return self._clip_item(index)

    # ----------------------------------------------------------------------------------------- #
    # Internals
    # ----------------------------------------------------------------------------------------- #
    def _drop_missing(self, records):
        listings = {}

        def exists(path):
            folder, name = os.path.split(path)
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(folder))  # one listing per folder, not one stat per video
                except OSError:
                    listings[folder] = set()
            return name in listings[folder]

        kept, missing = [], []
        for r in records:
            if isinstance(r.source, FrameFolder) and r.source.files is not None:
                # Frame lists: the folder of the first frame (one listing of the frames root, not one per video).
                probe = os.path.dirname(r.source.files[0]) if r.source.files else None
            else:
                probe = r.path or None
            (kept if probe and exists(probe) else missing).append(r)
        if missing:
            shown = ", ".join(r.path or f"<{r.video_id}: no file found>" for r in missing[:5])
            logger.warning("%s %s: %d of %d listed videos are missing on disk and skipped (first %d: %s)",
                           self.name, self.split, len(missing), len(records), min(5, len(missing)), shown)
        return kept, missing

    def _threads(self):
        if self.decode_threads:
            return self.decode_threads
        # Inside loader workers the workers already fill the cores; extra decoder threads only contend.
        return 1 if torch.utils.data.get_worker_info() is not None else 0

    def decode_record(self, record, view=None, num_views=1, rng=random, num_frames=None, rate=None):
        """Returns the untransformed DecodedFrames of a record's clip: a random train clip (view None),
        view `view` of `num_views`, or every view of num_views in one decode (view "all"); `num_frames` and
        the dense sampling `rate` default to DATA.NUM_FRAMES / DATA.SAMPLING_RATE (multigrid sets them)."""
        if record.source is None:
            raise DecodeError(record.path or record.video_id, "missing file")
        T = num_frames or self.num_frames
        rate = int(rate or self.cfg.DATA.SAMPLING_RATE)
        if self.sampling == "segment":
            if view == "all":
                fn = lambda n: sampling.segment_views(n, T, num_views, self.view_offset)  # noqa: E731
            else:
                fn = lambda n: sampling.segment_indices(n, T, view, num_views, self.view_offset, rng)  # noqa: E731
            kw = {"index_fn": fn}
        elif isinstance(record.source, FrameFolder):
            # Frames have no timestamps: dense clips are SAMPLING_RATE frames apart.

            def fn(n):
                if view == "all":
                    times = sampling.dense_views(0.0, n, T, rate, 1.0, num_views)
                else:
                    times = sampling.dense_times(0.0, n, T, rate, 1.0, view, num_views, rng)
                return [min(int(t), n - 1) for t in times]

            kw = {"index_fn": fn}
        else:
            d = self.cfg.DATA
            args = (T, rate, float(d.TARGET_FPS))
            if view == "all":
                fn = lambda info: sampling.dense_views(info.start, info.duration, *args, num_views)  # noqa: E731
            else:
                fn = lambda info: sampling.dense_times(info.start, info.duration, *args, view, num_views, rng)  # noqa: E731
            kw = {"times_fn": fn}
        return decode_frames(record.source, backend=self.backend, threads=self._threads(),
                             min_frames=self.min_frames, cache_mb=self.cfg.DATA.DECODED_CACHE_MB, **kw)

    def _train_shape(self, index, rng):
        """Returns (frames, sampling rate, crop) of a train clip: the config's, or a multigrid ShapedIndex's
        (its rate drawn between DATA.SAMPLING_RATE and the long cycle's, as PySlowFast)."""
        frames = getattr(index, "frames", None)
        if frames is None:
            return None, None, None
        rate = int(self.cfg.DATA.SAMPLING_RATE)
        if index.max_rate > rate:
            rate = rng.randint(rate, index.max_rate)
        return frames, rate, index.crop

    def _meta(self, record, bad, valid=True, error="", decodes=1):
        return {"video_id": record.video_id, "path": record.path, "valid": valid, "error": error,
                "bad_samples": bad, "num_decodes": decodes}

    def clip_shape(self, index=None):
        """Returns the shape of one item's clip tensor: (C, T, S, S), or (V, C, T, S, S) for test (train:
        the shape a multigrid ShapedIndex asks for)."""
        t = self.transform
        if self.split == "train":
            frames, crop = getattr(index, "frames", self.num_frames), getattr(index, "crop", t.train_crop)
            return (3, frames, crop, crop)
        if self.split == "val":
            return (3, self.num_frames, t.test_crop, t.test_crop)
        return (self.num_clips * self.num_crops, 3, self.num_frames, t.test_crop, t.test_crop)

    def __getitems__(self, indices):
        """Returns the items of a batch, their clips written straight into one batch tensor.

        DataLoader calls this in place of __getitem__ per index; collate then hands the batch tensor on
        without stacking (in a worker it lives in shared memory, so it reaches the main process without a
        copy: at test time a batch is hundreds of MB).
        """
        layout = clip_memory_format(self.cfg)  # the model's layout, as the runtime picked it
        batch = empty_clip_batch((len(indices),) + self.clip_shape(indices[0] if indices else None), layout)
        return PreallocatedBatch([self._item(i, batch[k]) for k, i in enumerate(indices)], batch)

    def _item(self, index, out):
        return self._test_item(index, out) if self.split == "test" else self._clip_item(index, out)

    def _clip_item(self, index, out=None):
        bad = []
        # One stream per item, seeded by (seed, epoch, index) under the train sampler: the clip, its crop and
        # flip and any substitute are the same whichever worker draws them, before or after a resume.
        rng = sampling.sample_rng(index)
        for attempt in range(self.max_retries + 1):
            record = self.records[index]
            try:
                if self.split == "train":
                    frames, rate, crop = self._train_shape(index, rng)
                    decoded = self.decode_record(record, None, 1, rng, num_frames=frames, rate=rate)
                    clip = self.transform.train(decoded.ordered(), rng, out=out, crop=crop)
                else:
                    views_out = None if out is None else out.unsqueeze(0)
                    clip = self.transform.eval_views(self.decode_record(record, 0, 1), 1, 1, out=views_out)[0]
                return [clip], record.label, index, self._meta(record, bad, decodes=attempt + 1)
            except DecodeError as e:
                bad.append(report_bad(e.path, e.reason, f"{self.name} {self.split}: bad video, substituted:"))
                index = rng.randrange(len(self)) if self.split == "train" else (index + 1) % len(self)
        raise UnusableDatasetError(
            f"{self.name} {self.split}: {len(bad)} bad videos in a row (DATA.MAX_BAD_SAMPLE_RETRIES="
            f"{self.max_retries}); is the data readable? Run tools/check_dataset.py. Failures: "
            + "; ".join(f"{p}: {r}" for p, r in bad)
        )

    def _test_item(self, index, out=None):
        record = self.records[index]
        try:
            decoded = self.decode_record(record, "all", self.num_clips)
            views = self.transform.eval_views(decoded, self.num_clips, self.num_crops, out=out)
            meta = self._meta(record, [])
        except DecodeError as e:
            report_bad(e.path, e.reason, f"{self.name} test: video excluded:")
            views = torch.zeros(self.clip_shape()) if out is None else out.zero_()
            meta = self._meta(record, [], valid=False, error=e.reason)  # excluded, not substituted
        return [views], record.label, index, meta


class PreallocatedBatch(list):
    """A batch's items (a list) plus ``inputs``: the one tensor their clips were written into."""

    def __init__(self, items, inputs):
        super().__init__(items)
        self.inputs = inputs
