"""Annotated video frames with tracks: ``supervision``'s box and label annotators plus the caption banner.

Each box is drawn in its class colour (``clients.annotate.class_color``, the colours of the app's
plot) with a ``#<track id> <class> <score>`` tag (no ``#id`` for a detection without a track); the
caption banner along the bottom is ``clients.annotate.draw_caption``. supervision's annotators draw
with OpenCV, which takes BGR: frames are turned to BGR and back around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from clients.annotate import annotate, ascii_text, class_color, text_style
from clients.images import check_rgb
from clients.results import Detection, ImageResult

_PALETTE_SIZE = 91  # COCO ids 0..90


def detection_label(d: Detection) -> str:
    """``#3 person 0.91``, or ``person 0.91`` without a track."""
    tag = ascii_text(f"{d.class_name} {d.score:.2f}")
    return tag if d.track_id is None else f"#{d.track_id} {tag}"


def _dark_ink(color: tuple[int, int, int]) -> bool:
    """Black text reads better than white on this background colour."""
    r, g, b = color
    return 0.299 * r + 0.587 * g + 0.114 * b > 140


@lru_cache(maxsize=8)
def _annotators(width: int, height: int) -> tuple[Any, Any]:
    import supervision as sv

    colors = [class_color(i) for i in range(_PALETTE_SIZE)]
    palette = sv.ColorPalette([sv.Color(*c) for c in colors])
    ink = sv.ColorPalette([sv.Color(0, 0, 0) if _dark_ink(c) else sv.Color(255, 255, 255) for c in colors])
    scale, thick = text_style(width, height)
    line = max(2, round(min(width, height) / 240))
    boxes = sv.BoxAnnotator(color=palette, thickness=line, color_lookup=sv.ColorLookup.CLASS)
    labels = sv.LabelAnnotator(color=palette, text_color=ink, text_scale=scale, text_thickness=thick,
                               text_padding=max(2, thick + 1), color_lookup=sv.ColorLookup.CLASS, smart_position=True)
    return boxes, labels


def draw_tracked(rgb: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """A copy of ``rgb`` with boxes and ``#id class score`` tags (best score drawn last, on top)."""
    import supervision as sv

    out = check_rgb(rgb).copy()
    if not detections:
        return out
    h, w = out.shape[:2]
    dets = sorted(detections, key=lambda d: d.score)
    xyxy = np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w - 1)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h - 1)
    class_ids = np.array([d.class_id % _PALETTE_SIZE for d in dets], dtype=int)
    sv_dets = sv.Detections(xyxy=xyxy, confidence=np.array([d.score for d in dets]), class_id=class_ids)
    boxes, labels = _annotators(w, h)
    bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    bgr = boxes.annotate(bgr, sv_dets)
    bgr = labels.annotate(bgr, sv_dets, labels=[detection_label(d) for d in dets])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def annotate_tracked(
    rgb: np.ndarray, result: ImageResult, timestamp_s: float | None = None, max_caption_lines: int = 2
) -> np.ndarray:
    """Tracked boxes plus the caption banner (``[12.5 s] caption``; the best label when there is no caption)."""
    return annotate(rgb, result, timestamp_s, max_caption_lines, draw_boxes=draw_tracked)
