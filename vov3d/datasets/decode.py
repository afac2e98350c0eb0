"""Frame decoding: every backend behind one function, :func:`decode_frames`.

Sources and backends
    * a video file (any container/codec FFmpeg reads; always ``streams.video[0]``), decoded with
      ``pyav`` (default, no system dependency) or ``torchcodec`` (when importable and its FFmpeg
      libraries load; ``DATA.DECODING_BACKEND``);
    * a :class:`FrameFolder` (JPEG frames), decoded with ``torchvision.io.decode_jpeg``.

Two ways to say which frames (exactly one per call)
    * ``index_fn(num_frames) -> indices``: frames by index in presentation order. The true frame count
      is needed, and headers lie (WebM has none, truncated files keep their old duration), so PyAV
      decodes the whole stream without colour conversion, keeping (and converting) only the chosen
      frames: indices are planned from the header's (or the packet) count, and planned again, with a
      second decode, only when the decode finds another count. torchcodec scans the file
      (``seek_mode="exact"``). Used by segment (Something-Something) sampling, whose segments span the
      whole video anyway.
    * ``times_fn(info) -> seconds``: the frames *displayed* at those times (the last frame whose pts is
      <= t; clamped to the first/last frame). Only the needed span is decoded: PyAV seeks to the
      keyframe before the first time and stops after the last one, keeping only the frames displayed at
      the requested times. Used by dense (Kinetics) sampling,
      so timestamps, not header frame counts, decide (VFR and odd headers are handled).

Frame i is the frame a player shows at i: frames are taken in the decoder's output order, which is display
order, and never re-sorted by their pts (AVI attaches decode-order pts to B-frame streams; see
``_PyAVDecoder._frames``). torchcodec hands AVI files to PyAV (it fails on their last frames).

The result keeps each distinct frame once (``frames``) plus the request order (``index``), so all test
views of a video share one decode and one resize.

Failures raise :class:`DecodeError` with a short reason (missing, empty, cannot open, no video stream,
no decodable frames, truncated, too few frames); datasets turn it into substitution (train) or an
excluded, reported video (test).
"""

import bisect
import collections
import dataclasses
import functools
import heapq
import logging
import math
import os
import threading
from typing import Callable, List, Optional, Sequence

import torch

logger = logging.getLogger(__name__)

BACKENDS = ("pyav", "torchcodec")

# A requested time this close after a frame's pts still counts as that frame: sampling times are
# computed in floating point and would otherwise fall a hair before the frame they aim at.
_TIME_EPS = 1e-6
# Frames a decoder may hold back to reorder them (H.264's largest DPB): a frame's decode-order pts is at most
# this many places from its display place.
_REORDER_WINDOW = 16
# Demuxers whose pts follow decode order, not display order, for streams with B-frames.
_DECODE_ORDER_PTS_FORMATS = ("avi",)
_THREAD_STATE = threading.local()


def _reformatter():
    """Returns this thread's PyAV VideoReformatter (a new one in a forked child).

    `frame.to_ndarray(format="rgb24")` sets up a new swscale context for every frame (each decoded
    frame owns its reformatter); one reformatter reused keeps the context while the size and pixel
    format stay the same: 0.13 against 1.74 ms per 80x64 VP9 frame (AMD EPYC), the same pixels. It is
    never shared across a fork: a loader worker forked from a process that converted frames builds its
    own (swscale's context holds thread state a child does not inherit)."""
    held = getattr(_THREAD_STATE, "reformatter", None)
    if held is None or held[0] != os.getpid():
        from av.video.reformatter import VideoReformatter

        held = _THREAD_STATE.reformatter = (os.getpid(), VideoReformatter())
    return held[1]


_AVI_NOTE_LOGGED = []  # the torchcodec backend says once that it hands these files to PyAV


class DecodeError(RuntimeError):
    """A video or frame folder that cannot give the requested frames; ``reason`` says why."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclasses.dataclass
class VideoInfo:
    """What the header says about a video; any field may be missing (None) or wrong."""

    start: float = 0.0  # seconds: pts of the first frame as declared by the stream
    duration: Optional[float] = None  # seconds
    fps: Optional[float] = None  # average frame rate
    container: str = ""  # FFmpeg's name of the container format ("avi", "matroska,webm", ...)


@dataclasses.dataclass
class DecodedFrames:
    """Distinct decoded frames plus the order in which they were requested."""

    frames: torch.Tensor  # uint8 (U, H, W, 3), RGB, each distinct frame once
    index: torch.Tensor  # int64 (R,): request r is frames[index[r]]
    num_frames: int  # frames decoded: the whole video (index mode) or the decoded span (time mode)
    info: VideoInfo
    # Time mode: frames an intact video holds between the first and last requested times. A clip
    # whose rate is below the video's fps repeats frames legitimately, so "too few frames" is judged
    # against this, not against the number of requests.
    span_capacity: Optional[int] = None

    def ordered(self):
        """Returns the requested frames in request order, uint8 (R, H, W, 3)."""
        if self.index.numel() == self.frames.shape[0] and bool((self.index == torch.arange(self.index.numel())).all()):
            return self.frames  # the usual train clip: distinct frames in order, no copy needed
        return self.frames[self.index]


@dataclasses.dataclass
class FrameFolder:
    """A video stored as image files, in frame order (1-based names from a template or an explicit list)."""

    path: str  # the folder (reported in errors)
    files: Optional[List[str]] = None  # explicit frame paths (PySlowFast frame lists)
    template: str = "{:05d}.jpg"  # used when files is None: frame i (0-based) is template.format(i + 1)

    def frame_paths(self):
        """Returns the frame file paths, in order; counts the folder when no explicit list was given."""
        if self.files is not None:
            return self.files
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            raise DecodeError(self.path, "missing frame folder") from None
        except NotADirectoryError:
            raise DecodeError(self.path, "not a frame folder") from None
        # Count only names shaped like the template (flow frames etc. may share the folder).
        head, ext = self.template.split("{")[0], os.path.splitext(self.template)[1]
        count = sum(1 for n in names if n.startswith(head) and n.endswith(ext))
        return [os.path.join(self.path, self.template.format(i + 1)) for i in range(count)]


@functools.lru_cache(maxsize=None)
def torchcodec_available():
    """Returns (True, "") when torchcodec imports and its FFmpeg libraries load, else (False, why)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
        import torchcodec._core  # noqa: F401  (loads the FFmpeg libraries)
    except Exception as e:  # ImportError, or OSError/RuntimeError when FFmpeg libraries are missing
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def resolve_backend(name):
    """Returns the decoding backend for DATA.DECODING_BACKEND.

    Official configs may name "torchvision", whose video decoding torchvision 0.28 removed: it is
    read as "pyav" (the same frames), with a warning. Unknown names raise ValueError.
    """
    if name == "torchvision":
        logger.warning("DATA.DECODING_BACKEND torchvision: torchvision no longer decodes video; using pyav")
        return "pyav"
    if name not in BACKENDS:
        raise ValueError(f"DATA.DECODING_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


def decode_frames(
    source,
    *,
    index_fn: Optional[Callable[[int], Sequence[int]]] = None,
    times_fn: Optional[Callable[[VideoInfo], Sequence[float]]] = None,
    backend: str = "pyav",
    threads: int = 0,
    min_frames: int = 1,
    cache_mb: float = 0,
) -> DecodedFrames:
    """Returns the requested frames of a video file or FrameFolder as :class:`DecodedFrames`.

    Exactly one of ``index_fn`` / ``times_fn`` says which frames (see the module docstring).
    ``threads``: decoder threads, 0 = FFmpeg's automatic choice, 1 = single-threaded.
    ``min_frames``: fewer decoded frames (whole video / decoded span) raises DecodeError.
    ``cache_mb``: with index_fn on a video file (PyAV), keep whole decoded videos in this process, up
    to this many MB (DATA.DECODED_CACHE_MB; see :class:`DecodedVideoCache`); 0: no cache.
    """
    if (index_fn is None) == (times_fn is None):
        raise ValueError("decode_frames needs exactly one of index_fn and times_fn")
    if isinstance(source, FrameFolder):
        if times_fn is not None:
            raise ValueError(f"{source.path}: frame folders have no timestamps; use index_fn")
        out = _decode_jpeg_folder(source, index_fn)
    else:
        path = os.fspath(source)
        _check_file(path)
        if backend == "pyav" and index_fn is not None and cache_mb > 0:
            out = _cached_by_index(path, threads, index_fn, decoded_video_cache(cache_mb))
        elif backend == "pyav":
            out = _PyAVDecoder(path, threads).decode(index_fn, times_fn)
        elif backend == "torchcodec":
            out = _torchcodec_decode(path, threads, index_fn, times_fn)
        else:
            raise ValueError(f"DATA.DECODING_BACKEND must be one of {BACKENDS}, got {backend!r}")
    needed = min_frames if out.span_capacity is None else max(1, min(min_frames, out.span_capacity))
    if out.num_frames < needed:
        raise DecodeError(
            source.path if isinstance(source, FrameFolder) else source,
            f"too few frames: {out.num_frames} decoded, {needed} needed",
        )
    return out


# --------------------------------------------------------------------------------------------- #
# Decoded-video cache (index mode)
# --------------------------------------------------------------------------------------------- #
class DecodedVideoCache:
    """Whole decoded videos (RGB uint8 frames) of this process, least recently used dropped first.

    For datasets small enough to hold decoded (the demo: 480 videos, about 190 MB): every epoch
    draws other frames of the same videos, and decoding them again cost more CPU than the model's
    step on a 2-core machine. Each loader worker holds its own cache, kept across epochs because
    the train loader's workers persist. Entries are keyed by path, size and modification time, so
    a rewritten file is decoded again. Errors are not cached: a bad video is retried (and reported)
    as without a cache.
    """

    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries = collections.OrderedDict()

    @staticmethod
    def key(path):
        st = os.stat(path)
        return path, st.st_size, st.st_mtime_ns

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key, entry):
        size = entry[0].numel() * entry[0].element_size()
        if size > self.max_bytes:
            return
        while self.bytes + size > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old[0].numel() * old[0].element_size()
        self._entries[key] = entry
        self.bytes += size


_VIDEO_CACHE = []  # [DecodedVideoCache] of this process, sized by the first request


def decoded_video_cache(cache_mb):
    """Returns this process's DecodedVideoCache with a budget of `cache_mb` MB."""
    if not _VIDEO_CACHE or _VIDEO_CACHE[0].max_bytes != int(cache_mb * 2**20):
        _VIDEO_CACHE[:] = [DecodedVideoCache(cache_mb * 2**20)]
    return _VIDEO_CACHE[0]


def _cached_by_index(path, threads, index_fn, cache):
    """`_PyAVDecoder._by_index` over a whole-video decode kept in `cache`: the same frames, and the
    same calls of index_fn (planned from the header's or packet count first, again from the true
    count when they differ), so a sampler's random stream is consumed alike with or without cache."""
    key = cache.key(path)
    entry = cache.get(key)
    if entry is None:
        decoder = _PyAVDecoder(path, threads)
        try:
            estimate = decoder.stream.frames or decoder._count_packets()
            kept, count, last = decoder._keep(None)  # every frame
        finally:
            decoder._close()
        if not count:
            raise DecodeError(path, f"no decodable frames ({decoder.errors} packets failed)")
        _check_truncated(path, decoder.info, last, None)
        entry = (torch.stack([kept[i] for i in range(count)]), estimate, decoder.info)
        cache.put(key, entry)
    frames, estimate, info = entry
    count = frames.shape[0]
    indices = [int(i) for i in index_fn(estimate)] if estimate else []
    if count != estimate:
        indices = [int(i) for i in index_fn(count)]
    _check_indices(path, indices, count)
    distinct, index = _unique(indices)
    return DecodedFrames(frames[distinct], index, count, info)


# --------------------------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------------------------- #
def probe(path) -> VideoInfo:
    """Returns what a video's header declares (start, duration, fps), read with PyAV."""
    _check_file(path)
    decoder = _PyAVDecoder(path, threads=1)
    decoder._close()
    return decoder.info


def _check_file(path):
    try:
        size = os.path.getsize(path)
    except OSError:
        raise DecodeError(path, "missing file") from None
    if size == 0:
        raise DecodeError(path, "empty file (0 bytes)")


def _truncation_tolerance(duration):
    # Containers often declare a little more than the video holds (audio tail, last frame's duration);
    # only a clear shortfall counts as truncation.
    return max(0.5, 0.1 * duration) if duration else 0.5


def _check_truncated(path, info, last_frame_time, needed_until=None):
    """Raises DecodeError when frames stop clearly before what the header declares (and the clip needs)."""
    declared = info.start + info.duration if info.duration else None
    limit = declared if needed_until is None else min(needed_until, declared or math.inf)
    if limit is not None and limit - last_frame_time > _truncation_tolerance(info.duration):
        raise DecodeError(path, f"truncated: frames end at {last_frame_time:.2f} s but the header declares "
                                f"{declared if declared is not None else limit:.2f} s")


def _check_indices(path, indices, num_frames):
    if num_frames == 0:
        raise DecodeError(path, "no decodable frames")
    bad = [i for i in indices if not 0 <= i < num_frames]
    if bad:
        raise ValueError(f"{path}: frame indices {bad[:5]} out of range for {num_frames} frames")


def _frames_at_times(frame_times, times):
    """Returns, for each time, the position of the frame displayed then (last pts <= t, clamped)."""
    last = len(frame_times) - 1
    return [min(max(bisect.bisect_right(frame_times, t + _TIME_EPS) - 1, 0), last) for t in times]


def _unique(positions):
    """Returns (sorted distinct positions, index of each request into them)."""
    distinct = sorted(set(positions))
    where = {p: k for k, p in enumerate(distinct)}
    return distinct, torch.tensor([where[p] for p in positions], dtype=torch.long)


def _clamp_times(times, info):
    """Clamps requested times into the declared stream span (a clip longer than the video repeats its ends)."""
    lo = info.start
    hi = info.start + info.duration if info.duration else math.inf
    return [min(max(float(t), lo), hi) for t in times]


# --------------------------------------------------------------------------------------------- #
# PyAV
# --------------------------------------------------------------------------------------------- #
class _PyAVDecoder:
    def __init__(self, path, threads):
        self.path, self.threads = path, threads
        self._open()
        self.tb = float(self.stream.time_base) if self.stream.time_base else None
        self.info = self._info()

    def _open(self):
        import av

        try:
            self.container = av.open(self.path)
        except Exception as e:  # av.error.* (InvalidDataError, ...), OSError
            raise DecodeError(self.path, f"cannot open: {type(e).__name__}: {e}") from None
        if not self.container.streams.video:
            self.container.close()
            raise DecodeError(self.path, "no video stream")
        self.stream = self.container.streams.video[0]
        if self.threads != 1:
            # Frame+slice threading: 10-35% faster for H.264/VP9 (measured, data-formats.md §4).
            self.stream.thread_type = "AUTO"
            self.stream.codec_context.thread_count = self.threads

    def _reopen(self):
        """Starts again from the first packet (a fresh demuxer: seeking to 0 is unreliable in some containers)."""
        self.container.close()
        self._open()

    def _info(self):
        s, c = self.stream, self.container
        start = s.start_time * self.tb if (s.start_time is not None and self.tb) else 0.0
        if s.duration and self.tb:
            duration = s.duration * self.tb
        elif c.duration:  # WebM/MKV: only the container knows (microseconds)
            duration = c.duration / 1e6 - (start if c.start_time is None else 0.0)
        else:
            duration = None
        rate = s.average_rate or s.guessed_rate
        return VideoInfo(start=start, duration=duration, fps=float(rate) if rate else None, container=c.format.name)

    def _decoded(self, start_time=None):
        """Yields (pts in seconds, av.VideoFrame) in decoder output order, tolerating per-packet errors."""
        import av

        if start_time is not None and start_time > self.info.start and self.tb:
            # Backward seek lands on the keyframe at or before start_time.
            self.container.seek(int(start_time / self.tb), stream=self.stream, backward=True, any_frame=False)
        self.errors = 0
        fallback = 0
        fps = self.info.fps or 30.0
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                # A damaged packet should not end the video (e.g. empty Theora packets, data-formats §3.5);
                # too few frames is caught by the caller.
                self.errors += 1
                continue
            for frame in frames:
                if frame.pts is not None and self.tb:
                    t = frame.pts * self.tb
                else:
                    t = self.info.start + fallback / fps
                fallback += 1
                yield t, frame

    def _frames(self, start_time=None, stop_time=None):
        """Yields (display time in seconds, av.VideoFrame) in display order; stops after the first frame
        displayed later than stop_time.

        The decoder returns frames in display order, whatever the container. Their pts are normally their
        display times, but some demuxers attach pts in decode order (AVI with B-frames: MPEG-4 Part 2,
        H.264), which the reordering decoder then hands out permuted (pts 1 2 4 3 6 5 ...). A player shows
        the k-th frame out at the k-th smallest pts (FFmpeg's players do the equivalent with
        best_effort_timestamp), so times are assigned that way: over a window of _REORDER_WINDOW frames
        for such containers, or from the first out-of-order pts on in any other; with in-order pts the
        window stays empty and each frame keeps its own pts.
        """
        window = _REORDER_WINDOW if self.container.format.name in _DECODE_ORDER_PTS_FORMATS else 0
        pts, pending, latest = [], collections.deque(), -math.inf
        for t, frame in self._decoded(start_time):
            if t < latest:
                window = _REORDER_WINDOW
            latest = max(latest, t)
            heapq.heappush(pts, t)
            pending.append(frame)
            while len(pending) > window:
                shown = heapq.heappop(pts)
                yield shown, pending.popleft()
                if stop_time is not None and shown > stop_time:
                    return
        while pending:
            shown = heapq.heappop(pts)
            yield shown, pending.popleft()
            if stop_time is not None and shown > stop_time:
                return

    def _close(self):
        self.container.close()

    def decode(self, index_fn, times_fn):
        try:
            if index_fn is not None:
                return self._by_index(index_fn)
            return self._by_time(times_fn)
        finally:
            self._close()

    def _by_index(self, index_fn):
        # The indices depend on the frame count, which only a full decode tells for sure; to keep no more
        # than the requested frames (a 4000x3000 video would otherwise hold GBs), they are chosen from the
        # header's count (or the packet count) and the decode keeps only those. Should the true count
        # differ (truncated file, damaged packets), they are chosen again and the video decoded once more.
        estimate = self.stream.frames or self._count_packets()
        indices = [int(i) for i in index_fn(estimate)] if estimate else []
        kept, count, last = self._keep(indices)
        if not count:
            raise DecodeError(self.path, f"no decodable frames ({self.errors} packets failed)")
        _check_truncated(self.path, self.info, last, None)
        if count != estimate:
            indices = [int(i) for i in index_fn(count)]
            _check_indices(self.path, indices, count)
            self._reopen()
            kept, count, last = self._keep(indices)
        _check_indices(self.path, indices, count)
        distinct, index = _unique(indices)
        return DecodedFrames(torch.stack([kept[i] for i in distinct]), index, count, self.info)

    def _keep(self, indices):
        """Decodes the whole video; returns ({position: RGB uint8 (H, W, 3)} of the wanted positions (all
        when `indices` is None), frame count, last display time). Frames come out of the decoder in
        display order; the others are dropped."""
        wanted, kept, count, last = None if indices is None else set(indices), {}, 0, -math.inf
        for t, frame in self._decoded():
            if wanted is None or count in wanted:
                kept[count] = self._rgb(frame)
            count += 1
            last = max(last, t)
        return kept, count, last

    def _count_packets(self):
        """Returns the number of non-empty video packets (demuxed, not decoded); rewinds by reopening."""
        count = sum(1 for packet in self.container.demux(self.stream) if packet.size)
        self._reopen()
        return count

    def _by_time(self, times_fn):
        requested = list(times_fn(self.info))
        times = _clamp_times(requested, self.info)
        if not times:
            raise ValueError(f"{self.path}: times_fn asked for no frames")
        first, last = min(times), max(times)
        span = self._keep_shown(first, last, times)
        if span is None:
            # The seek overshot (broken index): decode from the beginning instead of guessing.
            self._reopen()
            span = self._keep_shown(None, last, times)
        frame_times, kept = span
        if not frame_times:
            raise DecodeError(self.path, f"no decodable frames at {first:.2f}-{last:.2f} s ({self.errors} packets failed)")
        _check_truncated(self.path, self.info, frame_times[-1], last)
        positions = _frames_at_times(frame_times, times)
        distinct, index = _unique(positions)
        frames = torch.stack([kept[p] for p in distinct])
        # Frames the clip spans (the decoded span also holds frames from the keyframe before it).
        # Judged on the requested (unclamped) span: a video shorter than its clip stays too short.
        capacity = int((max(requested) - min(requested)) * self.info.fps) if self.info.fps else None
        return DecodedFrames(frames, index, max(positions) - min(positions) + 1, self.info, capacity)

    def _keep_shown(self, first, last, times):
        """Decodes from the keyframe before `first` (None: from the start) to the first frame after `last`.

        Returns (display times of the decoded frames, {position: RGB uint8 (H, W, 3)} of the frames displayed
        at some requested time), or None when the seek landed after `first`. Frame k is displayed from its
        time until frame k+1's, so it is known to be wanted (and converted) once frame k+1 arrives; the
        others are dropped as they come, so neither a long GOP nor a long clip piles up in memory.
        """
        wanted = sorted(t + _TIME_EPS for t in times)
        frame_times, kept, pending = [], {}, None

        def decide(next_time):  # keeps the pending frame if a requested time falls in its display interval
            k = len(frame_times) - 1
            lo = 0 if k == 0 else bisect.bisect_left(wanted, frame_times[k])  # frame 0 also takes earlier times
            if bisect.bisect_left(wanted, next_time) > lo:
                kept[k] = self._rgb(pending)

        for t, frame in self._frames(first, last):
            if not frame_times and first is not None and t > first + _TIME_EPS and first > self.info.start:
                return None
            if pending is not None:
                decide(t)
            pending = frame
            frame_times.append(t)
        if pending is not None:
            decide(math.inf)
        return frame_times, kept

    @staticmethod
    def _rgb(frame):
        # Colour conversion costs more than decoding (data-formats §4): done only for kept frames.
        # One swscale thread: its slice threads only cost here (0.34 vs 0.41 ms per 640x480 frame, equal
        # pixels), and loader workers already fill the cores.
        return torch.from_numpy(_reformatter().reformat(frame, format="rgb24", threads=1).to_ndarray())




# --------------------------------------------------------------------------------------------- #
# torchcodec
# --------------------------------------------------------------------------------------------- #
def _torchcodec_decode(path, threads, index_fn, times_fn):
    ok, why = torchcodec_available()
    if not ok:
        raise RuntimeError(f"DATA.DECODING_BACKEND is torchcodec but it cannot be used here ({why})")
    from torchcodec.decoders import VideoDecoder

    # The header is read by PyAV for both backends (torchcodec's stream metadata lacks WebM's container
    # duration), so both plan the same times.
    info = probe(path)
    if info.container in _DECODE_ORDER_PTS_FORMATS:
        # torchcodec 0.17 fails on the last frames of AVI files with B-frames ("no more frames left to
        # decode", or the wrong frame); PyAV gives every frame in display order.
        if not _AVI_NOTE_LOGGED:
            _AVI_NOTE_LOGGED.append(True)
            logger.info("DATA.DECODING_BACKEND torchcodec: %s files are decoded with PyAV", info.container)
        return _PyAVDecoder(path, threads).decode(index_fn, times_fn)
    try:
        decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NHWC")
    except Exception as e:
        raise DecodeError(path, f"cannot open: {type(e).__name__}: {e}") from None
    m = decoder.metadata
    num = int(m.num_frames or 0)
    if num == 0:
        raise DecodeError(path, "no decodable frames")
    # Exact mode scans the packets, so the content end vs the declared end reveals truncation.
    content_end = float(m.end_stream_seconds)
    try:
        if index_fn is not None:
            _check_truncated(path, info, content_end)
            indices = [int(i) for i in index_fn(num)]
            _check_indices(path, indices, num)
            distinct, index = _unique(indices)
            frames = decoder.get_frames_at(indices=distinct).data
            return DecodedFrames(frames.contiguous(), index, num, info)
        requested = list(times_fn(info))
        times = _clamp_times(requested, info)
        _check_truncated(path, info, content_end, max(times))
        begin = float(m.begin_stream_seconds)
        # get_frames_played_at needs times inside [begin, end): clamp like the PyAV path does.
        top = math.nextafter(content_end, -math.inf)
        query = [min(max(t + _TIME_EPS, begin), top) for t in times]
        batch = decoder.get_frames_played_at(seconds=query)
        pts = [round(float(p), 6) for p in batch.pts_seconds]
        distinct_pts, index = _unique(pts)
        first_of = {p: k for k, p in reversed(list(enumerate(pts)))}
        frames = batch.data[[first_of[p] for p in distinct_pts]]
        fps = info.fps or 30.0
        used = max(1, int(round((max(distinct_pts) - min(distinct_pts)) * fps)) + 1)
        capacity = int((max(requested) - min(requested)) * fps)
        return DecodedFrames(frames.contiguous(), index, used, info, capacity)
    except DecodeError:
        raise
    except (RuntimeError, IndexError, ValueError) as e:
        raise DecodeError(path, f"decode failed: {type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------------------------- #
# JPEG frame folders
# --------------------------------------------------------------------------------------------- #
def _decode_jpeg_folder(folder, index_fn):
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    paths = folder.frame_paths()
    if not paths:
        raise DecodeError(folder.path, "no frames in folder")
    indices = [int(i) for i in index_fn(len(paths))]
    _check_indices(folder.path, indices, len(paths))
    distinct, index = _unique(indices)
    try:
        data = [read_file(paths[i]) for i in distinct]
    except (RuntimeError, OSError) as e:
        raise DecodeError(folder.path, f"cannot read frame: {e}") from None
    try:
        images = decode_jpeg(data, mode=ImageReadMode.RGB)  # batched: one call for all frames
    except RuntimeError as e:
        raise DecodeError(folder.path, f"undecodable JPEG: {e}") from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise DecodeError(folder.path, f"frames of different sizes: {sorted(shapes)}")
    frames = torch.stack(images).permute(0, 2, 3, 1).contiguous()
    info = VideoInfo(start=0.0, duration=None, fps=None)
    return DecodedFrames(frames, index, len(paths), info)
