"""Temporal sampling (segments, dense clips, views) and spatial transforms."""

import random

import pytest
import torch

from vov3d.config.defaults import get_cfg
from vov3d.datasets import sampling, transforms
from vov3d.datasets.decode import DecodedFrames, VideoInfo


# ---------------------------------------------------------------------------------------------- #
# Segment sampling
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("n,s", [(40, 8), (17, 8), (8, 8), (5, 8), (1, 4), (100, 16)])
def test_train_segments_pick_one_frame_inside_each_segment(n, s):
    rng = random.Random(0)
    for _ in range(50):
        idx = sampling.segment_indices(n, s, rng=rng)
        assert len(idx) == s and all(0 <= i < n for i in idx)
        for seg, i in enumerate(idx):
            assert int(seg * n / s) <= i <= max(int((seg + 1) * n / s - 1e-9), int(seg * n / s))


def test_train_segments_are_random_and_cover_each_segment():
    rng = random.Random(0)
    seen = {sampling.segment_indices(40, 4, rng=rng)[0] for _ in range(300)}
    assert seen == set(range(10))


def test_test_views_are_deterministic_and_interleave():
    a = sampling.segment_views(40, 4, 2)
    assert a == sampling.segment_views(40, 4, 2)
    # Segment length 10: view 0 at offset 0.25 (frame 2), view 1 at 0.75 (frame 7).
    assert a == [2, 12, 22, 32, 7, 17, 27, 37]
    assert sampling.segment_indices(40, 4, view=0, num_views=1) == [5, 15, 25, 35]  # val: middles


def test_middle_rule_matches_pyslowfast():
    # PySlowFast Ssv2.get_seq_frames (test): bounds round((N-1)/S * s), middle (start + end) // 2.
    def reference(n, s):
        seg = float(n - 1) / s
        out = []
        for i in range(s):
            start, end = int(round(seg * i)), int(round(seg * (i + 1)))
            out.append((start + end) // 2)
        return out

    for n in (5, 16, 37, 120):
        for k in (0, 1):
            assert sampling.segment_indices(n, 8, view=k, num_views=2, offset_rule="middle") == reference(n, 8)


# ---------------------------------------------------------------------------------------------- #
# Dense sampling
# ---------------------------------------------------------------------------------------------- #
def test_dense_clip_spacing_and_views():
    span = sampling.clip_span(16, 5, 30)
    assert span == pytest.approx(16 * 5 / 30)
    t = sampling.dense_times(0.0, 10.0, 16, 5, 30, view=0, num_views=1)
    assert t[0] == pytest.approx((10 - span) / 2) and t[1] - t[0] == pytest.approx(5 / 30)
    views = sampling.dense_views(0.0, 10.0, 16, 5, 30, 10)
    starts = views[::16]
    assert starts[0] == 0.0 and starts[-1] == pytest.approx(10 - span)
    assert all(b > a for a, b in zip(starts, starts[1:]))


def test_dense_train_start_is_random_inside_video():
    rng = random.Random(0)
    starts = [sampling.dense_times(1.0, 10.0, 8, 8, 30, rng=rng)[0] for _ in range(200)]
    span = sampling.clip_span(8, 8, 30)
    assert min(starts) >= 1.0 and max(starts) <= 1.0 + 10 - span
    assert max(starts) - min(starts) > 5


def test_dense_short_video_starts_at_zero():
    assert sampling.dense_times(0.0, 1.0, 16, 5, 30)[0] == 0.0  # span 2.67 s > 1 s: delta 0


# ---------------------------------------------------------------------------------------------- #
# Transforms
# ---------------------------------------------------------------------------------------------- #
def _cfg(**data):
    cfg = get_cfg()
    cfg.DATA.TRAIN_JITTER_SCALES = [32, 40]
    cfg.DATA.TRAIN_CROP_SIZE = 24
    cfg.DATA.TEST_CROP_SIZE = 32
    for k, v in data.items():
        cfg.DATA[k] = v
    return cfg


def _column_frames(t, h, w):
    """uint8 (T, H, W, 3): R = column index, G = row index, B = frame index."""
    x = torch.zeros(t, h, w, 3, dtype=torch.uint8)
    x[..., 0] = torch.arange(w).view(1, 1, w)
    x[..., 1] = torch.arange(h).view(1, h, 1)
    x[..., 2] = torch.arange(t).view(t, 1, 1)
    return x


def test_short_side_sizes_follow_pyslowfast():
    assert transforms.short_side_size(240, 320, 256) == (256, 341)
    assert transforms.short_side_size(320, 240, 256) == (341, 256)


def test_jitter_scales():
    rng = random.Random(0)
    uni = [transforms.jitter_scale(256, 320, False, rng) for _ in range(2000)]
    inv = [transforms.jitter_scale(256, 320, True, rng) for _ in range(2000)]
    assert min(uni) >= 256 and max(uni) <= 320 and min(inv) >= 256 and max(inv) <= 320
    assert sum(inv) / len(inv) < sum(uni) / len(uni)  # uniform in 1/s favours small scales


def test_uniform_crop_positions():
    x = torch.arange(10 * 16).view(1, 10, 16).float()  # landscape: crops move along the width
    assert transforms.uniform_crop(x, 10, 0)[0, 0, 0] == 0
    assert transforms.uniform_crop(x, 10, 1)[0, 0, 0] == 3
    assert transforms.uniform_crop(x, 10, 2)[0, 0, 0] == 6
    y = x.transpose(1, 2)  # portrait: along the height
    assert transforms.uniform_crop(y, 10, 2)[0, 0, 0] == y[0, 6, 0]


def test_train_clip_shape_normalisation_and_flip():
    frames = _column_frames(4, 48, 64)
    t = transforms.ClipTransform(_cfg(RANDOM_FLIP=False))
    out = t.train(frames, random.Random(0))
    assert out.shape == (3, 4, 24, 24) and out.dtype == torch.float32
    raw = out * 0.225 + 0.45  # back to 0-1
    assert torch.all(raw[0, :, :, 1:] >= raw[0, :, :, :-1] - 1e-4)  # no flip: columns increase
    t = transforms.ClipTransform(_cfg(RANDOM_FLIP=True))
    flipped = [t.train(frames, random.Random(s)) for s in range(20)]
    assert any(bool(torch.all((c[0, :, :, 1:] <= c[0, :, :, :-1] + 1e-4))) for c in flipped)
    assert raw[2, :, 0, 0].mul(255).round().tolist() == [0, 1, 2, 3]  # frame order kept


def test_bgr_and_mean_std():
    frames = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    frames[..., 0] = 255  # pure red
    rgb = transforms.ClipTransform(_cfg(MEAN=[0.5, 0.5, 0.5], STD=[0.5, 0.5, 0.5]))
    bgr = transforms.ClipTransform(_cfg(MEAN=[0.5, 0.5, 0.5], STD=[0.5, 0.5, 0.5], REVERSE_INPUT_CHANNEL=True))
    d = DecodedFrames(frames, torch.tensor([0, 1]), 2, VideoInfo())
    a = rgb.eval_views(d, 1, 1)[0]
    b = bgr.eval_views(d, 1, 1)[0]
    assert a[:, 0, 0, 0].tolist() == pytest.approx([1.0, -1.0, -1.0])
    assert b[:, 0, 0, 0].tolist() == pytest.approx([-1.0, -1.0, 1.0])


def test_eval_views_are_clip_major_and_cut_from_one_resize():
    frames = _column_frames(6, 32, 64)  # short side already = TEST_CROP_SIZE (32): no resampling
    t = transforms.ClipTransform(_cfg(MEAN=[0, 0, 0], STD=[1 / 255] * 3))
    # 2 clips of 3 frames: clip 0 = frames 0,2,4; clip 1 = frames 1,3,5.
    d = DecodedFrames(frames, torch.tensor([0, 2, 4, 1, 3, 5]), 6, VideoInfo())
    views = t.eval_views(d, 2, 3)
    assert views.shape == (6, 3, 3, 32, 32)
    for v in range(6):
        clip, crop = divmod(v, 3)
        assert views[v, 2, :, 0, 0].round().tolist() == [clip, clip + 2, clip + 4]
        assert views[v, 0, 0, 0, 0].round().item() == {0: 0, 1: 16, 2: 32}[crop]
    one = t.eval_views(d, 2, 1)
    assert one.shape == (2, 3, 3, 32, 32) and one[0, 0, 0, 0, 0].round().item() == 16
