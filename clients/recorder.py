"""``VideoRecorder``: analysed frames in, ``results.json``, ``annotated.mp4`` and the exports out.

Shared by videos (``clients.pipeline``) and live streams (``clients.live``): each frame's result goes through
the analysis (tracks, cuts, scenes: ``clients.analysis``) and the outputs (the annotated frame, the exports:
``clients.outputs``), in that order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from clients.analysis.hidden import Hidden, split_shown
from clients.analysis.scenes import CutDetector, SceneSettings, frame_signature, segment_scenes
from clients.analysis.tracking import ObjectTracker, TrackerSettings, build_tracks
from clients.media.mp4 import Mp4Writer
from clients.outputs.annotators import SceneAnnotator
from clients.outputs.exports import DEFAULT_CUE_S, ExportSettings, write_exports
from clients.outputs.selection import OutputSelection
from clients.results import FrameResult, ImageResult, VideoResults
from mmw.errors import InputError

RESULTS_FILE = "results.json"
ANNOTATED_VIDEO_FILE = "annotated.mp4"


class VideoRecorder:
    """Frame results in, ``results.json`` + ``annotated.mp4`` + exports out (shared by videos and live streams).

    ``add`` each analysed frame in time order: it is tracked (``ObjectTracker``; ids are final one
    frame later, so drawing lags one frame; every track ends at a scene cut), drawn with its track ids
    and caption, and its colour signature is kept for the scenes. ``finish`` flushes the tracker and the
    video; ``results`` builds tracks and scenes; ``write`` writes ``results.json`` and the exports.
    ``outputs`` leaves some out (``annotated.mp4``: nothing is drawn); ``results.json`` is always written;
    ``cue_s`` is the longest subtitle cue (``clients.outputs.subtitles``). Frames are tracked with every
    detection the server returned (and the frame's colours); what is kept and drawn after tracking scores at
    least ``min_score`` (None: all of it), and what that hides stays in ``hidden`` for an exact ``--resume``
    (``clients.analysis.hidden``).
    """

    def __init__(
        self,
        out_dir: str | Path,
        fps: float,
        size: tuple[int, int] | None = None,
        *,
        tracker: TrackerSettings | None = None,
        scenes: SceneSettings | None = None,
        outputs: OutputSelection | None = None,
        cue_s: float | None = None,
        min_score: float | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.outputs = outputs or OutputSelection()
        self.exports = ExportSettings(files=self.outputs.export_files, cue_s=cue_s or DEFAULT_CUE_S)
        self.fps = float(fps)
        self.scene_settings = scenes
        self.frames: list[FrameResult] = []
        self.signatures: list[np.ndarray] = []
        self._tracker = ObjectTracker(fps, tracker)
        # detections below the display score follow tracks but are not shown (kept in ``hidden`` for a resume)
        self.min_score = None if min_score is None else float(min_score)
        self.hidden: dict[int, Hidden] = {}
        self._cuts = CutDetector(scenes)
        self._rgb: deque[np.ndarray] = deque()
        self._size = size
        self._writer: Mp4Writer | None = None
        self._annotator = SceneAnnotator()
        self.added = 0

    @property
    def writer(self) -> Mp4Writer:
        """The annotated video's writer (made on the first frame when no size was given)."""
        if self._writer is None:
            if self._size is None:
                raise InputError("video recorder: no frame size yet (expected a size or a first frame)")
            self._writer = Mp4Writer(self.out_dir / ANNOTATED_VIDEO_FILE, self.fps, self._size)
        return self._writer

    def add(self, index: int, timestamp_s: float, rgb: np.ndarray, result: ImageResult) -> None:
        """One analysed frame, in time order."""
        if self._size is None:
            self._size = (int(rgb.shape[1]), int(rgb.shape[0]))
        signature = frame_signature(rgb)
        self.signatures.append(signature)
        if self._cuts.push(split_shown(result, self.min_score)[0], signature)[0] and self.added:
            self._emit(self._tracker.cut())
        if self.outputs.annotated_video:
            self._rgb.append(rgb)
        self.added += 1
        self._emit(self._tracker.push(FrameResult(index, timestamp_s, result), rgb))

    def _emit(self, ready: list[FrameResult]) -> None:
        for tracked in ready:
            shown, hidden = split_shown(tracked.image, self.min_score)
            frame = replace(tracked, image=shown)
            if hidden:
                self.hidden[frame.index] = hidden
            self.frames.append(frame)
            if not self.outputs.annotated_video:
                continue
            rgb = self._rgb.popleft()
            self.writer.write(self._annotator.annotate(rgb, frame.image, frame.timestamp_s),
                              timestamp_s=frame.timestamp_s)

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
        exports = tuple(write_exports(results, self.out_dir, self.exports))
        return results.write(self.out_dir / RESULTS_FILE), exports
