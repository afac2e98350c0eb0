"""RandAugment and random erasing for video clips (PySlowFast's AUG.* keys and semantics).

RandAugment follows the op set, magnitude mapping and AA_TYPE string of PySlowFast's video port of timm's
RandAugment ("rand-m9-mstd0.5-inc1": magnitude 9 of 10, magnitude noise std 0.5, the "increasing" op set;
"-n4": four ops instead of two). It works on uint8 (T, 3, H, W) frames before the scale jitter and crop,
as PySlowFast's ``aug_frame`` does; an op's parameters (sign, magnitude) are drawn once per clip and applied
to every frame. Geometric ops map output pixels through the same inverse affine matrices as PIL's
``Image.transform`` (fill grey 128); colour ops are torchvision's uint8 tensor versions of PIL's (per frame,
as PIL applies them per image).

Random erasing works on the normalised float clip after the crop and flip, as PySlowFast: one box (or up to
RE_COUNT boxes) for all frames, filled with N(0, 1) noise per pixel ("pixel"), per channel ("rand") or 0
("const").

Every draw comes from the `rng` the dataset passes in (vov3d.datasets.sampling.sample_rng): a sample gets
the same augmentation in any worker and after any resume.
"""

import math
import re

import torch
import torch.nn.functional as F

MAX_LEVEL = 10.0
FILL = 128.0  # PIL fill colour of the geometric ops (PySlowFast's _FILL)

# PySlowFast's op sets ("inc1" selects the increasing-severity variants).
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                       "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                       "TranslateYRel")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "random")


# ------------------------------------------------------------------------------------------------ #
# Geometric ops: PIL's inverse affine matrices (output pixel -> input pixel)
# ------------------------------------------------------------------------------------------------ #


def affine(frames, matrix, mode):
    """Returns uint8 (T, C, H, W) frames resampled through the inverse affine `matrix` (a, b, c, d, e, f):
    output pixel (x, y) reads input (a x + b y + c, d x + e y + f), PIL's convention, outside filled grey."""
    t, c, h, w = frames.shape
    a, b, cc, d, e, f = matrix
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5,
                            torch.arange(w, dtype=torch.float32) + 0.5, indexing="ij")
    gx = (a * xs + b * ys + cc) * (2.0 / w) - 1.0
    gy = (d * xs + e * ys + f) * (2.0 / h) - 1.0
    grid = torch.stack([gx, gy], dim=-1).expand(t, h, w, 2)
    x = torch.cat([frames.float(), torch.ones(t, 1, h, w)], dim=1)  # the last channel: inside-the-frame weight
    x = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    out = x[:, :c] + (1.0 - x[:, c:]) * FILL
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _rotate_matrix(degrees, h, w):
    th = math.radians(degrees)
    cx, cy = w / 2.0, h / 2.0
    cos, sin = math.cos(th), math.sin(th)
    # PIL rotates counter-clockwise about the centre: input = R(-angle) (output - centre) + centre.
    return (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)


def _negate(v, rng):
    return -v if rng.random() > 0.5 else v


def _enhance_increasing(level, rng):
    return 1.0 + _negate(level / MAX_LEVEL * 0.9, rng)


def _solarize_add(x, add, thresh=128):
    return torch.where(x < thresh, (x.int() + add).clamp_(max=255).to(torch.uint8), x)


def apply_op(name, frames, level, rng, mode):
    """Returns uint8 (T, C, H, W) frames after RandAugment op `name` at magnitude `level` (0..10)."""
    # Imported here: torchvision's transforms take seconds to import, and only AUG.ENABLE runs need them.
    from torchvision.transforms.v2 import functional as TF

    h, w = frames.shape[-2:]
    if name == "AutoContrast":
        return TF.autocontrast(frames)
    if name == "Equalize":
        return TF.equalize(frames)
    if name == "Invert":
        return TF.invert(frames)
    if name == "Rotate":
        return affine(frames, _rotate_matrix(_negate(level / MAX_LEVEL * 30.0, rng), h, w), mode)
    if name in ("ShearX", "ShearY"):
        s = _negate(level / MAX_LEVEL * 0.3, rng)
        return affine(frames, (1, s, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, s, 1, 0), mode)
    if name in ("TranslateXRel", "TranslateYRel"):
        pct = _negate(level / MAX_LEVEL * 0.45, rng)
        m = (1, 0, pct * w, 0, 1, 0) if name == "TranslateXRel" else (1, 0, 0, 0, 1, pct * h)
        return affine(frames, m, mode)
    if name in ("Posterize", "PosterizeIncreasing"):
        bits = int(level / MAX_LEVEL * 4)
        bits = 4 - bits if name == "PosterizeIncreasing" else bits
        return frames if bits >= 8 else TF.posterize(frames, bits)
    if name in ("Solarize", "SolarizeIncreasing"):
        thresh = int(level / MAX_LEVEL * 256)
        thresh = 256 - thresh if name == "SolarizeIncreasing" else thresh
        return frames if thresh > 255 else TF.solarize(frames, thresh)
    if name == "SolarizeAdd":
        return _solarize_add(frames, int(level / MAX_LEVEL * 110))
    enhance = {"Color": TF.adjust_saturation, "Contrast": TF.adjust_contrast,
               "Brightness": TF.adjust_brightness, "Sharpness": TF.adjust_sharpness}
    base = name[: -len("Increasing")] if name.endswith("Increasing") else name
    if base in enhance:
        factor = _enhance_increasing(level, rng) if name.endswith("Increasing") else level / MAX_LEVEL * 1.8 + 0.1
        return enhance[base](frames, factor)
    raise ValueError(f"unknown RandAugment op {name}")


class RandAugment:
    """PySlowFast's video RandAugment: `num_ops` ops drawn with replacement, each applied with probability
    0.5 at magnitude N(magnitude, magnitude_std) clipped to [0, 10], the same for every frame."""

    def __init__(self, magnitude=9.0, num_ops=2, magnitude_std=0.0, increasing=False, interpolation="bicubic"):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"AUG.INTERPOLATION {interpolation!r}: choose one of {', '.join(INTERPOLATIONS)}")
        self.ops = RAND_INCREASING_OPS if increasing else RAND_OPS
        self.magnitude, self.num_ops, self.magnitude_std = magnitude, num_ops, magnitude_std
        self.interpolation = interpolation

    def __call__(self, frames, rng):
        """Returns augmented uint8 (T, C, H, W) frames."""
        for name in rng.choices(self.ops, k=self.num_ops):
            if rng.random() > 0.5:
                continue
            level = rng.gauss(self.magnitude, self.magnitude_std) if self.magnitude_std > 0 else self.magnitude
            level = min(MAX_LEVEL, max(0.0, level))
            # PIL's "random" resampling picks bilinear or bicubic per op.
            mode = rng.choice(("bilinear", "bicubic")) if self.interpolation == "random" else self.interpolation
            frames = apply_op(name, frames, level, rng, mode)
        return frames


def parse_rand_augment(aa_type, interpolation="bicubic"):
    """Returns the RandAugment of a PySlowFast AUG.AA_TYPE string ("rand-m9-mstd0.5-inc1"), None when empty."""
    if not aa_type:
        return None
    parts = aa_type.split("-")
    if parts[0] != "rand":
        raise ValueError(f"AUG.AA_TYPE {aa_type!r}: only RandAugment strings (rand-m<magnitude>-...) are supported")
    kw = {"interpolation": interpolation}
    for part in parts[1:]:
        m = re.fullmatch(r"(mstd|inc|m|n)([0-9.]+)", part)
        if m is None:
            raise ValueError(f"AUG.AA_TYPE {aa_type!r}: unknown part {part!r} (known: m, n, mstd, inc)")
        key, value = m.groups()
        if key == "m":
            kw["magnitude"] = float(value)
        elif key == "n":
            kw["num_ops"] = int(value)
        elif key == "mstd":
            kw["magnitude_std"] = float(value)
        else:
            kw["increasing"] = bool(int(value))
    return RandAugment(**kw)


# ------------------------------------------------------------------------------------------------ #
# Random erasing
# ------------------------------------------------------------------------------------------------ #


class RandomErasing:
    """Erases up to `max_count` boxes (2% to 1/3 of the frame in total, aspect 0.3 to 3.3) of a normalised
    float (C, T, H, W) clip with probability `probability`; the same boxes in every frame."""

    def __init__(self, probability=0.25, mode="pixel", max_count=1, min_area=0.02, max_area=1 / 3, min_aspect=0.3):
        if mode not in ("pixel", "rand", "const"):
            raise ValueError(f"AUG.RE_MODE {mode!r}: choose pixel, rand or const")
        self.probability, self.mode, self.max_count = probability, mode, max(int(max_count), 1)
        self.min_area, self.max_area = min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))

    def boxes(self, h, w, rng):
        """Returns the list of (top, left, height, width) boxes drawn for one clip (empty: not erased)."""
        if rng.random() > self.probability:
            return []
        count = rng.randint(1, self.max_count)
        out = []
        for _ in range(count):
            for _ in range(100):  # PySlowFast's attempts per box
                area = rng.uniform(self.min_area, self.max_area) * h * w / count
                aspect = math.exp(rng.uniform(*self.log_aspect))
                bh, bw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if bw < w and bh < h:
                    out.append((rng.randint(0, h - bh), rng.randint(0, w - bw), bh, bw))
                    break
        return out

    def __call__(self, clip, rng):
        """Returns `clip` (C, T, H, W, float) with its boxes erased in place."""
        c, t, h, w = clip.shape
        boxes = self.boxes(h, w, rng)
        if not boxes:
            return clip
        g = torch.Generator().manual_seed(rng.getrandbits(63))
        for top, left, bh, bw in boxes:
            region = clip[:, :, top : top + bh, left : left + bw]
            if self.mode == "pixel":
                region.copy_(torch.randn(region.shape, generator=g))
            elif self.mode == "rand":  # one colour per channel and frame, as PySlowFast draws per frame
                region.copy_(torch.randn(c, t, 1, 1, generator=g).expand_as(region))
            else:
                region.zero_()
        return clip


def build_clip_augment(cfg):
    """Returns (RandAugment or None, RandomErasing or None) of the AUG.* keys (both None unless AUG.ENABLE)."""
    a = cfg.AUG
    if not a.ENABLE:
        return None, None
    erase = RandomErasing(a.RE_PROB, a.RE_MODE, a.RE_COUNT) if a.RE_PROB > 0 else None
    return parse_rand_augment(a.AA_TYPE, a.INTERPOLATION), erase
