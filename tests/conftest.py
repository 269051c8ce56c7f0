"""Shared fixtures: real photos, the built ONNX networks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")


def photo(name: str) -> np.ndarray:
    """An RGB photo shipped by scikit-image."""
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()[..., :3]


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def engines() -> dict[str, Path]:
    """The ONNX networks in the model repository, built (or found up to date) once per session."""
    from export.__main__ import build_engines

    build_engines(None, force=False)
    return {name: ROOT / "model_repository" / name / "1" / "model.onnx" for name in ("detector", "labeller")}
