"""clients.media.images: JPEG encoding and reading image files into (bytes to send, RGB)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.media.images import encode_jpeg, encode_png, prepare_image, read_image
from mmw.errors import InputError


def _gradient(h: int = 40, w: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("quality", [50, 90, 100])
def test_encode_jpeg_round_trip(quality: int) -> None:
    rgb = _gradient()
    data = encode_jpeg(rgb, quality)
    assert data[:3] == b"\xff\xd8\xff"
    sent, back = prepare_image(data)
    assert sent == data  # a plain JPEG is sent as it is
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb).mean() < 6
    # Channel order survives: red grows along x.
    assert back[20, 55, 0] > back[20, 5, 0] + 100


@pytest.mark.parametrize("quality", [0, 101])
def test_encode_jpeg_rejects_quality(quality: int) -> None:
    with pytest.raises(InputError, match="quality"):
        encode_jpeg(_gradient(), quality)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)]
)
def test_encode_jpeg_rejects_non_rgb(bad: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"expected an RGB uint8 array \[H, W, 3\]"):
        encode_jpeg(bad)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.mark.parametrize(
    ("name", "make", "sent_as_is"),
    [
        ("rgb.png", lambda rgb: _bgr(rgb), True),
        ("gray.png", lambda rgb: rgb[:, :, 1].copy(), True),
        ("rgba.png", lambda rgb: np.dstack([_bgr(rgb), np.full(rgb.shape[:2], 255, np.uint8)]), False),
        ("deep.png", lambda rgb: _bgr(rgb).astype(np.uint16) * 257, False),
        ("photo.jpg", lambda rgb: _bgr(rgb), True),
        ("bitmap.bmp", lambda rgb: _bgr(rgb), False),
    ],
)
def test_read_image_formats(tmp_path: Path, name: str, make, sent_as_is: bool) -> None:
    rgb = _gradient()
    path = tmp_path / name
    assert cv2.imwrite(str(path), make(rgb))
    sent, back = read_image(path)
    assert back.dtype == np.uint8 and back.shape == (40, 60, 3)
    expected = np.repeat(rgb[:, :, 1:2], 3, axis=2) if name.startswith("gray") else rgb
    assert np.abs(back.astype(int) - expected).mean() < (6 if name.endswith(".jpg") else 1)
    assert (sent == path.read_bytes()) is sent_as_is
    # Whatever is sent decodes (as the server does) to the same pixels as the returned RGB.
    server_view = cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    tolerance = 6 if sent[:3] == b"\xff\xd8\xff" and not sent_as_is else 1
    assert np.abs(server_view[:, :, ::-1].astype(int) - back).mean() < tolerance


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    bgra = np.zeros((10, 10, 4), np.uint8)
    bgra[:, :5, 3] = 255  # left half opaque black, right half transparent
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), bgra)
    sent, rgb = read_image(path)
    assert rgb[:, :5].max() == 0 and rgb[:, 5:].min() == 255
    assert sent[:8] == b"\x89PNG\r\n\x1a\n"


def test_exif_rotated_jpeg_is_sent_upright(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    rgb = _gradient(40, 60)
    exif = pil.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    pil.fromarray(rgb).save(path, quality=95, exif=exif)
    sent, upright = read_image(path)
    assert upright.shape == (60, 40, 3)
    assert sent != path.read_bytes()
    server_view = cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert server_view.shape == upright.shape
    assert np.abs(server_view[:, :, ::-1].astype(int) - upright).mean() < 6
    assert np.abs(upright.astype(int) - np.rot90(rgb, k=-1)).mean() < 6


def test_png_encoding_is_lossless() -> None:
    rgb = _gradient()
    _, back = prepare_image(encode_png(rgb))
    assert np.array_equal(back, rgb)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", r"is empty \(0 bytes\)"), (b"hello, not an image", "do not decode"), (b"\xff\xd8\xff\xe0junk", "JPEG")],
    ids=["empty", "text", "broken-jpeg"],
)
def test_unreadable_images(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_image(path)


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.jpg")
