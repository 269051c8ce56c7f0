"""clients.analysis.scenes: cuts on a video made of distinct shots, scene captions, labels-only segmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clients.analysis.scenes import SceneSettings, frame_signature, segment_scenes, visual_distance
from clients.media.mp4 import Mp4Writer
from clients.pipeline import analyse_video
from clients.results import Detection, FrameResult, ImageResult, SceneLabel, VideoResults
from mmw.errors import InputError
from tests.test_clients_tracking import SIZE, ColourClient, moving_squares_frame

# (background colour, objects in the shot, occluder) of each 2 s shot
SHOTS = (
    ((40, 90, 40), ("red", "blue"), True),  # green field, both squares, a grey wall
    ((20, 20, 70), ("blue",), False),  # night blue, the blue square only
    ((200, 180, 120), ("red",), False),  # sand, the red square only
)


def shots_video(path: Path, seconds_per_shot: float = 2.0, fps: float = 10.0) -> Path:
    per_shot = round(seconds_per_shot * fps)
    with Mp4Writer(path, fps, SIZE, deterministic=True) as writer:
        for i in range(per_shot * len(SHOTS)):
            background, objects, occluder = SHOTS[i // per_shot]
            writer.write(moving_squares_frame((i % per_shot) / fps, background, occluder, objects))
    return path


@pytest.fixture(scope="module")
def shots_run(tmp_path_factory: pytest.TempPathFactory) -> VideoResults:
    root = tmp_path_factory.mktemp("shots")
    run = analyse_video(shots_video(root / "shots.mp4"), root / "out", ColourClient(), fps=2.0, batch_size=4)
    return run.results


def test_scene_boundaries_on_distinct_shots(shots_run: VideoResults) -> None:
    scenes = shots_run.scenes
    assert [(s.start_s, s.end_s) for s in scenes] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert [s.frames for s in scenes] == [4, 4, 4] and [s.first_frame for s in scenes] == [0, 4, 8]
    assert [s.objects for s in scenes] == [("dog", "person"), ("dog",), ("person",)]
    assert [s.caption for s in scenes] == ["a dog and a person", "a dog", "a person"]
    assert scenes[0].cut_score is None and all(s.cut_score > 0.4 for s in scenes[1:])
    assert all(s.label == "lawn" for s in scenes)
    assert VideoResults.from_json(shots_run.to_json()).scenes == scenes


def test_motion_within_a_shot_is_not_a_cut() -> None:
    a, b = (frame_signature(moving_squares_frame(t)) for t in (0.0, 0.5))
    c = frame_signature(moving_squares_frame(0.0, background=(20, 20, 70), occluder=False))
    assert visual_distance(a, b) < 0.15 < 0.4 < visual_distance(a, c)
    assert visual_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def _frame(k: int, classes: tuple[str, ...], label: str, caption: str, fps: float = 2.0) -> FrameResult:
    dets = [Detection((1, 1, 5, 5), 0.9, 1, name) for name in classes]
    return FrameResult(k, k / fps, ImageResult(dets, [SceneLabel(label, 0.5)], caption, "template"))


def test_labels_alone_segment_results_without_signatures() -> None:
    frames = [_frame(k, ("person",), "seashore", "a person; scene: seashore") for k in range(3)]
    frames += [_frame(k, ("horse",), "barn", "a horse; scene: barn") for k in range(3, 5)]
    frames += [_frame(5, ("horse",), "barn", "a horse; scene: barn")]
    scenes = segment_scenes(frames, fps=2.0, duration_s=3.2)
    assert [(s.start_s, s.end_s, s.caption) for s in scenes] == [
        (0.0, 1.5, "a person; scene: seashore"), (1.5, 3.0, "a horse; scene: barn")]
    # the last scene ends one sampling interval after its last frame, or at the video's end if sooner
    assert segment_scenes(frames, fps=2.0)[-1].end_s == 3.0


def test_scene_caption_is_the_most_frequent_one() -> None:
    frames = [_frame(0, (), "x", "a cat"), _frame(1, (), "x", "a dog"), _frame(2, (), "x", "a dog")]
    signatures = [np.full(256, 1 / 256, np.float32)] * 3  # the same picture: one scene
    (scene,) = segment_scenes(frames, signatures, fps=2.0)
    assert scene.caption == "a dog" and scene.frames == 3


def test_bad_settings_and_inputs() -> None:
    with pytest.raises(InputError, match=r"expected cut_threshold in \[0, 1\], got 2"):
        SceneSettings(cut_threshold=2)
    with pytest.raises(InputError, match=r"one signature per frame \(1\), got 0"):
        segment_scenes([_frame(0, (), "x", "c")], [], fps=2.0)
    assert segment_scenes([], fps=2.0) == ()
