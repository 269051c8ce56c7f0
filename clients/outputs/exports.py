"""Exports of a video's results, written next to ``results.json``.

- ``detections.coco.json``: COCO object-detection format (``images``, ``annotations``, ``categories``;
  ``bbox`` is ``[x, y, width, height]`` in pixels), one image per sampled frame, with the detector's
  ``score`` and the ``track_id`` on each annotation; ``pycocotools.coco.COCO`` loads it.
- ``captions.srt`` and ``captions.vtt``: subtitles that follow the captions inside each scene: a cue at each
  caption change and at least every ``cue_s`` seconds, dense captions on a second line
  (``clients.outputs.subtitles``).
- ``tracks.csv``: one row per track (``TRACKS_COLUMNS``), for spreadsheets and ``csv.DictReader``.

Every file is written atomically (a temporary file, then a rename), like ``results.json``. ``ExportSettings``
says which files ``write_exports`` writes and the longest cue.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.outputs.subtitles import (
    DEFAULT_CUE_S,
    check_cue_s,
    cues_of,
    format_timestamp,
    srt_text,
    vtt_text,
    write_srt,
    write_vtt,
)
from clients.results import Track, VideoResults, write_text_atomic
from mmw.errors import InputError
from mmw.processing.labels import COCO_NAMES

__all__ = [
    "COCO_FILE", "DEFAULT_CUE_S", "EXPORT_FILES", "SRT_FILE", "TRACKS_COLUMNS", "TRACKS_FILE",
    "VTT_FILE", "ExportSettings", "coco_dict", "format_timestamp", "srt_text", "tracks_csv_text", "vtt_text",
    "write_coco", "write_exports", "write_srt", "write_tracks_csv", "write_vtt",
]

COCO_FILE = "detections.coco.json"
SRT_FILE = "captions.srt"
VTT_FILE = "captions.vtt"
TRACKS_FILE = "tracks.csv"
EXPORT_FILES = (COCO_FILE, SRT_FILE, VTT_FILE, TRACKS_FILE)

TRACKS_COLUMNS = (
    "track_id", "class_id", "class_name", "first_seen_s", "last_seen_s", "duration_s", "frames", "best_score"
)


# --- COCO ------------------------------------------------------------------------------------------------


def coco_dict(results: VideoResults) -> dict[str, Any]:
    """The results in COCO detection format; image ids are 1-based sampled-frame numbers."""
    images, annotations = [], []
    stem = Path(results.source).stem or "frame"
    for n, frame in enumerate(results.frames, start=1):
        images.append({
            "id": n,
            "file_name": f"{stem}_frame{frame.index:06d}.jpg",  # the frame as it would be extracted
            "width": int(results.width),
            "height": int(results.height),
            "frame_index": int(frame.index),
            "timestamp_s": round(float(frame.timestamp_s), 3),
        })
        for d in frame.image.detections:
            x1, y1, x2, y2 = (float(v) for v in d.box)
            w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": n,
                "category_id": int(d.class_id),
                "bbox": [round(x1, 2), round(y1, 2), round(w, 2), round(h, 2)],
                "area": round(w * h, 2),
                "iscrowd": 0,
                "score": round(float(d.score), 4),
                "track_id": d.track_id,
            })
    used = {int(d.class_id) for f in results.frames for d in f.image.detections}
    categories = [{"id": i, "name": name, "supercategory": "object"} for i, name in sorted(COCO_NAMES.items())]
    categories += [{"id": i, "name": f"class {i}", "supercategory": "object"} for i in sorted(used - set(COCO_NAMES))]
    return {
        "info": {
            "description": f"detections of {results.source}",
            "version": results.schema_version,
            "fps_sampled": results.fps_sampled,
            "source": results.source,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(results: VideoResults, path: str | Path) -> Path:
    """Write ``detections.coco.json``."""
    return write_text_atomic(Path(path), json.dumps(coco_dict(results), ensure_ascii=False) + "\n")


# --- tracks ----------------------------------------------------------------------------------------------


def tracks_csv_text(tracks: Sequence[Track]) -> str:
    """CSV with a header row (``TRACKS_COLUMNS``), one row per track, times in seconds."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TRACKS_COLUMNS)
    for t in tracks:
        writer.writerow([t.track_id, t.class_id, t.class_name, f"{t.first_seen_s:.3f}", f"{t.last_seen_s:.3f}",
                         f"{t.duration_s:.3f}", t.frames, f"{t.best_score:.4f}"])
    return buf.getvalue()


def write_tracks_csv(tracks: Sequence[Track], path: str | Path) -> Path:
    return write_text_atomic(Path(path), tracks_csv_text(tracks))


# --- all of them -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSettings:
    """Which exports ``write_exports`` writes (names from ``EXPORT_FILES``; default all of them) and the
    longest a subtitle cue runs within a scene, ``cue_s`` seconds (> 0)."""

    files: frozenset[str] = frozenset(EXPORT_FILES)
    cue_s: float = DEFAULT_CUE_S

    def __post_init__(self) -> None:
        if isinstance(self.files, str) or not isinstance(self.files, Iterable):
            raise InputError(f"exports: expected a set of files among {', '.join(EXPORT_FILES)}, got {self.files!r}")
        unknown = sorted(str(name) for name in set(self.files) - set(EXPORT_FILES))
        if unknown:
            raise InputError(f"exports: expected files among {', '.join(EXPORT_FILES)}, got {', '.join(unknown)}")
        object.__setattr__(self, "files", frozenset(self.files))
        try:
            object.__setattr__(self, "cue_s", check_cue_s(self.cue_s))
        except InputError as exc:
            raise InputError(f"exports: expected cue_s a number of seconds > 0, got {self.cue_s!r}") from exc


def write_exports(results: VideoResults, out_dir: str | Path, settings: ExportSettings | None = None) -> list[Path]:
    """Write the exports ``settings.files`` (default: all) into ``out_dir``; their paths in ``EXPORT_FILES`` order."""
    settings = settings or ExportSettings()
    out = Path(out_dir)
    wanted = [name for name in EXPORT_FILES if name in settings.files]
    cues = cues_of(results, settings.cue_s) if {SRT_FILE, VTT_FILE} & settings.files else []
    writers: dict[str, Callable[[Path], Path]] = {
        COCO_FILE: lambda path: write_coco(results, path),
        SRT_FILE: lambda path: write_srt(cues, path),
        VTT_FILE: lambda path: write_vtt(cues, path),
        TRACKS_FILE: lambda path: write_tracks_csv(results.tracks, path),
    }
    return [writers[name](out / name) for name in wanted]
