"""Walks the splits a run reads and reports bad labels and what is missing, undecodable or too short, before
a long run.

Labels are checked when a dataset is built (vov3d.datasets.base.check_labels): a bad one is reported as the
same one line a run would stop with. Every listed video is decoded completely (colour conversion skipped), so the frame counts are the
true ones, not what headers declare; frame folders have every JPEG decoded (``quick``: first and last
only). Used by ``tools/check_dataset.py``.
"""

import logging
import statistics

import torch

from vov3d.datasets.build import build_dataset
from vov3d.datasets.decode import DecodeError, FrameFolder, decode_frames

logger = logging.getLogger(__name__)


class _Probe(torch.utils.data.Dataset):
    """Decodes record i fully; returns (video_id, path, frames or -1, declared seconds, error)."""

    def __init__(self, records, backend, quick):
        self.records, self.backend, self.quick = records, backend, quick

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        if isinstance(r.source, FrameFolder) and not self.quick:
            index_fn = lambda n: range(n)  # noqa: E731  every JPEG must decode
        else:
            index_fn = lambda n: [0, n - 1] if n else []  # noqa: E731
        try:
            out = decode_frames(r.source, index_fn=index_fn, backend=self.backend, threads=1, min_frames=1)
            return r.video_id, r.path, out.num_frames, out.info.duration, ""
        except DecodeError as e:
            return r.video_id, r.path, -1, None, e.reason


def splits_read_by_run(cfg):
    """Returns the splits tools/run_net.py reads with this config: train (TRAIN.ENABLE), val (TRAIN.ENABLE
    and TRAIN.EVAL_PERIOD > 0, as vov3d.engine.train decides), test (TEST.ENABLE)."""
    splits = []
    if cfg.TRAIN.ENABLE:
        splits.append("train")
        if cfg.TRAIN.EVAL_PERIOD > 0:
            splits.append("val")
    if cfg.TEST.ENABLE:
        splits.append("test")
    return splits


def check_dataset(cfg, split, num_workers=None, quick=False, limit=0, skip_annotations=()):
    """Returns a report dict of one split (counts, frame statistics, every problem found).

    Returns None without decoding when the split's annotation file is in skip_annotations.
    """
    name = cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET
    dataset = build_dataset(name, cfg, split)
    if dataset.annotation_path in skip_annotations:
        return None
    records = dataset.records[:limit] if limit else dataset.records
    probe = _Probe(records, dataset.backend, quick)
    workers = cfg.DATA_LOADER.NUM_WORKERS if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(probe, batch_size=None, num_workers=workers)
    problems = [{"video_id": r.video_id, "path": r.path, "problem": "missing"} for r in dataset.missing]
    counts = []
    for k, (vid, path, frames, duration, error) in enumerate(loader, 1):
        if error:
            problems.append({"video_id": vid, "path": path, "problem": "undecodable", "reason": error})
        elif frames < dataset.min_frames:
            problems.append({"video_id": vid, "path": path, "problem": "too few frames", "frames": frames,
                             "reason": f"{frames} frames, {dataset.min_frames} needed (DATA.MIN_VIDEO_FRAMES)"})
        if frames >= 0:
            counts.append(frames)
        if k % 1000 == 0:
            logger.info("checked %d / %d videos, %d problems so far", k, len(records), len(problems))
    labels = [r.label for r in dataset.records + dataset.missing]
    return {
        "dataset": name,
        "split": split,
        "annotation": dataset.annotation_path,
        "num_classes": dataset.num_classes,
        "labels": ({"min": min(labels), "max": max(labels), "unlabelled": labels.count(-1)} if labels else {}),
        "media": dataset.media_dir,
        "listed": len(dataset.records) + len(dataset.missing),
        "checked": len(records),
        "missing": len(dataset.missing),
        "undecodable": sum(p["problem"] == "undecodable" for p in problems),
        "too_few_frames": sum(p["problem"] == "too few frames" for p in problems),
        "frames": ({"min": min(counts), "median": statistics.median(counts), "max": max(counts)} if counts else {}),
        "problems": problems,
    }


def format_report(report, max_lines=50):
    """Returns the report as text: one line per problem (the first max_lines) and a summary line."""
    lines = []
    for p in report["problems"][:max_lines]:
        lines.append(f"{p['problem'].upper():>14}  {p['path'] or p['video_id']}"
                     + (f"  ({p['reason']})" if p.get("reason") else ""))
    if len(report["problems"]) > max_lines:
        lines.append(f"... and {len(report['problems']) - max_lines} more problems")
    f = report["frames"]
    frames = f"frames per video min {f['min']} / median {f['median']} / max {f['max']}" if f else "no decodable video"
    lab = report["labels"]
    labels = (f"labels {lab['min']}..{lab['max']} of MODEL.NUM_CLASSES {report['num_classes']}"
              + (f" ({lab['unlabelled']} unlabelled)" if lab["unlabelled"] else "")) if lab else "no labels"
    lines.append(
        f"{report['dataset']} {report['split']}: {report['listed']} listed in {report['annotation']}, "
        f"{report['checked']} checked, {report['missing']} missing, {report['undecodable']} undecodable, "
        f"{report['too_few_frames']} with too few frames; {labels}; {frames}"
    )
    return "\n".join(lines)
