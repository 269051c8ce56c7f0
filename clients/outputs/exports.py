"""Exports of a video's results, written next to ``results.json``.

- ``detections.coco.json``: COCO object-detection format (``images``, ``annotations``, ``categories``;
  ``bbox`` is ``[x, y, width, height]`` in pixels), one image per sampled frame, with the detector's
  ``score`` and the ``track_id`` on each annotation; ``pycocotools.coco.COCO`` loads it.
- ``captions.srt`` and ``captions.vtt``: one subtitle cue per scene (its start, end and caption).
- ``tracks.csv``: one row per track (``TRACKS_COLUMNS``), for spreadsheets and ``csv.DictReader``.

Every file is written atomically (a temporary file, then a rename), like ``results.json``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.results import Scene, Track, VideoResults, write_text_atomic
from mmw.processing.labels import COCO_NAMES

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


# --- subtitles -------------------------------------------------------------------------------------------


def format_timestamp(seconds: float, decimal_mark: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``decimal_mark="."``, ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = max(0, round(float(seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal_mark}{ms:03d}"


def _cues(scenes: Sequence[Scene]) -> list[tuple[Scene, str]]:
    """(scene, its caption on one line) for each scene with a caption and a positive length."""
    cues = []
    for s in scenes:
        text = " ".join(s.caption.split())
        if text and s.end_s > s.start_s:
            cues.append((s, text))
    return cues


def srt_text(scenes: Sequence[Scene]) -> str:
    """SubRip subtitles: one numbered cue per scene."""
    blocks = [
        f"{n}\n{format_timestamp(s.start_s)} --> {format_timestamp(s.end_s)}\n{text}\n"
        for n, (s, text) in enumerate(_cues(scenes), start=1)
    ]
    return "\n".join(blocks)


def vtt_text(scenes: Sequence[Scene]) -> str:
    """WebVTT subtitles: one cue per scene, identified ``scene-<index>``."""
    blocks = ["WEBVTT\n"]
    for s, text in _cues(scenes):
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        start, end = format_timestamp(s.start_s, "."), format_timestamp(s.end_s, ".")
        blocks.append(f"scene-{s.index}\n{start} --> {end}\n{safe}\n")
    return "\n".join(blocks)


def write_srt(scenes: Sequence[Scene], path: str | Path) -> Path:
    return write_text_atomic(Path(path), srt_text(scenes))


def write_vtt(scenes: Sequence[Scene], path: str | Path) -> Path:
    return write_text_atomic(Path(path), vtt_text(scenes))


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


def write_exports(results: VideoResults, out_dir: str | Path) -> list[Path]:
    """Write every export into ``out_dir``; returns their paths in ``EXPORT_FILES`` order."""
    out = Path(out_dir)
    return [
        write_coco(results, out / COCO_FILE),
        write_srt(results.scenes, out / SRT_FILE),
        write_vtt(results.scenes, out / VTT_FILE),
        write_tracks_csv(results.tracks, out / TRACKS_FILE),
    ]
