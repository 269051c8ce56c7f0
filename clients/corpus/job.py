"""The corpus job: plan what is left, run it on a ``CorpusRunner``, keep ``corpus.json`` up to date.

``plan_corpus`` reads the index of an earlier run and decides per video: skip it (done with the outputs
asked for; or failed, and the file has not changed since, unless ``retry_failed``), or analyse it (new,
partial, or asked again). ``run_corpus`` keeps ``runner.workers`` videos in flight, records every outcome
in the index as it arrives, and stops early, with the index written, on Ctrl-C (``Interrupted``) or
when the servers stay unreachable (``ServerUnavailable``); a rerun of the same command then resumes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from clients.corpus.index import CorpusIndex, RunRecord, VideoEntry, now_iso, read_index
from clients.corpus.inputs import folder_names, is_url
from clients.corpus.runners import CorpusRunner
from clients.corpus.worker import ProgressEvent, VideoJob, VideoOutcome, finished_results
from clients.outputs.selection import OutputSelection
from clients.pipeline import Interrupted
from clients.recorder import RESULTS_FILE
from mmw.errors import InputError, ServerUnavailable

_STOP_WAIT_S = 30.0  # after Ctrl-C: how long the videos in progress get to write their results


@dataclass(frozen=True)
class CorpusSettings:
    """How every video of the corpus is analysed."""

    fps: float
    batch_size: int
    outputs: OutputSelection = field(default_factory=OutputSelection)
    retry_failed: bool = False
    checkpoint_s: float = 2.0
    cue_s: float | None = None  # longest subtitle cue (None: the exports' default)
    min_score: float | None = None  # detections shown (after tracking); None: all the server returns

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise InputError(f"corpus: expected fps > 0, got {self.fps}")
        if self.batch_size < 1:
            raise InputError(f"corpus: expected a batch size >= 1, got {self.batch_size}")


@dataclass
class CorpusPlan:
    """The index (with an entry for every source) and the entries to analyse in this run."""

    index: CorpusIndex
    todo: list[VideoEntry]
    skipped: dict[str, int]  # status -> videos left as they are


@dataclass
class CorpusReport:
    """What a run did; ``index`` is what ``corpus.json`` now says."""

    index: CorpusIndex
    index_path: Path
    outcomes: list[VideoOutcome]
    skipped: dict[str, int]
    runner: str
    wall_s: float


def _fingerprint(source: str) -> tuple[int | None, int | None]:
    if is_url(source):
        return None, None
    try:
        st = Path(source).stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _complete(out_dir: Path, entry: VideoEntry, fps: float) -> bool:
    return finished_results(out_dir / entry.folder, fps) is not None


def _settled(out_dir: Path, entry: VideoEntry, settings: CorpusSettings) -> bool:
    if entry.status == "done":
        wrote = OutputSelection.parse(entry.outputs) if entry.outputs else OutputSelection(frozenset())
        return wrote.covers(settings.outputs) and _complete(out_dir, entry, settings.fps)
    if entry.status == "failed":
        return not settings.retry_failed and (entry.input_size, entry.input_mtime_ns) == _fingerprint(entry.source)
    return False


def plan_corpus(sources: Sequence[str], out_dir: Path, settings: CorpusSettings) -> CorpusPlan:
    """The index of ``out_dir`` (an earlier run's, or a new one) and what is left to do for ``sources``."""
    index = read_index(out_dir) or CorpusIndex(fps=settings.fps)
    if abs(index.fps - settings.fps) > 1e-9:
        raise InputError(f"{out_dir}: its corpus was sampled at {index.fps:g} fps, expected {settings.fps:g} fps "
                         f"(rerun with --fps {index.fps:g}, or use another --out folder)")
    names = folder_names(sources, {e.source: e.folder for e in index.videos})
    todo: list[VideoEntry] = []
    skipped: dict[str, int] = {}
    for source in sources:
        entry = index.entry(source)
        if entry is None:
            entry = VideoEntry(source=source, folder=names[source])
            index.videos.append(entry)
        if _settled(out_dir, entry, settings):
            skipped[entry.status] = skipped.get(entry.status, 0) + 1
        else:
            todo.append(entry)
    return CorpusPlan(index, todo, skipped)


def _record(entry: VideoEntry, outcome: VideoOutcome, settings: CorpusSettings) -> None:
    entry.status = "partial" if outcome.status == "unreachable" else outcome.status
    entry.frames = outcome.frames
    entry.duration_s = outcome.duration_s if outcome.duration_s is not None else entry.duration_s
    entry.error = outcome.error
    entry.wall_s = round(outcome.wall_s, 3) if outcome.worker else entry.wall_s
    entry.resumed_frames = outcome.resumed_frames
    entry.worker = outcome.worker or entry.worker
    entry.outputs = str(settings.outputs) if outcome.status == "done" else entry.outputs
    entry.finished_at = now_iso()
    entry.input_size, entry.input_mtime_ns = _fingerprint(entry.source)


def run_corpus(
    plan: CorpusPlan,
    out_dir: Path,
    runner: CorpusRunner,
    settings: CorpusSettings,
    *,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_outcome: Callable[[VideoEntry, VideoOutcome], None] | None = None,
) -> CorpusReport:
    """Analyse ``plan.todo`` on ``runner``; ``corpus.json`` is rewritten after every video.

    Raises ``ServerUnavailable`` when a worker found every server unreachable for its ``retry_s`` (the
    videos in flight are stopped, keeping their checkpoints) and ``Interrupted`` on Ctrl-C, both after
    writing the index; the runner is closed either way.
    """
    out_dir = Path(out_dir)
    index = plan.index
    entries = {e.source: e for e in plan.todo}
    todo = deque(plan.todo)
    record = RunRecord(started_at=now_iso(), runner=runner.description, workers=runner.workers,
                       videos=len(plan.todo))
    index.runs.append(record)
    index_path = index.write(out_dir)
    outcomes: list[VideoOutcome] = []
    unreachable: VideoOutcome | None = None
    started = time.monotonic()

    def collect(timeout_s: float) -> None:
        nonlocal unreachable
        for job, outcome in runner.wait(timeout_s):
            entry = entries[job.source]
            if outcome.status == "done" and not _complete(out_dir, entry, settings.fps):
                outcome = replace(outcome, status="failed", error=(
                    f"{outcome.worker} finished it, but {out_dir / entry.folder / RESULTS_FILE} is not there: "
                    "--out must be on a filesystem that every worker and node shares"))
            _record(entry, outcome, settings)
            outcomes.append(outcome)
            index.write(out_dir)
            if on_outcome is not None:
                on_outcome(entry, outcome)
            if outcome.status == "unreachable" and unreachable is None:
                unreachable = outcome
                todo.clear()
                runner.stop()
        for event in runner.events():
            if on_event is not None:
                on_event(event)

    try:
        try:
            while todo or runner.in_flight():
                while todo and runner.in_flight() < runner.workers:
                    entry = todo.popleft()
                    entry.started_at = now_iso()
                    runner.submit(VideoJob(entry.source, str(out_dir / entry.folder), settings.fps,
                                           settings.batch_size, str(settings.outputs), settings.checkpoint_s,
                                           settings.cue_s, settings.min_score, str(out_dir / ".downloads")))
                collect(0.25)
        except KeyboardInterrupt:
            record.stopped = "interrupted"
            runner.stop()
            deadline = time.monotonic() + _STOP_WAIT_S
            while runner.in_flight() and time.monotonic() < deadline:
                collect(0.5)
            raise Interrupted(f"interrupted: {len(outcomes)} videos finished in this run; rerun the same command "
                              "to go on (finished videos are skipped, partial ones resume)") from None
    finally:
        runner.close()
        record.wall_s = round(time.monotonic() - started, 3)
        if unreachable is not None:
            record.stopped = "server unreachable"
        index.write(out_dir)
    if unreachable is not None:
        left = sum(1 for e in index.videos if e.status in ("pending", "partial"))
        raise ServerUnavailable(
            f"{unreachable.error} Stopped the corpus with {index.counts()['done']} videos done and {left} left; "
            f"the index is {index_path}. Start the server (`launcher run`), then rerun the same command to resume.")
    return CorpusReport(index, index_path, outcomes, plan.skipped, runner.description,
                        time.monotonic() - started)
