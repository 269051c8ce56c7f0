"""The two kinds of results.json (video, images): writing, reading, schema versions and the JSON Schema."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar, Union

from pydantic import (
    Field,
    TypeAdapter,
    computed_field,
)
from pydantic.dataclasses import dataclass

from clients.results.fields import (
    _NUMBER_LIST,
    SCHEMA_VERSION,
    Bool,
    Float,
    Int,
    Seconds,
    Str,
    _loads,
    _mapping,
    _read_text,
    _validate,
)
from clients.results.records import (
    _CONFIG,
    CaptionSummary,
    FrameResult,
    ImageEntry,
    LiveStats,
    Scene,
    Track,
    _Record,
    caption_summary,
    object_counts,
)
from mmw.errors import InputError

F = TypeVar("F", bound="_ResultsFile")

_CAPTIONS_SCHEMA = {"description": "how the captions were made, derived from the images (schema 1.2)"}  # + its $ref
SchemaVersion = Annotated[Str, Field(pattern=r"^1(\.|$)", description="MAJOR.MINOR; readers accept any 1.x")]


@dataclass(frozen=True, config=_CONFIG)
class _ResultsFile(_Record):
    """Shared JSON writing and reading of the two results kinds."""

    KIND: ClassVar[str] = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def kind(self) -> str:
        """``"video"`` or ``"images"``: ``KIND``."""
        return self.KIND

    def to_json(self, indent: int | None = 2) -> str:
        """The results as JSON text (lists of numbers such as boxes stay on one line)."""
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
        return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write ``results.json`` atomically (a temporary file in the same folder, then ``os.replace``)."""
        return write_text_atomic(Path(path), self.to_json())

    @classmethod
    def from_json(cls: type[F], text: str, where: str = "results") -> F:
        """Parse and validate JSON text; raises InputError naming the bad field."""
        return cls.from_dict(_loads(text, where), where)

    @classmethod
    def from_dict(cls: type[F], data: Any, where: str = "results") -> F:
        """Validate decoded JSON: schema version and kind first, then every field."""
        d = _mapping(data, where)
        check_schema_version(d.get("schema_version"), where)
        if d.get("kind") != cls.KIND:
            raise InputError(f"{where}: expected results of kind {cls.KIND!r}, got kind {d.get('kind')!r}")
        return _validate(cls, d, where)

    @classmethod
    def read(cls: type[F], path: str | Path) -> F:
        """Read a ``results.json`` of this kind."""
        return cls.from_json(_read_text(Path(path)), where=str(path))


@dataclass(frozen=True, kw_only=True, config=_CONFIG)
class VideoResults(_ResultsFile):
    """``results.json`` of one video: frame results in time order plus where they came from."""

    KIND: ClassVar[str] = "video"
    _FILE_REQUIRED = ("schema_version", "models", "complete", "frames")
    _OMIT_EMPTY = ("live",)
    _LAYOUT = ("schema_version", "kind", "source", "width", "height", "duration_s", "fps_sampled", "complete",
               "error", "models", "live", "captions", "object_counts", "scenes", "tracks", "frames")
    _WRITTEN: ClassVar[dict[str, Any]] = {
        "captions": _CAPTIONS_SCHEMA,
        "object_counts": {"type": "object", "additionalProperties": {"type": "integer"},
                          "description": "unique objects per class, derived from tracks (schema 1.1)"},
    }

    schema_version: SchemaVersion = SCHEMA_VERSION
    source: Str
    width: Int
    height: Int
    duration_s: Seconds
    fps_sampled: Float
    complete: Bool = True
    error: Str | None = None
    models: dict[str, Any] = Field(default_factory=dict)
    live: LiveStats | None = None  # schema 1.1, live runs only
    scenes: tuple[Scene, ...] = ()  # schema 1.1
    tracks: tuple[Track, ...] = ()  # schema 1.1
    frames: tuple[FrameResult, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def object_counts(self) -> dict[str, int]:
        """Unique objects per class (one per track), most frequent first."""
        return object_counts(self.tracks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def captions(self) -> CaptionSummary:
        """Which captioner wrote the frame captions (schema 1.2's ``captions``)."""
        return caption_summary(f.image for f in self.frames)


@dataclass(frozen=True, kw_only=True, config=_CONFIG)
class ImageSetResults(_ResultsFile):
    """``results.json`` of the ``image`` command: one entry per input image, in input order."""

    KIND: ClassVar[str] = "images"
    _FILE_REQUIRED = ("schema_version", "models", "complete", "images")
    _LAYOUT = ("schema_version", "kind", "complete", "error", "models", "captions", "images")
    _WRITTEN: ClassVar[dict[str, Any]] = {"captions": _CAPTIONS_SCHEMA}

    schema_version: SchemaVersion = SCHEMA_VERSION
    complete: Bool = True
    error: Str | None = None
    models: dict[str, Any] = Field(default_factory=dict)
    images: tuple[ImageEntry, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def captions(self) -> CaptionSummary:
        """Which captioner wrote the image captions (schema 1.2's ``captions``)."""
        return caption_summary(e.image for e in self.images)


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


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``results.json``, either kind, as readers accept it; the shipped copy is
    ``docs/results.schema.json``. Objects stay open: readers ignore the fields of later minor versions."""
    schema = TypeAdapter(Union[VideoResults, ImageSetResults]).json_schema()  # noqa: UP007 (a runtime union)
    defs = schema["$defs"] | {"CaptionSummary": TypeAdapter(CaptionSummary).json_schema()}
    for cls in (VideoResults, ImageSetResults):  # pydantic checks the refs it makes: this one is added after
        defs[cls.__name__]["properties"]["captions"]["$ref"] = "#/$defs/CaptionSummary"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "results.json",
        "description": f"Results of `python -m clients video|live|image`, schema {SCHEMA_VERSION} "
                       "(1.0 and 1.1 files are valid too); see docs/results-schema.md.",
        "anyOf": schema["anyOf"],
        "$defs": dict(sorted(defs.items())),
    }


def results_schema_text() -> str:
    """``results_json_schema()`` as the text of ``docs/results.schema.json``."""
    return json.dumps(results_json_schema(), indent=2, ensure_ascii=False) + "\n"




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



def main(argv: list[str] | None = None) -> int:
    """``python -m clients.results --schema [--out PATH]``: print or write the JSON Schema of results.json."""
    parser = argparse.ArgumentParser(prog="python -m clients.results", description=main.__doc__)
    parser.add_argument("--schema", action="store_true", required=True, help="the JSON Schema of results.json")
    parser.add_argument("--out", type=Path, help="write it here (e.g. docs/results.schema.json) instead of stdout")
    args = parser.parse_args(argv)
    if args.out is None:
        print(results_schema_text(), end="")
    else:
        write_text_atomic(args.out, results_schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

