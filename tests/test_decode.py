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


# ---------------------------------------------------------------------------------------------- #
# Display order in every container (B-frames; AVI attaches decode-order pts)
# ---------------------------------------------------------------------------------------------- #
BFRAME_VIDEOS = [("h264", "avi"), ("mpeg4", "avi"), ("h264", "mkv"), ("h264", "mp4"), ("mpeg4", "mp4")]
# Containers without B-frames in our encoders, checked the same way (Theora only where PyAV has libtheora).
OTHER_VIDEOS = [("vp9", "webm"), pytest.param(("theora", "ogv"), marks=pytest.mark.skipif(
    "libtheora" not in __import__("av").codecs_available, reason="this PyAV build has no Theora encoder"))]


@pytest.fixture(scope="module")
def bframe_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("bframes")

    class Videos(dict):
        def __missing__(self, key):  # written on first use: Theora only where it can be encoded
            codec, ext = key
            self[key] = synthetic.write_video(str(root / f"{codec}.{ext}"), 60, 32, 32, fps=25, codec=codec, gop=12,
                                              b_frames=2 if codec in ("h264", "mpeg4") else None)
            return self[key]

    return Videos()


def sequential_decode(path):
    """Returns (frame codes, display times in s) of a plain decode: decoder output order, pts sorted."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        tb = float(stream.time_base)
        return [read_frame_code(f.to_ndarray(format="rgb24")) for f in frames], \
            sorted(f.pts * tb for f in frames), [str(f.pict_type) for f in frames], [f.pts for f in frames]


def backends():
    return ["pyav", pytest.param("torchcodec", marks=pytest.mark.skipif(
        not _torchcodec_usable()[0], reason=f"torchcodec not usable: {_torchcodec_usable()[1]}"))]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("video", BFRAME_VIDEOS + OTHER_VIDEOS, ids=lambda v: "-".join(v) if isinstance(v, tuple) else v)
def test_bframe_videos_give_display_order_by_index_and_time(bframe_videos, video, backend):
    path = bframe_videos[video]
    seq, times, types, pts = sequential_decode(path)
    assert seq == list(range(60)), "the decoder itself returns display order"
    if video in BFRAME_VIDEOS:
        assert any(t.endswith("B") or t == "3" for t in types), "the fixture must hold B-frames"
    if video == ("h264", "avi"):
        assert pts != sorted(pts), "the fixture must show AVI's decode-order pts"
    out = decode_frames(path, index_fn=lambda n: list(range(n)), backend=backend)
    assert out.num_frames == 60 and codes(out) == seq
    out = decode_frames(path, index_fn=lambda n: [59, 2, 3, 2, 30, 31], backend=backend)  # sparse, unsorted
    assert codes(out) == [59, 2, 3, 2, 30, 31]
    # Each frame is displayed from its time until the next one's: ask at both ends of that interval.
    ends = [t + 0.9 * (b - t) for t, b in zip(times, times[1:] + [times[-1] + 0.04])]
    for ask in (times, ends, times[10:20], ends[33:36]):
        out = decode_frames(path, times_fn=lambda info: ask, backend=backend)
        assert codes(out) == [seq[times.index(t)] if t in times else seq[ends.index(t)] for t in ask]


class _Held:
    """Counts the decoded frames alive at once: av.open is wrapped so that every frame a packet decodes
    comes out wrapped in a counted proxy (PyAV's own objects take no weak references)."""

    alive = peak = 0

    class Proxy:
        def __init__(self, target):
            self._target = target

        def __getattr__(self, name):
            return getattr(self._target, name)

    class Frame(Proxy):
        def __init__(self, target):
            super().__init__(target)
            _Held.alive += 1
            _Held.peak = max(_Held.peak, _Held.alive)

        def __del__(self):
            _Held.alive -= 1

    class Packet(Proxy):
        def decode(self):
            return [_Held.Frame(f) for f in self._target.decode()]

    class Container(Proxy):
        def demux(self, *args, **kwargs):
            return (_Held.Packet(p) for p in self._target.demux(*args, **kwargs))


def test_decoding_keeps_only_requested_frames(bframe_videos, monkeypatch):
    import av

    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _Held.Container(real_open(*a, **k)))
    rgb = decode._PyAVDecoder._rgb  # the converter takes PyAV's own frames: unwrap the proxies
    monkeypatch.setattr(decode._PyAVDecoder, "_rgb", staticmethod(lambda frame: rgb(frame._target)))
    for video in [("h264", "avi"), ("h264", "mp4")]:
        _Held.alive = _Held.peak = 0
        out = decode_frames(bframe_videos[video], index_fn=lambda n: [1, 20, 40, 58, 20], threads=1)
        assert codes(out) == [1, 20, 40, 58, 20] and out.frames.shape[0] == 4  # kept: the 4 distinct frames
        # Decoded (YUV) frames held at once: those of the packet in hand, not the video's 60.
        assert 0 < _Held.peak <= 3, f"{video}: {_Held.peak} decoded frames held at once for a 4-frame request"
        # Time sampling over the whole video: the same bound (AVI adds its reorder window).
        _Held.alive = _Held.peak = 0
        out = decode_frames(bframe_videos[video], times_fn=lambda info: [0.1, 0.9, 1.7, 2.3], threads=1)
        assert out.frames.shape[0] == 4
        window = decode._REORDER_WINDOW if video[1] == "avi" else 0
        assert 0 < _Held.peak <= 3 + window, f"{video}: {_Held.peak} decoded frames held at once (time mode)"


def test_index_mode_recounts_when_the_header_lies(bframe_videos, monkeypatch):
    # The indices are planned from the header's count; a wrong count costs a second decode, never a wrong frame.
    path = bframe_videos[("h264", "mp4")]
    monkeypatch.setattr(decode._PyAVDecoder, "_count_packets", lambda self: 45)
    import av

    monkeypatch.setattr(av.video.stream.VideoStream, "frames", property(lambda self: 0), raising=False)
    seen = []
    out = decode_frames(path, index_fn=lambda n: seen.append(n) or [0, n - 1])
    assert seen == [45, 60] and codes(out) == [0, 59] and out.num_frames == 60


@pytest.mark.parametrize("name", ["vp9", "long_gop"])
def test_decoded_video_cache_gives_the_same_frames_and_draws(videos, name, monkeypatch):
    """DATA.DECODED_CACHE_MB: the same frames and the same calls of index_fn (a sampler's random stream
    is consumed alike), also when the header's count is wrong; one decode per video while it fits."""
    import random

    monkeypatch.setattr(decode, "_VIDEO_CACHE", [])
    decodes = []
    keep = decode._PyAVDecoder._keep
    monkeypatch.setattr(decode._PyAVDecoder, "_keep", lambda self, i: decodes.append(i) or keep(self, i))

    def run(cache_mb, seed):
        rng, seen = random.Random(seed), []
        out = decode_frames(videos[name], index_fn=lambda n: seen.append(n) or sorted(rng.sample(range(n), 5)),
                            cache_mb=cache_mb)
        return codes(out), seen, rng.random()

    for seed in range(3):
        assert run(0, seed) == run(64, seed)
    assert sum(i is None for i in decodes) == 1  # decoded whole once, then served from the cache
    monkeypatch.setattr(decode._PyAVDecoder, "_count_packets", lambda self: 7)  # a lying count
    monkeypatch.setattr(decode, "_VIDEO_CACHE", [])
    import av

    monkeypatch.setattr(av.video.stream.VideoStream, "frames", property(lambda self: 0), raising=False)
    plain, cached = run(0, 5), run(64, 5)
    assert plain == cached and plain[1][0] == 7 and len(plain[1]) == 2
    assert decode.decoded_video_cache(64).bytes == codes_bytes(videos[name])
    tiny = decode.DecodedVideoCache(max_bytes=10)  # room for one entry: the least recently used is dropped
    tiny.put("a", (torch.zeros(8, dtype=torch.uint8), 1, None))
    tiny.put("b", (torch.zeros(4, dtype=torch.uint8), 1, None))
    assert tiny.get("a") is None and tiny.get("b") is not None and tiny.bytes == 4


def codes_bytes(path):
    out = decode_frames(path, index_fn=lambda n: [0])
    return out.num_frames * out.frames[0].numel()


def test_frames_convert_in_a_child_forked_after_the_parent_converted(videos):
    """The colour converter is per process: a loader worker forked after the parent converted frames
    must not reuse the parent's swscale context (it deadlocked on the parent's slice threads)."""
    import multiprocessing

    expected = codes(decode_frames(videos["vp9"], index_fn=lambda n: [0, 5]))  # the parent converts first
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_codes_of, (videos["vp9"],)).get(timeout=60)
    assert got == expected


def _codes_of(path):
    return codes(decode_frames(path, index_fn=lambda n: [0, 5]))
