"""Captioner inputs in numpy: the caption canvas, dense-caption crops and normalised pixel values.

The captioner sees each image as a fixed-size RGB *canvas* (the decoded image resized to
``CANVAS_SIZE`` square, so a batch of images of any size travels as one tensor). The frame caption
and the crops of the top-K detections are cut from it and turned into pixel values the way the
checkpoint's image processor does (PIL bicubic resize, optional centre crop, rescale, normalise).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from mmw.errors import InputError

CANVAS_SIZE = 768


@dataclass(frozen=True)
class PixelSettings:
    """A checkpoint's image processor settings (``preprocessor_config.json``)."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    shortest_edge: int = 0          # > 0: resize the short side to this, keep the aspect (CLIP/GIT)
    rescale_factor: float = 1 / 255

    @classmethod
    def from_processor_config(cls, d: dict) -> PixelSettings:
        """From the dict of a ``preprocessor_config.json`` (BLIP: squash to size; CLIP/GIT: short side + crop)."""
        size = d.get("size") or {}
        crop = d.get("crop_size") or {}
        mean, std = tuple(d.get("image_mean", (0.5,) * 3)), tuple(d.get("image_std", (0.5,) * 3))
        factor = float(d.get("rescale_factor", 1 / 255))
        if "shortest_edge" in size:
            if not d.get("do_center_crop", False) or not crop:
                raise InputError("preprocessor_config: shortest_edge resize needs do_center_crop and crop_size")
            return cls(int(crop["height"]), int(crop["width"]), mean, std, int(size["shortest_edge"]), factor)
        if "height" not in size or "width" not in size:
            raise InputError(f"preprocessor_config: size must have height and width or shortest_edge, got {size}")
        return cls(int(size["height"]), int(size["width"]), mean, std, 0, factor)


def caption_canvas(image: np.ndarray, size: int = CANVAS_SIZE) -> np.ndarray:
    """An RGB uint8 image [H, W, 3] resized to the square canvas [size, size, 3]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"caption canvas: expected uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _resize(image: Image.Image, s: PixelSettings) -> Image.Image:
    if not s.shortest_edge:
        return image.resize((s.width, s.height), Image.Resampling.BICUBIC)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(s.shortest_edge * long / short)
    size = (s.shortest_edge, new_long) if w <= h else (new_long, s.shortest_edge)
    image = image.resize(size, Image.Resampling.BICUBIC)
    w, h = image.size
    top, left = (h - s.height) // 2, (w - s.width) // 2
    return image.crop((left, top, left + s.width, top + s.height))


def pixel_values(images: list[np.ndarray], s: PixelSettings) -> np.ndarray:
    """RGB uint8 images (any sizes) -> float32 [N, 3, height, width] for the captioner's encoder."""
    out = np.empty((len(images), 3, s.height, s.width), dtype=np.float32)
    mean, std = np.asarray(s.mean, dtype=np.float64), np.asarray(s.std, dtype=np.float64)
    for i, image in enumerate(images):
        resized = np.asarray(_resize(Image.fromarray(image), s), dtype=np.float64)
        out[i] = ((resized * s.rescale_factor - mean) / std).transpose(2, 0, 1)
    return out


def dense_crop_indices(boxes: np.ndarray, scores: np.ndarray, num_detections: int, top_k: int,
                       min_score: float, min_size_px: float) -> np.ndarray:
    """Indices of the detections to caption: the ``top_k`` best scoring at least ``min_score``
    whose box is at least ``min_size_px`` on both sides (in image pixels)."""
    n = int(num_detections)
    if top_k <= 0 or n <= 0:
        return np.zeros(0, dtype=np.int32)
    b, sc = boxes[:n], scores[:n]
    ok = (sc >= min_score) & ((b[:, 2] - b[:, 0]) >= min_size_px) & ((b[:, 3] - b[:, 1]) >= min_size_px)
    candidates = np.flatnonzero(ok)
    order = candidates[np.argsort(-sc[candidates], kind="stable")]
    return order[:top_k].astype(np.int32)


def crop_from_canvas(canvas: np.ndarray, box: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """The part of the canvas under ``box`` (x1, y1, x2, y2 in image pixels; image_size = (H, W))."""
    size = canvas.shape[0]
    h, w = float(image_size[0]), float(image_size[1])
    x1, y1, x2, y2 = (float(v) for v in box)
    left, right = int(np.floor(x1 / w * size)), int(np.ceil(x2 / w * size))
    top, bottom = int(np.floor(y1 / h * size)), int(np.ceil(y2 / h * size))
    left, top = min(max(left, 0), size - 1), min(max(top, 0), size - 1)
    right, bottom = min(max(right, left + 1), size), min(max(bottom, top + 1), size)
    return canvas[top:bottom, left:right]
