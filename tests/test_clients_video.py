"""clients.media.video: probing, sampling by timestamp, rotation and bad input (no server needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clients.media.mp4 import Mp4Writer
from clients.media.sample_video import make_pattern_video, pattern_index
from clients.media.video import expected_sample_count, probe, sample_frames
from mmw.errors import InputError


@pytest.fixture(scope="module")
def cfr_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps: frame i at t = i / 10."""
    path = tmp_path_factory.mktemp("video") / "cfr.mp4"
    return make_pattern_video(path, [i / 10 for i in range(30)])


def test_probe(cfr_video: Path) -> None:
    info = probe(cfr_video)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(10.0)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.frame_count == 30
    assert info.rotation == 0


@pytest.mark.parametrize(
    ("fps", "indices"),
    [
        (1.0, [0, 10, 20]),
        (2.0, [0, 5, 10, 15, 20, 25]),
        (5.0, list(range(0, 30, 2))),
        (10.0, list(range(30))),
        (20.0, list(range(30))),  # faster than the video: each frame once
        (0.4, [0, 25]),  # targets 0 and 2.5 s
    ],
)
def test_sample_frames_by_timestamp(cfr_video: Path, fps: float, indices: list[int]) -> None:
    frames = list(sample_frames(cfr_video, fps))
    assert [f.index for f in frames] == indices
    assert [f.timestamp_s for f in frames] == pytest.approx([i / 10 for i in indices])
    # The pixels are those of the frame the index names.
    assert [pattern_index(f.rgb) for f in frames] == indices
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 for f in frames)


def test_two_fps_over_n_seconds(tmp_path: Path) -> None:
    seconds, fps = 4, 2.0
    path = make_pattern_video(tmp_path / "four.mp4", [i / 10 for i in range(seconds * 10)])
    frames = list(sample_frames(path, fps))
    assert len(frames) == seconds * fps
    assert [f.timestamp_s for f in frames] == pytest.approx([k / fps for k in range(8)])
    assert expected_sample_count(probe(path), fps) == len(frames)


def test_variable_frame_rate_picks_nearest_frame(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.35, 0.4, 0.9, 1.0, 1.45, 1.6, 2.2, 2.3]
    path = make_pattern_video(tmp_path / "vfr.mp4", times)
    frames = list(sample_frames(path, 2.0))
    # Targets 0, 0.5, 1.0, 1.5, 2.0 -> nearest frames at 0, 0.4, 1.0, 1.45, 2.2.
    assert [f.index for f in frames] == [0, 3, 5, 6, 8]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.4, 1.0, 1.45, 2.2])
    assert [pattern_index(f.rgb) for f in frames] == [0, 3, 5, 6, 8]


def test_timestamps_count_from_first_frame(tmp_path: Path) -> None:
    path = make_pattern_video(tmp_path / "late.mp4", [5.0 + i / 10 for i in range(10)])
    frames = list(sample_frames(path, 2.0))
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.5])


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int) -> None:
    path = make_pattern_video(tmp_path / "rot.mp4", [0.0, 0.1, 0.2], rotation=rotation)
    info = probe(path)
    assert (info.width, info.height) == ((48, 64) if rotation % 180 else (64, 48))
    frame = list(sample_frames(path, 10.0))[1]  # pattern 1: left half 24, right half 8
    assert frame.rgb.shape == (info.height, info.width, 3)
    expected = np.rot90(np.where(np.arange(64) < 32, 24, 8)[None, :].repeat(48, 0), k=rotation // 90)
    assert np.abs(frame.rgb[..., 1].astype(int) - expected).mean() < 3


def test_matroska_without_stream_duration(tmp_path: Path) -> None:
    path = make_pattern_video(tmp_path / "v.mkv", [i / 10 for i in range(20)], container_format="matroska")
    info = probe(path)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert [f.index for f in sample_frames(path, 2.0)] == [0, 5, 10, 15]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "not found"),
        (lambda d: _write(d / "empty.mp4", b""), r"is empty \(0 bytes\)"),
        (lambda d: _write(d / "notes.mp4", b"these are my notes, not a video\n" * 20), "not a readable video"),
        (lambda d: d, "is not a file"),
    ],
    ids=["missing", "empty", "text-renamed-mp4", "directory"],
)
def test_bad_video_files(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError, match=message):
        probe(path)
    with pytest.raises(InputError, match=message):
        list(sample_frames(path, 2.0))


def test_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for i in range(4):
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(InputError, match=r"has no video stream.*found audio"):
        probe(path)


def test_bad_fps(cfr_video: Path) -> None:
    with pytest.raises(InputError, match="fps > 0"):
        list(sample_frames(cfr_video, 0))


def test_truncated_video_yields_frames_then_fails(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "full.mp4"
    with Mp4Writer(path, 10, (64, 48)) as writer:  # moov atom first: a truncated copy still opens
        for _ in range(60):
            writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    cut = _write(tmp_path / "cut.mp4", data[: len(data) // 2])
    got = []
    with pytest.raises(InputError, match=r"decoding stopped .*t=\d+\.\d+ s"):
        for frame in sample_frames(cut, 2.0):
            got.append(frame.timestamp_s)
    assert 2 <= len(got) < 12  # the frames before the damage were yielded
    lenient = list(sample_frames(cut, 2.0, strict=False))
    assert [f.timestamp_s for f in lenient] == got
