"""``ImageResult`` -> ``supervision.Detections``: the one conversion, used by the tracker and the annotator.

The columns are ``xyxy`` (float32 pixels), ``confidence``, ``class_id`` and ``tracker_id`` (the track ids;
-1 for a detection without one; None when no detection has one), and ``data``: ``index`` (the position in
``ImageResult.detections``, to map answers back) and ``class_name``. supervision is imported on first use
(it takes about 0.4 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clients.results import ImageResult

NO_TRACK = -1


def to_detections(result: ImageResult, box_scale: float = 1.0) -> Any:
    """``result``'s detections as ``sv.Detections``; boxes enlarged ``box_scale`` times about their centre."""
    import supervision as sv

    dets = result.detections
    if not dets:
        return sv.Detections.empty()
    xyxy = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
    if box_scale != 1.0:
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        half = (xyxy[:, 2:] - xyxy[:, :2]) * box_scale / 2
        xyxy = np.concatenate([centre - half, centre + half], axis=1)
    tracked = any(d.track_id is not None for d in dets)
    return sv.Detections(
        xyxy=xyxy.astype(np.float32),
        confidence=np.array([d.score for d in dets], dtype=np.float32),
        class_id=np.array([d.class_id for d in dets], dtype=int),
        tracker_id=np.array([NO_TRACK if d.track_id is None else d.track_id for d in dets], dtype=int)
        if tracked else None,
        data={"index": np.arange(len(dets)), "class_name": np.array([d.class_name for d in dets], dtype=object)},
    )
