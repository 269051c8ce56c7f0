"""The analysis pipeline shared by the command line and the Gradio app.

``analyse_video`` samples a video, sends the frames to the ensemble in batches, tracks objects across
frames, groups the frames into scenes, draws the results and writes ``results.json``, ``annotated.mp4``
and the exports (``clients.exports``); ``VideoRecorder`` is that second half, shared with live streams
(``clients.live``). ``analyse_images`` does the same for still images (``results.json`` and an
annotated PNG each). Neither prints: progress goes to an optional
``progress(done, total)`` callback, and a run that stops part-way (a server error, a truncated
video, Ctrl-C) still writes what it got and returns it with ``error`` set.

While a video is analysed, ``results.json`` is checkpointed every ``checkpoint_s`` seconds (atomically,
``complete: false``), so even a killed client leaves a valid partial file. ``load_resume`` reads that
file back and ``analyse_video(resume=...)`` continues it: the video is decoded again from the start,
the frames already in the file are replayed from it (not sent to the server) so that tracks, scenes,
exports and ``annotated.mp4`` are rebuilt over every frame exactly as an uninterrupted run would, and
only the frames after them are analysed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from clients.annotate import AnnotatedVideoWriter, annotate
from clients.exports import write_exports
from clients.images import read_image, write_png
from clients.overlay import annotate_tracked
from clients.results import FrameResult, ImageEntry, ImageResult, ImageSetResults, VideoResults, read_results
from clients.scenes import CutDetector, SceneSettings, frame_signature, segment_scenes
from clients.tracking import ObjectTracker, TrackerSettings, build_tracks
from clients.video import SampledFrame, VideoInfo, encode_jpeg, expected_sample_count, probe, sample_frames
from mmw.errors import InputError, MMWError

T = TypeVar("T")

#: ``progress(done, total)``: called after each frame or image; ``total`` is an estimate for videos.
ProgressFn = Callable[[int, int], None]

RESULTS_FILE = "results.json"
ANNOTATED_VIDEO_FILE = "annotated.mp4"


class Interrupted(MMWError):
    """Ctrl-C during a run: the results so far are written, then the run ends."""


class InferenceClient(Protocol):
    """What the pipeline needs of a client (``SceneClient`` has it all)."""

    def check_ready(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def infer_many(self, batches: Iterator[list[bytes]]) -> Iterator[list[ImageResult]]: ...


@dataclass(frozen=True)
class VideoRun:
    """What ``analyse_video`` wrote; ``error`` is set when the run stopped before the end of the video."""

    results: VideoResults
    results_path: Path
    annotated_path: Path | None  # None when no frame was drawn
    codec: str
    info: VideoInfo
    error: MMWError | None = None
    exports: tuple[Path, ...] = ()  # detections.coco.json, captions.srt, captions.vtt, tracks.csv

    @property
    def files(self) -> list[Path]:
        """Every file the run wrote, ``results.json`` first."""
        return [self.results_path] + ([self.annotated_path] if self.annotated_path else []) + list(self.exports)


@dataclass(frozen=True)
class ImageRun:
    """What ``analyse_images`` wrote; ``error`` is set when the run stopped before the last image."""

    results: ImageSetResults
    results_path: Path
    annotated_paths: tuple[Path, ...]
    error: MMWError | None = None

    @property
    def files(self) -> list[Path]:
        """Every file the run wrote, ``results.json`` first."""
        return [self.results_path, *self.annotated_paths]


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def clamp_batch_size(client: Any, wanted: int) -> int:
    """``wanted``, or the ensemble's ``max_batch_size`` when that is smaller (unknown: ``wanted``)."""
    try:
        limit = int(client.max_batch_size())
    except MMWError:
        return wanted
    return limit if 0 < limit < wanted else wanted


def filter_detections(result: ImageResult, min_score: float | None) -> ImageResult:
    """``result`` keeping only detections scored at or above ``min_score`` (None: all of them).

    The caption is the server's, written from every detection above the server's own threshold; dense
    captions of dropped detections are dropped with them.
    """
    if min_score is None:
        return result
    kept = [k for k, d in enumerate(result.detections) if d.score >= min_score]
    return result if len(kept) == len(result.detections) else result.keep_detections(kept)


def batches(items: Iterator[tuple[bytes, T]], size: int, keep: deque[T]) -> Iterator[list[bytes]]:
    """Group encoded items into lists of ``size``; items go to ``keep`` for drawing later.

    When the source fails, the partial batch is still sent before the error is raised.
    """
    batch: list[bytes] = []
    while True:
        try:
            data, item = next(items)
        except StopIteration:
            break
        except MMWError as exc:
            if batch:
                yield batch
            raise exc from None
        keep.append(item)
        batch.append(data)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class VideoRecorder:
    """Frame results in, ``results.json`` + ``annotated.mp4`` + exports out (shared by videos and live streams).

    ``add`` each analysed frame in time order: it is tracked (``clients.tracking``; ids are final one
    frame later, so drawing lags one frame; every track ends at a scene cut), drawn with its track ids
    and caption, and its colour signature is kept for the scenes. ``finish`` flushes the tracker and the
    video; ``results`` builds tracks and scenes; ``write`` writes ``results.json`` and the exports.
    """

    def __init__(
        self,
        out_dir: str | Path,
        fps: float,
        size: tuple[int, int] | None = None,
        *,
        tracker: TrackerSettings | None = None,
        scenes: SceneSettings | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.fps = float(fps)
        self.scene_settings = scenes
        self.frames: list[FrameResult] = []
        self.signatures: list[np.ndarray] = []
        self._tracker = ObjectTracker(fps, tracker)
        self._cuts = CutDetector(scenes)
        self._rgb: deque[np.ndarray] = deque()
        self._size = size
        self._writer: AnnotatedVideoWriter | None = None
        self.added = 0

    @property
    def writer(self) -> AnnotatedVideoWriter:
        """The annotated video's writer (made on the first frame when no size was given)."""
        if self._writer is None:
            if self._size is None:
                raise InputError("video recorder: no frame size yet (expected a size or a first frame)")
            self._writer = AnnotatedVideoWriter(self.out_dir / ANNOTATED_VIDEO_FILE, self.fps, self._size)
        return self._writer

    def add(self, index: int, timestamp_s: float, rgb: np.ndarray, result: ImageResult) -> None:
        """One analysed frame, in time order."""
        if self._size is None:
            self._size = (int(rgb.shape[1]), int(rgb.shape[0]))
        signature = frame_signature(rgb)
        self.signatures.append(signature)
        if self._cuts.push(result, signature)[0] and self.added:
            self._emit(self._tracker.cut())
        self._rgb.append(rgb)
        self.added += 1
        self._emit(self._tracker.push(FrameResult(index, timestamp_s, result)))

    def _emit(self, ready: list[FrameResult]) -> None:
        for frame in ready:
            rgb = self._rgb.popleft()
            self.frames.append(frame)
            self.writer.write(annotate_tracked(rgb, frame.image, frame.timestamp_s), timestamp_s=frame.timestamp_s)

    def finish(self) -> None:
        """Flush the tracker and close the annotated video (idempotent)."""
        try:
            self._emit(self._tracker.finish())
        finally:
            if self._writer is not None:
                self._writer.close()

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the frames, once known."""
        return self._size

    @property
    def annotated_path(self) -> Path | None:
        return self._writer.path if self._writer is not None and self._writer.frames_written else None

    @property
    def codec(self) -> str:
        return self._writer.codec if self._writer is not None else ""

    def results(self, **fields: Any) -> VideoResults:
        """``VideoResults`` of the frames so far with tracks and scenes; ``fields`` give the rest."""
        duration = fields.get("duration_s")
        scenes = segment_scenes(self.frames, self.signatures[: len(self.frames)], fps=self.fps,
                                duration_s=duration, settings=self.scene_settings)
        return VideoResults(frames=self.frames, tracks=build_tracks(self.frames), scenes=scenes, **fields)

    def write(self, results: VideoResults) -> tuple[Path, tuple[Path, ...]]:
        """Write ``results.json`` and the exports; returns their paths."""
        exports = tuple(write_exports(results, self.out_dir))
        return results.write(self.out_dir / RESULTS_FILE), exports


def _models(client: InferenceClient, min_score: float | None) -> dict[str, Any]:
    models = dict(client.describe())
    if min_score is not None:
        models["client_min_score"] = float(min_score)
    return models


def prefetched(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Produce ``items`` in a background thread, up to ``depth`` ahead, so video decoding overlaps inference.

    An exception raised while producing is raised here after the items before it; a consumer that stops
    early stops the producer at its next item.
    """
    slots: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((end, exc))
            return
        put((end, None))

    threading.Thread(target=produce, name="prefetch", daemon=True).start()
    try:
        while True:
            item, error = slots.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def _untracked(result: ImageResult) -> ImageResult:
    """``result`` without track ids (the tracker assigns them again when a run is resumed)."""
    if all(d.track_id is None for d in result.detections):
        return result
    return replace(result, detections=tuple(replace(d, track_id=None) for d in result.detections))


def load_resume(out_dir: str | Path, source: str, fps: float) -> VideoResults:
    """The partial ``out_dir/results.json`` of an earlier run of ``source`` at ``fps``, to continue it.

    Raises InputError when there is no such file or it was made from another video or sampling rate.
    """
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"--resume: expected the results of an earlier run in {path}, got no such file")
    results = read_results(path)
    if not isinstance(results, VideoResults):
        raise InputError(f"--resume: {path} holds the results of images (kind 'images'), expected a video's")
    if not _same_source(results.source, source):
        raise InputError(f"--resume: {path} is for source {results.source!r}, expected {source!r} "
                         "(use another --out folder, or the same video)")
    if abs(results.fps_sampled - fps) > 1e-9:
        raise InputError(f"--resume: {path} was sampled at {results.fps_sampled:g} fps, expected {fps:g} fps "
                         f"(rerun with --fps {results.fps_sampled:g}, or use another --out folder)")
    return results


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _replay(frames: Iterator[SampledFrame], done: Sequence[FrameResult], recorder: VideoRecorder,
            min_score: float | None, progress: ProgressFn | None, total: int) -> None:
    """Feed the frames of a resumed run that are already analysed to ``recorder`` with their stored results."""
    for k, known in enumerate(done):
        frame = next(frames, None)
        if frame is None or frame.index != known.index or abs(frame.timestamp_s - known.timestamp_s) > 2e-3:
            got = "the end of the video" if frame is None else f"frame {frame.index} at {frame.timestamp_s:.3f} s"
            raise InputError(f"--resume: results frame {k} is frame {known.index} at {known.timestamp_s:.3f} s, "
                             f"but sampling the video gave {got} (is it the same video?)")
        recorder.add(frame.index, frame.timestamp_s, frame.rgb, filter_detections(_untracked(known.image), min_score))
        if progress is not None:
            progress(recorder.added, max(total, recorder.added))


def analyse_video(
    path: str | Path,
    out_dir: str | Path,
    client: InferenceClient,
    *,
    fps: float,
    batch_size: int,
    jpeg_quality: int = 90,
    min_score: float | None = None,
    progress: ProgressFn | None = None,
    info: VideoInfo | None = None,
    source: str | None = None,
    tracker: TrackerSettings | None = None,
    scenes: SceneSettings | None = None,
    resume: VideoResults | None = None,
    checkpoint_s: float = 2.0,
) -> VideoRun:
    """Analyse a video: ``out_dir/results.json``, ``out_dir/annotated.mp4`` and the exports.

    ``resume`` (from ``load_resume``) continues an earlier run: its frames are reused, not sent again.
    ``results.json`` is rewritten (``complete: false``) at most every ``checkpoint_s`` seconds while
    the run goes on (0: after every batch).

    ``min_score`` drops detections below it on the client (the server already dropped those below
    ``models.detector.score_threshold``); ``source`` is the name written to ``results.json``
    (default: ``path``). Raises InputError for an unreadable video, InferenceError when the server
    is not ready, and the run's error when not a single frame came back; an error after that is
    returned in ``VideoRun.error`` with the partial results written.
    """
    path = Path(path)
    out_dir = Path(out_dir)
    if not fps > 0:
        raise InputError(f"sampling rate: expected fps > 0, got {fps}")
    if batch_size < 1:
        raise InputError(f"batch size: expected >= 1, got {batch_size}")
    info = info or probe(path)
    client.check_ready()
    models = _models(client, min_score)
    error: MMWError | None = None
    waiting: deque[SampledFrame] = deque()
    recorder = VideoRecorder(out_dir, fps, (info.width, info.height), tracker=tracker, scenes=scenes)
    total = expected_sample_count(info, fps)
    fields: dict[str, Any] = dict(source=source or str(path), fps_sampled=fps, width=info.width,
                                  height=info.height, duration_s=info.duration_s, models=models)
    frames = sample_frames(path, fps)
    if resume is not None:
        try:
            _replay(frames, resume.frames, recorder, min_score, progress, total)
        except BaseException:
            recorder.finish()
            raise
    written_at = time.monotonic()
    written = len(recorder.frames)
    try:
        try:
            encoded = prefetched((encode_jpeg(f.rgb, jpeg_quality), f) for f in frames)
            for results in client.infer_many(batches(encoded, batch_size, waiting)):
                for result in results:
                    frame = waiting.popleft()
                    recorder.add(frame.index, frame.timestamp_s, frame.rgb, filter_detections(result, min_score))
                    if progress is not None:
                        progress(recorder.added, max(total, recorder.added))
                if len(recorder.frames) > written and time.monotonic() - written_at >= checkpoint_s:
                    recorder.results(**fields, complete=False).write(out_dir / RESULTS_FILE)
                    written_at, written = time.monotonic(), len(recorder.frames)
        finally:
            recorder.finish()
    except MMWError as exc:
        error = exc
    except KeyboardInterrupt:
        error = Interrupted(f"interrupted after {recorder.added} frames")
    if not recorder.frames:
        if isinstance(error, Interrupted):
            raise KeyboardInterrupt
        raise error or InputError(f"video {path}: no frame was sampled")
    results = recorder.results(**fields, complete=error is None, error=one_line(error) if error else None)
    results_path, exports = recorder.write(results)
    return VideoRun(results, results_path, recorder.annotated_path, recorder.codec, info, error, exports)


def analyse_images(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    client: InferenceClient,
    *,
    batch_size: int,
    min_score: float | None = None,
    progress: ProgressFn | None = None,
    sources: Sequence[str] | None = None,
) -> ImageRun:
    """Analyse still images: ``out_dir/results.json`` and ``out_dir/<stem>.annotated.png`` each.

    ``sources`` are the names written to ``results.json`` (default: the paths). Errors as in
    ``analyse_video``: an unreadable image stops the run, keeping the images before it.
    """
    paths = [Path(p) for p in paths]
    names = [str(p) for p in paths] if sources is None else list(sources)
    if len(names) != len(paths):
        raise InputError(f"sources: expected one name per image ({len(paths)}), got {len(names)}")
    for p in paths:
        if not p.is_file():
            raise InputError(f"image {p}: not found or not a file (expected a JPEG or PNG file)")
    if batch_size < 1:
        raise InputError(f"batch size: expected >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    client.check_ready()
    models = _models(client, min_score)
    entries: list[ImageEntry] = []
    written: list[Path] = []
    error: MMWError | None = None
    used: set[str] = set()

    def read_all() -> Iterator[tuple[bytes, tuple[Path, str, np.ndarray]]]:
        for p, name in zip(paths, names, strict=True):
            data, rgb = read_image(p)
            yield data, (p, name, rgb)

    waiting: deque[tuple[Path, str, np.ndarray]] = deque()
    try:
        for results in client.infer_many(batches(read_all(), batch_size, waiting)):
            for result in results:
                p, name, rgb = waiting.popleft()
                result = filter_detections(result, min_score)
                png = unique_png_name(p, used)
                written.append(write_png(out_dir / png, annotate(rgb, result)))
                h, w = rgb.shape[:2]
                entries.append(ImageEntry(source=name, width=w, height=h, image=result, annotated=png))
                if progress is not None:
                    progress(len(entries), len(paths))
    except MMWError as exc:
        error = exc
    except KeyboardInterrupt:
        error = Interrupted(f"interrupted after {len(entries)} images")
    if not entries:
        if isinstance(error, Interrupted):
            raise KeyboardInterrupt
        raise error or InputError("images: nothing was processed")
    results = ImageSetResults(
        images=entries, models=models, complete=error is None, error=one_line(error) if error else None
    )
    results_path = results.write(out_dir / RESULTS_FILE)
    return ImageRun(results, results_path, tuple(written), error)


def unique_png_name(path: Path, used: set[str]) -> str:
    """``<stem>.annotated.png``, numbered ``<stem>_2.annotated.png``... when the name is taken."""
    name = f"{path.stem}.annotated.png"
    k = 2
    while name in used:
        name = f"{path.stem}_{k}.annotated.png"
        k += 1
    used.add(name)
    return name
