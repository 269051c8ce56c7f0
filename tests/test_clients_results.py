"""clients.results: parse_outputs on hand-built ensemble outputs and the results.json round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from clients.results import (
    SCHEMA_VERSION,
    DenseCaption,
    Detection,
    FrameResult,
    ImageEntry,
    ImageResult,
    ImageSetResults,
    LiveStats,
    SceneLabel,
    VideoResults,
    read_results,
)
from clients.transport.decoding import parse_outputs
from mmw.errors import InferenceError, InputError


def _outputs(counts: list[int], k: int = 3) -> dict[str, np.ndarray]:
    """Ensemble outputs for len(counts) images, detection arrays padded to max(counts) (+1 spare row)."""
    n, m = len(counts), max(counts) + 1
    boxes = np.full((n, m, 4), -1.0, np.float32)
    scores = np.full((n, m), -1.0, np.float32)
    ids = np.full((n, m), -1, np.int32)
    names = np.full((n, m), b"PAD", dtype=object)
    for i, c in enumerate(counts):
        for j in range(c):
            boxes[i, j] = (10 * j, 20, 10 * j + 5.5, 40)
            scores[i, j] = 0.9 - 0.1 * j
            ids[i, j] = 17 + j
            names[i, j] = f"thing{j}é".encode()
    return {
        "BOXES": boxes,
        "SCORES": scores,
        "CLASS_IDS": ids,
        "CLASS_NAMES": names,
        "NUM_DETECTIONS": np.array(counts, np.int32).reshape(n, 1),
        "LABELS": np.array([[f"label{i}-{r}".encode() for r in range(k)] for i in range(n)], dtype=object),
        "LABEL_SCORES": np.tile(np.linspace(0.5, 0.1, k, dtype=np.float32), (n, 1)),
        "CAPTION": np.array([[f"caption {i}".encode()] for i in range(n)], dtype=object),
        "CAPTION_SOURCE": np.array([[b"template"]] * n, dtype=object),
    }


def test_parse_outputs_trims_padding_and_decodes_bytes() -> None:
    results = parse_outputs(_outputs([2, 0, 1]))
    assert [len(r.detections) for r in results] == [2, 0, 1]
    first = results[0].detections[0]
    assert first.box == pytest.approx((0.0, 20.0, 5.5, 40.0))
    assert first.score == pytest.approx(0.9)
    assert (first.class_id, first.class_name) == (17, "thing0é")
    assert results[0].detections[1].class_name == "thing1é"
    assert all(d.class_name != "PAD" for r in results for d in r.detections)
    assert [lab.name for lab in results[2].labels] == ["label2-0", "label2-1", "label2-2"]
    assert results[2].labels[0].score == pytest.approx(0.5)
    assert results[1].caption == "caption 1"
    assert results[1].caption_source == "template"
    assert isinstance(results[0].detections, tuple)


def test_parse_outputs_without_any_detection() -> None:
    out = _outputs([0, 0])
    out["BOXES"] = np.zeros((2, 0, 4), np.float32)
    out["SCORES"] = np.zeros((2, 0), np.float32)
    out["CLASS_IDS"] = np.zeros((2, 0), np.int32)
    out["CLASS_NAMES"] = np.zeros((2, 0), dtype=object)
    results = parse_outputs(out)
    assert [r.detections for r in results] == [(), ()]


def test_parse_outputs_reads_the_per_image_error() -> None:
    out = _outputs([1, 2, 0])
    out["ERROR"] = np.array([[b""], [b"IMAGE[1]: image: expected JPEG or PNG bytes"], [b""]], dtype=object)
    results = parse_outputs(out)
    assert [r.error for r in results] == ["", "IMAGE[1]: image: expected JPEG or PNG bytes", ""]
    assert results[1] == ImageResult(error="IMAGE[1]: image: expected JPEG or PNG bytes")
    assert len(results[0].detections) == 1 and results[0].caption == "caption 0"
    assert [r.error for r in parse_outputs(_outputs([1, 2]))] == ["", ""]  # an older server: no ERROR output
    out["ERROR"] = np.array([[b""]], dtype=object)
    with pytest.raises(InferenceError, match=r"ERROR expected shape \[3, 1\]"):
        parse_outputs(out)


def test_image_error_round_trips_and_is_left_out_when_empty(tmp_path: Path) -> None:
    assert "error" not in ImageResult(caption="a cat").to_dict()
    entry = ImageEntry("bad.jpg", 60, 40, ImageResult(error="IMAGE[0]: image: 5 bytes could not be decoded"), None)
    results = ImageSetResults(images=[entry], models={})
    path = results.write(tmp_path / "results.json")
    assert json.loads(path.read_text())["images"][0]["error"] == "IMAGE[0]: image: 5 bytes could not be decoded"
    assert ImageSetResults.read(path) == results


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.pop("CAPTION"), "expected outputs CAPTION"),
        (lambda o: o.update(NUM_DETECTIONS=np.array([[9], [0]], np.int32)), r"NUM_DETECTIONS\[0\] = 9"),
        (lambda o: o.update(BOXES=np.zeros((2, 3, 5), np.float32)), "BOXES expected shape"),
        (lambda o: o.update(SCORES=np.zeros((3, 3), np.float32)), "SCORES expected shape"),
    ],
    ids=["missing-output", "count-too-large", "box-width", "batch-mismatch"],
)
def test_parse_outputs_rejects_malformed(change, message: str) -> None:
    out = _outputs([2, 0])
    change(out)
    with pytest.raises(InferenceError, match=message):
        parse_outputs(out)


def _video_results() -> VideoResults:
    image = ImageResult(
        detections=[Detection((1.25, 2.5, 30.0, 40.75), 0.9312, 1, "person"), Detection((0, 0, 5, 5), 0.5, 17, "cat")],
        labels=[SceneLabel("cab", 0.4121), SceneLabel("street sign", 0.1)],
        caption="A person next to a cab — «quoted» [1,2]",
        caption_source="template",
    )
    frames = [FrameResult(0, 0.0, image), FrameResult(5, 0.5, ImageResult()), FrameResult(10, 1.0, image)]
    return VideoResults(
        source="clip.mp4",
        fps_sampled=2.0,
        width=640,
        height=480,
        duration_s=8.0,
        frames=frames,
        models={"ensemble": "scene_understanding", "versions": ["1"]},
    )


def test_video_results_json_round_trip(tmp_path: Path) -> None:
    results = _video_results()
    assert VideoResults.from_json(results.to_json()) == results
    path = results.write(tmp_path / "out" / "results.json")
    assert VideoResults.read(path) == results
    assert read_results(path) == results
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left behind
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    assert data["kind"] == "video"
    assert data["frames"][0]["detections"][0] == {
        "box": [1.25, 2.5, 30.0, 40.75],
        "score": 0.9312,
        "class_id": 1,
        "class_name": "person",
    }
    assert data["frames"][0]["caption"] == "A person next to a cab — «quoted» [1,2]"


def test_json_rounds_numbers() -> None:
    frame = FrameResult(3, 1.23456789, ImageResult([Detection((1.23456, 2, 3, 4), 0.876543219, 1, "person")]))
    data = json.loads(
        VideoResults(source="s", fps_sampled=1, width=1, height=1, duration_s=1, frames=[frame]).to_json()
    )
    assert data["frames"][0]["timestamp_s"] == 1.235
    assert data["frames"][0]["detections"][0]["box"][0] == 1.23
    assert data["frames"][0]["detections"][0]["score"] == 0.8765


def test_image_set_results_round_trip(tmp_path: Path) -> None:
    entry = ImageEntry("a.jpg", 60, 40, ImageResult([Detection((1, 2, 3, 4), 0.5, 17, "cat")]), "a.annotated.png")
    results = ImageSetResults(images=[entry], models={}, complete=False, error="stopped")
    path = results.write(tmp_path / "results.json")
    assert ImageSetResults.read(path) == results
    assert read_results(path) == results


@pytest.mark.parametrize("version", ["2.0", "0.9", None, 1.0])
def test_schema_version_is_checked(version: object) -> None:
    data = json.loads(_video_results().to_json())
    data["schema_version"] = version
    with pytest.raises(InputError, match=r"schema_version .* not supported"):
        VideoResults.from_json(json.dumps(data))


def test_newer_minor_version_is_accepted() -> None:
    data = json.loads(_video_results().to_json())
    data["schema_version"] = "1.7"
    data["new_field"] = "ignored"
    assert VideoResults.from_json(json.dumps(data)).schema_version == "1.7"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("width"), r"results\.width: missing"),
        (lambda d: d["frames"][0].update(index="zero"), r"frames\[0\]\.index: expected int"),
        (lambda d: d["frames"][0]["detections"][0].update(box=[1, 2]), r"detections\[0\]\.box: expected 4 numbers"),
        (lambda d: d.update(kind="images"), "expected results of kind 'video'"),
    ],
)
def test_invalid_results_name_the_field(change, message: str) -> None:
    data = json.loads(_video_results().to_json())
    change(data)
    with pytest.raises(InputError, match=message):
        VideoResults.from_json(json.dumps(data))


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        VideoResults.read(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        read_results(bad)


def test_several_problems_name_the_first_and_count_the_rest() -> None:
    data = json.loads(_video_results().to_json())
    data["frames"][0]["index"] = "zero"
    data["frames"][2]["detections"][1]["score"] = True
    first = r"results\.frames\[0\]\.index: expected int, got str 'zero'"
    with pytest.raises(InputError, match=rf"^{first} \(and 1 more error\)$"):
        VideoResults.from_dict(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["frames"][0].update(timestamp_s=True), r"frames\[0\]\.timestamp_s: expected a number, got bool"),
        (lambda d: d["frames"][0]["detections"][0].update(class_id=1.0), r"class_id: expected int, got float 1\.0"),
        (lambda d: d.update(complete="yes"), r"results\.complete: expected bool, got str 'yes'"),
        (lambda d: d.update(error=3), r"results\.error: expected a string or null, got int 3"),
        (lambda d: d["frames"][1].pop("caption"), r"frames\[1\]\.caption: missing \(expected str\)"),
        (lambda d: d["frames"].__setitem__(1, []), r"frames\[1\]: expected a JSON object, got list"),
    ],
    ids=["bool-for-number", "float-for-int", "string-for-bool", "int-for-string", "missing-caption", "not-object"],
)
def test_results_are_read_with_json_types(change, message: str) -> None:
    data = json.loads(_video_results().to_json())
    change(data)
    with pytest.raises(InputError, match=message):
        VideoResults.from_dict(data)


def test_records_are_checked_when_built() -> None:
    det = Detection(np.array([1, 2, 3, 4], np.float32).tolist(), np.float32(0.5), np.int32(17), "cat")  # type: ignore[arg-type]
    assert det == Detection((1.0, 2.0, 3.0, 4.0), 0.5, 17, "cat") and type(det.class_id) is int
    assert isinstance(det.box, tuple) and hash(det) == hash(Detection((1, 2, 3, 4), 0.5, 17, "cat"))
    assert dataclasses.replace(det, track_id=np.int64(3)).track_id == 3  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.score = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Unexpected keyword argument"):
        Detection((1, 2, 3, 4), 0.5, 17, "cat", trackid=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"expected 4 numbers \[x1, y1, x2, y2\], got \(1, 2\)"):
        Detection((1, 2), 0.5, 17, "cat")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"expected 0\.\.-1 \(an index into detections\), got 0"):
        ImageResult(dense_captions=(DenseCaption(0, "a cat", "cat", 0.5, (1, 2, 3, 4)),))
    dog = Detection((5, 5, 9, 9), 0.9, 18, "dog")
    image = ImageResult((det, dog), (SceneLabel("lawn", 0.5),), "a cat", "tiny-blip",
                        dense_captions=(DenseCaption(1, "a dog", "dog", 0.9, dog.box),))
    assert image.keep_detections([1]).dense_captions[0].box_index == 0 and image.neural
    assert LiveStats.from_dict(LiveStats(9, 3, 1, 2, 1.5, "seconds").to_dict(), "live").frames_dropped == 1
    with pytest.raises(InputError, match=r"^live\.wall_s: expected a number, got str '1'$"):
        LiveStats.from_dict(LiveStats(9, 3, 1, 2, 1.5, "seconds").to_dict() | {"wall_s": "1"}, "live")
