"""One video of a corpus, analysed in whichever worker process or Ray node runs it.

``analyse_one(job, client)`` is what a worker runs. It never raises for a bad video: the outcome says
``done``, ``failed`` (the video itself: corrupt, empty, unreadable, with the one-line reason), ``partial``
(stopped part-way: interrupted) or ``unreachable`` (the servers stayed down for ``retry_s``; the job stops).
A video whose folder already holds a partial ``results.json`` resumes it (``clients.pipeline.load_resume``):
the frames in the checkpoint are replayed, not sent again, so a video retried after its worker or node
was lost loses and repeats no frame. A complete ``results.json`` is not redone.

Each worker process keeps one ``SceneClient`` per ``ClientSettings`` for all the videos it runs.
Progress goes to an optional queue (``put_nowait``: a ``multiprocessing`` or ``ray.util.queue`` queue).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clients.corpus.inputs import fetch_url, is_url
from clients.media.video import expected_sample_count, probe
from clients.outputs.selection import OutputSelection
from clients.pipeline import Interrupted, analyse_video, clamp_batch_size, load_resume, one_line
from clients.recorder import ANNOTATED_VIDEO_FILE, RESULTS_FILE
from clients.results import VideoResults, read_results
from clients.transport import ClientSettings, SceneClient
from mmw.errors import InputError, MMWError, ServerUnavailable

Outcome = Literal["done", "failed", "partial", "unreachable"]
_REPORT_EVERY_S = 0.5


@dataclass(frozen=True)
class VideoJob:
    """What to do with one video (picklable: it travels to the worker)."""

    source: str
    out_dir: str  # this video's results folder
    fps: float
    batch_size: int
    outputs: str = str(OutputSelection())
    checkpoint_s: float = 2.0
    cue_s: float | None = None  # longest subtitle cue (None: the exports' default)
    min_score: float | None = None  # detections shown (after tracking); None: all the server returns
    downloads: str = ""  # where URLs are copied to (default: out_dir/../.downloads)


@dataclass(frozen=True)
class VideoOutcome:
    """What became of one video."""

    source: str
    status: Outcome
    frames: int = 0
    duration_s: float | None = None
    error: str | None = None
    wall_s: float = 0.0
    resumed_frames: int = 0
    worker: str = ""


@dataclass(frozen=True)
class ProgressEvent:
    """A worker's progress on one video (``done`` of about ``total`` frames)."""

    worker: str
    source: str
    done: int
    total: int
    finished: bool = False
    pid: int = 0


def worker_name() -> str:
    """``host:pid``, or the Ray node's id and the pid inside a Ray worker."""
    try:
        import ray

        if ray.is_initialized():
            return f"node {ray.get_runtime_context().get_node_id()[:6]} pid {os.getpid()}"
    except ImportError:
        pass
    return f"{socket.gethostname()} pid {os.getpid()}"


_CLIENTS: dict[ClientSettings, SceneClient] = {}
_BUSY = False


def _client(settings: ClientSettings) -> SceneClient:
    client = _CLIENTS.get(settings)
    if client is None:
        client = SceneClient.from_settings(settings)
        client.check_ready()
        _CLIENTS[settings] = client
    return client


def _drop_client(settings: ClientSettings) -> None:
    client = _CLIENTS.pop(settings, None)
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()


@atexit.register
def _close_clients() -> None:
    for settings in list(_CLIENTS):
        _drop_client(settings)


def _stop_signal(signum: int, frame: object) -> None:
    """In a pool worker: stop the video in progress (its results so far are written), or exit when idle."""
    if _BUSY:
        raise KeyboardInterrupt
    _close_clients()
    os._exit(0)


def init_pool_worker(queue: Any = None) -> None:
    """A local pool worker: Ctrl-C and SIGTERM stop its video cleanly; ``queue`` takes progress events."""
    global _POOL_QUEUE
    _POOL_QUEUE = queue
    signal.signal(signal.SIGINT, _stop_signal)
    signal.signal(signal.SIGTERM, _stop_signal)


_POOL_QUEUE: Any = None


def _reporter(queue: Any, worker: str, source: str) -> Any:
    last = [0.0]

    def report(done: int, total: int, finished: bool = False) -> None:
        now = time.monotonic()
        if queue is None or (not finished and now - last[0] < _REPORT_EVERY_S):
            return
        last[0] = now
        with contextlib.suppress(Exception):  # progress is best effort: a full or closed queue loses a tick
            queue.put_nowait(ProgressEvent(worker, source, done, total, finished, os.getpid()))

    return report


def finished_results(folder: Path, fps: float, outputs: OutputSelection | None = None) -> VideoResults | None:
    """The complete ``results.json`` in ``folder`` sampled at ``fps``, if it is there (with every file of
    ``outputs`` beside it, when given); None otherwise."""
    wanted = {RESULTS_FILE}
    if outputs is not None:
        wanted |= {*outputs.export_files, *([ANNOTATED_VIDEO_FILE] if outputs.annotated_video else [])}
    if not all((folder / name).is_file() for name in wanted):
        return None
    with contextlib.suppress(MMWError, OSError):
        results = read_results(folder / RESULTS_FILE)
        if isinstance(results, VideoResults) and results.complete and abs(results.fps_sampled - fps) < 1e-9:
            return results
    return None


def analyse_one(job: VideoJob, settings: ClientSettings, queue: Any = None) -> VideoOutcome:
    """Analyse ``job.source`` into ``job.out_dir`` (resuming a checkpoint there); never raises for a bad video."""
    global _BUSY
    queue = queue if queue is not None else _POOL_QUEUE
    worker = worker_name()
    started = time.monotonic()
    report = _reporter(queue, worker, job.source)
    out_dir = Path(job.out_dir)

    def outcome(status: Outcome, error: BaseException | str | None = None, **fields: Any) -> VideoOutcome:
        text = error if isinstance(error, str) or error is None else one_line(error)
        report(fields.get("frames", 0), fields.get("frames", 0), finished=True)
        return VideoOutcome(job.source, status, error=text, wall_s=time.monotonic() - started, worker=worker,
                            **fields)

    _BUSY = True
    try:
        try:
            path = fetch_url(job.source, Path(job.downloads or out_dir.parent / ".downloads")) \
                if is_url(job.source) else Path(job.source)
            info = probe(path)
            done = finished_results(out_dir, job.fps, OutputSelection.parse(job.outputs))
            if done is not None:
                return outcome("done", frames=len(done.frames), duration_s=done.duration_s)
            resume = load_resume(out_dir, job.source, job.fps) if (out_dir / RESULTS_FILE).is_file() else None
        except InputError as exc:
            return outcome("failed", exc)
        total = expected_sample_count(info, job.fps)
        report(len(resume.frames) if resume else 0, total)
        try:
            client = _client(settings)
            run = analyse_video(path, out_dir, client, fps=job.fps, batch_size=clamp_batch_size(client, job.batch_size),
                                info=info, source=job.source, resume=resume, checkpoint_s=job.checkpoint_s,
                                outputs=OutputSelection.parse(job.outputs), cue_s=job.cue_s, min_score=job.min_score,
                                progress=report)
        except ServerUnavailable as exc:
            _drop_client(settings)
            return outcome("unreachable", exc)
        except KeyboardInterrupt:
            return outcome("partial", "interrupted before the first frame")
        except MMWError as exc:
            return outcome("failed", exc)
        fields = dict(frames=len(run.results.frames), duration_s=info.duration_s,
                      resumed_frames=len(resume.frames) if resume else 0)
        if isinstance(run.error, ServerUnavailable):
            _drop_client(settings)
            return outcome("unreachable", run.error, **fields)
        if isinstance(run.error, Interrupted):
            return outcome("partial", run.error, **fields)
        if run.error is not None:
            return outcome("failed", run.error, **fields)
        return outcome("done", **fields)
    except Exception as exc:  # a bug or an unexpected library error stays this video's failure
        return outcome("failed", f"{type(exc).__name__}: {one_line(exc)}")
    finally:
        _BUSY = False
