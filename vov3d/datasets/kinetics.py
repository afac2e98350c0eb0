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
* lists without a header, one video per line, fields separated by ``DATA.PATH_LABEL_SEPARATOR``
  (a path may itself contain the separator; paths are relative to PATH_PREFIX):

  - ``path label``: PySlowFast's ``{train,val,test}.csv`` and MMAction2's video lists
    (``*_{train,val}_list_videos.txt``); a line with a path only gets label -1;
  - ``frame_dir total_frames label``: MMAction2's rawframe lists (``*_{train,val}_list_rawframes.txt``);
    frames ``frame_dir/<DATA.FRAME_TEMPLATE>`` numbered from 1 (MMAction2 extractions: ``img_{:05d}.jpg``).

  Anything else (several labels on a line, a frame offset, JSON) stops with one line saying the format is
  not supported. Class names are the clips' parent folders when they map one-to-one to labels, else the
  label numbers.

Splits: ``train`` reads the train file, ``val`` the validation file; ``test`` reads PySlowFast's ``test.csv``
when the folder has one (as PySlowFast does), else the validation file (as the papers test). The log says
which file each split reads; ``DATA.{TRAIN,VAL,TEST}_ANNOTATION`` name another file.

Sampling: dense clips of NUM_FRAMES frames at SAMPLING_RATE / TARGET_FPS seconds, from frame timestamps
(see vov3d.datasets.sampling).
"""

import csv
import logging
import os
import re

from vov3d.datasets.base import VideoClipDataset, VideoRecord
from vov3d.datasets.build import DATASET_REGISTRY
from vov3d.datasets.decode import FrameFolder

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validate", "validation")}
SPLIT_ALIASES["test"] = SPLIT_ALIASES["val"]


def is_release_csv(path):
    """Returns True when the file starts with the release header (has a youtube_id column)."""
    with open(path, "r", encoding="utf-8") as f:
        return "youtube_id" in f.readline()


def read_release_csv(path):
    """Returns [(label text or "", youtube_id, start seconds, end seconds, line)] from a release CSV."""
    rows = []
    with open(path, "r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            n = reader.line_num
            try:
                rows.append(((row.get("label") or "").strip(), row["youtube_id"].strip(),
                             int(float(row["time_start"])), int(float(row["time_end"])), n))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{n}: cannot read {dict(row)} ({e})") from None
    return rows


SUPPORTED_LISTS = ("supported: 'path label' video lists (PySlowFast, MMAction2), 'frame_dir total_frames label' "
                   "rawframe lists (MMAction2), Kinetics release CSVs")
_INT = re.compile(r"-?\d+")


def read_list(path, sep=" "):
    """Returns (kind, rows) of a list file: "video" with rows (path, label, line) - label -1 for a path-only
    line - or "rawframes" with rows (frame_dir, label, line, total_frames).

    Raises ValueError, naming file and line, for any other shape: several numbers after a video path
    (multi-label), three or more after a folder (multi-label or frame offset), JSON, mixed kinds.
    """
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip()[:1] in ("[", "{"):
        raise ValueError(f"{path}: JSON annotations are not a supported list format ({SUPPORTED_LISTS})")
    kind, rows = None, []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(sep)
        numbers = 0  # trailing integer fields; the first field is always (part of) the path
        while numbers < len(fields) - 1 and _INT.fullmatch(fields[-1 - numbers].strip()):
            numbers += 1
        head = sep.join(fields[: len(fields) - numbers]).strip()
        is_video = os.path.splitext(head)[1].lower() in VIDEO_EXTENSIONS
        if numbers <= 1:
            if numbers == 0 and sep != "," and re.fullmatch(r".+,-?\d+", line):
                raise ValueError(f"{path}:{n}: {line!r} looks like 'path,label': set DATA.PATH_LABEL_SEPARATOR ','")
            row_kind, row = "video", (head, int(fields[-1]) if numbers else -1, n)
        elif numbers == 2 and not is_video:
            row_kind, row = "rawframes", (head, int(fields[-1]), n, int(fields[-2]))
        else:
            shape = "several labels after a video path (multi-label)" if is_video else \
                "more than two numbers after a frame folder (multi-label or frame offset)"
            raise ValueError(f"{path}:{n}: {line!r}: {shape} is not a supported list format ({SUPPORTED_LISTS})")
        if kind not in (None, row_kind):
            raise ValueError(f"{path}:{n}: a {row_kind} line in a {kind} list ({SUPPORTED_LISTS})")
        kind = row_kind
        rows.append(row)
    return kind or "video", rows


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
        # kinetics_400_val.csv, kinetics-600_val.csv; MMAction2's kinetics400_val_list_videos.txt.
        pattern = re.compile(r".*[_-](%s)(\.csv|_list_videos\.txt|_list_rawframes\.txt)$" % "|".join(aliases))
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
        self.annotation_path = self._test_list() or self.find_annotation(self._candidates(self.split),
                                                                         ("", "annotations"))
        if is_release_csv(self.annotation_path):
            return self._load_release()
        return self._load_list()

    def _test_list(self):
        """Returns PySlowFast's test.csv for the test split when the folder has one (PySlowFast tests on it), else None."""
        if self.split != "test" or self.cfg.DATA.TEST_ANNOTATION:
            return None
        path = os.path.join(self.data_dir, "test.csv")
        return path if os.path.isfile(path) and not is_release_csv(path) else None

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
        for label, ytid, start, end, n in rows:
            paths = videos.get(f"{ytid}_{start:06d}_{end:06d}") or videos.get(ytid) or [None]
            # The same clip in several places (e.g. a replacement copy): prefer the one under this split.
            in_split = [p for p in paths if p and aliases & set(os.path.relpath(p, self.media_dir).split(os.sep))]
            records.append(VideoRecord(f"{ytid}_{start:06d}_{end:06d}", index[label] if label else -1,
                                       (in_split or paths)[0], n))
        return records, names

    def _load_list(self):
        sep = self.cfg.DATA.PATH_LABEL_SEPARATOR
        kind, rows = read_list(self.annotation_path, sep)
        train = self._train_file()
        source = rows if train is None or train == self.annotation_path or is_release_csv(train) \
            else read_list(train, sep)[1]
        if kind == "video":
            records = [VideoRecord(os.path.splitext(os.path.basename(p))[0], label, os.path.join(self.media_dir, p), n)
                       for p, label, n in rows]
        else:
            template = self._frame_template(rows)
            records = []
            for folder, label, n, total in rows:
                folder = os.path.join(self.media_dir, folder)
                files = [os.path.join(folder, template.format(i + 1)) for i in range(total)]
                records.append(VideoRecord(os.path.basename(folder), label, FrameFolder(folder, files, template), n))
        return records, self._list_class_names([(r[0], r[1]) for r in source])

    def _frame_template(self, rows):
        """Returns DATA.FRAME_TEMPLATE; ValueError when the first listed folder holds frames named otherwise."""
        template = self.cfg.DATA.FRAME_TEMPLATE
        folder = os.path.join(self.media_dir, rows[0][0]) if rows else ""
        if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, template.format(1))):
            names = sorted(os.listdir(folder))[:3]
            raise ValueError(f"{self.annotation_path}: frames in {folder} are named {names}, not "
                             f"DATA.FRAME_TEMPLATE {template!r} (MMAction2 extractions: img_{{:05d}}.jpg)")
        return template

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
