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

A stream URL that ends or fails is opened again with backoff (``RECONNECT_FIRST_S`` doubling to
``RECONNECT_MAX_S``) for up to ``reconnect_s`` seconds; its times go on where they stopped, by the wall
clock, so they stay monotonic across the gap. Files and webcams never reconnect. ``FrameQueues`` holds the
queues of several streams behind one condition, so one sender takes batches that mix them.
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
RECONNECT_FIRST_S = 0.5  # the first wait before opening a dropped stream again; doubles after each failure
RECONNECT_MAX_S = 8.0  # the longest wait between two attempts


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
    reconnect_s: float = 30.0  # a stream URL that drops is opened again with backoff this long (0: never)

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise InputError(f"live: expected fps > 0, got {self.fps}")
        if self.seconds is not None and not self.seconds > 0:
            raise InputError(f"live: expected seconds > 0, got {self.seconds}")
        if not self.reconnect_s >= 0:
            raise InputError(f"live: expected reconnect_s >= 0 seconds (0: never reconnect), got {self.reconnect_s}")


class FrameQueue:
    """Sampled frames waiting for the server: bounded, dropping (and counting) the oldest when full.

    ``cond`` is shared when several queues are read together (``FrameQueues``).
    """

    def __init__(self, maxlen: int, cond: threading.Condition | None = None) -> None:
        self._items: deque[SampledFrame] = deque()
        self._maxlen = maxlen
        self._cond = cond or threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: SampledFrame) -> None:
        with self._cond:
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()

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


class FrameQueues:
    """One ``FrameQueue`` per stream behind one condition: batches take a frame of each stream in turn."""

    def __init__(self, count: int, maxlen: int) -> None:
        self._cond = threading.Condition()
        self.queues = [FrameQueue(maxlen, self._cond) for _ in range(count)]
        self._start = 0  # the stream the next batch starts with (turns, so no stream always waits last)

    @property
    def finished(self) -> bool:
        """Every stream is closed and its queue empty."""
        with self._cond:
            return all(q.finished for q in self.queues)

    def get_batch(self, n: int, timeout_s: float) -> list[tuple[int, SampledFrame]]:
        """Up to ``n`` (stream, frame) pairs, one frame of each stream per turn; waits up to ``timeout_s``
        for the first, takes the others only if there."""
        with self._cond:
            if not any(q._items for q in self.queues) and not all(q._closed for q in self.queues):
                self._cond.wait(timeout_s)
            batch: list[tuple[int, SampledFrame]] = []
            count = len(self.queues)
            k = self._start
            while len(batch) < n and any(q._items for q in self.queues):
                queue = self.queues[k % count]
                if queue._items:
                    batch.append((k % count, queue._items.popleft()))
                k += 1
            self._start = k % count if batch else self._start
            return batch


def is_url(source: str) -> bool:
    """Whether ``source`` is a stream URL (rtsp://, http://, ...), which reconnects, not a file or a webcam."""
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


def check_source(source: str, settings: StreamSettings) -> None:
    """InputError when ``source`` is neither a URL nor a webcam nor an existing file."""
    if not is_url(source) and settings.input_format is None and not source.startswith("/dev/video") \
            and not Path(source).exists():
        raise InputError(f"live source {source}: not found (expected a stream URL such as rtsp://, http://, "
                         "udp://, a webcam such as /dev/video0, or a video file)")


def open_stream(source: str, settings: StreamSettings) -> av.container.InputContainer:
    """Open a live source with PyAV; InputError names the source and what FFmpeg said."""
    fmt = settings.input_format
    options = dict(settings.options)
    if fmt is None and source.startswith("/dev/video"):
        fmt = "v4l2"
    if source.lower().startswith("rtsp://"):
        options.setdefault("rtsp_transport", "tcp")
    if is_url(source):  # FFmpeg's default probe of a live stream takes seconds; the frames carry their size
        options.setdefault("analyzeduration", str(round(settings.probe_s * 1_000_000)))
    check_source(source, settings)
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
    """Decodes a stream, picks frames at ``fps`` by stream time and puts them in ``queue``.

    ``container`` is the stream opened already; None: the reader opens it (with the reconnect backoff).
    A URL that ends or fails is opened again (``StreamSettings.reconnect_s``), counted in ``reconnects``;
    the stream time goes on by the wall clock across the gap (``offline_s``).
    """

    def __init__(self, source: str, container: av.container.InputContainer | None, settings: StreamSettings,
                 queue: FrameQueue, stop: threading.Event) -> None:
        super().__init__(name="mmw-live-reader", daemon=True)
        self.source = source
        self.container = container
        self.settings = settings
        self.queue = queue
        self.stop_flag = stop
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.reconnects = 0
        self.offline_s = 0.0
        self.last_time_s = 0.0
        self.stop_reason = ""
        self.error: InputError | None = None
        self._wall0: float | None = None  # the wall clock at stream time 0
        self._next_k = 0  # the next sample is k / fps
        self._down_since: float | None = None  # lost, and no frame since (the reconnect budget counts from it)

    def run(self) -> None:
        container = self.container
        try:
            while True:
                lost = ""
                if container is not None:
                    try:
                        self._decode(container)
                        lost = "the stream ended"
                    except (av.error.FFmpegError, OSError) as exc:
                        lost = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                        self.stop_reason = "error"
                        self.error = InputError(f"live source {self.source}: reading stopped at "
                                                f"t={self.last_time_s:.2f} s: {lost}")
                    finally:
                        container.close()
                    if self.stop_reason in ("seconds", "stopped") or not self._reconnecting:
                        return
                container = self._reopen(lost or "it did not open at the start")
                if container is None:
                    return
                self.stop_reason, self.error = "", None
        finally:
            self.queue.close()

    @property
    def _reconnecting(self) -> bool:
        return is_url(self.source) and self.settings.reconnect_s > 0

    def _reopen(self, why: str) -> av.container.InputContainer | None:
        """The stream opened again with backoff; None when stopped or after ``reconnect_s`` without a frame."""
        down = time.monotonic()
        if self._down_since is None:
            self._down_since = down
        try:
            return self._attempts(self._down_since + self.settings.reconnect_s, why)
        finally:
            self.offline_s += time.monotonic() - down

    def _attempts(self, deadline: float, why: str) -> av.container.InputContainer | None:
        wait, last = RECONNECT_FIRST_S, why
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop_reason = "gave up reconnecting"
                where = f"lost at t={self.last_time_s:.2f} s" if self._wall0 is not None else "never opened"
                self.error = InputError(
                    f"live source {self.source}: {where} ({why}); gave up after "
                    f"{self.settings.reconnect_s:g} s of reconnecting (allowed: reconnect_s, --reconnect); "
                    f"last attempt: {last}")
                return None
            if self.stop_flag.wait(min(wait, left)):
                self.stop_reason = "stopped"
                return None
            try:
                container = open_stream(self.source, self.settings)
            except InputError as exc:
                last = str(exc)
                wait = min(2 * wait, RECONNECT_MAX_S)
                continue
            self.reconnects += 1
            return container

    def _decode(self, container: av.container.InputContainer) -> None:
        """Read one connection until its end, ``seconds`` or the stop flag (``stop_reason`` says which)."""
        s = self.settings
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin: float | None = None
        offset = 0.0
        last_abs: float | None = None
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            if self.stop_flag.is_set():
                self.stop_reason = "stopped"
                return
            if frame.pts is not None and frame.time_base is not None:
                t_abs = float(frame.pts * frame.time_base)
            else:
                t_abs = (last_abs + 1.0 / rate) if last_abs is not None else 0.0
            if last_abs is not None and t_abs <= last_abs:
                continue  # a timestamp going backwards (a looped source): keep time monotonic
            last_abs = t_abs
            self._down_since = None
            if origin is None:
                origin = t_abs
                if self._wall0 is None:
                    self._wall0 = time.monotonic()
                else:  # a reconnect: go on by the wall clock, after the last frame
                    offset = max(self.last_time_s + 1.0 / rate, time.monotonic() - self._wall0)
            t = t_abs - origin + offset
            self.frames_decoded += 1
            self.last_time_s = t
            if s.seconds is not None and t >= s.seconds - _EPS:
                self.stop_reason = "seconds"
                return
            if s.pace:
                ahead = t - (time.monotonic() - self._wall0)
                if ahead > 0 and self.stop_flag.wait(ahead):
                    self.stop_reason = "stopped"
                    return
            if t + _EPS >= self._next_k / s.fps:
                self._next_k = int(t * s.fps + _EPS) + 1
                self.frames_sampled += 1
                self.queue.put(SampledFrame(self.frames_decoded - 1, t, frame.to_ndarray(format="rgb24")))
        self.stop_reason = "end of stream"
