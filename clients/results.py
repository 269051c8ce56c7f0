"""Typed results of the ``scene_understanding`` ensemble and the ``results.json`` file.

``parse_outputs`` turns the ensemble's output arrays into ``ImageResult`` objects; ``VideoResults``
and ``ImageSetResults`` are the two kinds of ``results.json`` (see ``clients/RESULTS_SCHEMA.md``).
Schema 1.1 adds ``Track``, ``Scene`` and ``LiveStats`` to video results (made by ``clients.tracking``,
``clients.scenes`` and ``clients.live``); 1.0 files still read, with no tracks or scenes. Schema 1.2 adds
``DenseCaption`` (one caption per captioned detection), the frame caption's tokens and the top-level
``captions`` block (``caption_summary``: template or which model); 1.1 files read with no dense captions.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmw import contract
from mmw.contract import CLIENT_REQUIRED_OUTPUTS, TEMPLATE_SOURCE
from mmw.errors import InferenceError, InputError

SCHEMA_VERSION = "1.2"

NEURAL_CAPTIONS_DOC = "README.md#neural-captions"
TEMPLATE_NOTE = (f"template captions: no captioning model is configured (models.caption.model); "
                 f"see {NEURAL_CAPTIONS_DOC}")

_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# An indented list of numbers; the newline after "[" cannot occur inside a JSON string.
_NUMBER_LIST = re.compile(rf"\[\n\s*({_NUMBER}(?:,\n\s*{_NUMBER})*)\n\s*\]")

# Decimals kept in results.json: pixels, scores, seconds.
_BOX_DECIMALS = 2
_SCORE_DECIMALS = 4
_TIME_DECIMALS = 3


@dataclass(frozen=True)
class Detection:
    """One detected object: ``box`` is (x1, y1, x2, y2) in pixels of the image that was sent.

    ``track_id`` (video only, schema 1.1) names the track the object belongs to; None when it has none.
    """

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str
    track_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "box": [round(float(v), _BOX_DECIMALS) for v in self.box],
            "score": round(float(self.score), _SCORE_DECIMALS),
            "class_id": int(self.class_id),
            "class_name": self.class_name,
        }
        return d if self.track_id is None else d | {"track_id": int(self.track_id)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Detection:
        d = _mapping(data, where)
        return cls(
            box=_box(d, where),
            score=_number(d, "score", where),
            class_id=_get(d, "class_id", int, where),
            class_name=_get(d, "class_name", str, where),
            track_id=_get(d, "track_id", int, where) if d.get("track_id") is not None else None,
        )


@dataclass(frozen=True)
class SceneLabel:
    """An ImageNet label of the whole image with its probability."""

    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(float(self.score), _SCORE_DECIMALS)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SceneLabel:
        d = _mapping(data, where)
        return cls(name=_get(d, "name", str, where), score=_number(d, "score", where))


@dataclass(frozen=True)
class DenseCaption:
    """A caption of one detected object (schema 1.2): ``box_index`` is its position in the image's detections.

    ``class_name``, ``score`` and ``box`` repeat that detection's so the caption reads on its own;
    ``tokens`` are the captioner's token ids (empty when unknown).
    """

    box_index: int
    caption: str
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "tokens", tuple(int(t) for t in self.tokens))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "box_index": int(self.box_index),
            "caption": self.caption,
            "class_name": self.class_name,
            "score": round(float(self.score), _SCORE_DECIMALS),
            "box": [round(float(v), _BOX_DECIMALS) for v in self.box],
        }
        return d | {"tokens": list(self.tokens)} if self.tokens else d

    @classmethod
    def from_dict(cls, data: Any, where: str) -> DenseCaption:
        d = _mapping(data, where)
        box = _box(d, where)
        tokens = _list(d, "tokens", where)
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
            raise InputError(f"{where}.tokens: expected a list of token ids (integers >= 0), got {tokens!r}")
        return cls(
            box_index=_get(d, "box_index", int, where),
            caption=_get(d, "caption", str, where),
            class_name=_get(d, "class_name", str, where),
            score=_number(d, "score", where),
            box=box,
            tokens=tuple(tokens),
        )


@dataclass(frozen=True)
class ImageResult:
    """Everything the ensemble says about one image; ``error`` says why it could not be analysed ("" when it was).

    ``dense_captions`` (schema 1.2) caption some of the detections (a neural captioner's best-scored
    ones; none with template captions); ``caption_tokens`` are the frame caption's token ids (empty for
    template captions).
    """

    detections: tuple[Detection, ...] = ()
    labels: tuple[SceneLabel, ...] = ()
    caption: str = ""
    caption_source: str = ""
    error: str = ""
    dense_captions: tuple[DenseCaption, ...] = ()
    caption_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "detections", tuple(self.detections))
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "dense_captions", tuple(self.dense_captions))
        object.__setattr__(self, "caption_tokens", tuple(int(t) for t in self.caption_tokens))

    @property
    def neural(self) -> bool:
        """True when a captioning model (not the template) wrote the caption."""
        return bool(self.caption_source) and self.caption_source != TEMPLATE_SOURCE

    def dense_caption_of(self, box_index: int) -> str:
        """The dense caption of detection ``box_index`` ("" when it has none)."""
        return next((c.caption for c in self.dense_captions if c.box_index == box_index), "")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "detections": [d.to_dict() for d in self.detections],
            "labels": [lab.to_dict() for lab in self.labels],
            "caption": self.caption,
            "caption_source": self.caption_source,
            "dense_captions": [c.to_dict() for c in self.dense_captions],
        }
        if self.caption_tokens:
            data["caption_tokens"] = list(self.caption_tokens)
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ImageResult:
        d = _mapping(data, where)
        dets = _get(d, "detections", list, where)
        labels = _get(d, "labels", list, where)
        dense = tuple(DenseCaption.from_dict(x, f"{where}.dense_captions[{i}]")
                      for i, x in enumerate(_list(d, "dense_captions", where)))
        for i, c in enumerate(dense):
            if not 0 <= c.box_index < len(dets):
                raise InputError(f"{where}.dense_captions[{i}].box_index: expected 0..{len(dets) - 1} "
                                 f"(an index into detections), got {c.box_index}")
        tokens = _list(d, "caption_tokens", where)
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
            raise InputError(f"{where}.caption_tokens: expected a list of token ids (integers >= 0), got {tokens!r}")
        return cls(
            detections=tuple(Detection.from_dict(x, f"{where}.detections[{i}]") for i, x in enumerate(dets)),
            labels=tuple(SceneLabel.from_dict(x, f"{where}.labels[{i}]") for i, x in enumerate(labels)),
            caption=_get(d, "caption", str, where),
            caption_source=_get(d, "caption_source", str, where),
            error=_get(d, "error", str, where) if "error" in d else "",
            dense_captions=dense,
            caption_tokens=tuple(tokens),
        )

    def keep_detections(self, keep: list[int]) -> ImageResult:
        """This result with only the detections at positions ``keep`` (in order); dense captions follow them."""
        new_index = {old: new for new, old in enumerate(keep)}
        dense = tuple(replace(c, box_index=new_index[c.box_index]) for c in self.dense_captions
                      if c.box_index in new_index)
        return replace(self, detections=tuple(self.detections[k] for k in keep), dense_captions=dense)


@dataclass(frozen=True)
class CaptionSummary:
    """How the captions of a results file were made (top-level ``captions``, schema 1.2): derived from the frames.

    ``source`` is ``"template"``, the captioning model's name, ``"mixed"`` (several; see ``sources``),
    or ``""`` when no image got a caption; ``note`` says it in one line.
    """

    source: str
    note: str
    sources: tuple[str, ...] = ()
    dense_captions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "note": self.note, "sources": list(self.sources),
                "dense_captions": int(self.dense_captions)}


def caption_summary(results: Iterable[ImageResult]) -> CaptionSummary:
    """Which captioner wrote the captions of ``results`` and a one-line note about it."""
    items = list(results)
    sources = tuple(dict.fromkeys(r.caption_source for r in items if r.caption_source))
    dense = sum(len(r.dense_captions) for r in items)
    if not sources:
        return CaptionSummary("", "no captions: no image was analysed", (), dense)
    if sources == (TEMPLATE_SOURCE,):
        return CaptionSummary(TEMPLATE_SOURCE, TEMPLATE_NOTE, sources, dense)
    plural = "s" if dense != 1 else ""
    if len(sources) == 1:
        note = f"neural captions by {sources[0]} ({dense} dense caption{plural} of detected objects)"
        return CaptionSummary(sources[0], note, sources, dense)
    return CaptionSummary("mixed", f"captions from several sources: {', '.join(sources)} "
                                   f"({dense} dense caption{plural})", sources, dense)


@dataclass(frozen=True)
class FrameResult:
    """The result of one sampled video frame: ``index`` is the frame's number in the decoded stream."""

    index: int
    timestamp_s: float
    image: ImageResult

    def to_dict(self) -> dict[str, Any]:
        return {"index": int(self.index), "timestamp_s": round(float(self.timestamp_s), _TIME_DECIMALS)} | (
            self.image.to_dict()
        )

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FrameResult:
        d = _mapping(data, where)
        return cls(
            index=_get(d, "index", int, where),
            timestamp_s=_number(d, "timestamp_s", where),
            image=ImageResult.from_dict(d, where),
        )


@dataclass(frozen=True)
class ImageEntry:
    """The result of one input image of the ``image`` command."""

    source: str
    width: int
    height: int
    image: ImageResult
    annotated: str | None = None

    def to_dict(self) -> dict[str, Any]:
        head = {"source": self.source, "width": int(self.width), "height": int(self.height)}
        return head | {"annotated": self.annotated} | self.image.to_dict()

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ImageEntry:
        d = _mapping(data, where)
        annotated = d.get("annotated")
        if annotated is not None and not isinstance(annotated, str):
            raise InputError(f"{where}.annotated: expected a string or null, got {annotated!r}")
        return cls(
            source=_get(d, "source", str, where),
            width=_get(d, "width", int, where),
            height=_get(d, "height", int, where),
            image=ImageResult.from_dict(d, where),
            annotated=annotated,
        )


@dataclass(frozen=True)
class Track:
    """One object followed across sampled frames (``clients.tracking``): its class is the one it was
    detected as most often (weighted by score); times are the first and last sampled frames it was in."""

    track_id: int
    class_id: int
    class_name: str
    first_seen_s: float
    last_seen_s: float
    frames: int  # sampled frames in which it was detected
    best_score: float

    @property
    def duration_s(self) -> float:
        return self.last_seen_s - self.first_seen_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": int(self.track_id),
            "class_id": int(self.class_id),
            "class_name": self.class_name,
            "first_seen_s": round(float(self.first_seen_s), _TIME_DECIMALS),
            "last_seen_s": round(float(self.last_seen_s), _TIME_DECIMALS),
            "frames": int(self.frames),
            "best_score": round(float(self.best_score), _SCORE_DECIMALS),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Track:
        d = _mapping(data, where)
        return cls(
            track_id=_get(d, "track_id", int, where),
            class_id=_get(d, "class_id", int, where),
            class_name=_get(d, "class_name", str, where),
            first_seen_s=_number(d, "first_seen_s", where),
            last_seen_s=_number(d, "last_seen_s", where),
            frames=_get(d, "frames", int, where),
            best_score=_number(d, "best_score", where),
        )


@dataclass(frozen=True)
class Scene:
    """Consecutive sampled frames of one shot (``clients.scenes``): [start_s, end_s) and one caption.

    ``first_frame`` and ``frames`` locate its sampled frames in ``VideoResults.frames`` (position of the
    first one, count); ``cut_score`` is the visual change that opened it (None for the first scene or
    when the scene was found from labels alone).
    """

    index: int
    start_s: float
    end_s: float
    first_frame: int
    frames: int
    caption: str
    objects: tuple[str, ...] = ()  # class names detected in any of its frames, sorted
    label: str = ""  # its most frequent best scene label
    cut_score: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": int(self.index),
            "start_s": round(float(self.start_s), _TIME_DECIMALS),
            "end_s": round(float(self.end_s), _TIME_DECIMALS),
            "first_frame": int(self.first_frame),
            "frames": int(self.frames),
            "caption": self.caption,
            "objects": list(self.objects),
            "label": self.label,
            "cut_score": None if self.cut_score is None else round(float(self.cut_score), _SCORE_DECIMALS),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Scene:
        d = _mapping(data, where)
        objects = _get(d, "objects", list, where)
        if not all(isinstance(o, str) for o in objects):
            raise InputError(f"{where}.objects: expected a list of class names, got {objects!r}")
        cut = d.get("cut_score")
        if cut is not None and not _is_number(cut):
            raise InputError(f"{where}.cut_score: expected a number or null, got {cut!r}")
        return cls(
            index=_get(d, "index", int, where),
            start_s=_number(d, "start_s", where),
            end_s=_number(d, "end_s", where),
            first_frame=_get(d, "first_frame", int, where),
            frames=_get(d, "frames", int, where),
            caption=_get(d, "caption", str, where),
            objects=tuple(objects),
            label=_get(d, "label", str, where),
            cut_score=None if cut is None else float(cut),
        )


@dataclass(frozen=True)
class LiveStats:
    """How a live run (``python -m clients live``) went: frames decoded, sampled, dropped and analysed."""

    frames_decoded: int  # every frame the stream delivered
    frames_sampled: int  # picked at fps_sampled
    frames_dropped: int  # sampled but dropped because the analysis was behind
    frames_analysed: int
    wall_s: float
    stop_reason: str  # "seconds", "end of stream", "interrupted" or "error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames_decoded": int(self.frames_decoded),
            "frames_sampled": int(self.frames_sampled),
            "frames_dropped": int(self.frames_dropped),
            "frames_analysed": int(self.frames_analysed),
            "wall_s": round(float(self.wall_s), _TIME_DECIMALS),
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LiveStats:
        d = _mapping(data, where)
        return cls(
            frames_decoded=_get(d, "frames_decoded", int, where),
            frames_sampled=_get(d, "frames_sampled", int, where),
            frames_dropped=_get(d, "frames_dropped", int, where),
            frames_analysed=_get(d, "frames_analysed", int, where),
            wall_s=_number(d, "wall_s", where),
            stop_reason=_get(d, "stop_reason", str, where),
        )


def object_counts(tracks: tuple[Track, ...] | list[Track]) -> dict[str, int]:
    """Unique objects per class name (one per track), most frequent first."""
    return dict(Counter(t.class_name for t in tracks).most_common())


class _ResultsFile:
    """Shared JSON writing and reading of the two results kinds."""

    KIND = ""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_json(self, indent: int | None = 2) -> str:
        """The results as JSON text (lists of numbers such as boxes stay on one line)."""
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
        return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write ``results.json`` atomically (a temporary file in the same folder, then ``os.replace``)."""
        return write_text_atomic(Path(path), self.to_json())

    @classmethod
    def _check_header(cls, data: Any, where: str) -> dict[str, Any]:
        d = _mapping(data, where)
        check_schema_version(d.get("schema_version"), where)
        kind = d.get("kind")
        if kind != cls.KIND:
            raise InputError(f"{where}: expected results of kind {cls.KIND!r}, got kind {kind!r}")
        return d


@dataclass(frozen=True, kw_only=True)
class VideoResults(_ResultsFile):
    """``results.json`` of one video: frame results in time order plus where they came from."""

    KIND = "video"

    schema_version: str = SCHEMA_VERSION
    source: str
    fps_sampled: float
    width: int
    height: int
    duration_s: float
    frames: tuple[FrameResult, ...] = ()
    models: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    error: str | None = None
    tracks: tuple[Track, ...] = ()  # schema 1.1
    scenes: tuple[Scene, ...] = ()  # schema 1.1
    live: LiveStats | None = None  # schema 1.1, live runs only

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))
        object.__setattr__(self, "tracks", tuple(self.tracks))
        object.__setattr__(self, "scenes", tuple(self.scenes))

    @property
    def object_counts(self) -> dict[str, int]:
        """Unique objects per class (one per track), most frequent first."""
        return object_counts(self.tracks)

    @property
    def captions(self) -> CaptionSummary:
        """Which captioner wrote the frame captions (schema 1.2's ``captions``)."""
        return caption_summary(f.image for f in self.frames)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schema_version": self.schema_version,
            "kind": self.KIND,
            "source": self.source,
            "width": int(self.width),
            "height": int(self.height),
            "duration_s": round(float(self.duration_s), _TIME_DECIMALS),
            "fps_sampled": float(self.fps_sampled),
            "complete": self.complete,
            "error": self.error,
            "models": self.models,
        }
        if self.live is not None:
            d["live"] = self.live.to_dict()
        return d | {
            "captions": self.captions.to_dict(),
            "object_counts": self.object_counts,
            "scenes": [s.to_dict() for s in self.scenes],
            "tracks": [t.to_dict() for t in self.tracks],
            "frames": [f.to_dict() for f in self.frames],
        }

    @classmethod
    def from_json(cls, text: str, where: str = "results") -> VideoResults:
        """Parse and validate JSON text; raises InputError naming the bad field."""
        return cls.from_dict(_loads(text, where), where)

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> VideoResults:
        d = cls._check_header(data, where)
        frames = _get(d, "frames", list, where)
        return cls(
            schema_version=d["schema_version"],
            source=_get(d, "source", str, where),
            fps_sampled=_number(d, "fps_sampled", where),
            width=_get(d, "width", int, where),
            height=_get(d, "height", int, where),
            duration_s=_number(d, "duration_s", where),
            frames=tuple(FrameResult.from_dict(f, f"{where}.frames[{i}]") for i, f in enumerate(frames)),
            models=_get(d, "models", dict, where),
            complete=_get(d, "complete", bool, where),
            error=_optional_str(d, "error", where),
            tracks=tuple(Track.from_dict(t, f"{where}.tracks[{i}]") for i, t in enumerate(_list(d, "tracks", where))),
            scenes=tuple(Scene.from_dict(s, f"{where}.scenes[{i}]") for i, s in enumerate(_list(d, "scenes", where))),
            live=LiveStats.from_dict(d["live"], f"{where}.live") if d.get("live") is not None else None,
        )

    @classmethod
    def read(cls, path: str | Path) -> VideoResults:
        """Read a video ``results.json``."""
        return cls.from_json(_read_text(Path(path)), where=str(path))


@dataclass(frozen=True, kw_only=True)
class ImageSetResults(_ResultsFile):
    """``results.json`` of the ``image`` command: one entry per input image, in input order."""

    KIND = "images"

    schema_version: str = SCHEMA_VERSION
    images: tuple[ImageEntry, ...] = ()
    models: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))

    @property
    def captions(self) -> CaptionSummary:
        """Which captioner wrote the image captions (schema 1.2's ``captions``)."""
        return caption_summary(e.image for e in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": self.KIND,
            "complete": self.complete,
            "error": self.error,
            "models": self.models,
            "captions": self.captions.to_dict(),
            "images": [e.to_dict() for e in self.images],
        }

    @classmethod
    def from_json(cls, text: str, where: str = "results") -> ImageSetResults:
        """Parse and validate JSON text; raises InputError naming the bad field."""
        return cls.from_dict(_loads(text, where), where)

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> ImageSetResults:
        d = cls._check_header(data, where)
        images = _get(d, "images", list, where)
        return cls(
            schema_version=d["schema_version"],
            images=tuple(ImageEntry.from_dict(e, f"{where}.images[{i}]") for i, e in enumerate(images)),
            models=_get(d, "models", dict, where),
            complete=_get(d, "complete", bool, where),
            error=_optional_str(d, "error", where),
        )

    @classmethod
    def read(cls, path: str | Path) -> ImageSetResults:
        """Read an images ``results.json``."""
        return cls.from_json(_read_text(Path(path)), where=str(path))


def read_results(path: str | Path) -> VideoResults | ImageSetResults:
    """Read either kind of ``results.json``, chosen by its ``kind`` field."""
    text = _read_text(Path(path))
    data = _loads(text, str(path))
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == VideoResults.KIND:
        return VideoResults.from_dict(data, str(path))
    if kind == ImageSetResults.KIND:
        return ImageSetResults.from_dict(data, str(path))
    check_schema_version(data.get("schema_version") if isinstance(data, dict) else None, str(path))
    raise InputError(f"{path}: expected kind 'video' or 'images', got {kind!r}")


def check_schema_version(version: Any, where: str = "results") -> None:
    """Accept any ``1.x`` schema version; anything else is an InputError."""
    major = SCHEMA_VERSION.split(".")[0]
    if not isinstance(version, str) or version.split(".")[0] != major:
        raise InputError(
            f"{where}: schema_version {version!r} is not supported "
            f"(expected {major}.x; this client writes {SCHEMA_VERSION})"
        )


def parse_outputs(outputs: Mapping[str, np.ndarray | None]) -> list[ImageResult]:
    """Ensemble output arrays (batch dimension first) -> one ``ImageResult`` per image.

    Detection arrays are padded to the largest count in the request; only the first
    ``NUM_DETECTIONS`` rows of each image are kept. BYTES outputs are decoded as UTF-8. ``ERROR``
    is optional (older servers lack it): an image with an error has no detections, labels or caption.
    The caption token and dense outputs are optional too: ``DENSE_CAPTIONS``/``DENSE_BOX_INDEX``
    [N, K] and ``DENSE_TOKENS`` [N, K, L] hold one slot per dense caption, padded with b"" / -1 / -1;
    a slot whose box index is -1 is padding, any other must point at one of that image's detections.
    ``CAPTION_TOKENS`` [N, L] is -1 padded.
    """
    missing = [name for name in CLIENT_REQUIRED_OUTPUTS if outputs.get(name) is None]
    if missing:
        got = sorted(k for k, v in outputs.items() if v is not None)
        raise InferenceError(f"server response: expected outputs {', '.join(missing)}, got only {got}")
    num = np.asarray(outputs["NUM_DETECTIONS"])
    n = num.shape[0] if num.ndim else 1
    num = num.reshape(n, -1)
    if num.shape[1] != 1:
        raise InferenceError(f"server response: NUM_DETECTIONS expected shape [{n}, 1], got {list(num.shape)}")
    boxes = _batched(outputs["BOXES"], "BOXES", n, extra=(4,))
    m = boxes.shape[1]
    scores = _batched(outputs["SCORES"], "SCORES", n, width=m)
    class_ids = _batched(outputs["CLASS_IDS"], "CLASS_IDS", n, width=m)
    class_names = _batched(outputs["CLASS_NAMES"], "CLASS_NAMES", n, width=m)
    labels = _batched(outputs["LABELS"], "LABELS", n)
    label_scores = _batched(outputs["LABEL_SCORES"], "LABEL_SCORES", n, width=labels.shape[1])
    captions = _batched(outputs["CAPTION"], "CAPTION", n, width=1)
    sources = _batched(outputs["CAPTION_SOURCE"], "CAPTION_SOURCE", n, width=1)
    raw_errors = outputs.get(contract.ERROR.name)
    errors = None if raw_errors is None else _batched(raw_errors, contract.ERROR.name, n, width=1)
    caption_tokens = _optional_tokens(outputs.get("CAPTION_TOKENS"), "CAPTION_TOKENS", n)
    dense = _dense_arrays(outputs, n)

    results = []
    for i in range(n):
        error = _text(errors[i, 0]) if errors is not None else ""
        if error:
            results.append(ImageResult(error=error))
            continue
        count = int(num[i, 0])
        if not 0 <= count <= m:
            raise InferenceError(
                f"server response: NUM_DETECTIONS[{i}] = {count} is outside 0..{m} (the padded detection count)"
            )
        detections = tuple(
            Detection(
                box=tuple(float(v) for v in boxes[i, j]),  # type: ignore[arg-type]
                score=float(scores[i, j]),
                class_id=int(class_ids[i, j]),
                class_name=_text(class_names[i, j]),
            )
            for j in range(count)
        )
        scene = tuple(
            SceneLabel(name=_text(labels[i, k]), score=float(label_scores[i, k])) for k in range(labels.shape[1])
        )
        dense_captions: list[DenseCaption] = []
        if dense is not None:
            texts, index, tokens = dense
            for k in range(index.shape[1]):
                j = int(index[i, k])
                if j == -1:
                    continue
                if not 0 <= j < count:
                    raise InferenceError(f"server response: DENSE_BOX_INDEX[{i}, {k}] = {j} is not a detection "
                                         f"of that image (expected 0..{count - 1}, or -1 for padding)")
                det = detections[j]
                dense_captions.append(DenseCaption(
                    box_index=j, caption=_text(texts[i, k]), class_name=det.class_name, score=det.score,
                    box=det.box, tokens=_token_ids(tokens[i, k]) if tokens is not None else ()))
        results.append(
            ImageResult(
                detections=detections,
                labels=scene,
                caption=_text(captions[i, 0]),
                caption_source=_text(sources[i, 0]),
                dense_captions=tuple(dense_captions),
                caption_tokens=_token_ids(caption_tokens[i]) if caption_tokens is not None else (),
            )
        )
    return results


def _token_ids(row: np.ndarray) -> tuple[int, ...]:
    """Token ids of one -1 padded row."""
    return tuple(int(t) for t in np.asarray(row).reshape(-1) if t >= 0)


def _optional_tokens(value: np.ndarray | None, name: str, n: int) -> np.ndarray | None:
    """An optional [N, L] int token output (None when absent)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == 1 and arr.shape[0] == n:
        arr = arr.reshape(n, 1)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise InferenceError(f"server response: {name} expected shape [{n}, L], got {list(arr.shape)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InferenceError(f"server response: {name} expected integer token ids, got {arr.dtype}")
    return arr


def _dense_arrays(outputs: Mapping[str, np.ndarray | None], n: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(DENSE_CAPTIONS [N,K], DENSE_BOX_INDEX [N,K], DENSE_TOKENS [N,K,L] or None), or None without dense outputs."""
    texts, index, tokens = (outputs.get(name) for name in ("DENSE_CAPTIONS", "DENSE_BOX_INDEX", "DENSE_TOKENS"))
    if texts is None and index is None:
        return None
    if texts is None or index is None:
        missing = "DENSE_CAPTIONS" if texts is None else "DENSE_BOX_INDEX"
        raise InferenceError(f"server response: expected DENSE_CAPTIONS and DENSE_BOX_INDEX together, {missing} "
                             "is missing")
    index_arr = _batched(index, "DENSE_BOX_INDEX", n)
    k = index_arr.shape[1]
    if index_arr.size and not np.issubdtype(index_arr.dtype, np.integer):
        raise InferenceError(f"server response: DENSE_BOX_INDEX expected integers, got {index_arr.dtype}")
    text_arr = _batched(texts, "DENSE_CAPTIONS", n, width=k) if k else np.empty((n, 0), dtype=object)
    if tokens is None:
        return text_arr, index_arr, None
    tok = np.asarray(tokens)
    if tok.size == 0:
        tok = tok.reshape(n, k, 0)
    if tok.ndim != 3 or tok.shape[:2] != (n, k):
        raise InferenceError(f"server response: DENSE_TOKENS expected shape [{n}, {k}, L], got {list(tok.shape)}")
    return text_arr, index_arr, tok


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- helpers ---------------------------------------------------------------------------------------------


def _batched(value: np.ndarray, name: str, n: int, width: int | None = None, extra: tuple[int, ...] = ()) -> np.ndarray:
    """Reshape an output to [n, width, *extra], accepting an empty array of any shape."""
    arr = np.asarray(value)
    if arr.size == 0:
        return arr.reshape((n, 0, *extra)) if width in (None, 0) else _bad_shape(name, arr, n, width, extra)
    if arr.ndim == 1 + len(extra) and width in (None, 1) and arr.shape[0] == n:
        arr = arr.reshape((n, 1, *extra))  # a [N] output where [N, 1] was expected
    if arr.ndim != 2 + len(extra) or arr.shape[0] != n or arr.shape[2:] != extra:
        return _bad_shape(name, arr, n, width, extra)
    if width is not None and arr.shape[1] != width:
        return _bad_shape(name, arr, n, width, extra)
    return arr


def _bad_shape(name: str, arr: np.ndarray, n: int, width: int | None, extra: tuple[int, ...]) -> np.ndarray:
    want = [n, "K" if width is None else width, *extra]
    raise InferenceError(f"server response: {name} expected shape {want}, got {list(arr.shape)}")


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _get(d: Mapping[str, Any], key: str, tp: type, where: str) -> Any:
    if key not in d:
        raise InputError(f"{where}.{key}: missing (expected {tp.__name__})")
    value = d[key]
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise InputError(f"{where}.{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _number(d: Mapping[str, Any], key: str, where: str) -> float:
    if key not in d:
        raise InputError(f"{where}.{key}: missing (expected a number)")
    if not _is_number(d[key]):
        raise InputError(f"{where}.{key}: expected a number, got {d[key]!r}")
    return float(d[key])


def _box(d: Mapping[str, Any], where: str) -> tuple[float, float, float, float]:
    """The ``box`` field: 4 numbers [x1, y1, x2, y2]."""
    box = _get(d, "box", list, where)
    if len(box) != 4 or not all(_is_number(v) for v in box):
        raise InputError(f"{where}.box: expected 4 numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


def _list(d: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """An optional list field (absent in older minor versions): [] when missing."""
    return _get(d, key, list, where) if key in d else []


def _optional_str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}.{key}: expected a string or null, got {value!r}")
    return value


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"results file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"results file {path}: cannot be read ({exc})") from None
