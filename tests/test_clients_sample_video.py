"""clients.media.sample_video: the Ken Burns sample video made from scikit-image photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from clients.media.sample_video import PHOTOS, load_photo, make_sample_video
from clients.media.video import probe, sample_frames
from mmw.errors import InputError

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_video(tmp_path_factory.mktemp("sample") / "sample.mp4", seconds=4, fps=5, size=(160, 120))


def test_sample_video_duration_and_size(sample: Path) -> None:
    info = probe(sample)
    assert (info.width, info.height) == (160, 120)
    assert info.duration_s == pytest.approx(4.0, abs=0.05)
    assert info.frame_count == 20
    assert info.fps == pytest.approx(5.0)
    assert info.codec in ("h264", "mpeg4")
    assert len(list(sample_frames(sample, 2.0))) == 8


def test_default_sample_video_is_eight_seconds(tmp_path: Path) -> None:
    info = probe(make_sample_video(tmp_path / "default.mp4", size=(128, 96)))
    assert info.duration_s == pytest.approx(8.0, abs=0.05)
    assert info.frame_count == 80


def test_sample_video_is_deterministic(sample: Path, tmp_path: Path) -> None:
    again = make_sample_video(tmp_path / "again.mp4", seconds=4, fps=5, size=(160, 120))
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(sample.read_bytes()).digest()


def test_sample_video_moves_and_changes_photo(sample: Path) -> None:
    frames = [f.rgb.astype(np.float32) for f in sample_frames(sample, 5.0)]
    # Within a photo consecutive frames differ a little (pan and zoom) ...
    assert 0.5 < np.abs(frames[1] - frames[0]).mean() < 40
    # ... and across the cut to the next photo (after 2 s) a lot.
    assert np.abs(frames[10] - frames[9]).mean() > np.abs(frames[1] - frames[0]).mean() * 2


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_load_as_rgb(name: str) -> None:
    photo = load_photo(name)
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        make_sample_video(tmp_path / "x.mp4", seconds=0)
    with pytest.raises(InputError):
        load_photo("dog")
