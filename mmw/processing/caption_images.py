"""Captioner inputs in numpy: dense-caption crops and normalised pixel values, as transformers computes them.

The captioner gets each decoded image at its own size (a batch travels zero-padded, with
IMAGE_SIZE). The frame caption is computed from the whole image and each dense caption from the
crop of the original image under its box, both turned into pixel values exactly as the
checkpoint's image processor does (PIL bicubic resize, optional centre crop, rescale in float64
then float32, normalise in float32): the tests compare them with transformers' own processor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmw.errors import InputError


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


def pad_frames(frames: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 frames of any sizes -> one uint8 [N, H, W, 3] batch, each zero-padded to the largest."""
    height, width = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
    out = np.zeros((len(frames), height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i, : frame.shape[0], : frame.shape[1]] = frame
    return out


def frames_of(padded: np.ndarray, image_size: np.ndarray) -> list[np.ndarray]:
    """Padded frames uint8 [N, H, W, 3] and IMAGE_SIZE [N, 2] (height, width) -> each frame at its own size."""
    if padded.dtype != np.uint8 or padded.ndim != 4 or padded.shape[3] != 3:
        raise InputError(f"FRAME: expected uint8 [N, H, W, 3], got {padded.dtype} {list(padded.shape)}")
    return [padded[i, : int(h), : int(w)] for i, (h, w) in enumerate(np.asarray(image_size).reshape(-1, 2))]


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
    mean, std = np.asarray(s.mean, dtype=np.float32), np.asarray(s.std, dtype=np.float32)
    for i, image in enumerate(images):
        resized = np.asarray(_resize(Image.fromarray(np.ascontiguousarray(image)), s))
        rescaled = (resized.astype(np.float64) * s.rescale_factor).astype(np.float32)  # transformers' rescale
        out[i] = ((rescaled - mean) / std).transpose(2, 0, 1)
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


def crop_box(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The pixels of ``image`` [H, W, 3] under ``box`` (x1, y1, x2, y2 in image pixels), at least 1x1.

    The crop covers every pixel the box touches: floor of the top-left corner, ceiling of the bottom-right.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    left, top = min(max(int(np.floor(x1)), 0), w - 1), min(max(int(np.floor(y1)), 0), h - 1)
    right, bottom = min(max(int(np.ceil(x2)), left + 1), w), min(max(int(np.ceil(y2)), top + 1), h)
    return image[top:bottom, left:right]
