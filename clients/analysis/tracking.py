"""Multi-object tracking across sampled frames: ByteTrack's two stages, buffered IoU, colour re-linking.

``ObjectTracker`` tracks online, one sampled frame at a time, and sets ``Detection.track_id``. Each track has a
constant-velocity Kalman filter of its box (``clients.analysis.motion``), a class (a track never changes class)
and a colour signature of its box crop (``clients.analysis.appearance``) when frames are given. Per frame:

1. confirmed tracks (seen or lost) take the detections scoring at least ``high_score``: the cost is one
   minus the IoU of the predicted and detected boxes, both enlarged ``box_scale`` times about their centre
   (the "buffered IoU" of C-BIoU, Yang et al. 2023: at 2 samples a second an object moves a good part of its
   width between samples), plus ``appearance_weight`` times one minus the colour similarity. A lost track
   whose boxes no longer overlap can still be re-linked by colour alone (similarity >= ``relink_similarity``,
   its predicted centre within reach), which carries an identity through an occlusion;
2. tracks seen in the previous frame take the low-score detections (``low_score`` up to ``high_score``) by
   IoU alone: ByteTrack's second stage, which keeps a half-hidden object's track alive;
3. a new track starts from an unmatched detection scoring at least ``high_score`` and is confirmed, with
   the next id (1, 2, 3, ... across classes, in order of confirmation), when the next frame matches it.
   The tracker hands frames back one frame late so that a confirmed track's first detection gets its id
   too (``first_seen_s`` is the first frame the object was seen in); an object seen in a single sampled
   frame gets no track (noise);
4. a track unseen for more than ``lost_track_s`` ends (one with colours stays ``relink_s`` for stage 1's
   colour re-link).

A detection lying inside a better-scored one of its class (a part of the same object, split by an occluder or
the frame's edge) takes no part and gets no id, nor does one inside a box tracked in this frame start a track.

Settings follow the sampling rate: ``box_scale`` defaults to ``1 + 1.2 / fps`` (1.6 at 2 fps, 1.24 at 5 fps,
1.12 at 10 fps, at most 2), the lost-track buffer is ``ceil(lost_track_s * fps)`` frames, and the Kalman
filter's velocity noise grows with the time between samples. ``cut`` ends every track at a scene cut
(``clients.recorder.VideoRecorder`` calls it on the cuts of ``clients.analysis.scenes``): what is seen
after a hard cut is a new object. ``build_tracks`` summarises the tracked frames into ``Track`` records.
Measured against ground truth by ``benchmarks/tracking_benchmark.py`` (``make bench``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from clients.analysis.appearance import blend, signature, similarity
from clients.analysis.motion import BoxFilter
from clients.results import Detection, FrameResult, Track
from mmw.errors import InputError

_NO_MATCH = 1e6


def box_scale_for(fps: float) -> float:
    """The buffered-IoU scale at a sampling rate: ``1 + 1.2 / fps``, at most 2."""
    return min(2.0, 1.0 + 1.2 / fps)


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker's knobs in the units of seconds and scores (``box_scale`` None: from the sampling rate)."""

    lost_track_s: float = 2.0  # a track survives this long without a detection (occlusion, missed detections)
    high_score: float = 0.3  # detections at least this start tracks and match first (ByteTrack's track_thresh)
    low_score: float = 0.1  # detections below this are ignored; from here to high_score: the second stage
    activation_score: float = 0.4  # a new track starts from a detection scoring at least this (ByteTrack: + 0.1)
    matching_threshold: float = 0.8  # first stage: the most a match may cost (1 - buffered IoU, + appearance)
    low_matching_threshold: float = 0.5  # second stage: the most 1 - buffered IoU may be
    box_scale: float | None = None  # boxes are enlarged this much about their centre before matching
    appearance_weight: float = 1.0  # how much colour dissimilarity adds to a first-stage cost
    relink_similarity: float = 0.85  # a lost track re-links by colour alone at least this similar ...
    relink_reach: float = 1.0  # ... its predicted centre within this many box heights, plus this per lost second
    relink_s: float = 6.0  # ... for this long (past lost_track_s only by colour; without frames: lost_track_s)
    min_similarity: float = 0.75  # never match boxes less alike than this (another object)

    def __post_init__(self) -> None:
        if not (self.lost_track_s >= 0 and self.relink_s >= 0):
            raise InputError(f"tracker: expected lost_track_s and relink_s >= 0, got {self.lost_track_s} and "
                             f"{self.relink_s}")
        if self.box_scale is not None and not 1.0 <= self.box_scale <= 4.0:
            raise InputError(f"tracker: expected box_scale in [1, 4] (or None: from fps), got {self.box_scale}")
        for name in ("high_score", "low_score", "activation_score", "matching_threshold", "low_matching_threshold",
                     "relink_similarity", "min_similarity"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"tracker: expected {name} in [0, 1], got {value}")
        if self.low_score > self.high_score:
            raise InputError(f"tracker: expected low_score <= high_score, got {self.low_score} > {self.high_score}")
        if not (self.appearance_weight >= 0 and self.relink_reach >= 0):
            raise InputError(f"tracker: expected appearance_weight and relink_reach >= 0, got "
                             f"{self.appearance_weight} and {self.relink_reach}")


def scale_box(box: Sequence[float], factor: float) -> tuple[float, float, float, float]:
    """``box`` (x1, y1, x2, y2) enlarged ``factor`` times about its centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * factor / 2, (y2 - y1) * factor / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(eq=False)
class _Track:
    """A track's state: its filter, class, colours, id (None until confirmed) and frames since last seen."""

    motion: BoxFilter
    class_id: int
    colours: np.ndarray | None
    track_id: int | None = None
    lost: int = 0
    first: tuple[int, int] = (-1, -1)  # (frame serial, detection index) of its first detection


def _assign(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Minimum-cost pairs (row, column) of ``cost`` with a cost of at most ``limit``."""
    if cost.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(np.minimum(cost, _NO_MATCH))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= limit]


class ObjectTracker:
    """Tracks over sampled frames: ``push`` each frame in time order (with its pixels for colour cues), ``finish``.

    Both return the frames whose track ids are final (``push`` one frame late), in order.
    """

    def __init__(self, fps: float, settings: TrackerSettings | None = None) -> None:
        if not fps > 0:
            raise InputError(f"tracker: expected fps > 0, got {fps}")
        self.settings = settings or TrackerSettings()
        self.fps = float(fps)
        self.box_scale = self.settings.box_scale or box_scale_for(self.fps)
        self.lost_frames = max(1, math.ceil(self.settings.lost_track_s * self.fps))
        self.relink_frames = max(self.lost_frames, math.ceil(self.settings.relink_s * self.fps))
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._serial = 0
        self._pending: FrameResult | None = None

    def cut(self) -> list[FrameResult]:
        """A scene cut before the next frame: every track ends; returns the last frame pushed, now final."""
        ready = self.finish()
        self._tracks.clear()
        return ready

    def push(self, frame: FrameResult, rgb: np.ndarray | None = None) -> list[FrameResult]:
        """Track one sampled frame (``rgb``: its pixels, for colour cues); returns the previous frame, now final."""
        self._serial += 1
        ids, started = self._track(frame.image.detections, rgb)
        # tracks confirmed now had their first detection in the pending frame: it gets their ids
        ready = [] if self._pending is None else [self._with_ids(self._pending, started)]
        self._pending = self._with_ids(frame, ids)
        return ready

    def finish(self) -> list[FrameResult]:
        """The last frame pushed, if any."""
        ready = [] if self._pending is None else [self._pending]
        self._pending = None
        return ready

    @staticmethod
    def _with_ids(frame: FrameResult, ids: dict[int, int]) -> FrameResult:
        if not ids:
            return frame
        dets = tuple(replace(d, track_id=ids[k]) if k in ids else d for k, d in enumerate(frame.image.detections))
        return replace(frame, image=replace(frame.image, detections=dets))

    def _cost(self, track: _Track, det: Detection, colours: np.ndarray | None, reach: bool) -> float:
        """First-stage cost of ``track`` taking ``det`` (``_NO_MATCH`` when it may not)."""
        s = self.settings
        if track.class_id != det.class_id:
            return _NO_MATCH
        sim = similarity(track.colours, colours)
        if sim is not None and sim < s.min_similarity:
            return _NO_MATCH
        overlap = iou(scale_box(track.motion.box, self.box_scale), scale_box(det.box, self.box_scale))
        dissimilar = 0.0 if sim is None else s.appearance_weight * (1.0 - sim)
        if overlap > 0 and 1.0 - overlap <= s.matching_threshold and track.lost <= self.lost_frames:
            return 1.0 - overlap + dissimilar
        if reach and sim is not None and sim >= s.relink_similarity and track.lost > 0:
            x1, y1, x2, y2 = track.motion.box
            d1, e1, d2, e2 = det.box
            height = max(y2 - y1, e2 - e1, 1.0)
            distance = math.hypot((x1 + x2 - d1 - d2) / 2, (y1 + y2 - e1 - e2) / 2) / height
            if distance <= s.relink_reach * (1.0 + track.lost / self.fps):
                return s.matching_threshold + (1.0 - sim)  # after every overlap match
        return _NO_MATCH

    def _track(self, dets: Sequence[Detection], rgb: np.ndarray | None
               ) -> tuple[dict[int, int], dict[int, int]]:
        """Associate one frame; returns (detection index -> track id, for confirmed tracks) and the same for
        the first detections (in the previous frame) of tracks confirmed now."""
        s = self.settings
        for track in self._tracks:
            track.motion.predict()
        colours = [signature(rgb, d.box) if rgb is not None else None for d in dets]
        parts = self._parts(dets)
        high = [k for k, d in enumerate(dets) if d.score >= s.high_score and k not in parts]
        low = [k for k, d in enumerate(dets) if s.low_score <= d.score < s.high_score and k not in parts]
        confirmed = [t for t in self._tracks if t.track_id is not None]
        tentative = [t for t in self._tracks if t.track_id is None]
        matched: dict[int, _Track] = {}

        # 1. confirmed tracks x high-score detections: buffered IoU + colour, or colour alone for lost tracks
        cost = np.array([[self._cost(t, dets[k], colours[k], True) for k in high] for t in confirmed]
                        ).reshape(len(confirmed), len(high))
        for r, c in _assign(cost, s.matching_threshold + 1.0):
            matched[high[c]] = confirmed[r]
        # 2. tracks seen last frame x low-score detections: buffered IoU only
        seen = [t for t in confirmed if t.lost == 0 and t not in matched.values()]
        cost = np.array([[self._overlap_cost(t, dets[k]) for k in low] for t in seen]).reshape(len(seen), len(low))
        for r, c in _assign(cost, s.low_matching_threshold):
            matched[low[c]] = seen[r]
        # 3. tentative tracks (one detection so far) x the high-score detections left
        left = [k for k in high if k not in matched]
        cost = np.array([[self._cost(t, dets[k], colours[k], False) for k in left] for t in tentative]
                        ).reshape(len(tentative), len(left))
        started: dict[int, int] = {}
        for r, c in _assign(cost, s.matching_threshold + 1.0):
            track = tentative[r]
            track.track_id = self._next_id
            self._next_id += 1
            matched[left[c]] = track
            if track.first[0] == self._serial - 1:
                started[track.first[1]] = track.track_id

        ids: dict[int, int] = {}
        crowded = self._crowded(dets)
        tracked = [dets[k] for k in matched] + [replace(dets[k], box=t.motion.box) for k, t in matched.items()]
        for k, track in matched.items():
            track.motion.update(dets[k].box)
            track.lost = 0
            if dets[k].score >= s.high_score and k not in crowded:  # colours of a clear, sure sighting only
                track.colours = blend(track.colours, colours[k])
            if track.track_id is not None:
                ids[k] = track.track_id
        survivors = []
        for track in self._tracks:
            if any(track is m for m in matched.values()):
                survivors.append(track)
            elif track.track_id is not None:
                track.lost += 1
                if track.lost <= (self.lost_frames if track.colours is None else self.relink_frames):
                    survivors.append(track)
        for k in high:  # 4. new tentative tracks, but not from a part of an object tracked in this frame
            if k not in matched and dets[k].score >= s.activation_score and not self._part_of(dets[k], tracked):
                survivors.append(_Track(BoxFilter(dets[k].box, 1.0 / self.fps), dets[k].class_id, colours[k],
                                        first=(self._serial, k)))
        self._tracks = survivors
        return ids, started

    def _overlap_cost(self, track: _Track, det: Detection) -> float:
        if track.class_id != det.class_id:
            return _NO_MATCH
        overlap = iou(scale_box(track.motion.box, self.box_scale), scale_box(det.box, self.box_scale))
        return 1.0 - overlap if overlap > 0 else _NO_MATCH

    @classmethod
    def _parts(cls, dets: Sequence[Detection]) -> set[int]:
        """Detections lying inside a better-scored one of their class (a part of the same object, seen around
        an occluder or the frame's edge): they take no part in tracking."""
        return {k for k, d in enumerate(dets)
                if cls._part_of(d, [o for o in dets if o.score > d.score], cover=0.8)}

    @staticmethod
    def _part_of(det: Detection, tracked: Sequence[Detection], cover: float = 0.6) -> bool:
        """Whether ``det`` lies mostly (``cover`` of its area) inside a tracked detection of its class."""
        x1, y1, x2, y2 = det.box
        area = max((x2 - x1) * (y2 - y1), 1e-6)
        for t in tracked:
            if t.class_id != det.class_id:
                continue
            w = min(x2, t.box[2]) - max(x1, t.box[0])
            h = min(y2, t.box[3]) - max(y1, t.box[1])
            if w > 0 and h > 0 and w * h / area >= cover:
                return True
        return False

    @staticmethod
    def _crowded(dets: Sequence[Detection]) -> set[int]:
        """Detections overlapping another one (their crop shows more than one object)."""
        out = set()
        for a in range(len(dets)):
            for b in range(a + 1, len(dets)):
                if iou(dets[a].box, dets[b].box) > 0.05:
                    out.update((a, b))
        return out


def track_frames(
    frames: Iterable[FrameResult], fps: float, settings: TrackerSettings | None = None,
    images: Iterable[np.ndarray | None] | None = None,
) -> list[FrameResult]:
    """Every frame with its track ids (offline use of ``ObjectTracker``; ``images``: each frame's pixels)."""
    tracker = ObjectTracker(fps, settings)
    out: list[FrameResult] = []
    pixels = iter(images) if images is not None else None
    for frame in frames:
        out += tracker.push(frame, next(pixels, None) if pixels is not None else None)
    return out + tracker.finish()


def build_tracks(frames: Iterable[FrameResult]) -> tuple[Track, ...]:
    """One ``Track`` per track id in the frames, ordered by first appearance then id.

    A track's class is the one its detections have most often, weighted by score (with
    ``ObjectTracker`` they all have the same one).
    """
    votes: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    names: dict[int, str] = {}
    times: dict[int, list[float]] = defaultdict(list)
    best: dict[int, float] = defaultdict(float)
    for frame in frames:
        for d in frame.image.detections:
            if d.track_id is None:
                continue
            votes[d.track_id][d.class_id] += d.score
            names[d.class_id] = d.class_name
            if not times[d.track_id] or times[d.track_id][-1] != frame.timestamp_s:
                times[d.track_id].append(frame.timestamp_s)
            best[d.track_id] = max(best[d.track_id], d.score)
    tracks = []
    for track_id, by_class in votes.items():
        class_id = max(by_class, key=lambda c: (by_class[c], -c))
        seen = times[track_id]
        tracks.append(
            Track(track_id, class_id, names[class_id], min(seen), max(seen), len(seen), best[track_id])
        )
    return tuple(sorted(tracks, key=lambda t: (t.first_seen_s, t.track_id)))


def track_detection(detections: Sequence[Detection], track_id: int) -> Detection | None:
    """The detection of ``track_id`` among ``detections``, if any."""
    return next((d for d in detections if d.track_id == track_id), None)
