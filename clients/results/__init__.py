"""results.json: its records (pydantic dataclasses), its two kinds (video, images) and its JSON Schema.

Schema 1.1 adds ``Track``, ``Scene`` and ``LiveStats`` to video results (made by ``clients.analysis.tracking``,
``clients.analysis.scenes`` and ``clients.live``); 1.0 files still read, with no tracks or scenes. Schema 1.2
adds ``DenseCaption`` (one caption per captioned detection), the frame caption's tokens and the top-level
``captions`` block (``caption_summary``: template or which model); 1.1 files read with no dense captions.
See ``docs/results-schema.md``; the JSON Schema ``docs/results.schema.json`` is made by
``results_json_schema()`` or ``python -m clients.results --schema``.

The records are frozen pydantic dataclasses: built by keyword or position, changed with
``dataclasses.replace``, checked on construction (unknown keywords too). ``to_dict`` writes the file's layout
and rounding; ``from_dict``/``from_json``/``read`` read a file with JSON's types (no 1.0 for an int, no
true for a number), ignore the fields of later minor versions and raise InputError naming the field.
"""

from clients.results.fields import SCHEMA_VERSION, TEMPLATE_NOTE
from clients.results.files import (
    ImageSetResults,
    VideoResults,
    check_schema_version,
    read_results,
    results_json_schema,
    results_schema_text,
    write_text_atomic,
)
from clients.results.records import (
    CaptionSummary,
    DenseCaption,
    Detection,
    FrameResult,
    ImageEntry,
    ImageResult,
    LiveStats,
    Scene,
    SceneLabel,
    Track,
    caption_summary,
    object_counts,
)

__all__ = [
    "SCHEMA_VERSION", "TEMPLATE_NOTE", "CaptionSummary", "DenseCaption", "Detection", "FrameResult", "ImageEntry",
    "ImageResult", "ImageSetResults", "LiveStats", "Scene", "SceneLabel", "Track", "VideoResults", "caption_summary",
    "check_schema_version", "object_counts", "read_results", "results_json_schema", "results_schema_text",
    "write_text_atomic",
]
