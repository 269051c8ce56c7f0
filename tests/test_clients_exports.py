"""clients.outputs.exports: every export of a video run parsed back with a standard reader.

results.json (schema 1.1, and 1.0 files still read), COCO (pycocotools), SRT (pysrt), WebVTT
(webvtt-py), tracks CSV (csv and pandas) and the annotated MP4 with track ids (PyAV). The cue builder's
own table tests are in ``tests/test_clients_subtitles.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from clients.outputs.annotators import class_color
from clients.outputs.exports import (
    COCO_FILE,
    SRT_FILE,
    TRACKS_COLUMNS,
    TRACKS_FILE,
    VTT_FILE,
    ExportSettings,
    format_timestamp,
    srt_text,
    write_exports,
)
from clients.outputs.subtitles import subtitle_cues
from clients.pipeline import VideoRun, analyse_video
from clients.results import SCHEMA_VERSION, Scene, VideoResults, read_results
from tests.test_clients_scenes import shots_video
from tests.test_clients_tracking import ColourClient


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> VideoRun:
    root = tmp_path_factory.mktemp("exports")
    return analyse_video(shots_video(root / "shots.mp4"), root / "out", ColourClient(), fps=2.0, batch_size=4)


def test_the_run_writes_every_file(run: VideoRun) -> None:
    out = run.results_path.parent
    names = [p.name for p in run.files]
    assert names == ["results.json", "annotated.mp4", COCO_FILE, SRT_FILE, VTT_FILE, TRACKS_FILE]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary file left behind


def test_results_json_is_versioned_and_reads_back(run: VideoRun) -> None:
    data = json.loads(run.results_path.read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    assert data["object_counts"] == {"person": 2, "dog": 2}  # a new shot: new tracks
    assert {d.get("track_id") for f in data["frames"] for d in f["detections"]} == {1, 2, 3, 4}
    assert [s["start_s"] for s in data["scenes"]] == [0.0, 2.0, 4.0]
    again = VideoResults.read(run.results_path)
    assert again.tracks == run.results.tracks and [s.caption for s in again.scenes] == ["a dog and a person",
                                                                                         "a dog", "a person"]


def test_a_1_0_file_still_reads(run: VideoRun, tmp_path: Path) -> None:
    data = json.loads(run.results_path.read_text(encoding="utf-8"))
    for key in ("object_counts", "scenes", "tracks"):
        del data[key]
    for frame in data["frames"]:
        for d in frame["detections"]:
            del d["track_id"]
    data["schema_version"] = "1.0"
    old = tmp_path / "results.json"
    old.write_text(json.dumps(data), encoding="utf-8")
    results = read_results(old)
    assert isinstance(results, VideoResults)
    assert results.schema_version == "1.0" and results.tracks == () and results.scenes == ()
    assert len(results.frames) == 12 and results.frames[0].image.detections[0].track_id is None


def test_coco_export_loads_with_pycocotools(run: VideoRun) -> None:
    coco_mod = pytest.importorskip("pycocotools.coco", reason="pip install pycocotools")
    coco = coco_mod.COCO(str(run.results_path.parent / COCO_FILE))
    frames = run.results.frames
    assert sorted(coco.getImgIds()) == list(range(1, len(frames) + 1))
    assert coco.loadCats([1, 18]) == [{"id": 1, "name": "person", "supercategory": "object"},
                                      {"id": 18, "name": "dog", "supercategory": "object"}]
    person_anns = coco.loadAnns(coco.getAnnIds(catIds=[1]))
    assert len(person_anns) == sum(d.class_name == "person" for f in frames for d in f.image.detections)
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    image = coco.loadImgs([1])[0]
    assert (image["width"], image["height"], image["timestamp_s"]) == (320, 240, 0.0)
    for ann, det in zip(sorted(first, key=lambda a: a["id"]), frames[0].image.detections, strict=True):
        x1, y1, x2, y2 = det.box
        assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
        assert ann["area"] == pytest.approx((x2 - x1) * (y2 - y1))
        assert ann["category_id"] == det.class_id and ann["track_id"] == det.track_id and ann["score"] == 0.9


def test_srt_export_reads_with_pysrt(run: VideoRun) -> None:
    pysrt = pytest.importorskip("pysrt", reason="pip install pysrt")
    subs = pysrt.open(str(run.results_path.parent / SRT_FILE), encoding="utf-8")
    assert [(s.start.ordinal, s.end.ordinal, s.text) for s in subs] == [
        (0, 2000, "a dog and a person"), (2000, 4000, "a dog"), (4000, 6000, "a person")]
    assert [s.index for s in subs] == [1, 2, 3]


def test_vtt_export_reads_with_webvtt(run: VideoRun) -> None:
    webvtt = pytest.importorskip("webvtt", reason="pip install webvtt-py")
    captions = webvtt.read(str(run.results_path.parent / VTT_FILE))
    assert [(c.identifier, c.start, c.end, c.text) for c in captions] == [
        ("scene-0-1", "00:00:00.000", "00:00:02.000", "a dog and a person"),
        ("scene-1-1", "00:00:02.000", "00:00:04.000", "a dog"),
        ("scene-2-1", "00:00:04.000", "00:00:06.000", "a person"),
    ]


def test_shorter_cues_split_the_scenes_at_sampled_frames(run: VideoRun, tmp_path: Path) -> None:
    pysrt = pytest.importorskip("pysrt", reason="pip install pysrt")
    webvtt = pytest.importorskip("webvtt", reason="pip install webvtt-py")
    paths = write_exports(run.results, tmp_path, ExportSettings(files=frozenset({SRT_FILE, VTT_FILE}), cue_s=1.0))
    assert [p.name for p in paths] == [SRT_FILE, VTT_FILE]
    subs = pysrt.open(str(tmp_path / SRT_FILE), encoding="utf-8")
    assert [(s.start.ordinal, s.end.ordinal, s.text) for s in subs] == [
        (0, 1000, "a dog and a person"), (1000, 2000, "a dog and a person"), (2000, 3000, "a dog"),
        (3000, 4000, "a dog"), (4000, 5000, "a person"), (5000, 6000, "a person")]
    assert [c.identifier for c in webvtt.read(str(tmp_path / VTT_FILE))] == [
        "scene-0-1", "scene-0-2", "scene-1-1", "scene-1-2", "scene-2-1", "scene-2-2"]


def test_tracks_csv_reads_with_csv_and_pandas(run: VideoRun) -> None:
    path = run.results_path.parent / TRACKS_FILE
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TRACKS_COLUMNS
    assert [(int(r["track_id"]), r["class_name"], float(r["first_seen_s"]), float(r["last_seen_s"]))
            for r in rows] == [(t.track_id, t.class_name, t.first_seen_s, t.last_seen_s) for t in run.results.tracks]
    pd = pytest.importorskip("pandas")
    table = pd.read_csv(path)
    assert list(table.columns) == list(TRACKS_COLUMNS) and len(table) == 4
    assert (table["duration_s"] == table["last_seen_s"] - table["first_seen_s"]).all()


def test_annotated_video_has_the_tracked_boxes(run: VideoRun) -> None:
    assert run.annotated_path is not None
    with av.open(str(run.annotated_path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(run.results.frames) and frames[0].shape == (240, 320, 3)
    det = next(d for d in run.results.frames[0].image.detections if d.class_name == "dog")
    x1, y1, _, y2 = (round(v) for v in det.box)
    edge = frames[0][(y1 + y2) // 2, max(0, x1 - 1) : x1 + 2].astype(int)  # the box's left edge, mid-height
    assert np.abs(edge - class_color(det.class_id)).sum(axis=1).min() < 60, edge


def test_subtitle_helpers() -> None:
    assert format_timestamp(3723.4567) == "01:02:03,457" and format_timestamp(0.5, ".") == "00:00:00.500"
    scenes = [Scene(0, 0.0, 1.0, 0, 2, "  two\nlines "), Scene(1, 1.0, 2.0, 2, 2, ""), Scene(2, 2.0, 2.0, 4, 1, "x")]
    cues = subtitle_cues([], scenes)  # no frames: the scene's caption; empty or zero-length: no cue
    assert srt_text(cues) == "1\n00:00:00,000 --> 00:00:01,000\ntwo lines\n"
