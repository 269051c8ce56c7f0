"""``analyse_streams``: several live sources read at once, their frames sent in shared batches, one folder each.

Each stream has its reader thread (``clients.media.stream.StreamReader``: samples at ``fps`` by stream time,
reconnects a dropped URL) and its own bounded queue, so a stream that floods or stalls never crowds out the
others; a slow analysis drops each stream's oldest waiting frame and counts it in that stream's
``LiveStats.frames_dropped``. One sender takes batches from all the queues in turn (``FrameQueues``), so the
server's dynamic batcher sees the streams' frames together, and each result goes back to its stream's
``VideoRecorder`` (tracks, scenes, ``annotated.mp4``, the exports). ``analyse_stream`` is the one-stream case.

A run stops after ``seconds`` of stream time, when every stream has ended (or given up reconnecting), when
``stop`` is set, on a server error or on Ctrl-C; every stream then writes what it got.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from clients.analysis.scenes import SceneSettings
from clients.analysis.tracking import TrackerSettings
from clients.live.sources import LiveSource, named
from clients.media.stream import (
    FrameQueue,
    FrameQueues,
    StreamReader,
    StreamSettings,
    check_source,
    is_url,
    open_stream,
)
from clients.media.video import SampledFrame
from clients.pipeline import InferenceClient, Payload, ProgressFn, one_line
from clients.recorder import VideoRecorder
from clients.results import LiveStats, VideoResults
from mmw.errors import InputError, MMWError

_POLL_S = 0.1  # how often waiting loops look at the stop flag
_OWN_STOPS = ("seconds", "end of stream", "error", "gave up reconnecting")  # a reader that ended by itself


@dataclass(frozen=True)
class LiveSettings:
    """How to read, sample and send live sources: ``stream`` is how each one is read (the same for all)."""

    stream: StreamSettings = field(default_factory=StreamSettings)
    batch_size: int = 4  # at most this many frames per request (fewer when the server keeps up)
    max_waiting: int | None = None  # sampled frames of one stream waiting for the server; default batch_size
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"live: expected batch_size >= 1, got {self.batch_size}")
        if self.max_waiting is not None and self.max_waiting < 1:
            raise InputError(f"live: expected max_waiting >= 1, got {self.max_waiting}")

    @property
    def fps(self) -> float:
        return self.stream.fps

    @property
    def seconds(self) -> float | None:
        return self.stream.seconds


@dataclass(frozen=True)
class LiveRun:
    """What one stream of a live run wrote; ``error`` is set when the stream or the server failed."""

    results: VideoResults
    results_path: Path
    annotated_path: Path | None
    codec: str
    stats: LiveStats
    error: MMWError | None = None
    exports: tuple[Path, ...] = ()
    name: str = ""  # the stream's name (its folder under the output folder when there were several)

    @property
    def files(self) -> list[Path]:
        """Every file the run wrote, ``results.json`` first."""
        return [self.results_path] + ([self.annotated_path] if self.annotated_path else []) + list(self.exports)


@dataclass
class _Stream:
    source: LiveSource
    queue: FrameQueue
    reader: StreamReader
    recorder: VideoRecorder


def _open_all(sources: Sequence[LiveSource], settings: StreamSettings) -> list[av.container.InputContainer | None]:
    """Every source opened (at once, in threads). With several, a URL that does not open starts reconnecting
    (None); otherwise its InputError is raised, as when none opens."""
    for source in sources:
        check_source(source.url, settings)
    with ThreadPoolExecutor(len(sources), thread_name_prefix="mmw-live-open") as pool:
        futures = [pool.submit(open_stream, s.url, settings) for s in sources]
    opened: list[av.container.InputContainer | None] = []
    failed: list[tuple[LiveSource, InputError]] = []
    for source, future in zip(sources, futures, strict=True):
        try:
            opened.append(future.result())
        except InputError as exc:
            opened.append(None)
            failed.append((source, exc))
    retried = len(sources) > 1 and settings.reconnect_s > 0
    fatal = [exc for source, exc in failed if not (retried and is_url(source.url))]
    if fatal or (failed and len(failed) == len(sources)):
        for container in opened:
            if container is not None:
                container.close()
        raise (fatal or [exc for _, exc in failed])[0]
    return opened


def analyse_streams(
    sources: Sequence[str | LiveSource],
    out_dir: str | Path,
    client: InferenceClient,
    settings: LiveSettings,
    *,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    tracker: TrackerSettings | None = None,
    scenes: SceneSettings | None = None,
) -> list[LiveRun]:
    """Analyse live sources at once until ``settings.seconds``, their ends, ``stop`` being set, or Ctrl-C.

    One source writes into ``out_dir``; several into ``out_dir/NAME`` each (``clients.live.sources``), all
    with what ``analyse_video`` writes. Raises InputError when a source cannot be opened (with several, a URL
    that does not open at the start is retried like a dropped one, unless none opens), InferenceError when
    the server is not ready, and the run's error (KeyboardInterrupt for Ctrl-C) when not a single frame
    was analysed. A stream without a frame among others writes results with no frames and its error.
    """
    live = named([s if isinstance(s, LiveSource) else LiveSource(s) for s in sources])
    if not live:
        raise InputError("live: expected at least one source, got none")
    client.check_ready()
    models: dict[str, Any] = dict(client.describe())
    if settings.min_score is not None:
        models["client_min_score"] = float(settings.min_score)
    containers = _open_all(live, settings.stream)
    stop = stop or threading.Event()
    queues = FrameQueues(len(live), settings.max_waiting or settings.batch_size)
    streams = []
    for source, container, queue in zip(live, containers, queues.queues, strict=True):
        folder = Path(out_dir) if len(live) == 1 else Path(out_dir) / source.name
        reader = StreamReader(source.url, container, settings.stream, queue, stop)
        recorder = VideoRecorder(folder, settings.fps, tracker=tracker, scenes=scenes, min_score=settings.min_score)
        streams.append(_Stream(source, queue, reader, recorder))
    waiting: deque[tuple[int, SampledFrame]] = deque()
    expected = len(live) * round(settings.seconds * settings.fps) if settings.seconds else 0

    def batches() -> Iterator[list[Payload]]:
        while not queues.finished and not stop.is_set():
            items = queues.get_batch(settings.batch_size, _POLL_S)
            if items:
                waiting.extend(items)
                yield [client.frame_payload(f.rgb) for _, f in items]  # the client's transport: JPEG or raw

    error: MMWError | None = None
    interrupted = False
    done = 0
    started = time.monotonic()
    for stream in streams:
        stream.reader.start()
    try:
        try:
            for results in client.infer_frames_many(batches()):
                for result in results:
                    k, frame = waiting.popleft()
                    streams[k].recorder.add(frame.index, frame.timestamp_s, frame.rgb, result)
                    done += 1
                    if progress is not None:
                        progress(done, max(expected, done))
        finally:
            _stop_all(streams, stop, settings.stream)
    except MMWError as exc:
        error = exc
    except KeyboardInterrupt:
        interrupted = True
    if not any(s.recorder.frames for s in streams):
        if interrupted:
            raise KeyboardInterrupt
        own = next((s.reader.error for s in streams if s.reader.error), None)
        raise error or own or InputError(f"live source {live[0].url}: no frame was analysed "
                                         f"(stopped: {streams[0].reader.stop_reason or 'stopped'})")
    wall_s = time.monotonic() - started
    return [_write(s, models, settings, wall_s, error, interrupted) for s in streams]


def _stop_all(streams: Sequence[_Stream], stop: threading.Event, settings: StreamSettings) -> None:
    """Stop the readers (waiting for them a bounded time), then flush every recorder; raises the first error."""
    stop.set()
    deadline = time.monotonic() + max(settings.open_timeout_s, settings.read_timeout_s) + 1.0
    for stream in streams:
        stream.reader.join(max(0.0, deadline - time.monotonic()))
    first: MMWError | None = None
    for stream in streams:
        try:
            stream.recorder.finish()
        except MMWError as exc:
            first = first or exc
    if first is not None:
        raise first


def _write(stream: _Stream, models: dict[str, Any], settings: LiveSettings, wall_s: float,
           error: MMWError | None, interrupted: bool) -> LiveRun:
    """One stream's results.json and exports, with its ``live`` counts."""
    reader, recorder = stream.reader, stream.recorder
    own = reader.stop_reason if reader.stop_reason in _OWN_STOPS else ""
    reason = own or ("interrupted" if interrupted else "error" if error else "stopped")
    failed: MMWError | None = error or reader.error
    if not recorder.frames and failed is None:
        failed = InputError(f"live source {stream.source.url}: no frame was analysed (stopped: {reason})")
    stats = LiveStats(
        frames_decoded=reader.frames_decoded,
        frames_sampled=reader.frames_sampled,
        frames_dropped=stream.queue.dropped,
        frames_analysed=len(recorder.frames),
        wall_s=wall_s,
        stop_reason=reason,
        reconnects=reader.reconnects,
        offline_s=reader.offline_s,
    )
    width, height = recorder.size or (0, 0)
    last = recorder.frames[-1].timestamp_s if recorder.frames else 0.0
    results = recorder.results(
        source=stream.source.url,
        fps_sampled=settings.fps,
        width=width,
        height=height,
        duration_s=max(reader.last_time_s, last),
        models=models,
        complete=failed is None,
        error=one_line(failed) if failed else None,
        live=stats,
    )
    results_path, exports = recorder.write(results)
    return LiveRun(results, results_path, recorder.annotated_path, recorder.codec, stats, failed, exports,
                   stream.source.name)


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
    """``analyse_streams`` of one source: writes into ``out_dir`` itself."""
    return analyse_streams([source], out_dir, client, settings, progress=progress, stop=stop, tracker=tracker,
                           scenes=scenes)[0]
