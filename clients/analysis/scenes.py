"""Scene segmentation: consecutive sampled frames grouped into shots, each with one caption.

Two signals, compared between each sampled frame and the one before it:

- **visual**: the Bhattacharyya distance between HSV colour histograms (``frame_signature``) of
  the two frames, 0 for the same colours, 1 for none in common. A hard cut between shots scores
  0.7-0.95 on the sample video; pans and zooms within a shot stay under 0.15.
- **semantic**: 1 - Jaccard similarity of the two frames' sets of detected classes plus best scene
  label (0 same, 1 nothing in common).

A scene starts where visual >= ``cut_threshold``, or where visual >= ``soft_threshold`` and
semantic >= ``semantic_threshold`` (a softer cut that also changes what is in the frame). Without
frame signatures (results read back from a 1.0 ``results.json``) the semantic signal alone decides,
with a caption change required too. A scene starts at its first sampled frame's time and ends where
the next one starts (the last one at the end of the video), so boundaries are exact to one sampling
interval. Its caption is its most frequent frame caption (the earliest on a tie).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from clients.media.images import check_rgb
from clients.results import FrameResult, ImageResult, Scene
from mmw.errors import InputError

_SIGNATURE_SIZE = (160, 120)
_HIST_BINS = (16, 4, 4)  # hue, saturation, value


@dataclass(frozen=True)
class SceneSettings:
    """Thresholds of the cut detector (see the module docstring)."""

    cut_threshold: float = 0.4
    soft_threshold: float = 0.25
    semantic_threshold: float = 0.5
    min_scene_frames: int = 1  # a cut closer than this many sampled frames to the previous one is ignored

    def __post_init__(self) -> None:
        for name in ("cut_threshold", "soft_threshold", "semantic_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"scenes: expected {name} in [0, 1], got {value}")
        if self.min_scene_frames < 1:
            raise InputError(f"scenes: expected min_scene_frames >= 1, got {self.min_scene_frames}")


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """A frame's HSV colour histogram (16x4x4 bins, sums to 1) on a 160x120 thumbnail."""
    small = cv2.resize(check_rgb(rgb), _SIGNATURE_SIZE, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(_HIST_BINS), [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, None, alpha=1.0, norm_type=cv2.NORM_L1).flatten().astype(np.float32)


def visual_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two signatures: 0 same colours, 1 none in common."""
    return float(np.clip(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA), 0.0, 1.0))


def _content(result: ImageResult) -> set[str]:
    names = {f"object:{d.class_name}" for d in result.detections}
    return names | ({f"label:{result.labels[0].name}"} if result.labels else set())


def semantic_distance(a: ImageResult, b: ImageResult) -> float:
    """1 - Jaccard similarity of detected classes plus best scene label (0 when both are empty)."""
    sa, sb = _content(a), _content(b)
    union = sa | sb
    return 1.0 - len(sa & sb) / len(union) if union else 0.0


class CutDetector:
    """Online cut decisions: ``push`` each sampled frame's result (and signature) in time order."""

    def __init__(self, settings: SceneSettings | None = None) -> None:
        self.settings = settings or SceneSettings()
        self._previous: tuple[ImageResult, np.ndarray | None] | None = None
        self._count = 0
        self._last_cut = 0

    def push(self, result: ImageResult, signature: np.ndarray | None = None) -> tuple[bool, float | None]:
        """(does a new scene start at this frame, the visual distance to the previous frame or None)."""
        s = self.settings
        k, previous = self._count, self._previous
        self._count += 1
        self._previous = (result, signature)
        if previous is None:
            return True, None  # the first frame starts the first scene
        semantic = semantic_distance(previous[0], result)
        visual: float | None = None
        if signature is not None and previous[1] is not None:
            visual = visual_distance(previous[1], signature)
            cut = visual >= s.cut_threshold or (visual >= s.soft_threshold and semantic >= s.semantic_threshold)
        else:
            cut = semantic >= s.semantic_threshold and previous[0].caption != result.caption
        if cut and k - self._last_cut >= s.min_scene_frames:
            self._last_cut = k
            return True, visual
        return False, visual


def cut_points(
    frames: Sequence[FrameResult],
    signatures: Sequence[np.ndarray] | None = None,
    settings: SceneSettings | None = None,
) -> list[tuple[int, float | None]]:
    """(position in ``frames``, visual distance or None) where a new scene starts, the first frame included."""
    if signatures is not None and len(signatures) != len(frames):
        raise InputError(f"scenes: expected one signature per frame ({len(frames)}), got {len(signatures)}")
    detector = CutDetector(settings)
    cuts = []
    for k, frame in enumerate(frames):
        cut, visual = detector.push(frame.image, None if signatures is None else signatures[k])
        if cut:
            cuts.append((k, visual))
    return cuts


def scene_caption(frames: Sequence[FrameResult]) -> str:
    """The most frequent non-empty caption (the earliest on a tie); else the best label; else ''."""
    captions = Counter(f.image.caption for f in frames if f.image.caption)
    if captions:
        top = max(captions.values())
        return next(f.image.caption for f in frames if captions.get(f.image.caption) == top)
    labels = Counter(f.image.labels[0].name for f in frames if f.image.labels)
    return labels.most_common(1)[0][0] if labels else ""


def segment_scenes(
    frames: Sequence[FrameResult],
    signatures: Sequence[np.ndarray] | None = None,
    *,
    fps: float,
    duration_s: float | None = None,
    settings: SceneSettings | None = None,
) -> tuple[Scene, ...]:
    """Group ``frames`` (time order) into scenes; ``duration_s`` ends the last one (default: one interval on)."""
    if not fps > 0:
        raise InputError(f"scenes: expected fps > 0, got {fps}")
    cuts = cut_points(frames, signatures, settings)
    scenes = []
    for n, (start, score) in enumerate(cuts):
        stop = cuts[n + 1][0] if n + 1 < len(cuts) else len(frames)
        part = frames[start:stop]
        if stop < len(frames):
            end = frames[stop].timestamp_s
        else:
            last = part[-1].timestamp_s
            end = last + 1.0 / fps
            if duration_s is not None and duration_s > last:
                end = min(end, duration_s)
        labels = Counter(f.image.labels[0].name for f in part if f.image.labels)
        scenes.append(
            Scene(
                index=n,
                start_s=part[0].timestamp_s,
                end_s=end,
                first_frame=start,
                frames=len(part),
                caption=scene_caption(part),
                objects=tuple(sorted({d.class_name for f in part for d in f.image.detections})),
                label=labels.most_common(1)[0][0] if labels else "",
                cut_score=None if score is None else round(score, 4),
            )
        )
    return tuple(scenes)


def scene_frames(frames: Sequence[FrameResult], scene: Scene) -> Sequence[FrameResult]:
    """The sampled frames of ``scene``."""
    return frames[scene.first_frame : scene.first_frame + scene.frames]
