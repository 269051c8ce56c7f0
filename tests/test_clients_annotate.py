"""clients.outputs.annotators: boxes and tags (supervision), the caption banner; the annotated MP4 writer."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from clients.media.mp4 import Mp4Writer, pick_codec
from clients.outputs.annotators import DetectionAnnotator, annotate, class_color, draw_caption
from clients.outputs.text import ascii_text, text_style, wrap_text
from clients.results import Detection, ImageResult, SceneLabel
from mmw.errors import InputError


def _frame(h: int = 240, w: int = 320) -> np.ndarray:
    return np.full((h, w, 3), 100, np.uint8)


def draw_detections(rgb: np.ndarray, detections: list[Detection]) -> np.ndarray:
    return DetectionAnnotator().annotate(rgb, ImageResult(detections))


def test_boxes_are_drawn_inside_the_box_only() -> None:
    rgb = _frame()
    out = draw_detections(rgb, [Detection((100, 120, 200, 200), 0.87, 17, "cat")])
    assert np.array_equal(rgb, _frame())  # the input is not modified
    changed = np.any(out != rgb, axis=2)
    assert changed[120:201, 100:201].sum() > 300  # the box outline
    assert changed[140:180, 120:180].sum() == 0  # the inside of the box stays as it was
    assert changed[215:, :].sum() == 0  # far from the box nothing changes
    assert tuple(out[160, 100]) == class_color(17)  # left edge in the class colour


def test_tag_goes_inside_when_no_room_above() -> None:
    out = draw_detections(_frame(), [Detection((10, 0, 150, 100), 0.5, 1, "person")])
    assert np.any(out[2:12, 12:40] != 100)


def test_boxes_outside_the_frame_are_clipped() -> None:
    out = draw_detections(_frame(), [Detection((-50, -50, 1000, 1000), 0.5, 3, "car")])
    assert out.shape == (240, 320, 3)


def test_class_colours_are_stable_and_distinct() -> None:
    colours = [class_color(i) for i in range(1, 91)]
    assert class_color(17) == class_color(17)
    assert len(set(colours)) == 90


def test_caption_banner() -> None:
    rgb = _frame()
    out = draw_caption(rgb, "a cat on a mat")
    changed = np.any(out != rgb, axis=2)
    assert changed[200:, :].any()
    assert not changed[:150].any()
    assert np.array_equal(draw_caption(rgb, ""), rgb)


@pytest.mark.parametrize("width", [120, 320, 1280])
def test_wrap_text_fits_and_truncates(width: int) -> None:
    import cv2

    scale, thick = text_style(width, width)
    text = "a very long caption " * 30
    lines = wrap_text(text, width - 16, scale, thick, max_lines=2)
    assert 1 <= len(lines) <= 2
    assert lines[-1].endswith("...")
    for line in lines:
        assert cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] <= width - 16


def test_wrap_text_cuts_a_single_long_word() -> None:
    lines = wrap_text("x" * 500, 100, 0.5, 1, max_lines=3)
    assert len(lines) == 1 and 0 < len(lines[0]) < 500


@pytest.mark.parametrize(("text", "expected"), [("café  au\nlait", "cafe au lait"), ("猫 cat", "? cat")])
def test_ascii_text(text: str, expected: str) -> None:
    assert ascii_text(text) == expected


def test_annotate_uses_label_when_no_caption() -> None:
    result = ImageResult(labels=[SceneLabel("tabby", 0.7)])
    out = annotate(_frame(), result, timestamp_s=1.5)
    assert np.any(out[200:] != 100)


def test_annotated_video_writer(tmp_path: Path) -> None:
    path = tmp_path / "annotated.mp4"
    rng = np.random.default_rng(1)
    with Mp4Writer(path, 2.0, (101, 75)) as writer:  # odd size: padded to even
        for i in range(7):
            writer.write(rng.integers(0, 255, (75, 101, 3), dtype=np.uint8), timestamp_s=i * 0.5)
        assert not path.exists()  # written under a temporary name until closed
    assert writer.codec == pick_codec()
    assert path.is_file() and not list(tmp_path.glob(".*part"))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.codec_context.name == ("h264" if writer.codec == "libx264" else "mpeg4")
        assert (stream.width, stream.height) == (102, 76)
        assert frames[0].format.name == "yuv420p"
    assert len(frames) == 7
    assert [float(f.time) for f in frames] == pytest.approx([i * 0.5 for i in range(7)])


def test_writer_keeps_timeline_gaps_and_resizes(tmp_path: Path) -> None:
    path = tmp_path / "gaps.mp4"
    with Mp4Writer(path, 2.0, (64, 48)) as writer:
        for t in (0.0, 0.5, 2.0):
            writer.write(_frame(96, 128), timestamp_s=t)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert [float(f.time) for f in frames] == pytest.approx([0.0, 0.5, 2.0])
    assert (frames[0].width, frames[0].height) == (64, 48)


def test_writer_without_frames_writes_nothing(tmp_path: Path) -> None:
    with Mp4Writer(tmp_path / "none.mp4", 2.0, (64, 48)):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fps", "size"), [(0, (64, 48)), (2, (0, 48))])
def test_writer_rejects_bad_settings(tmp_path: Path, fps: float, size: tuple[int, int]) -> None:
    with pytest.raises(InputError):
        Mp4Writer(tmp_path / "x.mp4", fps, size)
