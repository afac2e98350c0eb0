"""Mixup and CutMix of a whole training batch (PySlowFast's MIXUP.* keys and semantics).

Each sample is mixed with the sample at the mirrored position of the batch (``x.flip(0)``): mixup blends
whole clips, CutMix pastes one spatial box, the same for every frame (temporal consistency). Targets become
soft: label-smoothed one-hot vectors (off value ``s / K``, on value ``1 - s + s / K``) mixed with the same
weight, so each row sums to 1. A CutMix box clipped by the frame border corrects the weight to the pasted
area, as PySlowFast (and timm, which it follows) do.

The draws of iteration i come from a stream seeded by (seed, epoch, i, rank), not from the global RNG, so a
resumed run mixes its batches exactly as an uninterrupted one would.
"""

import math
import random

import torch


def one_hot_smoothed(labels, num_classes, smoothing=0.0):
    """Returns float (N, num_classes) targets: one-hot `labels` with label smoothing `smoothing`."""
    off = smoothing / num_classes
    out = torch.full((labels.numel(), num_classes), off, device=labels.device)
    return out.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def mixed_targets(labels, num_classes, lam, smoothing=0.0):
    """Returns soft targets lam * onehot(labels) + (1 - lam) * onehot(labels flipped), each smoothed."""
    t = one_hot_smoothed(labels, num_classes, smoothing)
    return t * lam + t.flip(0) * (1.0 - lam)


def cutmix_box(height, width, lam, rng):
    """Returns ((y0, y1, x0, x1), corrected lam) of a box covering about 1 - lam of the frame, clipped to it."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    y0, y1 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    x0, x1 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return (y0, y1, x0, x1), 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)


class MixUp:
    """Mixes a batch of clips (N, C, T, H, W) and turns its labels into soft targets (PySlowFast MixUp)."""

    def __init__(self, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=1.0, switch_prob=0.5,
                 label_smoothing=0.1):
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mix_prob, self.switch_prob = mix_prob, switch_prob
        self.label_smoothing = label_smoothing

    def draw(self, rng):
        """Returns (lam, use_cutmix) for one batch: lam 1.0 when the batch is left unmixed."""
        if rng.random() >= self.mix_prob or (self.mixup_alpha <= 0 and self.cutmix_alpha <= 0):
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = rng.random() < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return rng.betavariate(alpha, alpha), use_cutmix

    def __call__(self, x, labels, rng):
        """Returns (mixed clips, soft targets (N, num_classes)); `x` is mixed in place."""
        lam, use_cutmix = self.draw(rng)
        if lam < 1.0 and x.size(0) > 1:  # a clip alone (a multigrid batch of 1) has no partner: left unmixed
            if use_cutmix:
                (y0, y1, x0, x1), lam = cutmix_box(x.shape[-2], x.shape[-1], lam, rng)
                x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
            else:
                other = x.flip(0).mul_(1.0 - lam)
                x.mul_(lam).add_(other)
        return x, mixed_targets(labels, self.num_classes, lam, self.label_smoothing)


def build_mixup(cfg):
    """Returns the MixUp of the MIXUP.* keys, or None when MIXUP.ENABLE is False."""
    if not cfg.MIXUP.ENABLE:
        return None
    m = cfg.MIXUP
    return MixUp(cfg.MODEL.NUM_CLASSES, m.ALPHA, m.CUTMIX_ALPHA, m.PROB, m.SWITCH_PROB, m.LABEL_SMOOTH_VALUE)


def batch_rng(seed, epoch, iteration, rank=0):
    """Returns the random.Random a training iteration's batch-level draws come from."""
    return random.Random(f"vov3d-batch:{seed}:{epoch}:{iteration}:{rank}")
