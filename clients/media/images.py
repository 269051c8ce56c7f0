"""Still images: read a file into (bytes to send, RGB to draw on) and encode RGB frames as JPEG or PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmw.errors import InputError
from mmw.processing.images import check_rgb, encode_jpeg

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REENCODE_JPEG_QUALITY = 95


def encode_png(rgb: np.ndarray) -> bytes:
    """RGB uint8 [H, W, 3] -> PNG bytes (lossless)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(check_rgb(rgb), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise InputError(f"frame {list(rgb.shape)}: PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG (any folders are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(encode_png(rgb))
    return p


def read_image(path: str | Path) -> tuple[bytes, np.ndarray]:
    """Read an image file -> (encoded bytes to send to the server, RGB uint8 [H, W, 3]).

    JPEG and 8-bit RGB or grayscale PNG files are sent as they are. Anything the server would
    see differently from the returned RGB (EXIF-rotated JPEGs, transparency, 16-bit PNGs, or
    other formats OpenCV reads such as BMP, TIFF, WebP) is re-encoded from the RGB, so the boxes
    the server returns are in the pixels of the returned array.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"image {p}: not found (expected a JPEG or PNG file)")
    if not p.is_file():
        raise InputError(f"image {p}: expected a file, got a directory or special file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"image {p}: cannot be read ({exc.strerror or exc})") from None
    return prepare_image(data, where=f"image {p}")


def prepare_image(data: bytes, where: str = "image") -> tuple[bytes, np.ndarray]:
    """Encoded image bytes -> (bytes to send, RGB uint8); see ``read_image``."""
    if not data:
        raise InputError(f"{where}: is empty (0 bytes); expected a JPEG or PNG image")
    buf = np.frombuffer(data, dtype=np.uint8)
    if data.startswith(_JPEG_MAGIC):
        oriented = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # applies the EXIF orientation
        if oriented is None:
            raise InputError(f"{where}: expected a readable JPEG, got {len(data)} bytes that do not decode")
        rgb = cv2.cvtColor(oriented, cv2.COLOR_BGR2RGB)
        as_stored = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if as_stored is not None and as_stored.shape == oriented.shape and np.array_equal(as_stored, oriented):
            return data, rgb
        return encode_jpeg(rgb, REENCODE_JPEG_QUALITY), rgb
    raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise InputError(
            f"{where}: expected a JPEG or PNG image, got {len(data)} bytes that do not decode as an image "
            f"(starting {data[:8]!r})"
        )
    rgb = _to_rgb(raw, where)
    plain = raw.dtype == np.uint8 and (raw.ndim == 2 or raw.shape[2] == 3)
    if data.startswith(_PNG_MAGIC) and plain:
        return data, rgb
    return encode_png(rgb), rgb


def _to_rgb(raw: np.ndarray, where: str) -> np.ndarray:
    """OpenCV's IMREAD_UNCHANGED result -> RGB uint8; transparency is composited over white."""
    img = raw
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{where}: expected 8- or 16-bit pixels, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        return (rgb * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    raise InputError(f"{where}: expected 1, 3 or 4 colour channels, got {channels}")
