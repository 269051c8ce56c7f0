"""results.json schema: the shipped JSON Schema is current and agrees with the reader; real 1.0, 1.1 and 1.2 files load.

The files below were written by the writers of commits 33dc84a (schema 1.0), c1a64b8 (1.1, with the per-image
``error``) and 896875f (1.2, the last hand-written one) from the same results: a live video run with tracks,
scenes, dense captions and a frame the server could not analyse, and an image run with one bad image.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clients.results import (
    ImageSetResults,
    VideoResults,
    read_results,
    results_json_schema,
    results_schema_text,
)
from clients.results.files import main
from mmw.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "docs" / "results.schema.json"

V1_0_VIDEO = (
    '{"schema_version": "1.0", "kind": "video", "source": "videos/street.mp4", "width": 640, "height": 480, "dura'
    'tion_s": 1.5, "fps_sampled": 2.0, "complete": false, "error": "stopped", "models": {"ensemble": "scene_under'
    'standing", "versions": ["1"]}, "frames": [{"index": 0, "timestamp_s": 0.0, "detections": [{"box": [12.5, 40.'
    '0, 210.25, 470.0], "score": 0.9312, "class_id": 1, "class_name": "person"}, {"box": [300.0, 200.12, 360.5, 2'
    '80.0], "score": 0.5, "class_id": 3, "class_name": "car"}], "labels": [{"name": "cab", "score": 0.4121}, {"na'
    'me": "street sign", "score": 0.1}], "caption": "A person next to a cab.", "caption_source": "template"}, {"i'
    'ndex": 12, "timestamp_s": 0.5, "detections": [{"box": [12.5, 40.0, 210.25, 470.0], "score": 0.9312, "class_i'
    'd": 1, "class_name": "person"}], "labels": [{"name": "cab", "score": 0.4}], "caption": "A person.", "caption'
    '_source": "template"}]}'
)
V1_0_IMAGES = (
    '{"schema_version": "1.0", "kind": "images", "complete": true, "error": null, "models": {"ensemble": "scene_u'
    'nderstanding"}, "images": [{"source": "photos/cat.jpg", "width": 451, "height": 300, "annotated": "cat.annot'
    'ated.png", "detections": [{"box": [140.0, 20.5, 350.0, 290.0], "score": 0.88, "class_id": 17, "class_name": '
    '"cat"}], "labels": [{"name": "tabby", "score": 0.61}], "caption": "A cat.", "caption_source": "template"}]}'
)
V1_1_VIDEO = (
    '{"schema_version": "1.1", "kind": "video", "source": "videos/street.mp4", "width": 640, "height": 480, "dura'
    'tion_s": 1.5, "fps_sampled": 2.0, "complete": false, "error": "stopped", "models": {"ensemble": "scene_under'
    'standing", "versions": ["1"]}, "live": {"frames_decoded": 40, "frames_sampled": 3, "frames_dropped": 0, "fra'
    'mes_analysed": 3, "wall_s": 1.235, "stop_reason": "end of stream"}, "object_counts": {"person": 1}, "scenes"'
    ': [{"index": 0, "start_s": 0.0, "end_s": 1.0, "first_frame": 0, "frames": 2, "caption": "A person next to a '
    'cab.", "objects": ["car", "person"], "label": "cab", "cut_score": null}, {"index": 1, "start_s": 1.0, "end_s'
    '": 1.5, "first_frame": 2, "frames": 1, "caption": "", "objects": [], "label": "", "cut_score": 0.5123}], "tr'
    'acks": [{"track_id": 1, "class_id": 1, "class_name": "person", "first_seen_s": 0.0, "last_seen_s": 0.5, "fra'
    'mes": 2, "best_score": 0.9312}], "frames": [{"index": 0, "timestamp_s": 0.0, "detections": [{"box": [12.5, 4'
    '0.0, 210.25, 470.0], "score": 0.9312, "class_id": 1, "class_name": "person", "track_id": 1}, {"box": [300.0,'
    ' 200.12, 360.5, 280.0], "score": 0.5, "class_id": 3, "class_name": "car"}], "labels": [{"name": "cab", "scor'
    'e": 0.4121}, {"name": "street sign", "score": 0.1}], "caption": "A person next to a cab.", "caption_source":'
    ' "template"}, {"index": 12, "timestamp_s": 0.5, "detections": [{"box": [12.5, 40.0, 210.25, 470.0], "score":'
    ' 0.9312, "class_id": 1, "class_name": "person", "track_id": 1}], "labels": [{"name": "cab", "score": 0.4}], '
    '"caption": "A person.", "caption_source": "template"}, {"index": 24, "timestamp_s": 1.0, "detections": [], "'
    'labels": [], "caption": "", "caption_source": "", "error": "IMAGE[2]: image: expected JPEG or PNG bytes, got'
    ' 10 bytes that do not decode as an image"}]}'
)
V1_1_IMAGES = (
    '{"schema_version": "1.1", "kind": "images", "complete": true, "error": null, "models": {"ensemble": "scene_u'
    'nderstanding"}, "images": [{"source": "photos/cat.jpg", "width": 451, "height": 300, "annotated": "cat.annot'
    'ated.png", "detections": [{"box": [140.0, 20.5, 350.0, 290.0], "score": 0.88, "class_id": 17, "class_name": '
    '"cat"}], "labels": [{"name": "tabby", "score": 0.61}], "caption": "A cat.", "caption_source": "template"}, {'
    '"source": "photos/bad.jpg", "width": 0, "height": 0, "annotated": null, "detections": [], "labels": [], "cap'
    'tion": "", "caption_source": "", "error": "IMAGE[1]: not an image"}]}'
)
V1_2_IMAGES = (
    '{"schema_version": "1.2", "kind": "images", "complete": true, "error": null, "models": {"ensemble": "scene_u'
    'nderstanding"}, "captions": {"source": "Salesforce/blip-image-captioning-base", "note": "neural captions by '
    'Salesforce/blip-image-captioning-base (1 dense caption of detected objects)", "sources": ["Salesforce/blip-i'
    'mage-captioning-base"], "dense_captions": 1}, "images": [{"source": "photos/cat.jpg", "width": 451, "height"'
    ': 300, "annotated": "cat.annotated.png", "detections": [{"box": [140.0, 20.5, 350.0, 290.0], "score": 0.88, '
    '"class_id": 17, "class_name": "cat"}], "labels": [{"name": "tabby", "score": 0.61}], "caption": "A cat.", "c'
    'aption_source": "Salesforce/blip-image-captioning-base", "dense_captions": [{"box_index": 0, "caption": "a t'
    'abby cat", "class_name": "cat", "score": 0.88, "box": [140.0, 20.5, 350.0, 290.0]}]}, {"source": "photos/bad'
    '.jpg", "width": 0, "height": 0, "annotated": null, "detections": [], "labels": [], "caption": "", "caption_s'
    'ource": "", "dense_captions": [], "error": "IMAGE[1]: not an image"}]}'
)

V1_2_VIDEO = '''\
{
  "schema_version": "1.2",
  "kind": "video",
  "source": "videos/street.mp4",
  "width": 640,
  "height": 480,
  "duration_s": 1.5,
  "fps_sampled": 2.0,
  "complete": false,
  "error": "stopped",
  "models": {
    "ensemble": "scene_understanding",
    "versions": [
      "1"
    ]
  },
  "live": {
    "frames_decoded": 40,
    "frames_sampled": 3,
    "frames_dropped": 0,
    "frames_analysed": 3,
    "wall_s": 1.235,
    "stop_reason": "end of stream"
  },
  "captions": {
    "source": "Salesforce/blip-image-captioning-base",
    "note": "neural captions by Salesforce/blip-image-captioning-base (1 dense caption of detected objects)",
    "sources": [
      "Salesforce/blip-image-captioning-base"
    ],
    "dense_captions": 1
  },
  "object_counts": {
    "person": 1
  },
  "scenes": [
    {
      "index": 0,
      "start_s": 0.0,
      "end_s": 1.0,
      "first_frame": 0,
      "frames": 2,
      "caption": "A person next to a cab.",
      "objects": [
        "car",
        "person"
      ],
      "label": "cab",
      "cut_score": null
    },
    {
      "index": 1,
      "start_s": 1.0,
      "end_s": 1.5,
      "first_frame": 2,
      "frames": 1,
      "caption": "",
      "objects": [],
      "label": "",
      "cut_score": 0.5123
    }
  ],
  "tracks": [
    {
      "track_id": 1,
      "class_id": 1,
      "class_name": "person",
      "first_seen_s": 0.0,
      "last_seen_s": 0.5,
      "frames": 2,
      "best_score": 0.9312
    }
  ],
  "frames": [
    {
      "index": 0,
      "timestamp_s": 0.0,
      "detections": [
        {
          "box": [12.5, 40.0, 210.25, 470.0],
          "score": 0.9312,
          "class_id": 1,
          "class_name": "person",
          "track_id": 1
        },
        {
          "box": [300.0, 200.12, 360.5, 280.0],
          "score": 0.5,
          "class_id": 3,
          "class_name": "car"
        }
      ],
      "labels": [
        {
          "name": "cab",
          "score": 0.4121
        },
        {
          "name": "street sign",
          "score": 0.1
        }
      ],
      "caption": "A person next to a cab.",
      "caption_source": "Salesforce/blip-image-captioning-base",
      "dense_captions": [
        {
          "box_index": 0,
          "caption": "a man in a black jacket",
          "class_name": "person",
          "score": 0.9312,
          "box": [12.5, 40.0, 210.25, 470.0],
          "tokens": [1037, 2158]
        }
      ],
      "caption_tokens": [1037, 2158, 3061]
    },
    {
      "index": 12,
      "timestamp_s": 0.5,
      "detections": [
        {
          "box": [12.5, 40.0, 210.25, 470.0],
          "score": 0.9312,
          "class_id": 1,
          "class_name": "person",
          "track_id": 1
        }
      ],
      "labels": [
        {
          "name": "cab",
          "score": 0.4
        }
      ],
      "caption": "A person.",
      "caption_source": "Salesforce/blip-image-captioning-base",
      "dense_captions": []
    },
    {
      "index": 24,
      "timestamp_s": 1.0,
      "detections": [],
      "labels": [],
      "caption": "",
      "caption_source": "",
      "dense_captions": [],
      "error": "IMAGE[2]: image: expected JPEG or PNG bytes, got 10 bytes that do not decode as an image"
    }
  ]
}
'''

FILES = {("1.0", "video"): V1_0_VIDEO, ("1.0", "images"): V1_0_IMAGES, ("1.1", "video"): V1_1_VIDEO,
         ("1.1", "images"): V1_1_IMAGES, ("1.2", "video"): V1_2_VIDEO, ("1.2", "images"): V1_2_IMAGES}
KINDS: dict[str, type[VideoResults] | type[ImageSetResults]] = {"video": VideoResults, "images": ImageSetResults}

# One of each object of a 1.2 file: its path in the file, where it is, its schema definition.
Getter = Callable[[dict[str, Any]], dict[str, Any]]
OBJECTS: list[tuple[str, str, Getter, str]] = [
    ("video", "results", lambda d: d, "VideoResults"),
    ("video", "results.live", lambda d: d["live"], "LiveStats"),
    ("video", "results.scenes[0]", lambda d: d["scenes"][0], "Scene"),
    ("video", "results.tracks[0]", lambda d: d["tracks"][0], "Track"),
    ("video", "results.frames[0]", lambda d: d["frames"][0], "FrameResult"),
    ("video", "results.frames[0].detections[0]", lambda d: d["frames"][0]["detections"][0], "Detection"),
    ("video", "results.frames[0].labels[0]", lambda d: d["frames"][0]["labels"][0], "SceneLabel"),
    ("video", "results.frames[0].dense_captions[0]", lambda d: d["frames"][0]["dense_captions"][0], "DenseCaption"),
    ("images", "results", lambda d: d, "ImageSetResults"),
    ("images", "results.images[0]", lambda d: d["images"][0], "ImageEntry"),
]


def _definition(name: str) -> tuple[dict[str, Any], set[str]]:
    """Properties and required names of a definition of the shipped schema, with those it extends (allOf)."""
    defs = json.loads(SHIPPED.read_text(encoding="utf-8"))["$defs"]
    definition = defs[name]
    props, required = dict(definition["properties"]), set(definition.get("required", ()))
    for part in definition.get("allOf", ()):
        base_props, base_required = _definition(part["$ref"].rsplit("/", 1)[1])
        props |= base_props
        required |= base_required
    return props, required


def test_shipped_schema_is_current() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == results_schema_text(), (
        "docs/results.schema.json is stale: run "
        "`python -m clients.results --schema --out docs/results.schema.json`")
    schema = results_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert [a["$ref"] for a in schema["anyOf"]] == ["#/$defs/VideoResults", "#/$defs/ImageSetResults"]


def test_schema_generator(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main(["--schema", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == results_schema_text()
    printed = subprocess.run([sys.executable, "-m", "clients.results", "--schema"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert printed == results_schema_text()


@pytest.mark.parametrize(("version", "kind"), sorted(FILES), ids=lambda v: str(v))
def test_real_files_load(version: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(FILES[version, kind], encoding="utf-8")
    results = read_results(path)
    assert isinstance(results, KINDS[kind]) and results.schema_version == version
    if isinstance(results, VideoResults):
        images = [f.image for f in results.frames]
    else:
        images = [e.image for e in results.images]
    assert images[0].detections[0].box[1] in (40.0, 20.5) and images[0].labels and images[0].caption
    assert [bool(i.error) for i in images] == [False] * (2 if kind == "video" else 1) + [True] * (version > "1.0")
    assert any(i.dense_captions for i in images) == (version == "1.2")
    assert any(i.caption_tokens for i in images) == (version == "1.2" and kind == "video")
    if isinstance(results, VideoResults):
        assert results.frames[1].index == 12 and results.frames[1].timestamp_s == 0.5 and not results.complete
        assert (len(results.tracks), len(results.scenes), results.live is not None) == (
            (0, 0, False) if version == "1.0" else (1, 2, True))
        assert results.frames[0].image.detections[0].track_id == (None if version == "1.0" else 1)
        assert results.object_counts == ({} if version == "1.0" else {"person": 1})
    else:
        assert results.images[0].annotated == "cat.annotated.png" and results.images[0].width == 451
    assert KINDS[kind].from_json(results.to_json()) == results


@pytest.mark.parametrize("kind", ["video", "images"])
def test_1_2_files_are_written_back_byte_for_byte(kind: str) -> None:
    text = FILES["1.2", kind]
    results = KINDS[kind].from_json(text)
    if kind == "video":  # the written layout: indented, lists of numbers on one line
        assert results.to_json() == text
    else:
        assert results.to_json(indent=None) == text + "\n"


@pytest.mark.parametrize(("kind", "path", "get", "definition"), OBJECTS, ids=[o[1] + " " + o[3] for o in OBJECTS])
def test_schema_says_what_the_reader_requires(kind: str, path: str, get: Getter, definition: str) -> None:
    data = json.loads(FILES["1.2", kind])
    props, required = _definition(definition)
    assert set(get(data)) <= set(props), "the file has fields the schema does not describe"
    for name in props:
        changed = copy.deepcopy(data)
        get(changed).pop(name, None)
        if name not in required:
            KINDS[kind].from_dict(changed)
            continue
        message = {"kind": "expected results of kind", "schema_version": "schema_version None is not supported"}
        with pytest.raises(InputError, match=re.escape(message.get(name, f"{path}.{name}: missing (expected "))):
            KINDS[kind].from_dict(changed)


@pytest.mark.parametrize(("kind", "path", "get", "definition"), OBJECTS, ids=[o[1] + " " + o[3] for o in OBJECTS])
def test_fields_of_later_minor_versions_are_ignored(kind: str, path: str, get: Getter, definition: str) -> None:
    data = json.loads(FILES["1.2", kind])
    get(data)["added_in_1_9"] = {"anything": [1, "two"]}
    assert KINDS[kind].from_dict(data) == KINDS[kind].from_json(FILES["1.2", kind])


@pytest.mark.parametrize(("version", "kind"), sorted(FILES), ids=lambda v: str(v))
def test_real_files_match_the_schema(version: str, kind: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = json.loads(FILES[version, kind])
    assert not list(validator.iter_errors(data))
    data["kind"] = "movie"
    assert list(validator.iter_errors(data))
