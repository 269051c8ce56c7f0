"""Text as the annotators draw it with OpenCV's Hershey font: ASCII only, sized to the frame, wrapped and cut.

OpenCV's fonts are ASCII only: accents are dropped and other characters become ``?``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
ELLIPSIS = "..."
#: Longest dense caption drawn, in characters (before it is cut to the tag's width).
DENSE_MAX_CHARS = 48


def ascii_text(text: str) -> str:
    """Text OpenCV can draw: accents stripped, other non-ASCII characters as ``?``, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    chars = (c if ord(c) < 128 else "?" for c in decomposed if not unicodedata.combining(c))
    return " ".join("".join(chars).split())


def text_style(width: int, height: int) -> tuple[float, int]:
    """Font scale and thickness that read well on a frame of this size."""
    scale = float(np.clip(min(width, height) / 900.0, 0.35, 1.2))
    return scale, max(1, round(scale * 2))


def text_width(text: str, scale: float, thickness: int) -> int:
    """Width in pixels of ``text`` drawn in ``FONT``."""
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def wrap_text(text: str, max_width: int, scale: float, thickness: int, max_lines: int = 2) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels; overflow beyond ``max_lines`` ends in ``...``."""
    words = ascii_text(text).split()
    if not words or max_lines < 1:
        return []

    def fits(s: str) -> bool:
        return text_width(s, scale, thickness) <= max_width

    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word if fits(word) else cut_to_fit(word, fits, ellipsis=False)
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = cut_to_fit(lines[-1] + " " + ELLIPSIS, fits, ellipsis=True)
    return lines


def cut_to_fit(text: str, fits: Callable[[str], bool], ellipsis: bool) -> str:
    """Drop characters from the end until the text (plus ``...`` when asked) fits."""
    base = text[: -len(ELLIPSIS)].rstrip() if ellipsis and text.endswith(ELLIPSIS) else text
    suffix = ELLIPSIS if ellipsis else ""
    while base and not fits(base + suffix):
        base = base[:-1]
    return (base.rstrip() + suffix) if base else suffix


def shorten(text: str, max_chars: int) -> str:
    """``text`` on one line (whitespace collapsed), at most ``max_chars`` characters (cut with ``...``)."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(ELLIPSIS))].rstrip() + ELLIPSIS


def dense_caption_text(caption: str, max_chars: int = DENSE_MAX_CHARS) -> str:
    """A dense caption as drawn: ASCII, one line, at most ``max_chars`` characters (cut with ``...``)."""
    return shorten(ascii_text(caption), max_chars)
