"""Live input: RTSP/HTTP/UDP streams, webcams and files decoded in real time through PyAV.

``StreamReader`` (a thread) decodes the stream as it arrives and picks frames at ``fps`` by stream time
(times count from the first decoded frame). Picked frames wait in a ``FrameQueue`` for the server;
when the queue is full, the oldest waiting frame is dropped and counted (``FrameQueue.dropped``), so
the analysis always works on recent frames and never falls further behind. Files and servers that
send faster than real time are read at real time (``pace``). Reading stops after ``seconds`` of
stream time, at the end of the stream, on a read error or when the stop flag is set.

Sources: ``rtsp://...`` (TCP transport unless ``options`` says otherwise), ``http(s)://...``
(e.g. MPEG-TS), ``udp://...``, a file path, or a webcam such as ``/dev/video0`` (``input_format``
``v4l2``, chosen automatically for ``/dev/video*``). Network streams are probed for ``probe_s``
(FFmpeg's ``analyzeduration``, default 1 s instead of FFmpeg's 5 s) so the analysis starts sooner.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import av

from clients.media.video import SampledFrame
from mmw.errors import InputError

_EPS = 1e-6


@dataclass(frozen=True)
class StreamSettings:
    """How to open, read and sample a live source."""

    fps: float = 2.0
    seconds: float | None = None  # stop after this much stream time (None: until the stream ends or stopped)
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    input_format: str | None = None  # FFmpeg demuxer, e.g. "v4l2"; None: guessed
    options: dict[str, str] = field(default_factory=dict)  # FFmpeg demuxer options, e.g. rtsp_transport=tcp
    probe_s: float = 1.0  # how much of a network stream FFmpeg reads to find its streams (analyzeduration)
    pace: bool = True  # never read ahead of real time

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise InputError(f"live: expected fps > 0, got {self.fps}")
        if self.seconds is not None and not self.seconds > 0:
            raise InputError(f"live: expected seconds > 0, got {self.seconds}")


class FrameQueue:
    """Sampled frames waiting for the server: bounded, dropping (and counting) the oldest when full."""

    def __init__(self, maxlen: int) -> None:
        self._items: deque[SampledFrame] = deque()
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: SampledFrame) -> None:
        with self._cond:
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def close(self) -> None:
        """No more frames will come."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    def get_batch(self, n: int, timeout_s: float) -> list[SampledFrame]:
        """Up to ``n`` frames: waits up to ``timeout_s`` for the first, takes the others only if there."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout_s)
            batch = []
            while self._items and len(batch) < n:
                batch.append(self._items.popleft())
            return batch


def _is_url(source: str) -> bool:
    return "://" in source


def parse_ffmpeg_options(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``--option``) -> FFmpeg input options; InputError for an item without ``=``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option: expected KEY=VALUE such as rtsp_transport=tcp, got {item!r}")
        options[key.strip()] = value.strip()
    return options


def open_stream(source: str, settings: StreamSettings) -> av.container.InputContainer:
    """Open a live source with PyAV; InputError names the source and what FFmpeg said."""
    fmt = settings.input_format
    options = dict(settings.options)
    if fmt is None and source.startswith("/dev/video"):
        fmt = "v4l2"
    if source.lower().startswith("rtsp://"):
        options.setdefault("rtsp_transport", "tcp")
    if _is_url(source):  # FFmpeg's default probe of a live stream takes seconds; the frames carry their size
        options.setdefault("analyzeduration", str(round(settings.probe_s * 1_000_000)))
    if not _is_url(source) and fmt is None and not Path(source).exists():
        raise InputError(f"live source {source}: not found (expected a stream URL such as rtsp://, http://, "
                         "udp://, a webcam such as /dev/video0, or a video file)")
    try:
        container = av.open(source, mode="r", format=fmt, options=options,
                            timeout=(settings.open_timeout_s, settings.read_timeout_s))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"live source {source}: cannot open it (expected a reachable stream, webcam or video "
                         f"file); FFmpeg said: {reason}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"live source {source}: has no video stream")
    return container


class StreamReader(threading.Thread):
    """Decodes a stream, picks frames at ``fps`` by stream time and puts them in ``queue``."""

    def __init__(self, container: av.container.InputContainer, settings: StreamSettings, queue: FrameQueue,
                 stop: threading.Event) -> None:
        super().__init__(name="mmw-live-reader", daemon=True)
        self.container = container
        self.settings = settings
        self.queue = queue
        self.stop_flag = stop
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.last_time_s = 0.0
        self.stop_reason = ""
        self.error: InputError | None = None

    def run(self) -> None:
        s = self.settings
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        origin: float | None = None
        wall0 = 0.0
        next_k = 0
        last_abs: float | None = None
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        try:
            for frame in self.container.decode(stream):
                if self.stop_flag.is_set():
                    self.stop_reason = self.stop_reason or "stopped"
                    return
                if frame.pts is not None and frame.time_base is not None:
                    t_abs = float(frame.pts * frame.time_base)
                else:
                    t_abs = (last_abs + 1.0 / rate) if last_abs is not None else 0.0
                if last_abs is not None and t_abs <= last_abs:
                    continue  # a timestamp going backwards (a looped source): keep time monotonic
                last_abs = t_abs
                if origin is None:
                    origin, wall0 = t_abs, time.monotonic()
                t = t_abs - origin
                self.frames_decoded += 1
                self.last_time_s = t
                if s.seconds is not None and t >= s.seconds - _EPS:
                    self.stop_reason = "seconds"
                    return
                if s.pace:
                    ahead = t - (time.monotonic() - wall0)
                    if ahead > 0 and self.stop_flag.wait(ahead):
                        self.stop_reason = self.stop_reason or "stopped"
                        return
                if t + _EPS >= next_k / s.fps:
                    next_k = int(t * s.fps + _EPS) + 1
                    self.frames_sampled += 1
                    self.queue.put(SampledFrame(self.frames_decoded - 1, t, frame.to_ndarray(format="rgb24")))
            self.stop_reason = "end of stream"
        except (av.error.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self.error = InputError(f"live source: reading stopped at t={self.last_time_s:.2f} s: {reason}")
            self.stop_reason = "error"
        finally:
            self.queue.close()
            self.container.close()
