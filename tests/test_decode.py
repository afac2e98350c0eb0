"""Decoding: exact frames by index and by time, partial decoding, bad files, backend parity."""

import os

import pytest
import torch

from vov3d.datasets import decode, synthetic
from vov3d.datasets.decode import DecodeError, FrameFolder, decode_frames
from vov3d.datasets.synthetic import read_frame_code

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def codes(decoded):
    return [read_frame_code(f) for f in decoded.ordered()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    w = synthetic.write_video
    return {
        "h264": w(str(root / "a.mp4"), 37, 64, 48, fps=15, codec="h264", gop=6),
        "h264_audio": w(str(root / "audio.mp4"), 30, 64, 48, fps=30, codec="h264", audio=True),
        "vp9": w(str(root / "b.webm"), 30, 64, 48, fps=12, codec="vp9"),
        "long_gop": w(str(root / "long.mp4"), 120, 64, 48, fps=30, codec="h264", gop=120),
        "short_gop": w(str(root / "short.mp4"), 120, 64, 48, fps=30, codec="h264", gop=10),
        "ntsc": w(str(root / "ntsc.mp4"), 40, 64, 48, fps=30000 / 1001, codec="h264"),
        "root": root,
    }


@pytest.mark.parametrize("name", ["h264", "vp9", "h264_audio", "long_gop"])
def test_index_mode_returns_exact_frames(videos, name):
    out = decode_frames(videos[name], index_fn=lambda n: [0, 3, 3, n - 1, 7])
    assert out.frames.dtype == torch.uint8 and out.frames.shape[1:] == (48, 64, 3)
    assert codes(out) == [0, 3, 3, out.num_frames - 1, 7]
    assert out.frames.shape[0] == 4  # the repeated frame is decoded/converted once
    assert out.num_frames == {"h264": 37, "vp9": 30, "h264_audio": 30, "long_gop": 120}[name]


def test_webm_header_has_no_frame_count_but_duration_is_known(videos):
    info = decode.probe(videos["vp9"])
    assert info.fps == pytest.approx(12) and info.duration == pytest.approx(2.5, abs=0.1)


@pytest.mark.parametrize("name", ["h264", "vp9", "ntsc"])
def test_time_mode_returns_frame_displayed_at_each_time(videos, name):
    info = decode.probe(videos[name])
    times = [0.0, 0.5, 1.0, 1.01, 100.0]  # 100 s is past the end: clamped to the last frame
    out = decode_frames(videos[name], times_fn=lambda i: times)
    n = {"h264": 37, "vp9": 30, "ntsc": 40}[name]
    expected = [min(int(t * info.fps + 1e-6), n - 1) for t in times]
    assert codes(out) == expected


def test_time_mode_seeks_instead_of_decoding_everything(videos, monkeypatch):
    decoded = []
    original = decode._PyAVDecoder._frames

    def counting(self, *a, **k):
        for item in original(self, *a, **k):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(decode._PyAVDecoder, "_frames", counting)
    times = [3.0 + i / 30 for i in range(8)]  # frames 90..97 of 120
    out = decode_frames(videos["short_gop"], times_fn=lambda i: times)
    assert codes(out) == list(range(90, 98))
    assert len(decoded) <= 20, f"decoded {len(decoded)} frames for an 8-frame clip (short GOP: seek expected)"
    decoded.clear()
    out = decode_frames(videos["long_gop"], times_fn=lambda i: times)  # one keyframe: must decode from 0
    assert codes(out) == list(range(90, 98))
    assert max(decoded) < 3.5  # stops right after the last needed frame


def test_jpeg_folder(tmp_path):
    folder = synthetic.write_frames(str(tmp_path / "v"), 9, 64, 48)
    out = decode_frames(FrameFolder(folder), index_fn=lambda n: [8, 0, 4])
    assert out.num_frames == 9 and codes(out) == [8, 0, 4]
    with pytest.raises(ValueError):
        decode_frames(FrameFolder(folder), times_fn=lambda i: [0.0])


@pytest.mark.parametrize("mode,reason", [("truncate", "cannot open"), ("empty", "empty file"), ("garbage", "cannot open")])
def test_damaged_mp4_raises_decode_error(videos, tmp_path, mode, reason):
    path = str(tmp_path / "bad.mp4")
    with open(videos["h264"], "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    synthetic.corrupt_file(path, mode)
    with pytest.raises(DecodeError, match=reason) as e:
        decode_frames(path, index_fn=lambda n: [0])
    assert e.value.path == path


def test_missing_file_and_folder():
    with pytest.raises(DecodeError, match="missing file"):
        decode_frames("/nonexistent/x.mp4", index_fn=lambda n: [0])
    with pytest.raises(DecodeError, match="missing frame folder"):
        decode_frames(FrameFolder("/nonexistent/dir"), index_fn=lambda n: [0])


def test_truncated_webm_is_detected(tmp_path):
    # A cut WebM opens and decodes silently but holds fewer frames than its header declares.
    path = synthetic.write_video(str(tmp_path / "t.webm"), 60, 64, 48, fps=12, codec="vp9", pattern="texture")
    synthetic.corrupt_file(path, "truncate")
    with pytest.raises(DecodeError, match="truncated"):
        decode_frames(path, index_fn=lambda n: [0])
    with pytest.raises(DecodeError, match="truncated|no decodable"):
        decode_frames(path, times_fn=lambda info: [4.0])


def test_too_few_frames(videos):
    with pytest.raises(DecodeError, match="too few frames"):
        decode_frames(videos["vp9"], index_fn=lambda n: [0], min_frames=31)


def test_corrupt_jpeg(tmp_path):
    folder = synthetic.write_frames(str(tmp_path / "v"), 4, 64, 48)
    synthetic.corrupt_file(os.path.join(folder, "00002.jpg"), "garbage")
    with pytest.raises(DecodeError, match="JPEG|read"):
        decode_frames(FrameFolder(folder), index_fn=lambda n: [0, 1])


def _torchcodec_usable():
    ok, why = decode.torchcodec_available()
    return ok, why


@pytest.mark.skipif(not _torchcodec_usable()[0], reason=f"torchcodec not usable: {_torchcodec_usable()[1]}")
@pytest.mark.parametrize("name", ["h264", "vp9", "h264_audio", "ntsc"])
def test_torchcodec_parity(videos, name):
    for kw in ({"index_fn": lambda n: [0, 5, 5, n - 1, 17 % n]},
               {"times_fn": lambda info: [info.start + i * 0.1 for i in range(0, 40, 3)]}):
        a = decode_frames(videos[name], backend="pyav", **kw)
        b = decode_frames(videos[name], backend="torchcodec", **kw)
        assert torch.equal(a.index, b.index)
        assert codes(a) == codes(b)
        # Same decoder library family, same frames: pixels agree up to colour-conversion rounding.
        assert (a.ordered().int() - b.ordered().int()).abs().max() <= 2
