"""Deterministic test videos.

``make_sample_video``: a pan-and-zoom (Ken Burns) tour over real photos shipped with
scikit-image (an astronaut, a cat, a cup of coffee, a rocket, a motorcycle), a few seconds each.
``make_pattern_video``: small frames that encode their own index, at any timestamps (for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from clients.media.mp4 import Mp4Writer, pick_codec
from mmw.errors import InputError, MMWError

#: Photos in the order they appear; each gets ``seconds_per_photo`` seconds.
PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
# Per segment: zoom in (True) or out, and the pan direction (x, y) in units of the free margin.
_MOVES: tuple[tuple[bool, tuple[float, float]], ...] = (
    (True, (1.0, -0.5)),
    (False, (-1.0, 0.5)),
    (True, (0.0, 1.0)),
    (False, (0.5, -1.0)),
)
_MAX_ZOOM = 1.3


def load_photo(name: str) -> np.ndarray:
    """One of ``PHOTOS`` as RGB uint8 (needs scikit-image)."""
    try:
        import skimage.data as data  # optional dependency, only needed here
    except ImportError:
        raise MMWError("sample videos need scikit-image: pip install scikit-image") from None
    if name not in PHOTOS:
        raise InputError(f"photo {name!r}: expected one of {', '.join(PHOTOS)}")
    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def make_sample_video(
    path: str | Path,
    seconds: float = 8.0,
    fps: float = 10.0,
    size: tuple[int, int] = (640, 480),
    seconds_per_photo: float = 2.0,
) -> Path:
    """Write a deterministic H.264 MP4 of ``seconds`` x ``fps`` frames panning and zooming over photos."""
    if seconds <= 0 or fps <= 0 or seconds_per_photo <= 0:
        raise InputError(
            f"sample video: expected positive seconds, fps and seconds_per_photo, got {seconds}, {fps}, "
            f"{seconds_per_photo}"
        )
    width, height = size
    if width < 16 or height < 16:
        raise InputError(f"sample video: expected a size of at least 16x16, got {width}x{height}")
    n_frames = max(1, round(seconds * fps))
    per_photo = max(1, round(seconds_per_photo * fps))
    photos: dict[int, np.ndarray] = {}
    out = Path(path)
    with Mp4Writer(out, fps, (width, height), crf=20, deterministic=True) as writer:
        for i in range(n_frames):
            segment = i // per_photo
            if segment not in photos:
                photos = {segment: _fit_photo(load_photo(PHOTOS[segment % len(PHOTOS)]), width, height)}
            u = (i % per_photo) / max(1, per_photo - 1)
            zoom_in, pan = _MOVES[segment % len(_MOVES)]
            writer.write(_ken_burns(photos[segment], u, width, height, zoom_in, pan))
    return out


def _fit_photo(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """Shrink a large photo so its covering crop is about the largest zoom's size (sharp, cheap)."""
    h, w = photo.shape[:2]
    cover = max(width / w, height / h) * _MAX_ZOOM
    if cover < 1.0:
        photo = cv2.resize(photo, (round(w * cover), round(h * cover)), interpolation=cv2.INTER_AREA)
    return photo


def _ken_burns(
    photo: np.ndarray, u: float, width: int, height: int, zoom_in: bool, pan: tuple[float, float]
) -> np.ndarray:
    """The view at progress ``u`` in [0, 1]: a crop of the output's aspect, zooming and panning smoothly."""
    h, w = photo.shape[:2]
    aspect = width / height
    base_w, base_h = (h * aspect, h) if w / h > aspect else (w, w / aspect)
    e = u * u * (3.0 - 2.0 * u)  # smoothstep
    zoom = 1.0 + (_MAX_ZOOM - 1.0) * (e if zoom_in else 1.0 - e)
    crop_w, crop_h = base_w / zoom, base_h / zoom
    cx = w / 2 + pan[0] * (2 * e - 1) * (w - crop_w) / 2 * 0.9
    cy = h / 2 + pan[1] * (2 * e - 1) * (h - crop_h) / 2 * 0.9
    scale = width / crop_w
    m = np.array([[scale, 0.0, -(cx - crop_w / 2) * scale], [0.0, scale, -(cy - crop_h / 2) * scale]])
    return cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# --- pattern videos for tests ------------------------------------------------------------------------------

_PATTERN_STEP = 16


def pattern_frame(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A frame whose left and right halves encode ``index`` (0..255) as grey levels, robust to compression."""
    width, height = size
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = (index % 16) * _PATTERN_STEP + 8
    img[:, width // 2 :] = (index // 16) * _PATTERN_STEP + 8
    return img


def pattern_index(rgb: np.ndarray) -> int:
    """Read back the index of a (decoded) ``pattern_frame``."""
    h, w = rgb.shape[:2]
    margin_y, margin_x = h // 4, w // 8
    left = rgb[margin_y : h - margin_y, margin_x : w // 2 - margin_x].mean()
    right = rgb[margin_y : h - margin_y, w // 2 + margin_x : w - margin_x].mean()
    return int(np.rint((right - 8) / _PATTERN_STEP)) * 16 + int(np.rint((left - 8) / _PATTERN_STEP))


def make_pattern_video(
    path: str | Path,
    timestamps_s: Sequence[float],
    size: tuple[int, int] = (64, 48),
    *,
    nominal_fps: float = 10.0,
    rotation: int | None = None,
    container_format: str | None = None,
) -> Path:
    """Write ``pattern_frame(i)`` at each timestamp (millisecond precision: variable frame rate is fine).

    ``rotation`` stores display-rotation metadata (degrees counter-clockwise).
    """
    if len(timestamps_s) > 256:
        raise InputError(f"pattern video: at most 256 frames, got {len(timestamps_s)}")
    out = Path(path)
    ms = Fraction(1, 1000)
    with av.open(str(out), mode="w", format=container_format) as container:
        stream = container.add_stream(pick_codec(), rate=Fraction(nominal_fps).limit_denominator(1001))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = ms
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, t in enumerate(timestamps_s):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, size), format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = ms
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
