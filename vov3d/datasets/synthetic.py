"""Tiny datasets in each released on-disk layout, with real encoded media, for tests, demos and benchmarks.

* :func:`make_ssv1` - SSv1: ``;`` CSVs (labels CSV in *non*-alphabetical order) and JPEG frame folders.
* :func:`make_ssv2` - SSv2: VP9 ``<id>.webm`` at 12 fps, JSON annotations under either naming scheme,
  ``test-answers.csv``; optionally PySlowFast frame lists with extracted JPEG frames.
* :func:`make_kinetics` - Kinetics: H.264 ``<ytid>_<start:06d>_<end:06d>.mp4`` clips, flat or in class
  folders, with the official CSVs (quoted labels, ``is_cc``) and/or PySlowFast ``path label`` lists.
* :func:`write_video`, :func:`write_frames`, :func:`corrupt_file` - the building blocks.

With ``pattern="index"`` every frame carries its own index in its pixels (:func:`frame_code`), so a test
can read back exactly which frames a sampler picked with :func:`read_frame_code`, after any lossy codec,
resize or crop. ``pattern="texture"`` draws moving noise instead, which costs a realistic decode time
(flat frames decode unrealistically fast) for benchmarks.

Every ``make_*`` returns a :class:`SyntheticDataset`: where things are, the class list in index order,
and one :class:`SyntheticVideo` per annotated video.
"""

import dataclasses
import json
import os
import random
from typing import Dict, List

import numpy as np

# Something-Something templates: real class texts, chosen to cover the bracket forms of the release
# ([something], [Something] at the start, [number of], [something in it]) and a left/right pair.
SS_TEMPLATES = [
    "Holding [something]",
    "Turning [something] upside down",
    "Putting [number of] [something] onto [something]",
    "[Something] falling like a rock",
    "Pushing [something] from left to right",
    "Pushing [something] from right to left",
    "Tipping [something with something in it] over",
]

KINETICS_CLASSES = [
    "air drumming",
    "abseiling",
    "passing American football (in game)",
    "massaging person's head",
    "riding, or walking with horse",  # not a real K400 name: a comma inside a quoted CSV field
]

_CODECS = {  # name -> (encoder, options): near-lossless, fast presets so frame codes survive
    "h264": ("libx264", {"preset": "ultrafast", "crf": "12"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "12", "b": "0"}),
    # Fixed quantiser 2 (FFmpeg's -q:v 2): quality is given as lambda, 118 (FF_QP2LAMBDA) per step.
    "mpeg4": ("mpeg4", {"flags": "+qscale", "global_quality": str(2 * 118)}),
    "theora": ("libtheora", {"flags": "+qscale", "global_quality": str(9 * 118)}),  # only where PyAV has libtheora
}
# Texture videos are for timing: typical web-video quality (Kinetics 256p clips are a few hundred KB).
_REALISTIC = {"h264": {"preset": "veryfast", "crf": "23"}, "vp9": {"crf": "32"}, "mpeg4": {"global_quality": str(5 * 118)}}


@dataclasses.dataclass
class SyntheticVideo:
    video_id: str
    label: int  # class index (-1: unlabelled)
    label_text: str  # class text ("" when unlabelled)
    split: str  # train | val | test (the release's split of the annotation file)
    path: str  # video file or frame folder
    num_frames: int


@dataclasses.dataclass
class SyntheticDataset:
    root: str
    data_dir: str  # for DATA.PATH_TO_DATA_DIR
    prefix: str  # for DATA.PATH_PREFIX
    class_names: List[str]  # index order the loader is expected to use
    videos: List[SyntheticVideo]
    files: Dict[str, str] = dataclasses.field(default_factory=dict)  # annotation role -> path

    def split(self, name):
        """Returns the videos of one release split (train | val | test)."""
        return [v for v in self.videos if v.split == name]

    def cfg_opts(self):
        """Returns config overrides (KEY VALUE list) pointing DATA.PATH_TO_DATA_DIR / PATH_PREFIX here."""
        return ["DATA.PATH_TO_DATA_DIR", self.data_dir, "DATA.PATH_PREFIX", self.prefix]


# --------------------------------------------------------------------------------------------- #
# Pixels
# --------------------------------------------------------------------------------------------- #
_CODE_BASE, _CODE_STEP, _CODE_RADIX = 16, 6, 39


def frame_code(index, height, width):
    """Returns an RGB uint8 (H, W, 3) frame whose top half encodes index % 39 and bottom half index // 39."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[: height // 2] = _CODE_BASE + _CODE_STEP * (index % _CODE_RADIX)
    frame[height // 2 :] = _CODE_BASE + _CODE_STEP * min(index // _CODE_RADIX, _CODE_RADIX - 1)
    return frame


def read_frame_code(frame):
    """Returns the index drawn by frame_code, from an (H, W, 3) or (3, H, W) uint8/float 0-255 image."""
    a = np.asarray(frame, dtype=np.float64)
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    h = a.shape[0]
    top = a[h // 8 : max(h // 8 + 1, 3 * h // 8)].mean()
    bottom = a[5 * h // 8 : max(5 * h // 8 + 1, 7 * h // 8)].mean()
    lo = int(round((top - _CODE_BASE) / _CODE_STEP))
    hi = int(round((bottom - _CODE_BASE) / _CODE_STEP))
    return hi * _CODE_RADIX + lo


def _frames(num_frames, width, height, pattern, seed):
    if pattern == "index":
        for i in range(num_frames):
            yield frame_code(i, height, width)
    elif pattern == "texture":
        # A camera pan over smooth random texture plus grain: compresses and decodes like real footage
        # (pure noise would be incompressible and decode several times slower than real video).
        import torch
        import torch.nn.functional as F

        rng = np.random.default_rng(seed)
        h, w = height + num_frames * 2, width + num_frames * 3
        coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, h // 8 + 2, w // 8 + 2)).astype(np.float32))
        base = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        base = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        for i in range(num_frames):
            yield np.ascontiguousarray(base[2 * i : 2 * i + height, 3 * i : 3 * i + width])
    else:
        raise ValueError(f"pattern must be index or texture, got {pattern!r}")


def write_video(path, num_frames, width=64, height=48, fps=12, codec="h264", gop=None, pattern="index",
                audio=False, seed=0, b_frames=None):
    """Writes a real encoded video (h264 / vp9 / mpeg4 in the container the extension names); returns path.

    Even sizes only (yuv420p)."""
    options = _REALISTIC[codec] if pattern == "texture" else {}
    return encode_video(path, _frames(num_frames, width, height, pattern, seed), width, height, fps, codec,
                        options, gop=gop, audio=audio, num_frames=num_frames, b_frames=b_frames)


def encode_video(path, frames, width, height, fps=12, codec="h264", options=None, gop=None, audio=False,
                 num_frames=None, b_frames=None):
    """Encodes RGB uint8 frames (H, W, 3 each) into `path` with `codec` (h264 | vp9 | mpeg4 | theora); returns path.

    `options` update the codec's defaults (e.g. {"crf": "28"}); `audio` adds a silent AAC track before
    the video stream (as Kinetics clips have), which needs `num_frames`; `b_frames` sets the encoder's
    maximum run of B-frames (h264 / mpeg4; None keeps the preset's).
    """
    import av
    from fractions import Fraction

    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
    encoder, defaults = _CODECS[codec]
    options = dict(defaults, **(options or {}))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, "w") as container:
        if audio:  # Kinetics clips carry AAC audio *before* the video stream; loaders must pick video[0]
            astream = container.add_stream("aac", rate=16000)
        stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.gop_size = gop
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio:
            samples = int(16000 * num_frames / fps)
            aframe = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
            aframe.sample_rate = 16000
            for packet in astream.encode(aframe):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def write_frames(folder, num_frames, width=64, height=48, template="{:05d}.jpg", pattern="index", seed=0):
    """Writes JPEG frames template.format(1..num_frames) into folder; returns the folder."""
    import torch
    from torchvision.io import encode_jpeg

    os.makedirs(folder, exist_ok=True)
    for i, array in enumerate(_frames(num_frames, width, height, pattern, seed)):
        data = encode_jpeg(torch.from_numpy(array).permute(2, 0, 1).contiguous(), quality=95)
        with open(os.path.join(folder, template.format(i + 1)), "wb") as f:
            f.write(data.numpy().tobytes())
    return folder


def corrupt_file(path, mode="truncate"):
    """Damages a file in place: truncate (keep the first half), empty (0 bytes) or garbage; returns path."""
    if mode == "truncate":
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    elif mode == "empty":
        open(path, "wb").close()
    elif mode == "garbage":
        with open(path, "wb") as f:
            f.write(random.Random(0).randbytes(4096))
    else:
        raise ValueError(f"mode must be truncate, empty or garbage, got {mode!r}")
    return path


# --------------------------------------------------------------------------------------------- #
# Layouts
# --------------------------------------------------------------------------------------------- #
def _write_text(path, lines, crlf=False, final_newline=True):
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines) + (eol if final_newline and lines else "")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)
    return path


def _plan(videos_per_split, num_classes, frames_range, seed, first_id=1000):
    """Returns [(split, video id, class, num_frames)] cycling classes so every split sees several."""
    rng = random.Random(seed)
    plan, vid = [], first_id
    for split, count in videos_per_split.items():
        for k in range(count):
            plan.append((split, str(vid), k % num_classes, rng.randint(*frames_range)))
            vid += 1
    return plan


def _ss_class(template):
    return template.replace("[", "").replace("]", "")


def make_ssv1(root, videos_per_split=None, num_classes=4, frames_range=(12, 20), width=64, height=48,
              subfolder=True, crlf=False, final_newline=True, seed=0):
    """Writes an SSv1 tree (CSVs in root, frames in root[/20bn-something-something-v1]/<id>/00001.jpg).

    The labels CSV lists the classes in a non-alphabetical order: class_names is that *file* order
    (DATA.SS_LABEL_ORDER "file"). The test CSV has ids only. Returns a SyntheticDataset.
    """
    videos_per_split = videos_per_split or {"train": 4, "val": 3, "test": 2}
    classes = [_ss_class(t) for t in SS_TEMPLATES[:num_classes]]
    file_order = classes[1:] + classes[:1]  # not sorted: catches loaders that sort
    assert file_order != sorted(file_order)
    media = os.path.join(root, "20bn-something-something-v1") if subfolder else root
    names = {"train": "train", "val": "validation", "test": "test"}
    lines = {s: [] for s in names}
    videos = []
    for split, vid, cls, n in _plan(videos_per_split, num_classes, frames_range, seed):
        folder = write_frames(os.path.join(media, vid), n, width, height)
        text = file_order[cls]
        lines[split].append(vid if split == "test" else f"{vid};{text}")
        videos.append(SyntheticVideo(vid, -1 if split == "test" else cls, "" if split == "test" else text,
                                     split, folder, n))
    files = {"labels": _write_text(os.path.join(root, "something-something-v1-labels.csv"), file_order, crlf, final_newline)}
    for split, name in names.items():
        files[split] = _write_text(os.path.join(root, f"something-something-v1-{name}.csv"), lines[split], crlf, final_newline)
    return SyntheticDataset(root, root, root, file_order, videos, files)


def make_ssv2(root, videos_per_split=None, num_classes=5, frames_range=(12, 24), width=64, height=48, fps=12,
              naming="20bn", subfolder=True, test_answers=True, frame_lists=False, frame_list_fps_factor=1,
              seed=0):
    """Writes an SSv2 tree: VP9 <id>.webm videos and JSON annotations; returns a SyntheticDataset.

    naming "20bn": something-something-v2-{labels,train,validation,test}.json in root;
    naming "qualcomm": labels/{labels,train,validation,test}.json and labels/test-answers.csv.
    frame_lists: also extract JPEG frames to root/frames/<id>/<id>_000001.jpg and write PySlowFast frame
    lists root/{train,val}.csv (each frame repeated frame_list_fps_factor times, as 30 fps extraction of
    12 fps video does). class_names is the alphabetical index order of labels.json.
    """
    videos_per_split = videos_per_split or {"train": 4, "val": 3, "test": 2}
    templates = SS_TEMPLATES[:num_classes]
    classes = sorted(_ss_class(t) for t in templates)
    media = os.path.join(root, "20bn-something-something-v2") if subfolder else root
    entries = {"train": [], "val": [], "test": []}
    answers, frame_rows, videos = [], {"train": [], "val": []}, []
    rng = random.Random(seed)
    for split, vid, cls, n in _plan(videos_per_split, num_classes, frames_range, seed, first_id=70000):
        template = [t for t in templates if _ss_class(t) == classes[cls]][0]
        path = write_video(os.path.join(media, f"{vid}.webm"), n, width, height, fps, codec="vp9")
        placeholders = [rng.choice(["potato", "a cup", "3 pens", "bottle with water"]) for _ in range(template.count("["))]
        label_text = template
        for p in placeholders:
            label_text = label_text[: label_text.index("[")] + p + label_text[label_text.index("]") + 1 :]
        if split == "test":
            entries[split].append({"id": vid})
            answers.append(f"{vid};{classes[cls]}")
        else:
            entries[split].append({"id": vid, "label": label_text.lower(), "template": template,
                                   "placeholders": placeholders})
        label = cls if (split != "test" or test_answers) else -1
        videos.append(SyntheticVideo(vid, label, classes[cls] if label >= 0 else "", split, path, n))
        if frame_lists and split in frame_rows:
            folder = os.path.join(root, "frames", vid)
            write_frames(folder, n, width, height, template=vid + "_{:06d}.jpg")
            k = 0
            for i in range(n):
                for _ in range(frame_list_fps_factor):
                    frame_rows[split].append(f"{vid} {len(videos) - 1} {k} frames/{vid}/{vid}_{i + 1:06d}.jpg \"\"")
                    k += 1
    labels = {c: str(i) for i, c in enumerate(classes)}
    if naming == "20bn":
        base, names = root, {"labels": "something-something-v2-labels.json", "train": "something-something-v2-train.json",
                             "val": "something-something-v2-validation.json", "test": "something-something-v2-test.json"}
    elif naming == "qualcomm":
        base, names = os.path.join(root, "labels"), {"labels": "labels.json", "train": "train.json",
                                                     "val": "validation.json", "test": "test.json"}
    else:
        raise ValueError(f"naming must be 20bn or qualcomm, got {naming!r}")
    os.makedirs(base, exist_ok=True)
    files = {}
    for role, name in names.items():
        files[role] = os.path.join(base, name)
        with open(files[role], "w") as f:
            json.dump(labels if role == "labels" else entries[role], f)
    if test_answers:
        files["test_answers"] = _write_text(os.path.join(base, "test-answers.csv"), answers)
    if frame_lists:
        header = "original_vido_id video_id frame_id path labels"
        for split, rows in frame_rows.items():
            files[f"{split}_frame_list"] = _write_text(os.path.join(root, f"{split}.csv"), [header] + rows)
    return SyntheticDataset(root, root, root, classes, videos, files)


def _ytid(rng):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    first = rng.choice("-_")  # ids may start with - or _ (breaks naive CLI parsing)
    return first + "".join(rng.choice(alphabet) for _ in range(10))


def make_kinetics(root, videos_per_split=None, num_classes=4, frames_range=(24, 40), width=64, height=48, fps=15,
                  layout="class_dirs", class_dir_style="spaces", annotations=("official", "pyslowfast"),
                  val_csv_name="validate.csv", audio_every=3, codec="h264", gop=None, pattern="index", seed=0):
    """Writes a Kinetics tree: <root>/videos/<split>/[<class>/]<ytid>_<start:06d>_<end:06d>.mp4.

    layout: class_dirs (per-class folders; class_dir_style spaces | underscores) or flat.
    annotations: "official" writes root/annotations/{train.csv, <val_csv_name>, test.csv} with the
    release header and quoted labels; "pyslowfast" writes root/{train,val,test}.csv (path label, paths
    relative to root/videos; test = val, as VoV3D users make it). class_names = sorted class texts.
    Every audio_every-th clip (0: none) gets an AAC stream before its video stream.
    """
    if not set(annotations) & {"official", "pyslowfast"}:
        raise ValueError(f"annotations must name official and/or pyslowfast, got {annotations!r}")
    videos_per_split = videos_per_split or {"train": 4, "val": 3, "test": 2}
    classes = sorted(KINETICS_CLASSES[:num_classes])
    rng = random.Random(seed)
    media = os.path.join(root, "videos")
    rows = {"train": [], "val": [], "test": []}
    lists = {"train": [], "val": []}
    videos = []
    for k, (split, _, cls, n) in enumerate(_plan(videos_per_split, num_classes, frames_range, seed)):
        ytid, start = _ytid(rng), rng.randint(0, 400)
        name = f"{ytid}_{start:06d}_{start + 10:06d}.mp4"
        folder = os.path.join(media, split)
        if layout == "class_dirs":
            folder = os.path.join(folder, classes[cls] if class_dir_style == "spaces" else classes[cls].replace(" ", "_"))
        elif layout != "flat":
            raise ValueError(f"layout must be class_dirs or flat, got {layout!r}")
        path = write_video(os.path.join(folder, name), n, width, height, fps, codec=codec, gop=gop, pattern=pattern,
                           audio=bool(audio_every) and k % audio_every == audio_every - 1, seed=k)
        rows[split].append([classes[cls], ytid, str(start), f"{start + 10}.0" if k % 2 else str(start + 10), split, str(k % 2)])
        if split in lists:
            lists[split].append(f"{os.path.relpath(path, media)} {cls}")
        videos.append(SyntheticVideo(ytid, cls, classes[cls], split, path, n))
    files = {}
    if "official" in annotations:
        ann = os.path.join(root, "annotations")
        os.makedirs(ann, exist_ok=True)
        for split, name in (("train", "train.csv"), ("val", val_csv_name), ("test", "test.csv")):
            # The release quotes multi-word labels: "air drumming",_dbcJuKJQNs,40,50,val,0
            lines = ["label,youtube_id,time_start,time_end,split,is_cc"] + [
                ",".join([f'"{r[0]}"' if (" " in r[0] or "," in r[0]) else r[0]] + r[1:]) for r in rows[split]
            ]
            files[split] = _write_text(os.path.join(ann, name), lines)
        data_dir = ann
    if "pyslowfast" in annotations:
        for split, name in (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv")):
            files[f"pyslowfast_{split}"] = _write_text(os.path.join(root, name), lists["val" if split == "test" else split])
        if "official" not in annotations:
            data_dir = root
    return SyntheticDataset(root, data_dir, media, classes, videos, files)
