"""Live input: RTSP/HTTP/UDP streams, webcams and files analysed in real time through PyAV.

A reader thread decodes the stream as it arrives and picks frames at ``fps`` by stream time
(times count from the first decoded frame). Picked frames wait in a small queue for the server;
when the queue is full, the oldest waiting frame is dropped and counted (``LiveStats.frames_dropped``),
so the analysis always works on recent frames and never falls further behind. Files and servers that
send faster than real time are read at real time (``pace``). The run stops after ``seconds`` of
stream time, at the end of the stream, on a read error or on Ctrl-C; the frames analysed so far are
tracked, segmented, drawn and written like a video's (``clients.pipeline.VideoRecorder``), with the
run's counts in ``results.json`` under ``live``.

Sources: ``rtsp://...`` (TCP transport unless ``options`` says otherwise), ``http(s)://...``
(e.g. MPEG-TS), ``udp://...``, a file path, or a webcam such as ``/dev/video0`` (``input_format``
``v4l2``, chosen automatically for ``/dev/video*``). Network streams are probed for ``probe_s``
(FFmpeg's ``analyzeduration``, default 1 s instead of FFmpeg's 5 s) so the analysis starts sooner.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av

from clients.images import encode_jpeg
from clients.pipeline import (
    InferenceClient,
    ProgressFn,
    VideoRecorder,
    filter_detections,
    one_line,
)
from clients.results import LiveStats, VideoResults
from clients.scenes import SceneSettings
from clients.tracking import TrackerSettings
from clients.video import SampledFrame
from mmw.errors import InputError, MMWError

_EPS = 1e-6
_POLL_S = 0.1  # how often waiting loops look at the stop flag


@dataclass(frozen=True)
class LiveSettings:
    """How to read and sample a live source."""

    fps: float = 2.0
    seconds: float | None = None  # stop after this much stream time (None: until the stream ends or Ctrl-C)
    batch_size: int = 4  # at most this many frames per request (fewer when the server keeps up)
    max_waiting: int | None = None  # sampled frames waiting for the server; default batch_size
    jpeg_quality: int = 90
    min_score: float | None = None
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
        if self.batch_size < 1:
            raise InputError(f"live: expected batch_size >= 1, got {self.batch_size}")
        if self.max_waiting is not None and self.max_waiting < 1:
            raise InputError(f"live: expected max_waiting >= 1, got {self.max_waiting}")


@dataclass(frozen=True)
class LiveRun:
    """What ``analyse_stream`` wrote; ``error`` is set when the stream or the server failed."""

    results: VideoResults
    results_path: Path
    annotated_path: Path | None
    codec: str
    stats: LiveStats
    error: MMWError | None = None
    exports: tuple[Path, ...] = ()

    @property
    def files(self) -> list[Path]:
        """Every file the run wrote, ``results.json`` first."""
        return [self.results_path] + ([self.annotated_path] if self.annotated_path else []) + list(self.exports)


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


def open_stream(source: str, settings: LiveSettings) -> av.container.InputContainer:
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

    def __init__(self, container: av.container.InputContainer, settings: LiveSettings, queue: FrameQueue,
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


def analyse_stream(
    source: str,
    out_dir: str | Path,
    client: InferenceClient,
    settings: LiveSettings,
    *,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    tracker: TrackerSettings | None = None,
    scenes: SceneSettings | None = None,
) -> LiveRun:
    """Analyse a live source until ``settings.seconds``, its end, ``stop`` being set, or Ctrl-C.

    Writes what ``analyse_video`` writes. Raises InputError when the source cannot be opened,
    InferenceError when the server is not ready, and the run's error (KeyboardInterrupt for Ctrl-C)
    when not a single frame was analysed.
    """
    client.check_ready()
    models = dict(client.describe())
    if settings.min_score is not None:
        models["client_min_score"] = float(settings.min_score)
    container = open_stream(source, settings)
    queue = FrameQueue(settings.max_waiting or settings.batch_size)
    stop = stop or threading.Event()
    reader = StreamReader(container, settings, queue, stop)
    recorder = VideoRecorder(out_dir, settings.fps, tracker=tracker, scenes=scenes)
    waiting: deque[SampledFrame] = deque()
    expected = round(settings.seconds * settings.fps) if settings.seconds else 0

    def batches() -> Iterator[list[bytes]]:
        while not queue.finished and not stop.is_set():
            items = queue.get_batch(settings.batch_size, _POLL_S)
            if items:
                waiting.extend(items)
                yield [encode_jpeg(f.rgb, settings.jpeg_quality) for f in items]

    error: MMWError | None = None
    interrupted = False
    started = time.monotonic()
    reader.start()
    try:
        try:
            for results in client.infer_many(batches()):
                for result in results:
                    frame = waiting.popleft()
                    recorder.add(frame.index, frame.timestamp_s, frame.rgb,
                                 filter_detections(result, settings.min_score))
                    if progress is not None:
                        progress(recorder.added, max(expected, recorder.added))
        finally:
            stop.set()
            reader.join(settings.read_timeout_s + 1.0)
            recorder.finish()
    except MMWError as exc:
        error = exc
    except KeyboardInterrupt:
        interrupted = True
    error = error or reader.error
    reason = "interrupted" if interrupted else ("error" if error else (reader.stop_reason or "stopped"))
    if not recorder.frames:
        if interrupted:
            raise KeyboardInterrupt
        raise error or InputError(f"live source {source}: no frame was analysed (stopped: {reason})")
    stats = LiveStats(
        frames_decoded=reader.frames_decoded,
        frames_sampled=reader.frames_sampled,
        frames_dropped=queue.dropped,
        frames_analysed=len(recorder.frames),
        wall_s=time.monotonic() - started,
        stop_reason=reason,
    )
    width, height = recorder.size or (0, 0)
    results = recorder.results(
        source=source,
        fps_sampled=settings.fps,
        width=width,
        height=height,
        duration_s=max(reader.last_time_s, recorder.frames[-1].timestamp_s),
        models=models,
        complete=error is None,
        error=one_line(error) if error else None,
        live=stats,
    )
    results_path, exports = recorder.write(results)
    return LiveRun(results, results_path, recorder.annotated_path, recorder.codec, stats, error, exports)

