"""The demo dataset (registered as ``demo``): generated Something-Something-style videos.

On first use it writes real VP9 ``<id>.webm`` videos and the SSv2 release JSON files
(``something-something-v2-{labels,train,validation}.json``) into ``DEMO_DATA.ROOT``, then reads them
with the very loader, decoder and segment sampling of the ``ssv2`` dataset.

Its ten classes, like Something-Something's, need temporal modelling: no single frame tells them
apart. An object (random shape, colour, size) on a random textured background moves left to right or
right to left, up or down, approaches or recedes (grows or shrinks), spins clockwise or anticlockwise,
appears or disappears. Start points, speeds, clip lengths and frame sizes vary per video.

Horizontal flipping turns "left to right" into "right to left" and clockwise into anticlockwise, which
is why Something-Something recipes (and ``configs/demo/VoV3D_M_demo.yaml``) turn ``DATA.RANDOM_FLIP`` off;
``configs/demo/VoV3D_M_demo_flip.yaml`` trains with flipping on to show what it costs.
"""

import contextlib
import fcntl
import json
import logging
import math
import os
import random
import shutil
import time

import numpy as np

from vov3d.datasets.build import DATASET_REGISTRY
from vov3d.datasets.ssv2 import Ssv2, template_to_class
from vov3d.datasets.synthetic import encode_video

logger = logging.getLogger(__name__)

# Bump when the generated content changes, so old caches are rebuilt.
GENERATOR_VERSION = 2
# Seconds this process spent generating the demo data (0 when it was found cached).
_generation_s = 0.0

TEMPLATES = [
    "Moving [something] from left to right",
    "Moving [something] from right to left",
    "Moving [something] up",
    "Moving [something] down",
    "Approaching [something] with your camera",
    "Moving away from [something] with your camera",
    "Spinning [something] clockwise",
    "Spinning [something] anticlockwise",
    "[Something] appearing",
    "[Something] disappearing",
]
OBJECTS = ["disc", "square", "triangle", "ring", "ell", "tee", "flag"]
# Shapes whose mirror image or rotation looks different, so spinning direction is visible.
ASYMMETRIC = ["ell", "flag", "tee"]


def class_names():
    """Returns the demo class texts in index order (alphabetical, as SSv2's labels.json)."""
    return sorted(template_to_class(t) for t in TEMPLATES)


def _background(rng, height, width):
    """Returns a random smooth colour field with a few static blobs (distractors), uint8 HxWx3."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(30, 200, 3), rng.uniform(30, 200, 3)
    angle = rng.uniform(0, 2 * math.pi)
    t = ((x * math.cos(angle) + y * math.sin(angle)) / max(height, width) + 1) / 2
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    for _ in range(rng.integers(2, 6)):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 10)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255)


def _shape_mask(kind, u, v, r):
    """Returns the mask of `kind` of radius r in object coordinates (u right, v down)."""
    au, av = np.abs(u), np.abs(v)
    if kind == "disc":
        return u * u + v * v < r * r
    if kind == "ring":
        d = u * u + v * v
        return (d < r * r) & (d > (0.55 * r) ** 2)
    if kind == "square":
        return (au < 0.8 * r) & (av < 0.8 * r)
    if kind == "triangle":
        return (v < 0.7 * r) & (v > -r + 1.7 * au)
    if kind == "ell":
        return ((au < r) & (np.abs(v - 0.6 * r) < 0.3 * r)) | ((np.abs(u + 0.7 * r) < 0.3 * r) & (av < r))
    if kind == "tee":
        return ((au < r) & (np.abs(v + 0.7 * r) < 0.3 * r)) | ((np.abs(u - 0.3 * r) < 0.3 * r) & (av < r))
    if kind == "flag":
        return ((np.abs(u + 0.8 * r) < 0.2 * r) & (av < r)) | ((u > -0.8 * r) & (u < 0.8 * r) & (v > -r) & (v < 0.1 * r) & (v < -r + 1.2 * (0.8 * r - u)))
    raise ValueError(kind)


def _trajectory(cls_text, rng, n, height, width):
    """Returns per-frame (cx, cy, scale, angle, visibility) arrays for a class."""
    t = np.linspace(0, 1, n)
    # Ease in/out at a random speed profile, so speed varies within and across clips.
    t = t ** rng.uniform(0.7, 1.4)
    cx = np.full(n, rng.uniform(0.3, 0.7) * width)
    cy = np.full(n, rng.uniform(0.3, 0.7) * height)
    scale = np.full(n, rng.uniform(0.9, 1.2))
    angle = np.full(n, rng.uniform(0, 2 * math.pi))
    vis = np.ones(n)
    a, b = rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.9)
    if "left to right" in cls_text:
        cx = (a + (b - a) * t) * width
    elif "right to left" in cls_text:
        cx = (b - (b - a) * t) * width
    elif cls_text.endswith(" up"):
        cy = (b - (b - a) * t) * height
    elif cls_text.endswith(" down"):
        cy = (a + (b - a) * t) * height
    elif cls_text.startswith("Approaching"):
        scale = rng.uniform(0.4, 0.6) + rng.uniform(0.8, 1.2) * t
    elif cls_text.startswith("Moving away"):
        scale = rng.uniform(1.2, 1.6) - rng.uniform(0.8, 1.0) * t
    elif "clockwise" in cls_text:
        turn = rng.uniform(0.6, 1.5) * math.pi * (-1 if "anticlockwise" in cls_text else 1)
        angle = angle + turn * t  # image v axis points down, so a positive angle turns clockwise on screen
    elif "appearing" in cls_text or "disappearing" in cls_text:
        k = rng.uniform(0.3, 0.6)
        ramp = np.clip((t - k) / 0.15, 0, 1)
        vis = ramp if "disappearing" not in cls_text else 1 - ramp
    # A little drift everywhere, so position alone never fixes the class.
    cx = cx + rng.normal(0, 1.0) * t * 3
    cy = cy + rng.normal(0, 1.0) * t * 3
    return cx, cy, scale, angle, vis


def render_video(cls_text, rng, num_frames, height, width):
    """Returns the frames of one demo video: uint8 array (T, H, W, 3)."""
    bg = _background(rng, height, width)
    spinning = "clockwise" in cls_text
    kind = rng.choice(ASYMMETRIC if spinning else OBJECTS)
    colour = rng.uniform(0, 255, 3)
    if np.abs(colour - bg.mean((0, 1))).sum() < 150:  # keep the object visible on its background
        colour = 255 - bg.mean((0, 1))
    radius = rng.uniform(0.14, 0.22) * height
    cx, cy, scale, angle, vis = _trajectory(cls_text, rng, num_frames, height, width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        c, s = math.cos(angle[i]), math.sin(angle[i])
        dx, dy = x - cx[i], y - cy[i]
        u, v = c * dx + s * dy, -s * dx + c * dy
        mask = _shape_mask(kind, u, v, radius * scale[i])[..., None] * vis[i]
        frame = bg * (1 - mask) + colour[None, None] * mask + rng.normal(0, 3, bg.shape)
        frames[i] = np.clip(frame, 0, 255)
    return frames


def _placeholder(rng, template):
    return template.replace("[something]", rng.choice(["a disc", "a block", "a marker", "a toy"])).replace(
        "[Something]", "A toy")


def generate(root, train_per_class=32, val_per_class=10, seed=0, height=64, progress=True):
    """Writes the demo dataset in the SSv2 release layout under `root`; returns root.

    Writes to a temporary folder and renames it at the end, so an interrupted run leaves no
    half-written dataset behind.
    """
    from tqdm import tqdm

    tmp = root.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    media = os.path.join(tmp, Ssv2.RELEASE_SUBDIR)
    os.makedirs(media)
    rng = np.random.default_rng(seed)
    names = class_names()
    templates = {template_to_class(t): t for t in TEMPLATES}
    plan = [(split, c) for split, k in (("train", train_per_class), ("validation", val_per_class))
            for _ in range(k) for c in range(len(names))]
    random.Random(seed).shuffle(plan)
    entries = {"train": [], "validation": []}
    for n, (split, c) in enumerate(tqdm(plan, desc="Generating demo videos", disable=not progress, unit="video")):
        vid = str(100000 + n)
        # Near-square frames: a square crop keeps the whole path of the object in view.
        width = int(rng.choice([64, 72, 80]))
        num_frames = int(rng.integers(20, 37))
        frames = render_video(names[c], rng, num_frames, height, width)
        encode_video(os.path.join(media, f"{vid}.webm"), frames, width, height, fps=12, codec="vp9",
                     options={"crf": "28"})  # typical web quality; the classes do not need more
        template = templates[names[c]]
        entries[split].append({"id": vid, "label": _placeholder(rng, template).lower(), "template": template,
                               "placeholders": ["something"] * template.lower().count("[something]")})
    for split, items in entries.items():
        with open(os.path.join(tmp, f"something-something-v2-{split}.json"), "w") as f:
            json.dump(items, f)
    with open(os.path.join(tmp, "something-something-v2-labels.json"), "w") as f:
        json.dump({name: str(i) for i, name in enumerate(names)}, f, indent=0)
    with open(os.path.join(tmp, "DEMO_VERSION"), "w") as f:
        json.dump(_signature(train_per_class, val_per_class, seed, height), f)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def _signature(train_per_class, val_per_class, seed, height):
    return {"version": GENERATOR_VERSION, "train_per_class": train_per_class, "val_per_class": val_per_class,
            "seed": seed, "height": height}


def ensure_demo_data(cfg, progress=True):
    """Returns the demo root (DEMO_DATA.ROOT), generating it first when absent or outdated.

    Safe when several processes start at once: one generates under a file lock, the others wait.
    """
    d = cfg.DEMO_DATA
    root = os.path.abspath(os.path.expanduser(d.ROOT))
    want = _signature(d.TRAIN_PER_CLASS, d.VAL_PER_CLASS, d.SEED, d.HEIGHT)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root.rstrip("/") + ".lock", "w") as lock, _locked(lock):
        try:
            with open(os.path.join(root, "DEMO_VERSION")) as f:
                if json.load(f) == want:
                    return root
        except (OSError, ValueError):
            pass
        logger.info("Generating the demo dataset into %s (once)", root)
        started = time.monotonic()
        generate(root, d.TRAIN_PER_CLASS, d.VAL_PER_CLASS, d.SEED, d.HEIGHT, progress=progress)
        global _generation_s
        _generation_s += time.monotonic() - started
        logger.info("Generated the demo dataset in %.0f s", _generation_s)
    return root


def generation_seconds():
    """Returns the seconds this process spent generating the demo data (0.0 when it was cached)."""
    return _generation_s


@contextlib.contextmanager
def _locked(f):
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)


@DATASET_REGISTRY.register()
class Demo(Ssv2):
    """The generated demo data, read exactly as SSv2 is read."""

    name = "demo"

    def __init__(self, cfg, split, data_dir=None, media_dir=None):
        root = ensure_demo_data(cfg)
        super().__init__(cfg, split, data_dir=data_dir or root, media_dir=media_dir or root)
