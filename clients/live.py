"""Live sources analysed in real time: ``analyse_stream`` reads a stream, sends its frames, records the results.

The stream is read by ``clients.media.stream`` (a reader thread that samples at ``fps`` by stream time and
drops the oldest waiting frame when the analysis falls behind, counting it in ``LiveStats.frames_dropped``).
The run stops after ``seconds`` of stream time, at the end of the stream, on a read error or on Ctrl-C;
the frames analysed so far are tracked, segmented, drawn and written like a video's
(``clients.recorder.VideoRecorder``), with the run's counts in ``results.json`` under ``live``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clients.analysis.scenes import SceneSettings
from clients.analysis.tracking import TrackerSettings
from clients.media.stream import FrameQueue, StreamReader, StreamSettings, open_stream
from clients.media.video import SampledFrame
from clients.pipeline import InferenceClient, Payload, ProgressFn, filter_detections, one_line
from clients.recorder import VideoRecorder
from clients.results import LiveStats, VideoResults
from mmw.errors import InputError, MMWError

_POLL_S = 0.1  # how often waiting loops look at the stop flag


@dataclass(frozen=True)
class LiveSettings:
    """How to read, sample and send a live source (``stream``: the reading part)."""

    fps: float = 2.0
    seconds: float | None = None  # stop after this much stream time (None: until the stream ends or Ctrl-C)
    batch_size: int = 4  # at most this many frames per request (fewer when the server keeps up)
    max_waiting: int | None = None  # sampled frames waiting for the server; default batch_size
    min_score: float | None = None
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    input_format: str | None = None  # FFmpeg demuxer, e.g. "v4l2"; None: guessed
    options: dict[str, str] = field(default_factory=dict)  # FFmpeg demuxer options, e.g. rtsp_transport=tcp
    probe_s: float = 1.0  # how much of a network stream FFmpeg reads to find its streams (analyzeduration)
    pace: bool = True  # never read ahead of real time

    def __post_init__(self) -> None:
        _ = self.stream  # checks fps and seconds
        if self.batch_size < 1:
            raise InputError(f"live: expected batch_size >= 1, got {self.batch_size}")
        if self.max_waiting is not None and self.max_waiting < 1:
            raise InputError(f"live: expected max_waiting >= 1, got {self.max_waiting}")

    @property
    def stream(self) -> StreamSettings:
        """The settings of the stream reader."""
        return StreamSettings(fps=self.fps, seconds=self.seconds, open_timeout_s=self.open_timeout_s,
                              read_timeout_s=self.read_timeout_s, input_format=self.input_format,
                              options=dict(self.options), probe_s=self.probe_s, pace=self.pace)


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
    container = open_stream(source, settings.stream)
    queue = FrameQueue(settings.max_waiting or settings.batch_size)
    stop = stop or threading.Event()
    reader = StreamReader(container, settings.stream, queue, stop)
    recorder = VideoRecorder(out_dir, settings.fps, tracker=tracker, scenes=scenes)
    waiting: deque[SampledFrame] = deque()
    expected = round(settings.seconds * settings.fps) if settings.seconds else 0

    def batches() -> Iterator[list[Payload]]:
        while not queue.finished and not stop.is_set():
            items = queue.get_batch(settings.batch_size, _POLL_S)
            if items:
                waiting.extend(items)
                yield [client.frame_payload(f.rgb) for f in items]  # the client's transport: JPEG or raw

    error: MMWError | None = None
    interrupted = False
    started = time.monotonic()
    reader.start()
    try:
        try:
            for results in client.infer_frames_many(batches()):
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

