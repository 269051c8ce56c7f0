"""clients.analysis.tracking: ByteTrack ids across sampled frames, occlusions, first/last seen, through the pipeline.

``ColourClient`` stands in for the server: it "detects" the red and blue squares of
``moving_squares_video`` by colour, so a synthetic video has known moving objects (no server needed).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from clients.analysis.hidden import RESUME_FILE, read_hidden, restore_hidden, split_shown
from clients.analysis.tracking import (
    ObjectTracker,
    TrackerSettings,
    box_scale_for,
    build_tracks,
    iou,
    track_frames,
)
from clients.media.images import encode_jpeg
from clients.media.mp4 import Mp4Writer
from clients.pipeline import analyse_video, load_resume
from clients.results import DenseCaption, Detection, FrameResult, ImageResult, SceneLabel, VideoResults
from mmw.errors import InferenceError, InputError

SIZE = (320, 240)
SQUARE = 40
# RGB colours of the synthetic objects and what the fake detector calls them
OBJECTS = {"red": ((220, 30, 30), 1, "person"), "blue": ((30, 30, 220), 18, "dog")}
OCCLUDER = (130, 200)  # x range of a grey wall the red square passes behind


def square_positions(t: float) -> dict[str, tuple[int, int]]:
    """Top-left corners at time t: red moves right at 40 px/s along y=40, blue left at 30 px/s along y=150."""
    return {"red": (round(10 + 40 * t), 40), "blue": (round(260 - 30 * t), 150)}


def moving_squares_frame(t: float, background: tuple[int, int, int] = (40, 90, 40), occluder: bool = True,
                         objects: Iterable[str] = ("red", "blue")) -> np.ndarray:
    w, h = SIZE
    img = np.empty((h, w, 3), np.uint8)
    img[:] = background
    pos = square_positions(t)
    for name in objects:
        x, y = pos[name]
        img[y : y + SQUARE, max(0, x) : max(0, x + SQUARE)] = OBJECTS[name][0]
    if occluder:
        img[20:110, OCCLUDER[0] : OCCLUDER[1]] = (128, 128, 128)
    return img


def moving_squares_video(path: Path, seconds: float = 6.0, fps: float = 10.0, **kwargs: Any) -> Path:
    with Mp4Writer(path, fps, SIZE, deterministic=True) as writer:
        for i in range(round(seconds * fps)):
            writer.write(moving_squares_frame(i / fps, **kwargs))
    return path


def colour_detections(rgb: np.ndarray, min_area: int = SQUARE * SQUARE // 2) -> list[Detection]:
    """A box per synthetic object with at least ``min_area`` pixels visible."""
    found = []
    for colour, class_id, name in OBJECTS.values():
        mask = np.all(np.abs(rgb.astype(int) - colour) < 60, axis=2).astype(np.uint8)
        if int(mask.sum()) < min_area:
            continue
        x, y, w, h = cv2.boundingRect(mask)
        found.append(Detection((float(x), float(y), float(x + w), float(y + h)), 0.9, class_id, name))
    return found


class ColourClient:
    """An InferenceClient that detects the synthetic squares by colour; ``delay_s`` per request."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests = 0

    def check_ready(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"ensemble": "colour-fake"}

    def max_batch_size(self) -> int:
        return 8

    def frame_payload(self, rgb: np.ndarray, encoded: bytes | None = None) -> bytes:
        return encoded if encoded is not None else encode_jpeg(rgb)

    def infer_frames_many(self, batches: Iterable[list[bytes]]) -> Iterator[list[ImageResult]]:
        import time

        for batch in batches:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.requests += 1
            out = []
            for data in batch:
                rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                dets = colour_detections(rgb)
                names = sorted({d.class_name for d in dets})
                caption = " and ".join(f"a {n}" for n in names) if names else "an empty field"
                out.append(ImageResult(dets, [SceneLabel("lawn", 0.6)], caption, "template"))
            yield out


# --- the tracker on synthetic detections -----------------------------------------------------------------


def _frames(boxes_per_frame: list[list[tuple[tuple[float, float, float, float], int, str]]],
            fps: float = 2.0) -> list[FrameResult]:
    return [
        FrameResult(k * 5, k / fps, ImageResult([Detection(box, 0.9, cid, name) for box, cid, name in boxes]))
        for k, boxes in enumerate(boxes_per_frame)
    ]


def _walker(k: int, x0: float = 20, step: float = 20, y: float = 100, w: float = 60, h: float = 120
            ) -> tuple[float, float, float, float]:
    x = x0 + step * k
    return (x, y, x + w, y + h)


def test_ids_stable_through_a_short_occlusion() -> None:
    # a person walks right, hidden at samples 6 and 7 (1 s at 2 fps); a dog walks left from sample 2 on
    frames = _frames([
        ([(_walker(k), 1, "person")] if k not in (6, 7) else [])
        + ([(_walker(k, x0=420, step=-15, y=150, w=80, h=60), 18, "dog")] if k >= 2 else [])
        for k in range(14)
    ])
    tracked = track_frames(frames, fps=2.0)
    assert [f.timestamp_s for f in tracked] == [f.timestamp_s for f in frames]
    person = {d.track_id for f in tracked for d in f.image.detections if d.class_name == "person"}
    dog = {d.track_id for f in tracked for d in f.image.detections if d.class_name == "dog"}
    assert len(person) == 1 and len(dog) == 1 and person != dog and None not in person | dog
    tracks = {t.class_name: t for t in build_tracks(tracked)}
    assert (tracks["person"].first_seen_s, tracks["person"].last_seen_s, tracks["person"].frames) == (0.0, 6.5, 12)
    # the dog's first sample gets its id too, although ByteTrack confirms a track on its second frame
    assert (tracks["dog"].first_seen_s, tracks["dog"].last_seen_s, tracks["dog"].frames) == (1.0, 6.5, 12)


def test_an_occlusion_longer_than_lost_track_s_starts_a_new_track() -> None:
    # hidden for 2 s (samples 8-11)
    frames = _frames([[(_walker(k), 1, "person")] if not 8 <= k <= 11 else [] for k in range(16)])
    short = track_frames(frames, fps=2.0, settings=TrackerSettings(lost_track_s=1.0))
    ids = [d.track_id for f in short for d in f.image.detections]
    assert len(set(ids)) == 2, ids
    long = track_frames(frames, fps=2.0, settings=TrackerSettings(lost_track_s=4.0))
    assert len({d.track_id for f in long for d in f.image.detections}) == 1


def test_a_fast_object_keeps_its_id_through_an_occlusion() -> None:
    # 40 px boxes moving 20 px per sample, hidden for 2.5 s: the motion model carries the box along
    frames = _frames([[(_walker(k, x0=10, w=40, h=40), 1, "person")] if not 5 <= k <= 9 else [] for k in range(14)])
    tracked = track_frames(frames, fps=2.0, settings=TrackerSettings(lost_track_s=3.0))
    assert len({d.track_id for f in tracked for d in f.image.detections}) == 1


def test_buffered_iou_keeps_an_object_that_starts_moving() -> None:
    # 40 px boxes, still for 4 samples, then 30 px per sample: plain IoU (box_scale 1) loses it, buffered keeps it
    frames = _frames([[(_walker(max(0, k - 3), x0=10, step=30, w=40, h=40), 1, "person")] for k in range(10)])
    buffered = track_frames(frames, fps=2.0)
    assert len({d.track_id for f in buffered for d in f.image.detections}) == 1
    plain = track_frames(frames, fps=2.0, settings=TrackerSettings(box_scale=1.0))
    assert len({d.track_id for f in plain for d in f.image.detections}) > 1


def test_settings_follow_the_sampling_rate() -> None:
    assert [round(box_scale_for(fps), 3) for fps in (0.5, 1, 2, 5, 10, 30)] == [2.0, 2.0, 1.6, 1.24, 1.12, 1.04]
    assert [(t.box_scale, t.lost_frames) for t in (ObjectTracker(2.0), ObjectTracker(10.0))] == [(1.6, 4), (1.12, 20)]
    assert ObjectTracker(5.0, TrackerSettings(box_scale=1.3, lost_track_s=1.0)).box_scale == 1.3


def test_low_score_detections_keep_a_track_alive() -> None:
    # the person scores 0.2 for 2.5 s in the middle (half hidden, say): ByteTrack's second stage keeps its track
    def frames(low: float) -> list[FrameResult]:
        return [FrameResult(k, k / 2, ImageResult([Detection(_walker(k), low if 4 <= k <= 8 else 0.9, 1, "person")]))
                for k in range(12)]

    settings = TrackerSettings(lost_track_s=1.0)
    kept = track_frames(frames(0.2), fps=2.0, settings=settings)
    assert {d.track_id for f in kept for d in f.image.detections} == {1}
    ignored = track_frames(frames(0.05), fps=2.0, settings=settings)  # below low_score: as if not detected
    ids = [d.track_id for f in ignored for d in f.image.detections]
    assert ids[:4] == [1] * 4 and set(ids[4:9]) == {None} and set(ids[9:]) == {2}


def test_a_part_of_a_tracked_object_starts_no_track() -> None:
    # the detector also boxes the walker's left half (split by a post, say): no second track, no id for the part
    def detections(k: int) -> list[Detection]:
        x = _walker(k)[0]
        return [Detection(_walker(k), 0.9, 1, "person"), Detection((x, 100, x + 28, 220), 0.6, 1, "person")]

    frames = [FrameResult(k * 5, k / 2, ImageResult(detections(k))) for k in range(6)]
    tracked = track_frames(frames, fps=2.0)
    assert [[d.track_id for d in f.image.detections] for f in tracked] == [[1, None]] * 6


def _people_frames(hidden: range, rgb: bool) -> tuple[list[FrameResult], list[np.ndarray] | None]:
    """An orange and a grey person side by side; the orange one is hidden at samples ``hidden`` and comes
    back 120 px further on (it walked on behind something)."""
    frames, images = [], []
    for k in range(16):
        img = np.full((240, 480, 3), (40, 90, 40), np.uint8)
        dets = []
        grey = (300, 60, 360, 180)
        img[60:180, 300:360] = (128, 128, 128)
        dets.append(Detection(grey, 0.9, 1, "person"))
        if k not in hidden:
            x = 20 + (120 if k > hidden[-1] else 0) + 2 * k
            img[60:180, x : x + 60] = (230, 120, 30)
            dets.append(Detection((x, 60, x + 60, 180), 0.9, 1, "person"))
        frames.append(FrameResult(k, k / 2, ImageResult(dets)))
        images.append(img)
    return frames, images if rgb else None


def test_colours_relink_a_track_after_a_long_occlusion() -> None:
    # hidden 3 s (longer than lost_track_s) and reappearing where its boxes no longer overlap: colour re-links it
    frames, images = _people_frames(range(4, 10), rgb=True)
    tracked = track_frames(frames, fps=2.0, images=images)
    orange = {d.track_id for f in tracked for d in f.image.detections if d.box[0] < 300}
    grey = {d.track_id for f in tracked for d in f.image.detections if d.box[0] == 300}
    assert len(orange) == 1 and len(grey) == 1 and orange != grey
    frames, _ = _people_frames(range(4, 10), rgb=False)  # without the frames: a new track
    tracked = track_frames(frames, fps=2.0)
    assert len({d.track_id for f in tracked for d in f.image.detections if d.box[0] < 300}) == 2


def test_tracks_never_change_class() -> None:
    # one sample calls the dog a cat: that detection is no track of its own (one frame) and the dog's track goes on
    frames = _frames([[(_walker(k, step=5), 18 if k != 2 else 17, "dog" if k != 2 else "cat")] for k in range(5)])
    tracked = track_frames(frames, fps=2.0)
    assert [[d.track_id for d in f.image.detections] for f in tracked] == [[1], [1], [None], [1], [1]]
    tracks = build_tracks(tracked)
    assert [(t.class_name, t.frames) for t in tracks] == [("dog", 4)]


def test_a_cut_ends_every_track() -> None:
    tracker = ObjectTracker(2.0)
    frames = _frames([[(_walker(0, step=0), 1, "person")]] * 4)
    out = tracker.push(frames[0]) + tracker.push(frames[1]) + tracker.cut() + tracker.push(frames[2])
    out += tracker.push(frames[3]) + tracker.finish()
    assert [[d.track_id for d in f.image.detections] for f in out] == [[1], [1], [2], [2]]


def test_tracker_output_is_one_frame_late_and_finish_flushes() -> None:
    tracker = ObjectTracker(2.0)
    frames = _frames([[(_walker(k), 1, "person")] for k in range(3)])
    assert tracker.push(frames[0]) == []
    assert [f.timestamp_s for f in tracker.push(frames[1])] == [0.0]
    assert [f.timestamp_s for f in tracker.push(frames[2])] == [0.5]
    assert [f.timestamp_s for f in tracker.finish()] == [1.0]
    assert tracker.finish() == []


def test_settings_are_checked() -> None:
    with pytest.raises(InputError, match=r"expected matching_threshold in \[0, 1\], got 1.5"):
        TrackerSettings(matching_threshold=1.5)
    with pytest.raises(InputError, match=r"tracker: expected fps > 0, got 0"):
        ObjectTracker(0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


# --- a synthetic video through the pipeline ----------------------------------------------------------------


@pytest.fixture(scope="module")
def squares_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoResults]:
    root = tmp_path_factory.mktemp("squares")
    video = moving_squares_video(root / "squares.mp4")
    run = analyse_video(video, root / "out", ColourClient(), fps=2.0, batch_size=4)
    assert run.error is None
    return root / "out", run.results


def test_synthetic_video_keeps_ids_behind_the_wall(squares_run: tuple[Path, VideoResults]) -> None:
    out, results = squares_run
    red = [(f.timestamp_s, d.track_id) for f in results.frames for d in f.image.detections if d.class_name == "person"]
    hidden = [f.timestamp_s for f in results.frames if not any(d.class_name == "person" for d in f.image.detections)]
    # the red square (x = 10 + 40 t) is mostly behind the wall x in [140, 240] from t ~ 2.8 to ~ 5.2 s
    assert hidden and min(hidden) >= 2.5 and max(hidden) <= 5.5, hidden
    assert red[-1][0] > max(hidden), "the red square comes out from behind the wall"
    assert len({tid for _, tid in red}) == 1 and red[0][1] is not None, red
    blue = {d.track_id for f in results.frames for d in f.image.detections if d.class_name == "dog"}
    assert len(blue) == 1 and blue != {red[0][1]}
    assert results.object_counts == {"person": 1, "dog": 1}
    by_class = {t.class_name: t for t in results.tracks}
    assert by_class["dog"].first_seen_s == 0.0 and by_class["dog"].last_seen_s == 5.5
    assert by_class["person"].first_seen_s == 0.0 and by_class["person"].last_seen_s == red[-1][0]
    rows = list(csv.DictReader((out / "tracks.csv").open(encoding="utf-8")))
    assert {(r["class_name"], float(r["first_seen_s"])) for r in rows} == {("person", 0.0), ("dog", 0.0)}


class OneBadFrameClient(ColourClient):
    """ColourClient whose server could not analyse the third image it was sent."""

    def infer_frames_many(self, batches: Iterable[list[bytes]]) -> Iterator[list[ImageResult]]:
        seen = 0
        for results in super().infer_frames_many(batches):
            out = []
            for r in results:
                out.append(ImageResult(error=f"IMAGE[{seen}]: image: could not be decoded") if seen == 2 else r)
                seen += 1
            yield out


def test_a_frame_the_server_could_not_analyse_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    video = moving_squares_video(tmp_path / "squares.mp4", seconds=3.0)
    run = analyse_video(video, tmp_path / "out", OneBadFrameClient(), fps=2.0, batch_size=4)
    assert run.error is None and run.results.complete
    assert len(run.results.frames) == 6
    bad = run.results.frames[2].image
    assert bad.error == "IMAGE[2]: image: could not be decoded" and bad.detections == ()
    assert all(not f.image.error and f.image.detections for i, f in enumerate(run.results.frames) if i != 2)
    assert VideoResults.read(tmp_path / "out" / "results.json").frames[2].image.error == bad.error


# --- low-score detections: tracked, not shown, kept for an exact resume ----------------------------------------


class LowScoreClient(ColourClient):
    """ColourClient whose red square scores 0.2 in two samples of every four (half hidden, say), with a 0.15
    dog beside it then; after ``fail_after`` images, the server goes away."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.images = 0

    def infer_frames_many(self, batches: Iterable[list[bytes]]) -> Iterator[list[ImageResult]]:
        for results in super().infer_frames_many(batches):
            out = []
            for r in results:
                if self.fail_after is not None and self.images >= self.fail_after:
                    raise InferenceError("server went away (a test)")
                dets = list(r.detections)
                red = next((d for d in dets if d.class_name == "person"), None)
                if red is not None and int(red.box[0]) // 20 % 4 >= 2:  # the square is at 10 + 20 k px at sample k
                    dets = [replace(d, score=0.2) if d is red else d for d in dets]
                    dets.append(Detection((5.0, 200.0, 25.0, 230.0), 0.15, 18, "dog"))
                dets.sort(key=lambda d: -d.score)  # as the server orders them
                out.append(replace(r, detections=tuple(dets)))
                self.images += 1
            yield out


def _comparable(results: VideoResults) -> dict[str, Any]:
    d = results.to_dict()
    return {k: d[k] for k in ("frames", "tracks", "scenes", "object_counts", "complete", "error")}


def test_low_scores_are_tracked_but_not_shown_and_a_resume_tracks_the_same(tmp_path: Path) -> None:
    video = moving_squares_video(tmp_path / "squares.mp4", seconds=6.0, occluder=False)
    # tracks end after one sample unseen: without its low-score detections the red square's track would break
    settings = TrackerSettings(lost_track_s=0.5, relink_s=0.5)
    full = analyse_video(video, tmp_path / "full", LowScoreClient(), fps=2.0, batch_size=2, tracker=settings,
                         min_score=0.3)
    assert full.error is None and not (tmp_path / "full" / RESUME_FILE).exists()  # a complete run needs none
    shown = [d for f in full.results.frames for d in f.image.detections]
    assert shown and min(d.score for d in shown) >= 0.3  # min_score, applied after tracking
    red = [d.track_id for f in full.results.frames for d in f.image.detections if d.class_name == "person"]
    assert len(red) == 6 and len(set(red)) == 1 and red[0] is not None  # one track through its weak samples
    everything = analyse_video(video, tmp_path / "all", LowScoreClient(), fps=2.0, batch_size=2, tracker=settings)
    assert min(d.score for f in everything.results.frames for d in f.image.detections) == pytest.approx(0.15)

    out = tmp_path / "resumed"
    partial = analyse_video(video, out, LowScoreClient(fail_after=8), fps=2.0, batch_size=2, tracker=settings,
                            min_score=0.3)
    assert isinstance(partial.error, InferenceError) and len(partial.results.frames) == 8
    hidden = read_hidden(out, str(video), 2.0)
    assert sorted(hidden) == [f.index for k, f in enumerate(partial.results.frames) if k % 4 >= 2]
    assert all(d.score < 0.3 for dets in hidden.values() for _, d in dets)
    resumed = analyse_video(video, out, LowScoreClient(), fps=2.0, batch_size=2, tracker=settings,
                            min_score=0.3, resume=load_resume(out, str(video), 2.0))
    assert resumed.error is None and _comparable(resumed.results) == _comparable(full.results)
    assert not (out / RESUME_FILE).exists()


def test_hidden_detections_go_back_in_place() -> None:
    dets = (Detection((0, 0, 9, 9), 0.9, 1, "person"), Detection((1, 1, 9, 9), 0.2, 1, "person"),
            Detection((2, 2, 9, 9), 0.5, 18, "dog"), Detection((3, 3, 9, 9), 0.1, 18, "dog"))
    full = ImageResult(dets, dense_captions=(DenseCaption(box_index=2, caption="a brown dog", class_name="dog",
                                                          score=0.5, box=(2, 2, 9, 9)),))
    shown, hidden = split_shown(full, 0.3)
    assert [d.score for d in shown.detections] == [0.9, 0.5] and shown.dense_captions[0].box_index == 1
    assert [k for k, _ in hidden] == [1, 3]
    assert restore_hidden(shown, hidden) == full
    assert split_shown(full, None) == (full, ())
    with pytest.raises(InputError, match=r"expected hidden detection positions in 0\.\.3"):
        restore_hidden(shown, ((1, dets[1]), (7, dets[3])))
