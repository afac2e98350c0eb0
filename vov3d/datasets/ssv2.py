"""Something-Something v2 (registered as ``ssv2``): the released WebM videos, read directly.

Accepted layout
    Annotations in ``DATA.PATH_TO_DATA_DIR`` under either release naming:

    * 20BN: ``something-something-v2-{labels,train,validation,test}.json``;
    * Qualcomm ``labels.zip``: ``labels/{labels,train,validation,test}.json`` and ``labels/test-answers.csv``
      (the folder itself may also be given as PATH_TO_DATA_DIR).

    ``labels.json`` maps class text -> index (a string). Train/validation entries are
    ``{"id", "label", "template", "placeholders"}``; the class is ``template`` with ``[`` and ``]``
    removed (never the free-text ``label``). Test entries are ``{"id"}``; their labels come from
    ``test-answers.csv`` (``id;class text``) next to the JSON when present, else -1.

    Media (``DATA.SS_SOURCE``):

    * ``video``: ``<id>.webm`` (VP9, decoded directly, no frame extraction) in ``DATA.PATH_PREFIX`` or in
      its released ``20bn-something-something-v2/`` folder;
    * ``frames``: PySlowFast frame lists ``{train,val}.csv`` in PATH_TO_DATA_DIR (header
      ``original_vido_id video_id frame_id path labels``; one line per frame; paths relative to
      PATH_PREFIX), labels still from the JSON - the official PySlowFast/VoV3D input (30 fps frames);
    * ``auto`` (default): ``video`` when the media folder holds ``.webm`` files, else ``frames``.

Splits: ``train`` reads the train JSON; ``val`` and ``test`` the validation JSON (the test labels are not
public); ``DATA.{TRAIN,VAL,TEST}_ANNOTATION`` name another JSON (e.g. ``labels/test.json``, labelled by
``test-answers.csv``).

Reuse with other data: ``Ssv2(cfg, split, data_dir=..., media_dir=...)`` overrides the two config paths
(the ``demo`` dataset does this).
"""

import json
import os

from vov3d.datasets.base import VideoClipDataset, VideoRecord
from vov3d.datasets.build import DATASET_REGISTRY
from vov3d.datasets.decode import FrameFolder
from vov3d.datasets.ssv1 import read_lines

SOURCES = ("auto", "video", "frames")
FRAME_LIST_HEADER = "original_vido_id"  # sic: PySlowFast's header typo is part of the format


def template_to_class(template):
    """Returns the class text of an SSv2 template: the template with its brackets removed."""
    return template.replace("[", "").replace("]", "")


def read_frame_list(path, prefix):
    """Returns {video id: [frame paths]} from a PySlowFast frame list (paths joined to prefix)."""
    videos = {}
    with open(path, "r", encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith(FRAME_LIST_HEADER):
        raise ValueError(f"{path}: not a PySlowFast frame list (first line must start with {FRAME_LIST_HEADER!r})")
    for n, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise ValueError(f"{path}:{n}: expected 'original_vido_id video_id frame_id path labels', got {line!r}")
        videos.setdefault(fields[0], []).append(os.path.join(prefix, fields[3]))
    return videos


@DATASET_REGISTRY.register()
class Ssv2(VideoClipDataset):
    """Something-Something v2 WebM videos (or PySlowFast frame lists) with the released JSON."""

    name = "ssv2"
    sampling = "segment"
    official_bgr = True  # the official loader read OpenCV (BGR) JPEG frames
    RELEASE_SUBDIR = "20bn-something-something-v2"
    SPLIT_FILES = {
        "train": ["something-something-v2-train.json", "train.json"],
        "val": ["something-something-v2-validation.json", "validation.json"],
        "test": ["something-something-v2-validation.json", "validation.json"],
    }
    FRAME_LISTS = {"train": "train.csv", "val": "val.csv", "test": "val.csv"}

    def _load(self):
        labels_path = self.find_file(["something-something-v2-labels.json", "labels.json"], what="the labels file")
        with open(labels_path, "r", encoding="utf-8") as f:
            label_map = {text: int(i) for text, i in json.load(f).items()}
        names = [None] * len(label_map)
        for text, i in label_map.items():
            names[i] = text
        if None in names:
            raise ValueError(f"{labels_path}: class indices are not 0..{len(names) - 1}")

        self.annotation_path = self.find_annotation(self.SPLIT_FILES[self.split])
        with open(self.annotation_path, "r", encoding="utf-8") as f:
            entries = json.load(f)
        answers = self._test_answers(entries, label_map)
        rows = []
        for n, e in enumerate(entries, 1):
            vid = str(e["id"])
            if "template" in e:
                text = template_to_class(e["template"])
                if text not in label_map:
                    raise ValueError(f"{self.annotation_path}: id {vid}: class {text!r} is not in {labels_path}")
                rows.append((vid, label_map[text], n))
            else:
                rows.append((vid, answers.get(vid, -1), n))
        return self._records(rows), names

    def _test_answers(self, entries, label_map):
        """Returns {id: label} from test-answers.csv beside the annotation JSON when its entries are unlabelled."""
        if not entries or "template" in entries[0]:
            return {}
        path = os.path.join(os.path.dirname(self.annotation_path), "test-answers.csv")
        if not os.path.isfile(path):
            return {}
        answers = {}
        for n, line in enumerate(read_lines(path), 1):
            vid, _, text = line.partition(";")
            if text.strip() not in label_map:
                raise ValueError(f"{path}:{n}: class {text.strip()!r} is not in the labels file")
            answers[vid.strip()] = label_map[text.strip()]
        return answers

    def _source(self):
        source = self.cfg.DATA.SS_SOURCE
        if source not in SOURCES:
            raise ValueError(f"DATA.SS_SOURCE must be one of {SOURCES}, got {source!r}")
        if source == "auto":
            media = self.release_subdir(self.RELEASE_SUBDIR)
            with os.scandir(media) as it:
                has_webm = any(e.name.endswith(".webm") for e in it)
            source = "video" if has_webm else "frames"
        return source

    def _records(self, rows):
        if self._source() == "video":
            media = self.release_subdir(self.RELEASE_SUBDIR)
            return [VideoRecord(vid, label, os.path.join(media, f"{vid}.webm"), n) for vid, label, n in rows]
        path = self.find_file([self.FRAME_LISTS[self.split]], ("",), "the PySlowFast frame list (DATA.SS_SOURCE frames)")
        frames = read_frame_list(path, self.media_dir)
        records = []
        for vid, label, n in rows:
            files = frames.get(vid)
            folder = os.path.dirname(files[0]) if files else os.path.join(self.media_dir, vid)
            records.append(VideoRecord(vid, label, FrameFolder(folder, files=files or []), n))
        return records
