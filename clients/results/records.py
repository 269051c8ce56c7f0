"""The objects of results.json: detections, labels, dense captions, image and frame results, tracks, scenes."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

from pydantic import (
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from clients.results.fields import (
    _FILE,
    TEMPLATE_NOTE,
    Box,
    ClassNames,
    Int,
    Score,
    Seconds,
    Str,
    TokenIds,
    _adapter,
    _fields,
    _validate,
)
from mmw.contract import TEMPLATE_SOURCE

# --- records ---------------------------------------------------------------------------------------------

R = TypeVar("R", bound="_Record")


def _file_schema(schema: dict[str, Any], cls: type[_Record]) -> None:
    """``cls``'s JSON Schema as results.json holds it (pydantic's ``json_schema_extra`` hook)."""
    schema.pop("additionalProperties", None)  # readers ignore the fields of later minor versions
    props = schema["properties"]
    required = set(schema.get("required", ())) | set(cls._FILE_REQUIRED)
    if cls._FLAT:  # its ImageResult's fields sit next to its own
        schema["allOf"] = [props.pop(cls._FLAT)]
        required.discard(cls._FLAT)
    kind = getattr(cls, "KIND", "")
    if kind:  # results files
        props["kind"] = {"const": kind, "type": "string"}
        required.add("kind")
    props |= copy.deepcopy(cls._WRITTEN)
    for name, prop in props.items():
        prop.pop("title", None)
        if name in required:
            prop.pop("default", None)
    order = [k for k in cls._LAYOUT if k in props] + [k for k in props if k not in cls._LAYOUT]
    schema["properties"] = {k: props[k] for k in order}
    schema["required"] = [k for k in order if k in required]


_CONFIG = ConfigDict(extra="forbid", json_schema_extra=_file_schema)


@dataclass(frozen=True, config=_CONFIG)
class _Record:
    """One object of results.json; the class variables say how it sits in the file."""

    _FILE_REQUIRED: ClassVar[tuple[str, ...]] = ()  # fields with a constructor default that a file must have
    _FLAT: ClassVar[str] = ""  # the ImageResult field whose keys sit next to this object's own
    _OMIT_EMPTY: ClassVar[tuple[str, ...]] = ()  # fields left out of the file when None, "" or empty
    _LAYOUT: ClassVar[tuple[str, ...]] = ()  # the file's key order, where it is not the field order
    _WRITTEN: ClassVar[dict[str, Any]] = {}  # JSON Schema of derived fields that are written, never read

    @model_validator(mode="before")
    @classmethod
    def _file_layout(cls, data: Any, info: ValidationInfo) -> Any:
        """In a file: the flat ImageResult nested, later minor versions' fields dropped, required ones checked."""
        if not isinstance(data, dict) or not (info.context or {}).get(_FILE):
            return data
        own = {k: v for k, v in data.items() if k in _fields(cls) and k != cls._FLAT}
        if cls._FLAT:
            own[cls._FLAT] = {k: v for k, v in data.items() if k not in own}
        missing = next((name for name in cls._FILE_REQUIRED if name not in own), None)
        if missing:
            raise PydanticCustomError("missing", "missing", {"loc": (missing,)})
        return own

    @model_serializer(mode="wrap")
    def _file_dict(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._OMIT_EMPTY:
            if data.get(name) in (None, "", []):
                data.pop(name, None)
        if self._FLAT:
            data |= data.pop(self._FLAT)
        return {k: data.pop(k) for k in self._LAYOUT if k in data} | data

    def to_dict(self) -> dict[str, Any]:
        """This object as results.json holds it (JSON types, rounded numbers)."""
        return _adapter(type(self)).dump_python(self, mode="json")  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str) -> R:
        """Validate the decoded JSON ``data``; raises InputError naming the bad field under ``where``."""
        return _validate(cls, data, where)


@dataclass(frozen=True, config=_CONFIG)
class Detection(_Record):
    """One detected object: ``box`` is (x1, y1, x2, y2) in pixels of the image that was sent.

    ``track_id`` (video only, schema 1.1) names the track the object belongs to; None when it has none.
    """

    _OMIT_EMPTY = ("track_id",)

    box: Box
    score: Score
    class_id: Int
    class_name: Str
    track_id: Int | None = None


@dataclass(frozen=True, config=_CONFIG)
class SceneLabel(_Record):
    """An ImageNet label of the whole image with its probability."""

    name: Str
    score: Score


@dataclass(frozen=True, config=_CONFIG)
class DenseCaption(_Record):
    """A caption of one detected object (schema 1.2): ``box_index`` is its position in the image's detections.

    ``class_name``, ``score`` and ``box`` repeat that detection's so the caption reads on its own;
    ``tokens`` are the captioner's token ids (empty when unknown).
    """

    _OMIT_EMPTY = ("tokens",)

    box_index: Int
    caption: Str
    class_name: Str
    score: Score
    box: Box
    tokens: TokenIds = ()


@dataclass(frozen=True, config=_CONFIG)
class ImageResult(_Record):
    """Everything the ensemble says about one image; ``error`` says why it could not be analysed ("" when it was).

    ``dense_captions`` (schema 1.2) caption some of the detections (a neural captioner's best-scored
    ones; none with template captions); ``caption_tokens`` are the frame caption's token ids (empty for
    template captions).
    """

    _FILE_REQUIRED = ("detections", "labels", "caption", "caption_source")
    _OMIT_EMPTY = ("caption_tokens", "error")
    _LAYOUT = ("detections", "labels", "caption", "caption_source", "dense_captions", "caption_tokens", "error")

    detections: tuple[Detection, ...] = ()
    labels: tuple[SceneLabel, ...] = ()
    caption: Str = ""
    caption_source: Str = ""
    error: Str = ""
    dense_captions: tuple[DenseCaption, ...] = ()
    caption_tokens: TokenIds = ()

    @model_validator(mode="after")
    def _dense_boxes(self) -> ImageResult:
        for i, c in enumerate(self.dense_captions):
            if not 0 <= c.box_index < len(self.detections):
                raise PydanticCustomError(
                    "box_index", "expected 0..{last} (an index into detections), got {got}",
                    {"last": len(self.detections) - 1, "got": c.box_index, "loc": ("dense_captions", i, "box_index")})
        return self

    @property
    def neural(self) -> bool:
        """True when a captioning model (not the template) wrote the caption."""
        return bool(self.caption_source) and self.caption_source != TEMPLATE_SOURCE

    def dense_caption_of(self, box_index: int) -> str:
        """The dense caption of detection ``box_index`` ("" when it has none)."""
        return next((c.caption for c in self.dense_captions if c.box_index == box_index), "")

    def keep_detections(self, keep: list[int]) -> ImageResult:
        """This result with only the detections at positions ``keep`` (in order); dense captions follow them."""
        new_index = {old: new for new, old in enumerate(keep)}
        dense = tuple(dataclasses.replace(c, box_index=new_index[c.box_index]) for c in self.dense_captions
                      if c.box_index in new_index)
        return dataclasses.replace(self, detections=tuple(self.detections[k] for k in keep), dense_captions=dense)


@dataclass(frozen=True, config=_CONFIG)
class CaptionSummary(_Record):
    """How the captions of a results file were made (top-level ``captions``, schema 1.2): derived from the frames.

    ``source`` is ``"template"``, the captioning model's name, ``"mixed"`` (several; see ``sources``),
    or ``""`` when no image got a caption; ``note`` says it in one line.
    """

    source: Str
    note: Str
    sources: tuple[Str, ...] = ()
    dense_captions: Int = 0


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


@dataclass(frozen=True, config=_CONFIG)
class FrameResult(_Record):
    """The result of one sampled video frame: ``index`` is the frame's number in the decoded stream.

    In the file the image's fields sit next to ``index`` and ``timestamp_s``.
    """

    _FLAT = "image"

    index: Int
    timestamp_s: Seconds
    image: ImageResult


@dataclass(frozen=True, config=_CONFIG)
class ImageEntry(_Record):
    """The result of one input image of the ``image`` command; in the file the image's fields follow ``annotated``."""

    _FLAT = "image"

    source: Str
    width: Int
    height: Int
    image: ImageResult
    annotated: Str | None = None


@dataclass(frozen=True, config=_CONFIG)
class Track(_Record):
    """One object followed across sampled frames (``clients.analysis.tracking``): its class is the one it was
    detected as most often (weighted by score); times are the first and last sampled frames it was in."""

    track_id: Int
    class_id: Int
    class_name: Str
    first_seen_s: Seconds
    last_seen_s: Seconds
    frames: Int  # sampled frames in which it was detected
    best_score: Score

    @property
    def duration_s(self) -> float:
        return self.last_seen_s - self.first_seen_s


@dataclass(frozen=True, config=_CONFIG)
class Scene(_Record):
    """Consecutive sampled frames of one shot (``clients.analysis.scenes``): [start_s, end_s) and one caption.

    ``first_frame`` and ``frames`` locate its sampled frames in ``VideoResults.frames`` (position of the
    first one, count); ``cut_score`` is the visual change that opened it (None for the first scene or
    when the scene was found from labels alone).
    """

    _FILE_REQUIRED = ("objects", "label")

    index: Int
    start_s: Seconds
    end_s: Seconds
    first_frame: Int
    frames: Int
    caption: Str
    objects: ClassNames = ()  # class names detected in any of its frames, sorted
    label: Str = ""  # its most frequent best scene label
    cut_score: Score | None = None


@dataclass(frozen=True, config=_CONFIG)
class LiveStats(_Record):
    """How a live run (``python -m clients live``) went: frames decoded, sampled, dropped and analysed.

    ``reconnects`` and ``offline_s`` (optional) say how often the stream was opened again after it dropped
    and how long it was away in all.
    """

    _OMIT_EMPTY = ("reconnects", "offline_s")

    frames_decoded: Int  # every frame the stream delivered
    frames_sampled: Int  # picked at fps_sampled
    frames_dropped: Int  # sampled but dropped because the analysis was behind
    frames_analysed: Int
    wall_s: Seconds
    stop_reason: Str  # "seconds", "end of stream", "interrupted", "error" or "gave up reconnecting"
    reconnects: Int | None = None
    offline_s: Seconds | None = None


def object_counts(tracks: tuple[Track, ...] | list[Track]) -> dict[str, int]:
    """Unique objects per class name (one per track), most frequent first."""
    return dict(Counter(t.class_name for t in tracks).most_common())


