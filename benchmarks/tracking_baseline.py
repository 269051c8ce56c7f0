"""The tracker before issue 18, kept unchanged as the tracking benchmark's ``old`` baseline (not used by clients).

Multi-object tracking across sampled frames with ``supervision``'s ByteTrack.

``ObjectTracker`` runs ByteTrack (Kalman-filtered boxes, two-stage IoU association, lost tracks kept
for ``lost_track_s``) online, one sampled frame at a time, and sets ``Detection.track_id``. ByteTrack
itself ignores classes; one ByteTrack per class keeps a person's track from jumping to a horse, and
ids are numbered across classes (1, 2, 3, ... in order of confirmation). ByteTrack confirms a new track
on its second frame: the tracker hands frames back one frame late and gives the first detection of a
new track its id too (same class, IoU >= ``backfill_iou`` with the track's next box), so
``first_seen_s`` is the first frame the object was seen in. ``cut`` ends every track at a scene cut
(``clients.recorder.VideoRecorder`` calls it on the cuts of ``clients.analysis.scenes``): what is seen after a
hard cut is a new object.

ByteTrack matches boxes by overlap and its Kalman filter is tuned for 25-30 fps; at 2 sampled frames
per second an object moves a good part of its width between samples. Boxes are therefore handed to
ByteTrack enlarged ``box_scale`` times about their centre (the "buffered IoU" of C-BIoU, Yang et al.
2023), which keeps consecutive boxes of a moving object overlapping; ids are mapped back to the
original detections. An object seen in a single sampled frame gets no track: ByteTrack treats it as
noise. Objects that move more than about their own width between samples
still break into several tracks: sample faster (``--fps``) for fast motion.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

from clients.analysis.detections import to_detections
from clients.analysis.tracking import iou, scale_box
from clients.results import FrameResult
from mmw.errors import InputError


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack's knobs in the units of sampled frames and seconds."""

    lost_track_s: float = 2.0  # a track survives this long without a detection (occlusion, missed detections)
    activation_score: float = 0.25  # ByteTrack's track_activation_threshold
    matching_threshold: float = 0.8  # ByteTrack's minimum_matching_threshold (a cost: 1 - IoU, fused with score)
    backfill_iou: float = 0.3  # a new track's first detection: IoU (of enlarged boxes) with the track's next box
    box_scale: float = 1.6  # boxes are enlarged this much about their centre before matching (buffered IoU)

    def __post_init__(self) -> None:
        if not self.lost_track_s >= 0:
            raise InputError(f"tracker: expected lost_track_s >= 0, got {self.lost_track_s}")
        if not 1.0 <= self.box_scale <= 4.0:
            raise InputError(f"tracker: expected box_scale in [1, 4], got {self.box_scale}")
        for name in ("activation_score", "matching_threshold", "backfill_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"tracker: expected {name} in [0, 1], got {value}")


def _byte_track(settings: TrackerSettings, fps: float) -> object:
    import supervision as sv  # imported here: ~0.4 s, and only video runs need it

    lost_frames = max(1, math.ceil(settings.lost_track_s * fps))
    with warnings.catch_warnings():
        # supervision 0.28-0.30 flag ByteTrack as moving to the `trackers` package, which needs numpy 2
        # (the Triton python backend needs numpy < 2); the class itself is unchanged.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*ByteTrack.*")
        # frame_rate=30 makes ByteTrack's buffer exactly lost_track_buffer frames (it scales by frame_rate / 30)
        return sv.ByteTrack(
            track_activation_threshold=settings.activation_score,
            lost_track_buffer=lost_frames,
            minimum_matching_threshold=settings.matching_threshold,
            frame_rate=30,
            minimum_consecutive_frames=1,
        )


class ObjectTracker:
    """ByteTrack over sampled frames: ``push`` each frame in time order, ``finish`` at the end.

    Both return the frames whose track ids are final (``push`` one frame late), in order.
    """

    def __init__(self, fps: float, settings: TrackerSettings | None = None) -> None:
        if not fps > 0:
            raise InputError(f"tracker: expected fps > 0, got {fps}")
        self.settings = settings or TrackerSettings()
        self.fps = float(fps)
        self._trackers: dict[int, Any] = {}  # class id -> its ByteTrack (since the last cut)
        self._ids: dict[tuple[int, int], int] = {}  # (class id, ByteTrack's id) -> track id
        self._next_id = 1
        self._pending: FrameResult | None = None
        self._seen: set[int] = set()

    def cut(self) -> list[FrameResult]:
        """A scene cut before the next frame: every track ends; returns the last frame pushed, now final."""
        ready = self.finish()
        self._trackers.clear()
        self._ids.clear()
        return ready

    def push(self, frame: FrameResult) -> list[FrameResult]:
        """Track one sampled frame; returns the previous frame, now final (nothing for the first call)."""
        tracked = self._track(frame)
        ready = [] if self._pending is None else [self._backfill(self._pending, tracked)]
        self._seen.update(d.track_id for d in tracked.image.detections if d.track_id is not None)
        self._pending = tracked
        return ready

    def finish(self) -> list[FrameResult]:
        """The last frame pushed, if any."""
        ready = [] if self._pending is None else [self._pending]
        self._pending = None
        return ready

    def _class_tracker(self, class_id: int) -> Any:
        if class_id not in self._trackers:
            import supervision as sv

            tracker = _byte_track(self.settings, self.fps)
            # ByteTrack confirms the tracks of its very first frame at once and later ones on their second
            # frame; an empty first frame makes every track wait for its second frame alike.
            tracker.update_with_detections(sv.Detections.empty())
            self._trackers[class_id] = tracker
        return self._trackers[class_id]

    def _track(self, frame: FrameResult) -> FrameResult:
        import supervision as sv

        dets = frame.image.detections
        for d in dets:  # a ByteTrack per class, made in order of first appearance
            self._class_tracker(d.class_id)
        enlarged = to_detections(frame.image, self.settings.box_scale)
        ids: dict[int, int] = {}
        for class_id, tracker in self._trackers.items():
            mine = enlarged[enlarged.class_id == class_id] if dets else sv.Detections.empty()
            detections = mine if len(mine) else sv.Detections.empty()
            out = tracker.update_with_detections(detections)  # every tracker sees every frame: lost tracks age
            if not len(mine) or len(out) == 0:
                continue
            for k, local in zip(out.data["index"], out.tracker_id, strict=True):
                key = (class_id, int(local))
                if key not in self._ids:
                    self._ids[key] = self._next_id
                    self._next_id += 1
                ids[int(k)] = self._ids[key]
        if not ids:
            return frame
        new = tuple(replace(d, track_id=ids.get(k)) for k, d in enumerate(dets))
        return replace(frame, image=replace(frame.image, detections=new))

    def _backfill(self, previous: FrameResult, current: FrameResult) -> FrameResult:
        """Give ``previous``'s untracked detections the id of a track that starts in ``current``."""
        starts = [d for d in current.image.detections if d.track_id is not None and d.track_id not in self._seen]
        dets = list(previous.image.detections)
        free = [k for k, d in enumerate(dets) if d.track_id is None]
        if not starts or not free:
            return previous
        f = self.settings.box_scale
        pairs = sorted(
            ((iou(scale_box(dets[k].box, f), scale_box(s.box, f)), k, s.track_id)
             for s in starts for k in free if dets[k].class_id == s.class_id),
            reverse=True,
        )
        used_k: set[int] = set()
        used_t: set[int | None] = set()
        for overlap, k, track_id in pairs:
            if overlap < self.settings.backfill_iou:
                break
            if k in used_k or track_id in used_t:
                continue
            dets[k] = replace(dets[k], track_id=track_id)
            used_k.add(k)
            used_t.add(track_id)
        if not used_k:
            return previous
        return replace(previous, image=replace(previous.image, detections=tuple(dets)))
