"""Temporal sampling: which frames a clip is made of.

Segment sampling (Something-Something; TSN-style as in PySlowFast/VoV3D ``Ssv2``)
    The N frames of a video are split into ``NUM_FRAMES`` equal segments (segment length N / NUM_FRAMES,
    in frames, fractional) and one frame is taken per segment:

    * train: a uniformly random frame inside each segment;
    * test view k of K (``TEST.NUM_ENSEMBLE_VIEWS``) with ``DATA.SS_TEST_VIEW_OFFSET``:
      ``uniform`` (default) takes the frame at offset (k + 0.5) / K of every segment - deterministic,
      and the K views interleave; ``middle`` reproduces PySlowFast/VoV3D exactly (segments bounded at
      round((N - 1) / S * s), the middle frame of each, the same for every view);
    * val (one view) is test view 0 of 1: the middle of each segment.

    Videos shorter than NUM_FRAMES repeat frames (indices stay inside [0, N)).

Dense sampling (Kinetics; PySlowFast semantics, in seconds rather than header frame counts)
    A clip is ``NUM_FRAMES`` frames ``SAMPLING_RATE / TARGET_FPS`` seconds apart, i.e. it spans
    ``NUM_FRAMES * SAMPLING_RATE / TARGET_FPS`` seconds whatever the video's own frame rate. With
    ``delta = max(duration - span, 0)`` the clip starts at uniform(0, delta) for train, at delta / 2 for a
    single test view and at ``delta * k / (K - 1)`` for test view k of K > 1 (PySlowFast's uniform
    spacing). The decoder returns the frame displayed at each time and clamps times past either end
    (short videos repeat their first/last frames).
"""

import random
from typing import List, Optional

SS_VIEW_OFFSETS = ("uniform", "middle")


class SampleIndex(int):
    """A dataset index (an int, so any dataset accepts it) that also carries the epoch and seed it was
    drawn for: datasets draw the sample's augmentation from :func:`sample_rng` of it."""

    def __new__(cls, index, epoch, seed):
        obj = super().__new__(cls, index)
        obj.epoch, obj.seed = int(epoch), int(seed)
        return obj

    def __reduce__(self):  # int subclasses do not pickle their attributes by themselves (loader workers)
        return (SampleIndex, (int(self), self.epoch, self.seed))


def sample_rng(index):
    """Returns the random.Random a sample draws its augmentation from: seeded by (seed, epoch, index) for a
    SampleIndex (the same draws in any worker, after any resume), else the process-wide `random` module."""
    if isinstance(index, SampleIndex):
        # A str seed is hashed with SHA-512 by random.seed: stable across processes and Python runs.
        return random.Random(f"vov3d-sample:{index.seed}:{index.epoch}:{int(index)}")
    return random


def segment_indices(num_frames: int, num_segments: int, view: Optional[int] = None, num_views: int = 1,
                    offset_rule: str = "uniform", rng: Optional[random.Random] = None) -> List[int]:
    """Returns one frame index per segment: random per segment when view is None, else test view `view`."""
    if num_frames <= 0:
        raise ValueError(f"segment sampling needs at least one frame, got {num_frames}")
    if view is None:
        rng = rng or random
        seg = num_frames / num_segments
        return [min(int(seg * (s + rng.random())), num_frames - 1) for s in range(num_segments)]
    if not 0 <= view < num_views:
        raise ValueError(f"view {view} out of range for {num_views} views")
    if offset_rule == "uniform":
        seg = num_frames / num_segments
        offset = (view + 0.5) / num_views
        return [min(int(seg * (s + offset)), num_frames - 1) for s in range(num_segments)]
    if offset_rule == "middle":
        seg = (num_frames - 1) / num_segments
        bounds = [int(round(seg * s)) for s in range(num_segments + 1)]
        return [(bounds[s] + bounds[s + 1]) // 2 for s in range(num_segments)]
    raise ValueError(f"DATA.SS_TEST_VIEW_OFFSET must be one of {SS_VIEW_OFFSETS}, got {offset_rule!r}")


def segment_views(num_frames: int, num_segments: int, num_views: int, offset_rule: str = "uniform") -> List[int]:
    """Returns the frame indices of all test views, view-major (view k occupies [k*S, (k+1)*S))."""
    return [i for k in range(num_views)
            for i in segment_indices(num_frames, num_segments, k, num_views, offset_rule)]


def clip_span(num_frames: int, sampling_rate: int, target_fps: float) -> float:
    """Returns the seconds a dense clip spans: NUM_FRAMES frames at SAMPLING_RATE / TARGET_FPS seconds."""
    return num_frames * sampling_rate / float(target_fps)


def dense_times(start: float, duration: Optional[float], num_frames: int, sampling_rate: int, target_fps: float,
                view: Optional[int] = None, num_views: int = 1, rng: Optional[random.Random] = None) -> List[float]:
    """Returns the frame times (seconds) of one dense clip: random start when view is None, else test view."""
    step = sampling_rate / float(target_fps)
    delta = max((duration or 0.0) - clip_span(num_frames, sampling_rate, target_fps), 0.0)
    if view is None:
        offset = (rng or random).uniform(0.0, delta)
    elif num_views == 1:
        offset = delta / 2.0
    else:
        if not 0 <= view < num_views:
            raise ValueError(f"view {view} out of range for {num_views} views")
        offset = delta * view / (num_views - 1)
    return [start + offset + i * step for i in range(num_frames)]


def dense_views(start: float, duration: Optional[float], num_frames: int, sampling_rate: int, target_fps: float,
                num_views: int) -> List[float]:
    """Returns the frame times of all test views, view-major."""
    return [t for k in range(num_views)
            for t in dense_times(start, duration, num_frames, sampling_rate, target_fps, k, num_views)]
