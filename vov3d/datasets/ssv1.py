"""Something-Something v1 (registered as ``ssv1``): the released JPEG frame folders.

Accepted layout
    ``DATA.PATH_TO_DATA_DIR`` holds the released CSVs (no header, ``;``-separated):

    * ``something-something-v1-labels.csv``: one class text per line;
    * ``something-something-v1-train.csv`` / ``-validation.csv``: ``<id>;<class text>``;
    * ``something-something-v1-test.csv``: ``<id>`` only (labels -1).

    ``DATA.PATH_PREFIX`` (empty: the annotation folder) holds the frame folders ``<id>/00001.jpg ...``
    directly or inside the released ``20bn-something-something-v1/`` folder. Frame names follow
    ``DATA.FRAME_TEMPLATE`` (default ``{:05d}.jpg``, 1-based; e.g. ``img_{:05d}.jpg`` for MMAction2
    extractions).

Splits: ``train`` reads the train CSV; ``val`` and ``test`` read the validation CSV (the test labels are
not public); ``DATA.{TRAIN,VAL,TEST}_ANNOTATION`` name another file (``id;label`` or ``id`` lines).

Class index (``DATA.SS_LABEL_ORDER``): ``file`` (default) = line order of the labels CSV, as the official
VoV3D code and MMAction2 number them (required for their checkpoints); ``sorted`` = alphabetical, as
TSM/TRN number them, which equals the SSv2 indices. Parsing tolerates CRLF, surrounding spaces and a
missing final newline.

Sampling: segment-based (see vov3d.datasets.sampling). SS configs normally set ``DATA.RANDOM_FLIP False``
(left/right classes).
"""

import os

from vov3d.datasets.base import VideoClipDataset, VideoRecord
from vov3d.datasets.build import DATASET_REGISTRY
from vov3d.datasets.decode import FrameFolder

LABEL_ORDERS = ("file", "sorted")


def numbered_lines(path):
    """Returns [(1-based line number, line)] of the non-empty lines, stripped (CRLF, spaces, missing final
    newline are fine)."""
    with open(path, "r", encoding="utf-8") as f:
        return [(n, line.strip()) for n, line in enumerate(f.read().splitlines(), 1) if line.strip()]


def read_lines(path):
    """Returns the non-empty lines of a text file, stripped."""
    return [line for _, line in numbered_lines(path)]


def read_id_label_csv(path, class_index, sep=";"):
    """Returns [(id, label, line number)] from `id;class text` lines (label -1 for id-only lines); unknown
    classes raise."""
    rows = []
    for n, line in numbered_lines(path):
        vid, _, text = line.partition(sep)
        text = text.strip()
        if text and text not in class_index:
            raise ValueError(f"{path}:{n}: class {text!r} is not in the labels file")
        rows.append((vid.strip(), class_index[text] if text else -1, n))
    return rows


def class_order(names, order, key="DATA.SS_LABEL_ORDER"):
    """Returns the class list in file order or sorted, as `order` says."""
    if order not in LABEL_ORDERS:
        raise ValueError(f"{key} must be one of {LABEL_ORDERS}, got {order!r}")
    return sorted(names) if order == "sorted" else list(names)


@DATASET_REGISTRY.register()
class Ssv1(VideoClipDataset):
    """Something-Something v1 frame folders with the released ``;`` CSVs (see the module docstring)."""

    name = "ssv1"
    sampling = "segment"
    official_bgr = True  # the official loader read OpenCV (BGR) JPEG frames
    SPLIT_FILES = {
        "train": "something-something-v1-train.csv",
        "val": "something-something-v1-validation.csv",
        "test": "something-something-v1-validation.csv",
    }

    def _load(self):
        labels_path = self.find_file(["something-something-v1-labels.csv"], what="the labels file")
        names = class_order(read_lines(labels_path), self.cfg.DATA.SS_LABEL_ORDER)
        self.annotation_path = self.find_annotation([self.SPLIT_FILES[self.split]])
        rows = read_id_label_csv(self.annotation_path, {c: i for i, c in enumerate(names)})
        media = self.release_subdir("20bn-something-something-v1")
        template = self.cfg.DATA.FRAME_TEMPLATE
        records = [VideoRecord(vid, label, FrameFolder(os.path.join(media, vid), template=template), n)
                   for vid, label, n in rows]
        return records, names
