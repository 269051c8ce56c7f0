"""Image decoding and resizing for the two networks (numpy + OpenCV)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from mmw.errors import InputError
from mmw.processing.classification import LABELLER_INPUT_SIZE
from mmw.processing.detection import DETECTOR_INPUT_SIZE

MAX_IMAGE_PIXELS = 8192 * 8192
LABELLER_CROP_FRACTION = 0.875  # EfficientNet's evaluation crop: 224 of 256


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> RGB uint8 [H, W, 3].

    Grayscale, RGBA and 16-bit images become 8-bit RGB; CMYK JPEGs are converted by libjpeg.
    """
    if not data:
        raise InputError("image: expected encoded image bytes (JPEG or PNG), got an empty buffer")
    # Read the size from the header (Pillow does not decode here) before decoding a huge frame.
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError as exc:  # Pillow refuses to even open it: far over any sane size
        raise InputError(f"image: at most {max_pixels} pixels allowed, got a larger image ({exc})") from None
    except (OSError, ValueError):
        raise InputError(
            f"image: expected JPEG or PNG bytes, got {len(data)} bytes that do not decode as an image"
        ) from None
    if width * height > max_pixels:
        raise InputError(f"image: at most {max_pixels} pixels allowed, got {width}x{height}")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise InputError(f"image: {len(data)} bytes could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def detector_input(rgb: np.ndarray) -> np.ndarray:
    """The whole frame stretched to 300x300, as the TF SSD's fixed_shape_resizer does."""
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > 2 * DETECTOR_INPUT_SIZE else cv2.INTER_LINEAR
    return cv2.resize(rgb, (DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE), interpolation=interp)


def labeller_input(rgb: np.ndarray) -> np.ndarray:
    """Centre square crop of 87.5% of the shorter side, resized to 224x224."""
    h, w = rgb.shape[:2]
    side = max(1, round(min(h, w) * LABELLER_CROP_FRACTION))
    top, left = (h - side) // 2, (w - side) // 2
    crop = rgb[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > 2 * LABELLER_INPUT_SIZE else cv2.INTER_LINEAR
    return cv2.resize(crop, (LABELLER_INPUT_SIZE, LABELLER_INPUT_SIZE), interpolation=interp)
