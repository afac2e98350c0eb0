"""Spatial transforms of decoded frames (PySlowFast semantics), and the one place clips are normalised.

Frames arrive as uint8 (T, H, W, 3) RGB from :mod:`vov3d.datasets.decode` and leave as float32
(C, T, H, W), normalised with ``DATA.MEAN`` / ``DATA.STD`` (given in the channel order fed to the model).

Channel order, as the official code feeds it: its Something-Something loaders read JPEG frames with
OpenCV (BGR) and ``DATA.REVERSE_INPUT_CHANNEL`` flips them to RGB; its Kinetics loader decodes RGB
with PyAV and the key flips it to BGR. Our decoders always give RGB, so a dataset says which order the
official loader produced (``official_bgr``) and the model gets BGR exactly when the official pipeline
gave it BGR for the same config: official SS configs (key True) feed RGB, the official X3D-L SS config
(key unset) feeds BGR, Kinetics feeds RGB unless the key is set.

* train: short side jittered in ``DATA.TRAIN_JITTER_SCALES`` (uniform, or uniform in 1/scale with
  ``DATA.INV_UNIFORM_SAMPLE``), a random ``TRAIN_CROP_SIZE`` square crop, a horizontal flip with
  probability 0.5 unless ``DATA.RANDOM_FLIP`` is False; with ``AUG.ENABLE``, RandAugment on the uint8
  frames first and random erasing of the normalised clip last (:mod:`vov3d.datasets.augment`);
* eval (val and test): short side resized to ``TEST_CROP_SIZE`` once per video, then square crops of
  ``TEST_CROP_SIZE``: 3 crops (0: left/top end, 1: centre, 2: right/bottom end along the long side,
  PySlowFast ``uniform_crop``) or 1 (centre).

Resizing is bilinear (``F.interpolate``, ``align_corners=False``, no antialiasing, as PySlowFast) on
the uint8 frames, channels-last as the decoder gives them: 5x faster than on float on this CPU (measured
5.7 vs 29 ms per 16-frame 340x256 clip), within 1 grey level of the float result. The single float
conversion is the normalisation, written straight into the output clip.
"""

import math
import random

import torch
import torch.nn.functional as F

from vov3d.datasets.augment import build_clip_augment


def to_tchw(frames):
    """Returns uint8 (T, H, W, 3) frames as a (T, 3, H, W) channels-last view (no copy)."""
    return frames.permute(0, 3, 1, 2)


def short_side_size(height, width, size):
    """Returns (new_height, new_width) with the short side equal to size (PySlowFast rounding)."""
    if width <= height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def resize_short_side(x, size):
    """Returns (T, C, H, W) frames (uint8 or float) resized, bilinear, so the short side equals size."""
    new_h, new_w = short_side_size(x.shape[-2], x.shape[-1], size)
    if (new_h, new_w) == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)


def jitter_scale(min_size, max_size, inverse_uniform, rng=random):
    """Returns a short-side size drawn uniformly in [min, max], or uniformly in 1/size when inverse_uniform."""
    if inverse_uniform:
        return int(round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size)))
    return int(round(rng.uniform(min_size, max_size)))


def random_crop(x, size, rng=random):
    """Returns a random size x size crop of (..., H, W) frames (the same for every frame)."""
    h, w = x.shape[-2:]
    y0 = rng.randint(0, h - size)
    x0 = rng.randint(0, w - size)
    return x[..., y0 : y0 + size, x0 : x0 + size]


def uniform_crop(x, size, spatial_idx):
    """Returns crop spatial_idx (0: left/top, 1: centre, 2: right/bottom along the long side) of (..., H, W)."""
    h, w = x.shape[-2:]
    y0 = int(math.ceil((h - size) / 2))
    x0 = int(math.ceil((w - size) / 2))
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    if h > w:
        y0 = {0: 0, 1: y0, 2: h - size}[spatial_idx]
    else:
        x0 = {0: 0, 1: x0, 2: w - size}[spatial_idx]
    return x[..., y0 : y0 + size, x0 : x0 + size]


class ClipTransform:
    """Turns decoded uint8 frames into normalised clips for one split, from the DATA.* / TEST.* keys."""

    def __init__(self, cfg, official_bgr=False):
        d = cfg.DATA
        self.jitter = (int(d.TRAIN_JITTER_SCALES[0]), int(d.TRAIN_JITTER_SCALES[1]))
        self.inverse_uniform = bool(d.INV_UNIFORM_SAMPLE)
        self.train_crop = int(d.TRAIN_CROP_SIZE)
        self.test_crop = int(d.TEST_CROP_SIZE)
        self.flip = bool(d.RANDOM_FLIP)
        self.bgr = bool(d.REVERSE_INPUT_CHANNEL) != bool(official_bgr)
        # 1/255 folded into the scale: normalisation is one multiply and one add per value.
        std = torch.tensor(d.STD, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(3, 1, 1, 1)
        self.shift = (-torch.tensor(d.MEAN, dtype=torch.float32) / std).view(3, 1, 1, 1)
        self.rand_augment, self.erasing = build_clip_augment(cfg)  # AUG.* (train only)

    def normalize(self, x, out=None):
        """Returns (T, 3, H, W) 0-255 frames as a normalised float32 (3, T, H, W) clip, written into out if given.

        The channel order is swapped to BGR first when the official pipeline would feed BGR (see above).
        """
        x = x.transpose(0, 1)
        if self.bgr:
            x = x.flip(0)
        if out is None:
            out = torch.empty(x.shape, dtype=torch.float32)
        # Convert-copy then in-place scale/shift: 2x faster than one mixed-dtype, strided addcmul.
        out.copy_(x)
        return out.mul_(self.scale).add_(self.shift)

    def train(self, frames, rng=random, out=None, crop=None):
        """Returns one augmented training clip, float32 (C, T, H, W) (written into out if given),
        from uint8 (T, H, W, 3) frames; `crop` (multigrid) replaces TRAIN_CROP_SIZE and scales the jitter
        range by crop / TRAIN_CROP_SIZE, as PySlowFast."""
        x = to_tchw(frames)
        if self.rand_augment is not None:  # on the whole uint8 frames, before jitter and crop (PySlowFast)
            x = self.rand_augment(x, rng)
        crop = crop or self.train_crop
        jitter = self.jitter if crop == self.train_crop else \
            tuple(int(round(j * crop / self.train_crop)) for j in self.jitter)
        size = jitter_scale(*jitter, self.inverse_uniform, rng)
        x = resize_short_side(x, max(size, crop))  # never smaller than the crop
        # Plain (T, C, H, W) layout before the float copy: a strided channels-last read is 2x slower.
        x = random_crop(x, crop, rng).contiguous()
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
        clip = self.normalize(x, out)
        return clip if self.erasing is None else self.erasing(clip, rng)

    def eval_views(self, decoded, num_clips, num_crops, out=None):
        """Returns float32 (V, C, T, H, W) views (written into out if given), V = num_clips * num_crops, clip-major.

        decoded: DecodedFrames whose request order is clip-major (clip k = requests [k*T, (k+1)*T)).
        Each distinct frame is resized once; every view is cut from the resized frames.
        """
        if num_crops not in (1, 3):
            raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be 1 or 3, got {num_crops}")
        # Plain (T, C, H, W) layout: the per-view float copies then read contiguous rows (2x faster).
        frames = resize_short_side(to_tchw(decoded.frames), self.test_crop).contiguous()
        num_frames = decoded.index.numel() // num_clips
        s = self.test_crop
        if out is None:
            out = torch.empty(num_clips * num_crops, 3, num_frames, s, s, dtype=torch.float32)
        crop_ids = (0, 1, 2) if num_crops == 3 else (1,)
        for k in range(num_clips):
            clip = frames[decoded.index[k * num_frames : (k + 1) * num_frames]]
            for j, c in enumerate(crop_ids):
                self.normalize(uniform_crop(clip, s, c), out=out[k * num_crops + j])
        return out
