"""TensorFlow 1 image resizes in numpy: the kernels the source models were trained and evaluated with.

SSD MobileNet V2's frozen graph resizes with ``ResizeBilinear`` and EfficientNet-Lite's evaluation
with ``resize_bicubic``, both TF1 kernels with ``align_corners=False, half_pixel_centers=False``:
output pixel ``i`` samples input position ``i * in / out`` (no half-pixel offset, no antialiasing).
OpenCV's ``INTER_LINEAR``/``INTER_CUBIC`` sample at ``(i + 0.5) * in / out - 0.5`` and ``INTER_AREA``
averages, so neither computes what the graph computes on a large frame.

Both functions compute in float32 in the kernels' order of operations and return float32: they are
bit-exact against values recorded from TensorFlow 2.21 (``export/reference/tf1_resize.json``,
checked by ``tests/test_resize.py``). OpenCV only gathers the neighbour pixels (``remap`` with
nearest-neighbour at integer positions, which copies pixels exactly); the index maps and weights of
a size pair are computed once and cached, as a video keeps its frame size.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from mmw.errors import InputError

#: TF's bicubic kernel looks its weights up in a table of this many steps per pixel.
_CUBIC_TABLE_SIZE = 1024
_LEGACY_CUBIC_A = -0.75  # TF1 resize_bicubic without half-pixel centres (Keys' -0.5 is the half-pixel one)


def _check(image: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    if image.ndim != 3 or 0 in image.shape:
        raise InputError(f"resize: expected an image [H, W, C] with H, W, C > 0, got {list(image.shape)}")
    height, width = size
    if height <= 0 or width <= 0:
        raise InputError(f"resize: expected an output size (height, width) > 0, got {size}")
    return height, width


def _legacy_positions(in_size: int, out_size: int) -> np.ndarray:
    """Input positions sampled by each output pixel: ``i * (in / out)`` in float32, as TF's LegacyScaler."""
    scale = np.float32(in_size) / np.float32(out_size)
    return np.arange(out_size, dtype=np.float32) * scale


def _gather_map(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """A ``cv2.remap`` map that gathers pixel (rows[k, y], columns[j, x]) to (k * h + y, j * w + x)."""
    map_x = np.broadcast_to(columns.reshape(1, -1), (rows.size, columns.size))
    map_y = np.broadcast_to(rows.reshape(-1, 1), (rows.size, columns.size))
    return np.ascontiguousarray(np.stack([map_x, map_y], axis=-1).astype(np.int16))


def _gather(image: np.ndarray, gather_map: np.ndarray, taps: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels of ``gather_map`` as float32 [row taps, h, column taps, w * C] (contiguous rows per tap)."""
    pixels = cv2.remap(image, gather_map, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return pixels.reshape(*taps[:3], -1).astype(np.float32)


def _per_channel(weights: np.ndarray, channels: int) -> np.ndarray:
    """[..., w] weights -> [..., w * C]: each weight repeated for the channels of its pixel."""
    return np.repeat(weights, channels, axis=-1)


@lru_cache(maxsize=8)
def _bilinear_plan(in_h: int, in_w: int, out_h: int, out_w: int,
                   channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gather map of the 2 x 2 neighbours and the float32 lerps (y [h, 1], x [w * C]) of one size pair."""
    ys, xs = _legacy_positions(in_h, out_h), _legacy_positions(in_w, out_w)
    y0, x0 = np.floor(ys), np.floor(xs)
    rows = np.stack([y0, np.minimum(np.ceil(ys), in_h - 1)])
    columns = np.stack([x0, np.minimum(np.ceil(xs), in_w - 1)])
    return _gather_map(rows, columns), (ys - y0)[:, None], _per_channel(xs - x0, channels)


def resize_bilinear_tf1(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """TF1 ``ResizeBilinear(align_corners=False, half_pixel_centers=False)``: [H, W, C] -> float32 [h, w, C]."""
    height, width = _check(image, size)
    gather_map, y_lerp, x_lerp = _bilinear_plan(*image.shape[:2], height, width, image.shape[2])
    corners = _gather(image, gather_map, (2, height, 2, width))  # [2 rows, h, 2 columns, w * C]
    (top_left, top_right), (bottom_left, bottom_right) = corners.swapaxes(1, 2)
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return (top + (bottom - top) * y_lerp).reshape(height, width, -1)


def _cubic_table(a: float) -> np.ndarray:
    """TF's coefficient table: row i holds the weights at distance i/1024 (col 0) and 1 + i/1024 (col 1)."""
    x = np.arange(_CUBIC_TABLE_SIZE + 1, dtype=np.float64) / _CUBIC_TABLE_SIZE
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = x + 1.0
    far = ((a * far - 5 * a) * far + 8 * a) * far - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


_LEGACY_TABLE = _cubic_table(_LEGACY_CUBIC_A)


def _cubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tap and output pixel: the input index (clamped to the edge) and its float32 weight, both [4, out]."""
    positions = _legacy_positions(in_size, out_size)
    base = np.floor(positions)
    offset = np.rint((positions - base) * np.float32(_CUBIC_TABLE_SIZE)).astype(np.int64)  # lrintf
    table = _LEGACY_TABLE
    weights = np.stack([table[offset, 1], table[offset, 0], table[_CUBIC_TABLE_SIZE - offset, 0],
                        table[_CUBIC_TABLE_SIZE - offset, 1]], axis=1)
    indices = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return indices.T, weights.T


@lru_cache(maxsize=8)
def _bicubic_plan(in_h: int, in_w: int, out_h: int, out_w: int,
                  channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gather map of the 4 x 4 neighbours and the weights (y [4, h, 1, 1], x [4, w * C]) of one size pair."""
    y_index, y_weight = _cubic_taps(in_h, out_h)
    x_index, x_weight = _cubic_taps(in_w, out_w)
    return _gather_map(y_index, x_index), y_weight[:, :, None, None], _per_channel(x_weight, channels)


def resize_bicubic_tf1(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """TF1 ``resize_bicubic(align_corners=False, half_pixel_centers=False)``: [H, W, C] -> float32 [h, w, C].

    Like the kernel, it interpolates down each needed column first, then across.
    """
    height, width = _check(image, size)
    gather_map, wy, wx = _bicubic_plan(*image.shape[:2], height, width, image.shape[2])
    taps = _gather(image, gather_map, (4, height, 4, width))  # [4 rows, h, 4 columns, w * C]
    columns = taps[0] * wy[0] + taps[1] * wy[1] + taps[2] * wy[2] + taps[3] * wy[3]  # [h, 4 columns, w * C]
    out = columns[:, 0] * wx[0] + columns[:, 1] * wx[1] + columns[:, 2] * wx[2] + columns[:, 3] * wx[3]
    return out.reshape(height, width, -1)
