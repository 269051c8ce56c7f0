"""The analysis pipeline shared by the command line and the Gradio app.

``analyse_video`` samples a video, sends the frames to the ensemble in batches, tracks objects across
frames, groups the frames into scenes, draws the results and writes ``results.json``, ``annotated.mp4``
and the exports; ``clients.recorder.VideoRecorder`` is that second half, shared with live streams
(``clients.live``). ``analyse_images`` does the same for still images (``results.json`` and an
annotated PNG each). Neither prints: progress goes to an optional
``progress(done, total)`` callback, and a run that stops part-way (a server error, a truncated
video, Ctrl-C) still writes what it got and returns it with ``error`` set.

While a video is analysed, ``results.json`` is checkpointed every ``checkpoint_s`` seconds (atomically,
``complete: false``), so even a killed client leaves a valid partial file. ``load_resume`` reads that
file back and ``analyse_video(resume=...)`` continues it: the video is decoded again from the start,
the frames already in the file are replayed from it (not sent to the server) so that tracks, scenes,
exports and ``annotated.mp4`` are rebuilt over every frame exactly as an uninterrupted run would (with the
detections ``min_score`` hid from ``results.json`` after tracking, kept in ``resume.json``), and only the
frames after them are analysed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from clients.analysis.hidden import Hidden, read_hidden, remove_hidden, restore_hidden, write_hidden
from clients.analysis.scenes import SceneSettings
from clients.analysis.tracking import TrackerSettings
from clients.media.images import read_image, write_png
from clients.media.prefetch import prefetched
from clients.media.video import SampledFrame, VideoInfo, expected_sample_count, probe, sample_frames
from clients.outputs.annotators import annotate
from clients.outputs.selection import OutputSelection
from clients.recorder import RESULTS_FILE, VideoRecorder
from clients.results import FrameResult, ImageEntry, ImageResult, ImageSetResults, VideoResults, read_results
from mmw.errors import InputError, MMWError

T = TypeVar("T")

#: ``progress(done, total)``: called after each frame or image; ``total`` is an estimate for videos.
ProgressFn = Callable[[int, int], None]


class Interrupted(MMWError):
    """Ctrl-C during a run: the results so far are written, then the run ends."""


#: What a frame travels as: JPEG/PNG bytes, or the uint8 RGB frame itself (``InferenceClient.frame_payload``).
Payload = bytes | np.ndarray


class InferenceClient(Protocol):
    """What the pipeline needs of a client (``SceneClient`` has it all).

    The client decides how frames travel (``client.transport``): ``frame_payload`` turns a frame into what
    it sends (its JPEG, or the frame), and the pipeline calls it where the work overlaps the requests.
    """

    def check_ready(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def frame_payload(self, rgb: np.ndarray, encoded: bytes | None = None) -> Payload: ...

    def infer_frames_many(self, batches: Iterator[list[Payload]]) -> Iterator[list[ImageResult]]: ...


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


def batches(items: Iterator[tuple[Payload, T]], size: int, keep: deque[T]) -> Iterator[list[Payload]]:
    """Group payloads into lists of ``size``; items go to ``keep`` for drawing later.

    When the source fails, the partial batch is still sent before the error is raised.
    """
    batch: list[Payload] = []
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


def _models(client: InferenceClient, min_score: float | None) -> dict[str, Any]:
    models = dict(client.describe())
    if min_score is not None:
        models["client_min_score"] = float(min_score)
    return models


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
            hidden: Mapping[int, Hidden], progress: ProgressFn | None, total: int) -> None:
    """Feed the frames of a resumed run that are already analysed to ``recorder`` with their stored results
    and the detections the display filter hid from them (``resume.json``), as the tracker first saw them."""
    for k, known in enumerate(done):
        frame = next(frames, None)
        if frame is None or frame.index != known.index or abs(frame.timestamp_s - known.timestamp_s) > 2e-3:
            got = "the end of the video" if frame is None else f"frame {frame.index} at {frame.timestamp_s:.3f} s"
            raise InputError(f"--resume: results frame {k} is frame {known.index} at {known.timestamp_s:.3f} s, "
                             f"but sampling the video gave {got} (is it the same video?)")
        recorder.add(frame.index, frame.timestamp_s, frame.rgb,
                     restore_hidden(_untracked(known.image), hidden.get(known.index, ())))
        if progress is not None:
            progress(recorder.added, max(total, recorder.added))


def analyse_video(
    path: str | Path,
    out_dir: str | Path,
    client: InferenceClient,
    *,
    fps: float,
    batch_size: int,
    min_score: float | None = None,
    progress: ProgressFn | None = None,
    info: VideoInfo | None = None,
    source: str | None = None,
    tracker: TrackerSettings | None = None,
    scenes: SceneSettings | None = None,
    resume: VideoResults | None = None,
    checkpoint_s: float = 2.0,
    outputs: OutputSelection | None = None,
    cue_s: float | None = None,
) -> VideoRun:
    """Analyse a video: ``out_dir/results.json``, ``out_dir/annotated.mp4`` and the exports.

    Frames travel as the client says (``frame_payload``, computed in the prefetch thread: a JPEG encodes
    while the requests are in flight). ``resume`` (from ``load_resume``) continues an earlier run: its
    frames are reused, not sent again.
    ``results.json`` is rewritten (``complete: false``) at most every ``checkpoint_s`` seconds while
    the run goes on (0: after every batch). ``outputs`` leaves some outputs out (default: all of them);
    ``cue_s`` is the longest subtitle cue.

    Every detection the server returns (it dropped those below ``models.detector.score_threshold``) is
    tracked; after tracking, ``results.json``, the exports and ``annotated.mp4`` keep those scoring at least
    ``min_score`` (None: all). What that hides is checkpointed in ``resume.json`` beside the partial
    ``results.json``, so that a resumed run tracks exactly as an uninterrupted one (a complete run removes
    it). ``source`` is the name written to ``results.json``
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
    recorder = VideoRecorder(out_dir, fps, (info.width, info.height), tracker=tracker, scenes=scenes,
                             outputs=outputs, cue_s=cue_s, min_score=min_score)
    total = expected_sample_count(info, fps)
    fields: dict[str, Any] = dict(source=source or str(path), fps_sampled=fps, width=info.width,
                                  height=info.height, duration_s=info.duration_s, models=models)
    frames = sample_frames(path, fps)
    if resume is not None:
        try:
            _replay(frames, resume.frames, recorder, read_hidden(out_dir, fields["source"], fps), progress, total)
        except BaseException:
            recorder.finish()
            raise
    written_at = time.monotonic()
    written = len(recorder.frames)
    try:
        try:
            payloads = prefetched((client.frame_payload(f.rgb), f) for f in frames)
            for results in client.infer_frames_many(batches(payloads, batch_size, waiting)):
                for result in results:
                    frame = waiting.popleft()
                    recorder.add(frame.index, frame.timestamp_s, frame.rgb, result)  # filtered after tracking
                    if progress is not None:
                        progress(recorder.added, max(total, recorder.added))
                if len(recorder.frames) > written and time.monotonic() - written_at >= checkpoint_s:
                    write_hidden(out_dir, fields["source"], fps, recorder.hidden)  # first: it covers the results
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
    if error is not None:
        write_hidden(out_dir, fields["source"], fps, recorder.hidden)
    results_path, exports = recorder.write(results)
    if error is None:
        remove_hidden(out_dir)  # a complete run needs no resume.json
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

    def read_all() -> Iterator[tuple[Payload, tuple[Path, str, np.ndarray]]]:
        for p, name in zip(paths, names, strict=True):
            data, rgb = read_image(p)
            yield client.frame_payload(rgb, encoded=data), (p, name, rgb)  # jpeg: the file's own bytes

    waiting: deque[tuple[Path, str, np.ndarray]] = deque()
    try:
        for results in client.infer_frames_many(batches(read_all(), batch_size, waiting)):
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
