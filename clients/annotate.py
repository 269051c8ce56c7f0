"""Draw results on RGB frames with OpenCV and write annotated videos.

Boxes carry ``class name score`` in a colour fixed per class id; a dense caption (schema 1.2) sits in a
small dark tag under its box, one line cut with ``...``; the caption sits in a dark banner at the bottom,
wrapped to the frame width and cut with ``...`` after ``max_lines`` lines.
OpenCV's fonts are ASCII only: accents are dropped and other characters become ``?``.
"""

from __future__ import annotations

import colorsys
import unicodedata
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np

from clients.images import check_rgb
from clients.mp4 import Mp4Writer
from clients.results import DenseCaption, Detection, ImageResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN = 0.618033988749895
_ELLIPSIS = "..."
#: Longest dense caption drawn, in characters (before it is cut to the tag's width).
DENSE_MAX_CHARS = 48


class AnnotatedVideoWriter(Mp4Writer):
    """MP4 writer (H.264 ``libx264`` when PyAV has it, else ``mpeg4``; yuv420p; even size) for annotated frames.

    ``AnnotatedVideoWriter(path, fps, (width, height))`` as a context manager; ``write(rgb, timestamp_s)``.
    """


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright RGB colour that is the same for a class id in every frame and run."""
    r, g, b = colorsys.hsv_to_rgb((int(class_id) * _GOLDEN) % 1.0, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def ascii_text(text: str) -> str:
    """Text OpenCV can draw: accents stripped, other non-ASCII characters as ``?``, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    chars = (c if ord(c) < 128 else "?" for c in decomposed if not unicodedata.combining(c))
    return " ".join("".join(chars).split())


def text_style(width: int, height: int) -> tuple[float, int]:
    """Font scale and thickness that read well on a frame of this size."""
    scale = float(np.clip(min(width, height) / 900.0, 0.35, 1.2))
    return scale, max(1, round(scale * 2))


def wrap_text(text: str, max_width: int, scale: float, thickness: int, max_lines: int = 2) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels; overflow beyond ``max_lines`` ends in ``...``."""
    words = ascii_text(text).split()
    if not words or max_lines < 1:
        return []

    def fits(s: str) -> bool:
        return cv2.getTextSize(s, FONT, scale, thickness)[0][0] <= max_width

    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word if fits(word) else _cut(word, fits, ellipsis=False)
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _cut(lines[-1] + " " + _ELLIPSIS, fits, ellipsis=True)
    return lines


def _cut(text: str, fits: Callable[[str], bool], ellipsis: bool) -> str:
    """Drop characters from the end until the text (plus ``...`` when asked) fits."""
    base = text[: -len(_ELLIPSIS)].rstrip() if ellipsis and text.endswith(_ELLIPSIS) else text
    suffix = _ELLIPSIS if ellipsis else ""
    while base and not fits(base + suffix):
        base = base[:-1]
    return (base.rstrip() + suffix) if base else suffix


def draw_detections(rgb: np.ndarray, detections: Iterable[Detection]) -> np.ndarray:
    """A copy of ``rgb`` with a box and a ``name score`` tag per detection (best drawn last, on top)."""
    out = check_rgb(rgb).copy()
    h, w = out.shape[:2]
    scale, thick = text_style(w, h)
    line = max(2, round(min(w, h) / 240))
    for det in sorted(detections, key=lambda d: d.score):
        x1, y1, x2, y2 = (round(float(v)) for v in det.box)
        x1, x2 = sorted((int(np.clip(x1, 0, w - 1)), int(np.clip(x2, 0, w - 1))))
        y1, y2 = sorted((int(np.clip(y1, 0, h - 1)), int(np.clip(y2, 0, h - 1))))
        color = class_color(det.class_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
        label = ascii_text(f"{det.class_name} {det.score:.2f}")
        (tw, th), base = cv2.getTextSize(label, FONT, scale, thick)
        pad = max(2, thick + 1)
        top = y1 - th - base - 2 * pad
        if top < 0:  # no room above the box: put the tag inside it
            top = y1
        left = int(np.clip(x1, 0, max(0, w - tw - 2 * pad)))
        cv2.rectangle(out, (left, top), (left + tw + 2 * pad, top + th + base + 2 * pad), color, cv2.FILLED)
        ink = (0, 0, 0) if _luminance(color) > 140 else (255, 255, 255)
        cv2.putText(out, label, (left + pad, top + pad + th), FONT, scale, ink, thick, cv2.LINE_AA)
    return out


def draw_caption(rgb: np.ndarray, text: str, max_lines: int = 2) -> np.ndarray:
    """A copy of ``rgb`` with ``text`` in a translucent dark banner along the bottom."""
    out = check_rgb(rgb).copy()
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
        cv2.putText(out, line, (pad, y), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += line_h
    return out


def dense_caption_text(caption: str, max_chars: int = DENSE_MAX_CHARS) -> str:
    """A dense caption as drawn: ASCII, one line, at most ``max_chars`` characters (cut with ``...``)."""
    text = ascii_text(caption)
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(_ELLIPSIS))].rstrip() + _ELLIPSIS


def draw_dense_captions(rgb: np.ndarray, dense: Iterable[DenseCaption],
                        detections: Sequence[Detection] = ()) -> np.ndarray:
    """A copy of ``rgb`` with each dense caption in a dark tag under its box, edged in the colour of its
    detection's class (``detections[box_index]``; white when not given).

    The tag is at most as wide as the box or 45% of the frame (the wider), cut with ``...`` to fit; with
    no room under the box (above the caption banner) it goes inside the box, under its class tag.
    """
    out = check_rgb(rgb).copy()
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
            text = _cut(text + " " + _ELLIPSIS, fits, ellipsis=True)
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
        edge = class_color(detections[item.box_index].class_id) if 0 <= item.box_index < len(detections) else (
            255, 255, 255)
        cv2.rectangle(out, (left, top), (right, bottom), edge, 1, cv2.LINE_AA)
        cv2.putText(out, text, (left + pad, top + pad + th), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def annotate(
    rgb: np.ndarray, result: ImageResult, timestamp_s: float | None = None, max_caption_lines: int = 2,
    draw_boxes: Callable[[np.ndarray, Sequence[Detection]], np.ndarray] | None = None,
) -> np.ndarray:
    """Boxes plus a caption banner (``[12.5 s] caption``; the best scene label when there is no caption,
    ``error: ...`` when the server could not analyse the image).

    ``draw_boxes`` draws the detections (default: :func:`draw_detections`); dense captions go under
    their boxes (:func:`draw_dense_captions`).
    """
    out = (draw_boxes or draw_detections)(rgb, result.detections)
    if result.dense_captions:
        out = draw_dense_captions(out, result.dense_captions, result.detections)
    caption = f"error: {result.error}" if result.error else (
        result.caption or (result.labels[0].name if result.labels else ""))
    if timestamp_s is not None:
        caption = f"[{timestamp_s:.1f} s] {caption}".strip()
    return draw_caption(out, caption, max_caption_lines)


def _luminance(color: tuple[int, int, int]) -> float:
    r, g, b = color
    return 0.299 * r + 0.587 * g + 0.114 * b
