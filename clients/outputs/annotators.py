"""Draw results on RGB frames: one contract, ``Annotator.annotate(frame, result) -> frame``, and one drawing path.

``SceneAnnotator``, which draws every annotated image and video frame, runs in order:

- ``DetectionAnnotator``: supervision's box and label annotators. Each box is drawn in its class colour
  (``class_color``, also the colours of the app's plot) with a ``#<track id> <class> <score>`` tag (no
  ``#id`` for a detection without a track); the best score is drawn last, on top, and a tag with no room
  above its box stays inside the frame.
- ``DenseCaptionAnnotator``: each dense caption (schema 1.2) in a small dark tag under its box, edged in
  its class colour, on one line cut with ``...``.
- ``CaptionAnnotator``: the caption in a dark banner along the bottom (``[12.5 s] caption``; the best scene
  label when there is no caption, ``error: ...`` when the server could not analyse the image), wrapped to
  the frame width and cut with ``...`` after ``max_lines`` lines.

An annotator draws on a copy: the frame it is given never changes. supervision draws with OpenCV, which
takes BGR: frames are turned to BGR and back around it. Text is ASCII (``clients.outputs.text``).
"""

from __future__ import annotations

import colorsys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from clients.analysis.detections import NO_TRACK, to_detections
from clients.media.images import check_rgb
from clients.outputs.text import ELLIPSIS, FONT, ascii_text, cut_to_fit, dense_caption_text, text_style, wrap_text
from clients.results import DenseCaption, Detection, ImageResult

_GOLDEN = 0.618033988749895
_PALETTE_SIZE = 91  # COCO ids 0..90
_WHITE = (255, 255, 255)


class Annotator(ABC):
    """Draws one part of a result on a frame."""

    @abstractmethod
    def annotate(self, frame: np.ndarray, result: ImageResult, timestamp_s: float | None = None) -> np.ndarray:
        """A copy of the RGB uint8 ``frame`` with ``result`` drawn on it; ``timestamp_s``: a video frame's time."""


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright RGB colour that is the same for a class id in every frame and run."""
    r, g, b = colorsys.hsv_to_rgb((int(class_id) * _GOLDEN) % 1.0, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _dark_ink(color: tuple[int, int, int]) -> bool:
    """Black text reads better than white on this background colour."""
    r, g, b = color
    return 0.299 * r + 0.587 * g + 0.114 * b > 140


def detection_label(class_name: str, score: float, track_id: int | None = None) -> str:
    """``#3 person 0.91``, or ``person 0.91`` without a track."""
    tag = ascii_text(f"{class_name} {score:.2f}")
    return tag if track_id is None else f"#{track_id} {tag}"


@lru_cache(maxsize=8)
def _sv_annotators(width: int, height: int) -> tuple[Any, Any]:
    """supervision's box and label annotators styled for a frame of this size."""
    import supervision as sv

    colors = [class_color(i) for i in range(_PALETTE_SIZE)]
    palette = sv.ColorPalette([sv.Color(*c) for c in colors])
    ink = sv.ColorPalette([sv.Color(0, 0, 0) if _dark_ink(c) else sv.Color(*_WHITE) for c in colors])
    scale, thick = text_style(width, height)
    line = max(2, round(min(width, height) / 240))
    boxes = sv.BoxAnnotator(color=palette, thickness=line)
    labels = sv.LabelAnnotator(color=palette, text_color=ink, text_scale=scale, text_thickness=thick,
                               text_padding=max(2, thick + 1), smart_position=True)
    return boxes, labels


class DetectionAnnotator(Annotator):
    """Boxes and ``#id class score`` tags in class colours, with supervision's annotators."""

    def annotate(self, frame: np.ndarray, result: ImageResult, timestamp_s: float | None = None) -> np.ndarray:
        out = check_rgb(frame).copy()
        if not result.detections:
            return out
        h, w = out.shape[:2]
        dets = to_detections(result)
        dets = dets[np.argsort(dets.confidence, kind="stable")]  # the best drawn last, on top
        xyxy = dets.xyxy.copy()
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w - 1)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h - 1)
        dets.xyxy = xyxy
        tracks = dets.tracker_id if dets.tracker_id is not None else np.full(len(dets), NO_TRACK)
        labels = [detection_label(str(name), float(score), None if track == NO_TRACK else int(track))
                  for name, score, track in zip(dets.data["class_name"], dets.confidence, tracks, strict=True)]
        colors = dets.class_id % _PALETTE_SIZE
        boxes, tags = _sv_annotators(w, h)
        bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
        bgr = boxes.annotate(bgr, dets, custom_color_lookup=colors)
        bgr = tags.annotate(bgr, dets, labels=labels, custom_color_lookup=colors)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class DenseCaptionAnnotator(Annotator):
    """Each dense caption in a dark tag under its box (``draw_dense_captions``)."""

    def annotate(self, frame: np.ndarray, result: ImageResult, timestamp_s: float | None = None) -> np.ndarray:
        return draw_dense_captions(frame, result.dense_captions, result.detections)


class CaptionAnnotator(Annotator):
    """The caption banner along the bottom (``draw_caption``), at most ``max_lines`` lines."""

    def __init__(self, max_lines: int = 2) -> None:
        self.max_lines = max_lines

    def annotate(self, frame: np.ndarray, result: ImageResult, timestamp_s: float | None = None) -> np.ndarray:
        caption = f"error: {result.error}" if result.error else (
            result.caption or (result.labels[0].name if result.labels else ""))
        if timestamp_s is not None:
            caption = f"[{timestamp_s:.1f} s] {caption}".strip()
        return draw_caption(frame, caption, self.max_lines)


class SceneAnnotator(Annotator):
    """Boxes and tags, dense captions under their boxes, then the caption banner."""

    def __init__(self, max_caption_lines: int = 2) -> None:
        self.annotators: tuple[Annotator, ...] = (DetectionAnnotator(), DenseCaptionAnnotator(),
                                                  CaptionAnnotator(max_caption_lines))

    def annotate(self, frame: np.ndarray, result: ImageResult, timestamp_s: float | None = None) -> np.ndarray:
        out = frame
        for annotator in self.annotators:
            out = annotator.annotate(out, result, timestamp_s)
        return out


_SCENE = SceneAnnotator()


def annotate(frame: np.ndarray, result: ImageResult, timestamp_s: float | None = None,
             max_caption_lines: int = 2) -> np.ndarray:
    """``SceneAnnotator(max_caption_lines).annotate(frame, result, timestamp_s)``."""
    annotator = _SCENE if max_caption_lines == 2 else SceneAnnotator(max_caption_lines)
    return annotator.annotate(frame, result, timestamp_s)


def draw_caption(frame: np.ndarray, text: str, max_lines: int = 2) -> np.ndarray:
    """A copy of ``frame`` with ``text`` in a translucent dark banner along the bottom."""
    out = check_rgb(frame).copy()
    h, w = out.shape[:2]
    scale, thick = text_style(w, h)
    pad = max(4, round(8 * scale))
    lines = wrap_text(text, w - 2 * pad, scale, thick, max_lines)
    if not lines:
        return out
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, thick)
    line_h = th + base + pad // 2
    banner_h = min(h, len(lines) * line_h + pad * 2)
    top = h - banner_h
    region = out[top:h].astype(np.float32)
    out[top:h] = (region * 0.35).astype(np.uint8)  # darken to 35%
    y = top + pad + th
    for line in lines:
        cv2.putText(out, line, (pad, y), FONT, scale, _WHITE, thick, cv2.LINE_AA)
        y += line_h
    return out


def draw_dense_captions(frame: np.ndarray, dense: Iterable[DenseCaption],
                        detections: Sequence[Detection] = ()) -> np.ndarray:
    """A copy of ``frame`` with each dense caption in a dark tag under its box, edged in the colour of its
    detection's class (``detections[box_index]``; white when not given).

    The tag is at most as wide as the box or 45% of the frame (the wider), cut with ``...`` to fit; with
    no room under the box (above the caption banner) it goes inside the box, under its class tag.
    """
    out = check_rgb(frame).copy()
    h, w = out.shape[:2]
    scale, thick = text_style(w, h)
    scale *= 0.85
    thick = max(1, thick - 1)
    pad = max(2, thick + 1)
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, thick)
    tag_h = th + base + 2 * pad
    for item in sorted(dense, key=lambda c: c.score):
        text = dense_caption_text(item.caption)
        if not text:
            continue
        x1, y1, x2, y2 = (float(v) for v in item.box)
        x1, x2 = sorted((int(np.clip(round(x1), 0, w - 1)), int(np.clip(round(x2), 0, w - 1))))
        y1, y2 = sorted((int(np.clip(round(y1), 0, h - 1)), int(np.clip(round(y2), 0, h - 1))))
        max_w = min(w - 2 * pad, max(x2 - x1, round(w * 0.45)))

        def fits(s: str, limit: int = max_w) -> bool:
            return cv2.getTextSize(s, FONT, scale, thick)[0][0] + 2 * pad <= limit

        if not fits(text):
            text = cut_to_fit(text + " " + ELLIPSIS, fits, ellipsis=True)
        tw = cv2.getTextSize(text, FONT, scale, thick)[0][0]
        reserve = 3 * tag_h  # keep clear of the caption banner along the bottom
        if y2 + 1 + tag_h <= h - reserve:
            top = y2 + 1
        else:  # inside the box, under its class tag
            top = max(0, min(y1 + tag_h + 4, h - reserve - tag_h))
        left = int(np.clip(x1, 0, max(0, w - tw - 2 * pad)))
        right, bottom = min(w - 1, left + tw + 2 * pad), min(h - 1, top + tag_h)
        region = out[top:bottom + 1, left:right + 1].astype(np.float32)
        out[top:bottom + 1, left:right + 1] = (region * 0.25).astype(np.uint8)  # darken to 25%
        edge = class_color(detections[item.box_index].class_id) if 0 <= item.box_index < len(detections) else _WHITE
        cv2.rectangle(out, (left, top), (right, bottom), edge, 1, cv2.LINE_AA)
        cv2.putText(out, text, (left + pad, top + pad + th), FONT, scale, _WHITE, thick, cv2.LINE_AA)
    return out
