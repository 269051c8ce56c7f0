"""``corpus.json``: what happened to every video of a corpus, and when.

One entry per video: its source, its results folder, its status, frames, duration, error and timings;
one record per run of the job. Only the driver writes it (atomically, after every video), so a killed
job leaves a valid index, and a rerun reads it to skip what is done.

Statuses: ``pending`` (not started), ``done`` (complete ``results.json``), ``failed`` (the video itself is
bad: corrupt, empty, unreadable; its one-line reason is in ``error``), ``partial`` (stopped part-way: Ctrl-C,
the server unreachable, workers lost too often; a rerun resumes it from its checkpoint).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clients.results import write_text_atomic
from mmw.errors import InputError

INDEX_FILE = "corpus.json"
INDEX_VERSION = 1
Status = Literal["pending", "done", "failed", "partial"]


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VideoEntry(_Model):
    """One video of the corpus."""

    source: str
    folder: str  # results folder, relative to the corpus's --out
    status: Status = "pending"
    frames: int = 0  # sampled frames in results.json
    duration_s: float | None = None
    error: str | None = None  # one line: why it failed or stopped
    wall_s: float | None = None  # analysis time of the last attempt
    resumed_frames: int = 0  # frames reused from the checkpoint by the last attempt
    worker: str | None = None  # who analysed it last (node and pid)
    outputs: str = ""  # what the finished run wrote (``--outputs``)
    started_at: str | None = None
    finished_at: str | None = None
    input_size: int | None = None  # the file as last seen (a failed video changed since is tried again)
    input_mtime_ns: int | None = None


class RunRecord(_Model):
    """One run of the job: where it ran and how long it took."""

    started_at: str
    runner: str  # "local pool, 2 workers" or "ray at ADDRESS, 2 nodes, 2 CPUs"
    workers: int
    videos: int  # analysed in this run (not skipped)
    wall_s: float | None = None
    stopped: str | None = None  # why it stopped early (interrupted, server unreachable)


class CorpusIndex(_Model):
    """The whole of ``corpus.json``."""

    version: int = INDEX_VERSION
    fps: float
    videos: list[VideoEntry] = Field(default_factory=list)
    runs: list[RunRecord] = Field(default_factory=list)

    def entry(self, source: str) -> VideoEntry | None:
        """The entry of ``source``, if any."""
        return next((e for e in self.videos if e.source == source), None)

    def counts(self) -> dict[str, int]:
        """Videos per status."""
        counts = dict.fromkeys(("done", "failed", "partial", "pending"), 0)
        for e in self.videos:
            counts[e.status] += 1
        return counts

    def write(self, out_dir: Path) -> Path:
        """Write ``out_dir/corpus.json`` atomically."""
        return write_text_atomic(Path(out_dir) / INDEX_FILE, self.model_dump_json(indent=2) + "\n")


def read_index(out_dir: Path) -> CorpusIndex | None:
    """``out_dir/corpus.json``, or None when there is none; InputError when it is not a corpus index."""
    path = Path(out_dir) / INDEX_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        index = CorpusIndex.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        why = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        raise InputError(f"{path}: expected a corpus index written by `python -m clients corpus`, got {why} "
                         "(use another --out folder, or delete the file to start over)") from None
    if index.version != INDEX_VERSION:
        raise InputError(f"{path}: index version {index.version}, expected {INDEX_VERSION}")
    return index
