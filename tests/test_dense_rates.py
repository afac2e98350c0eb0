"""Dense clips at any sampling rate: a rate below the video's frame rate repeats frames, it is not bad data."""

import pytest

from vov3d.datasets import sampling
from vov3d.datasets.decode import DecodeError, decode_frames, probe
from vov3d.datasets.synthetic import read_frame_code, write_video


@pytest.mark.parametrize("rate,target_fps", [(1, 12), (1, 30), (2, 30), (5, 30)])
def test_low_rates_decode_every_requested_time(tmp_path, rate, target_fps):
    path = write_video(str(tmp_path / "v.mp4"), 40, fps=12)
    info = probe(path)
    for view in range(3):
        out = decode_frames(path, times_fn=lambda i: sampling.dense_times(
            i.start, i.duration, 8, rate, target_fps, view, 3), min_frames=8)
        codes = [read_frame_code(f) for f in out.ordered().numpy()]
        assert codes == sorted(codes) and len(codes) == 8
    assert info.fps == pytest.approx(12, rel=0.01)


def test_video_shorter_than_its_clip_is_still_too_short(tmp_path):
    path = write_video(str(tmp_path / "short.mp4"), 6, fps=12)
    with pytest.raises(DecodeError, match="too few frames"):
        decode_frames(path, times_fn=lambda i: sampling.dense_times(i.start, i.duration, 8, 2, 12), min_frames=8)
