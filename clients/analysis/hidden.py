"""Detections the tracker sees but results do not show, kept so that a resumed run tracks exactly the same.

The tracker uses every detection the server returns (low scores feed its second stage); after tracking, a
client-side ``min_score`` (the app's slider) keeps only those scoring at least that in ``results.json``.
``split_shown`` makes that cut and returns what it hid, with
each hidden detection's position among the frame's detections; ``restore_hidden`` puts them back, so a
frame replayed from ``results.json`` on ``--resume`` reaches the tracker as it first did.

While a video is analysed, ``write_hidden`` checkpoints them beside ``results.json`` in ``resume.json``
(written first, atomically, so it always covers the frames of the checkpointed results; only when something
is hidden); a run that completes removes it (``remove_hidden``), so a finished folder holds only the usual
files.
``read_hidden`` reads it back for the same source and sampling rate, and ignores another run's file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from clients.results import Detection, ImageResult, write_text_atomic
from mmw.errors import InputError

RESUME_FILE = "resume.json"
_VERSION = 1

#: A frame's hidden detections: (position among the frame's detections, the detection), in position order.
Hidden = tuple[tuple[int, Detection], ...]


def split_shown(result: ImageResult, min_score: float | None) -> tuple[ImageResult, Hidden]:
    """``result`` with only the detections scoring at least ``min_score`` (None: all), and those it hid."""
    if min_score is None:
        return result, ()
    kept = [k for k, d in enumerate(result.detections) if d.score >= min_score]
    if len(kept) == len(result.detections):
        return result, ()
    hidden = tuple((k, d) for k, d in enumerate(result.detections) if d.score < min_score)
    return result.keep_detections(kept), hidden


def restore_hidden(result: ImageResult, hidden: Hidden) -> ImageResult:
    """``result`` (as ``split_shown`` left it) with its hidden detections back in place; dense captions follow."""
    if not hidden:
        return result
    total = len(result.detections) + len(hidden)
    slots: list[Detection | None] = [None] * total
    for position, det in hidden:
        if not 0 <= position < total or slots[position] is not None:
            raise InputError(f"{RESUME_FILE}: expected hidden detection positions in 0..{total - 1}, once each, "
                             f"got {position}")
        slots[position] = det
    shown = iter(result.detections)
    free = [k for k, d in enumerate(slots) if d is None]
    for k in free:
        slots[k] = next(shown)
    dense = tuple(dataclasses.replace(c, box_index=free[c.box_index]) for c in result.dense_captions)
    return dataclasses.replace(result, detections=tuple(slots), dense_captions=dense)


def write_hidden(out_dir: str | Path, source: str, fps: float, hidden: Mapping[int, Hidden]) -> Path | None:
    """Write ``out_dir/resume.json``: the hidden detections of each frame index (atomically); with none, no
    file (an older one is removed). Returns the path written, if any."""
    path = Path(out_dir) / RESUME_FILE
    frames = {str(index): [[k, d.to_dict()] for k, d in dets] for index, dets in sorted(hidden.items()) if dets}
    if not frames:
        remove_hidden(out_dir)
        return None
    text = json.dumps({"version": _VERSION, "source": source, "fps_sampled": fps, "hidden": frames})
    return write_text_atomic(path, text)


def read_hidden(out_dir: str | Path, source: str, fps: float) -> dict[int, Hidden]:
    """The hidden detections ``write_hidden`` kept for ``source`` at ``fps``; {} when there are none (or another
    run's file, or an unreadable one: the frames are then replayed as ``results.json`` has them)."""
    path = Path(out_dir) / RESUME_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != _VERSION or data.get("source") != source:
            return {}
        if abs(float(data.get("fps_sampled", -1)) - fps) > 1e-9:
            return {}
        return {int(index): tuple((int(k), Detection.from_dict(d, RESUME_FILE)) for k, d in dets)
                for index, dets in data["hidden"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InputError):
        return {}


def remove_hidden(out_dir: str | Path) -> None:
    """Remove ``out_dir/resume.json`` (a completed run needs none)."""
    (Path(out_dir) / RESUME_FILE).unlink(missing_ok=True)
