"""clients.outputs.subtitles: cues from caption changes and fixed windows inside scenes, read back by pysrt/webvtt."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from clients.outputs.exports import SRT_FILE, VTT_FILE, ExportSettings, write_exports
from clients.outputs.subtitles import (
    DENSE_LINE_CHARS,
    Cue,
    caption_key,
    dense_line,
    format_timestamp,
    srt_text,
    subtitle_cues,
    vtt_text,
)
from clients.results import DenseCaption, Detection, FrameResult, ImageResult, Scene, VideoResults
from mmw.errors import InputError

BOX = (10.0, 10.0, 50.0, 60.0)


def frame(n: int, t: float, caption: str, dense: tuple[tuple[str, str], ...] = ()) -> FrameResult:
    """Frame ``n`` at ``t`` s with ``caption`` and dense captions ``(class, caption)``, one detection each."""
    dets = tuple(Detection(BOX, 0.9, 1, name) for name, _ in dense)
    captions = tuple(DenseCaption(i, text, name, 0.9, BOX) for i, (name, text) in enumerate(dense))
    return FrameResult(n, t, ImageResult(detections=dets, caption=caption, caption_source="tiny-blip",
                                         dense_captions=captions))


def video(captions: list[str], fps: float = 2.0, cuts: tuple[int, ...] = (),
          dense: list[tuple[tuple[str, str], ...]] | None = None, end_s: float | None = None,
          ) -> tuple[list[FrameResult], list[Scene]]:
    """Frames sampled at ``fps`` with these captions, split into scenes at the frame positions ``cuts``."""
    frames = [frame(n, n / fps, c, dense[n] if dense else ()) for n, c in enumerate(captions)]
    bounds = [0, *cuts, len(frames)]
    scenes = []
    for k, (a, b) in enumerate(pairwise(bounds)):
        end = frames[b].timestamp_s if b < len(frames) else (end_s if end_s is not None else len(frames) / fps)
        scenes.append(Scene(k, frames[a].timestamp_s, end, a, b - a, captions[a] or "lawn"))
    return frames, scenes


def spans(cues: list[Cue]) -> list[tuple[float, float, str]]:
    return [(round(c.start_s, 3), round(c.end_s, 3), c.caption) for c in cues]


MAN, DOG = ("person", "a man riding a horse"), ("dog", "a brown dog")


@pytest.mark.parametrize(("captions", "kwargs", "cue_s", "expected"), [
    pytest.param(["a dog on grass"] * 20, {}, 4.0,
                 [(0.0, 4.0, "a dog on grass"), (4.0, 8.0, "a dog on grass"), (8.0, 10.0, "a dog on grass")],
                 id="one scene one caption: windows of cue_s"),
    pytest.param(["a dog"] * 3 + ["A dog."] + ["a cat"] * 2 + ["a dog"] * 2, {}, 4.0,
                 [(0.0, 2.0, "a dog"), (2.0, 3.0, "a cat"), (3.0, 4.0, "a dog")],
                 id="caption changes: boundaries, normalised text compared"),
    pytest.param(["a dog"] * 9 + ["a cat"] * 2, {}, 4.0,
                 [(0.0, 4.0, "a dog"), (4.0, 4.5, "a dog"), (4.5, 5.5, "a cat")],
                 id="a change restarts the window"),
    pytest.param(["a dog"] * 12, {"cuts": (6,)}, 4.0, [(0.0, 3.0, "a dog"), (3.0, 6.0, "a dog")],
                 id="scene cuts: boundaries even with the same caption"),
    pytest.param(["a dog"] * 10, {"cuts": (3,)}, 1.0,
                 [(0.0, 1.0, "a dog"), (1.0, 1.5, "a dog"), (1.5, 2.5, "a dog"), (2.5, 3.5, "a dog"),
                  (3.5, 4.5, "a dog"), (4.5, 5.0, "a dog")],
                 id="windows restart at a cut"),
    pytest.param(["a dog"] * 7, {"fps": 3.0}, 1.0,
                 [(0.0, 1.0, "a dog"), (1.0, 2.0, "a dog"), (2.0, 2.333, "a dog")],
                 id="frame-accurate at 3 fps"),
    pytest.param(["a dog"] * 6, {}, 1.25, [(0.0, 1.0, "a dog"), (1.0, 2.0, "a dog"), (2.0, 3.0, "a dog")],
                 id="a cue never runs past cue_s"),
    pytest.param(["a dog"] * 3, {}, 0.2, [(0.0, 0.5, "a dog"), (0.5, 1.0, "a dog"), (1.0, 1.5, "a dog")],
                 id="cue_s under a frame: one frame a cue"),
    pytest.param(["a dog"], {"end_s": 0.3}, 4.0, [(0.0, 0.3, "a dog")], id="very short video: one frame"),
    pytest.param(["", "a dog", "", "a dog", "a cat", ""], {}, 4.0, [(0.0, 2.0, "a dog"), (2.0, 3.0, "a cat")],
                 id="frames without a caption continue the cue"),
    pytest.param(["", "", ""], {}, 4.0, [(0.0, 1.5, "lawn")], id="no captions at all: the scene's caption"),
])
def test_cues(captions: list[str], kwargs: dict[str, Any], cue_s: float,
              expected: list[tuple[float, float, str]]) -> None:
    frames, scenes = video(captions, **kwargs)
    cues = subtitle_cues(frames, scenes, cue_s)
    assert spans(cues) == expected
    assert all(a.end_s == b.start_s for a, b in pairwise(cues))  # contiguous, no overlap
    assert cues[-1].end_s == scenes[-1].end_s and cues[0].start_s == scenes[0].start_s


def test_cue_times_are_sampled_frame_times() -> None:
    frames, scenes = video(["a dog"] * 30 + ["a cat"] * 7, fps=3.0, cuts=(20,))
    times = {f.timestamp_s for f in frames} | {s.end_s for s in scenes}
    for cue in subtitle_cues(frames, scenes, 2.5):
        assert cue.start_s in times and cue.end_s in times and cue.end_s - cue.start_s <= 2.5


@pytest.mark.parametrize(("dense", "cue_s", "expected"), [
    pytest.param([(MAN,), (MAN, DOG), (DOG,), (MAN,)], 4.0,
                 ["person: a man riding a horse; dog: a brown dog"], id="distinct, in order of appearance"),
    pytest.param([(MAN,), (MAN,), (DOG,), ()], 1.0, ["person: a man riding a horse", "dog: a brown dog"],
                 id="each window its own"),
    pytest.param([(), (), (), ()], 4.0, [""], id="none: no second line"),
    pytest.param([(("person", "A man  riding a horse."),), (MAN,), (), ()], 4.0,
                 ["person: A man riding a horse."], id="the same caption normalised counts once"),
    pytest.param([(("person", "x" * 200),), (), (), ()], 4.0, ["person: " + "x" * 109 + "..."],
                 id="bounded in length"),
])
def test_dense_captions_are_the_second_line(dense: list[tuple[tuple[str, str], ...]], cue_s: float,
                                            expected: list[str]) -> None:
    frames, scenes = video(["a man and a dog"] * len(dense), dense=dense)
    cues = subtitle_cues(frames, scenes, cue_s)
    assert [c.dense for c in cues] == expected
    assert all(len(c.dense) <= DENSE_LINE_CHARS for c in cues)
    assert [c.lines for c in cues] == [("a man and a dog", d) if d else ("a man and a dog",) for d in expected]


def test_srt_and_vtt_text() -> None:
    frames, scenes = video(["a dog"] * 3 + ["a <cat> & a\nbird --> away"] * 2, dense=[(MAN,)] * 5)
    cues = subtitle_cues(frames, scenes, 1.0)
    assert srt_text(cues) == (
        "1\n00:00:00,000 --> 00:00:01,000\na dog\nperson: a man riding a horse\n\n"
        "2\n00:00:01,000 --> 00:00:01,500\na dog\nperson: a man riding a horse\n\n"
        "3\n00:00:01,500 --> 00:00:02,500\na <cat> & a bird -> away\nperson: a man riding a horse\n")
    assert vtt_text(cues).splitlines()[:4] == ["WEBVTT", "", "scene-0-1", "00:00:00.000 --> 00:00:01.000"]
    assert "a &lt;cat&gt; &amp; a bird -&gt; away" in vtt_text(cues)
    assert srt_text([]) == "" and vtt_text([]) == "WEBVTT\n"


def test_scene_without_frames_and_overlaps() -> None:
    scenes = [Scene(0, 0.0, 1.0, 0, 0, "  two\nlines "), Scene(1, 1.0, 2.0, 0, 0, ""), Scene(2, 2.0, 2.0, 0, 0, "x"),
              Scene(3, 1.5, 3.0, 0, 0, "late"), Scene(4, 0.5, 1.0, 0, 0, "early")]
    assert spans(subtitle_cues([], scenes)) == [(0.0, 1.0, "two lines"), (1.5, 3.0, "late")]
    assert subtitle_cues([], []) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start_s": 2.0, "end_s": 2.0, "caption": "x"}, r"expected 0 <= start_s < end_s, got 2.0..2.0"),
    ({"start_s": 0.0, "end_s": 1.0, "caption": "a\nb"}, r"expected single-line text"),
])
def test_a_bad_cue_says_what_was_expected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Cue(**kwargs)


def test_caption_key_and_dense_line() -> None:
    assert caption_key("  A Dog,  on grass! ") == caption_key("a dog, on grass") == "a dog, on grass"
    assert dense_line([]) == ""


# --- ExportSettings and the files read back ---------------------------------------------------------------


def results_of(frames: list[FrameResult], scenes: list[Scene]) -> VideoResults:
    return VideoResults(source="clip.mp4", width=320, height=240, duration_s=scenes[-1].end_s, fps_sampled=2.0,
                        frames=tuple(frames), scenes=tuple(scenes))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cue_s": 0}, r"exports: expected cue_s a number of seconds > 0, got 0"),
    ({"cue_s": -1.0}, r"got -1.0"),
    ({"cue_s": float("nan")}, r"got nan"),
    ({"cue_s": True}, r"got True"),
    ({"cue_s": "4"}, r"got '4'"),
    ({"files": frozenset({"captions.srt", "out.mp4"})}, r"expected files among detections.coco.json, .*got out.mp4"),
    ({"files": "captions.srt"}, r"expected a set of files"),
])
def test_export_settings_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ExportSettings(**kwargs)


def test_write_exports_writes_only_the_files_asked_for(tmp_path: Path) -> None:
    frames, scenes = video(["a dog"] * 4)
    results = results_of(frames, scenes)
    settings = ExportSettings(files={VTT_FILE, SRT_FILE}, cue_s=1)  # type: ignore[arg-type]
    assert settings.files == frozenset({SRT_FILE, VTT_FILE}) and settings.cue_s == 1.0
    paths = write_exports(results, tmp_path, settings)
    assert [p.name for p in paths] == [SRT_FILE, VTT_FILE] and sorted(p.name for p in tmp_path.iterdir()) == [
        SRT_FILE, VTT_FILE]
    assert write_exports(results, tmp_path / "none", ExportSettings(files=frozenset())) == []
    assert len(write_exports(results, tmp_path / "all")) == 4


def test_subtitles_read_back_with_pysrt_and_webvtt(tmp_path: Path) -> None:
    pysrt = pytest.importorskip("pysrt", reason="pip install pysrt")
    webvtt = pytest.importorskip("webvtt", reason="pip install webvtt-py")
    dense = [(MAN, DOG)] * 3 + [()] * 9 + [(DOG,)] * 4
    frames, scenes = video(["a man and a dog"] * 3 + ["a field"] * 9 + ["a dog & a <ball>"] * 4, dense=dense,
                           cuts=(12,))
    write_exports(results_of(frames, scenes), tmp_path, ExportSettings(files=frozenset({SRT_FILE, VTT_FILE})))
    expected = [
        (0, 1500, "a man and a dog\nperson: a man riding a horse; dog: a brown dog"),
        (1500, 5500, "a field"), (5500, 6000, "a field"),
        (6000, 8000, "a dog & a <ball>\ndog: a brown dog"),
    ]
    subs = pysrt.open(str(tmp_path / SRT_FILE), encoding="utf-8")
    assert [(s.start.ordinal, s.end.ordinal, s.text) for s in subs] == expected
    assert [s.index for s in subs] == [1, 2, 3, 4]
    captions = webvtt.read(str(tmp_path / VTT_FILE))
    assert [c.identifier for c in captions] == ["scene-0-1", "scene-0-2", "scene-0-3", "scene-1-1"]
    assert [(c.start, c.end) for c in captions] == [(format_timestamp(a / 1000, "."), format_timestamp(b / 1000, "."))
                                                    for a, b, _ in expected]
    assert captions[0].text.split("\n") == ["a man and a dog", "person: a man riding a horse; dog: a brown dog"]
    assert captions[3].raw_text == "a dog &amp; a &lt;ball&gt;\ndog: a brown dog"
