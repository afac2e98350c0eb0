"""Kinetics (registered as ``kinetics``): trimmed clips read directly (mp4 / webm / mkv / avi).

Accepted annotation files in ``DATA.PATH_TO_DATA_DIR`` (or its ``annotations/`` folder), detected by
content:

* the release CSVs, with header ``label,youtube_id,time_start,time_end[,split][,is_cc]`` (quoted labels
  with spaces or commas, times like ``417`` or ``"417.0"``, test files without the label column are
  fine). Names tried per split: ``train.csv``; ``val.csv`` / ``validate.csv`` / ``validation.csv``;
  then any ``*_<split>.csv`` / ``*-<split>.csv`` (``kinetics_400_val.csv``, ``kinetics-600_val.csv``, ...).
  Class index = the sorted class names of the train file (torchvision / MMAction2 / OpenCV order).
  Clips are found by name, ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the common downloaders'
  naming; ``<youtube_id>.<ext>`` also matches) in ``DATA.PATH_PREFIX`` or up to two folder levels below
  it: flat ``<prefix>/<split>/``, per-class ``<prefix>/<split>/<class>/`` (spaces or ``_``),
  ``<prefix>/<class>/``, ``<prefix>/videos_val/<class>/``, ...
* PySlowFast lists ``{train,val}.csv``: ``path<SEP>label`` per line, no header, ``SEP`` =
  ``DATA.PATH_LABEL_SEPARATOR``; paths are relative to PATH_PREFIX. A path may itself contain the
  separator (the label is the last field); a line with a path only gets label -1. Class names are the
  clips' parent folders when they map one-to-one to labels, else the label numbers.

Splits: ``train`` reads the train file; ``val`` and ``test`` the validation file (as in the papers);
``DATA.{TRAIN,VAL,TEST}_ANNOTATION`` name another file (e.g. ``test.csv``).

Sampling: dense clips of NUM_FRAMES frames at SAMPLING_RATE / TARGET_FPS seconds, from frame timestamps
(see vov3d.datasets.sampling).
"""

import csv
import logging
import os
import re

from vov3d.datasets.base import VideoClipDataset, VideoRecord
from vov3d.datasets.build import DATASET_REGISTRY

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validate", "validation")}
SPLIT_ALIASES["test"] = SPLIT_ALIASES["val"]


def is_release_csv(path):
    """Returns True when the file starts with the release header (has a youtube_id column)."""
    with open(path, "r", encoding="utf-8") as f:
        return "youtube_id" in f.readline()


def read_release_csv(path):
    """Returns [(label text or "", youtube_id, start seconds, end seconds)] from a release CSV."""
    rows = []
    with open(path, "r", encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                rows.append(((row.get("label") or "").strip(), row["youtube_id"].strip(),
                             int(float(row["time_start"])), int(float(row["time_end"]))))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{n}: cannot read {dict(row)} ({e})") from None
    return rows


def read_path_label_list(path, sep=" "):
    """Returns [(path, label)] from a PySlowFast `path<sep>label` list (label -1 for a path-only line)."""
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f.read().splitlines():
            line = line.strip()
            if not line:
                continue
            head, _, tail = line.rpartition(sep)
            if head and re.fullmatch(r"-?\d+", tail.strip()):
                rows.append((head.strip(), int(tail)))
            else:
                rows.append((line, -1))
    return rows


def index_videos(root, max_depth=2):
    """Returns {file stem: [paths]} of the video files in root and up to max_depth folder levels below."""
    found = {}
    root = os.path.abspath(root)
    for folder, dirs, files in os.walk(root):
        depth = 0 if folder == root else os.path.relpath(folder, root).count(os.sep) + 1
        if depth >= max_depth:
            dirs[:] = []
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, []).append(os.path.join(folder, name))
    return found


@DATASET_REGISTRY.register()
class Kinetics(VideoClipDataset):
    """Kinetics clips with the release CSVs or PySlowFast path-label lists (see the module docstring)."""

    name = "kinetics"
    sampling = "dense"

    def _candidates(self, split):
        aliases = SPLIT_ALIASES[split]
        names = [f"{a}.csv" for a in aliases]
        pattern = re.compile(r".*[_-](%s)\.csv$" % "|".join(aliases))
        for sub in ("", "annotations"):
            folder = os.path.join(self.data_dir, sub)
            if os.path.isdir(folder):
                names += sorted(n for n in os.listdir(folder) if pattern.match(n) and n not in names)
        return names

    def _train_file(self):
        """Returns the train annotation file (it fixes the class index of every split), or None."""
        if self.split == "train":
            return self.annotation_path
        override = self.cfg.DATA.TRAIN_ANNOTATION
        if override:
            path = override if os.path.isabs(override) else os.path.join(self.data_dir, override)
            return path if os.path.isfile(path) else None
        try:
            return self.find_file(self._candidates("train"), ("", "annotations"))
        except FileNotFoundError:
            return None

    def _load(self):
        self.annotation_path = self.find_annotation(self._candidates(self.split), ("", "annotations"))
        if is_release_csv(self.annotation_path):
            return self._load_release()
        return self._load_list()

    def _load_release(self):
        rows = read_release_csv(self.annotation_path)
        train = self._train_file()
        source = rows if train is None or train == self.annotation_path else read_release_csv(train)
        names = sorted({r[0] for r in source if r[0]})
        index = {c: i for i, c in enumerate(names)}
        unknown = sorted({r[0] for r in rows if r[0] and r[0] not in index})
        if unknown:
            raise ValueError(f"{self.annotation_path}: classes not in the train file {train}: {unknown[:5]}")
        videos = index_videos(self.media_dir)
        aliases = set(SPLIT_ALIASES[self.split])
        records = []
        for label, ytid, start, end in rows:
            paths = videos.get(f"{ytid}_{start:06d}_{end:06d}") or videos.get(ytid) or [None]
            # The same clip in several places (e.g. a replacement copy): prefer the one under this split.
            in_split = [p for p in paths if p and aliases & set(os.path.relpath(p, self.media_dir).split(os.sep))]
            records.append(VideoRecord(f"{ytid}_{start:06d}_{end:06d}", index[label] if label else -1,
                                       (in_split or paths)[0]))
        return records, names

    def _load_list(self):
        sep = self.cfg.DATA.PATH_LABEL_SEPARATOR
        rows = read_path_label_list(self.annotation_path, sep)
        train = self._train_file()
        source = rows if train is None or train == self.annotation_path or is_release_csv(train) \
            else read_path_label_list(train, sep)
        records = [VideoRecord(os.path.splitext(os.path.basename(p))[0], label, os.path.join(self.media_dir, p))
                   for p, label in rows]
        return records, self._list_class_names(source)

    @staticmethod
    def _list_class_names(rows):
        num = max((label for _, label in rows), default=-1) + 1
        folders = {}
        for path, label in rows:
            if label >= 0:
                folders.setdefault(label, set()).add(os.path.basename(os.path.dirname(path)))
        names = [next(iter(folders[i])) if len(folders.get(i, ())) == 1 else str(i) for i in range(num)]
        if len(set(names)) != len(names) or "" in names:
            names = [str(i) for i in range(num)]
        return names
