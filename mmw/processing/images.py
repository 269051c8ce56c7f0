"""Image decoding and JPEG encoding, and the two networks' inputs as their source models' own preprocessing does.

Both inputs are float32 pixel values (0..255, bicubic may overshoot a little), exactly what the
original graphs compute before they scale to [-1, 1]: rounding them to uint8 moved scores by up to
0.02 on HD frames.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from mmw.errors import InputError
from mmw.processing.classification import LABELLER_INPUT_SIZE
from mmw.processing.detection import DETECTOR_INPUT_SIZE
from mmw.processing.resize import resize_bicubic_tf1, resize_bilinear_tf1

MAX_IMAGE_PIXELS = 8192 * 8192
#: EfficientNet's evaluation crop (tensorflow/tpu ``preprocessing.py``): 224 of 224 + 32 padding.
LABELLER_CROP_PADDING = 32


def check_rgb(rgb: np.ndarray, where: str = "frame") -> np.ndarray:
    """Return ``rgb`` if it is uint8 [H, W, 3] with H, W > 0, else raise InputError."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        got = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InputError(f"{where}: expected an RGB uint8 array [H, W, 3] with H, W > 0, got {got}")
    return rgb


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 [H, W, 3] -> JPEG bytes (what the clients' jpeg transport sends)."""
    if not 1 <= quality <= 100:
        raise InputError(f"jpeg quality: expected 1..100, got {quality}")
    bgr = cv2.cvtColor(check_rgb(rgb), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise InputError(f"frame {list(rgb.shape)}: JPEG encoding failed")
    return buf.tobytes()


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
    """The frozen graph's own ``Preprocessor/ResizeImage``: the whole frame to float32 [300, 300, 3] (TF1 bilinear)."""
    return resize_bilinear_tf1(rgb, (DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE))


def labeller_crop(rgb: np.ndarray) -> np.ndarray:
    """EfficientNet's evaluation crop: the centre square of 224/256 of the shorter side (tensorflow/tpu rounding)."""
    h, w = rgb.shape[:2]
    fraction = LABELLER_INPUT_SIZE / (LABELLER_INPUT_SIZE + LABELLER_CROP_PADDING)
    side = max(1, int(fraction * np.float32(min(h, w))))
    top, left = (h - side + 1) // 2, (w - side + 1) // 2
    return rgb[top : top + side, left : left + side]


def labeller_input(rgb: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite's evaluation input: the crop resized to float32 [224, 224, 3] by TF1 ``resize_bicubic``."""
    return resize_bicubic_tf1(labeller_crop(rgb), (LABELLER_INPUT_SIZE, LABELLER_INPUT_SIZE))
