"""``python -m clients corpus INPUT... --out DIR``: the command line of the corpus job, and its progress bars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from clients.corpus.index import VideoEntry
from clients.corpus.inputs import collect_videos
from clients.corpus.job import CorpusSettings, plan_corpus, run_corpus
from clients.corpus.runners import open_runner
from clients.corpus.worker import ProgressEvent, VideoOutcome
from clients.outputs.selection import OutputSelection
from clients.pipeline import Interrupted
from clients.transport import ClientSettings, SceneClient
from mmw.cli_args import positive_float, positive_int
from mmw.config import Config

PROG = "clients"


def add_corpus_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``corpus`` subcommand's own options (the caller adds the server, caption and output options)."""
    corpus = sub.add_parser("corpus", help="analyse many videos (files, folders, globs, lists) on a process pool "
                                           "or a Ray cluster; resumable, with corpus.json as the index")
    corpus.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (searched recursively), globs ('clips/**/*.mp4'), text files "
                             "of paths (.txt/.lst, or @FILE), or URLs (fsspec)")
    corpus.add_argument("--fps", type=positive_float, help="frames sampled per second (default: client.fps)")
    corpus.add_argument("--workers", type=int, metavar="N",
                        help="videos at once (default: corpus.workers; 0: one per CPU of this machine or cluster)")
    corpus.add_argument("--ray", metavar="ADDRESS",
                        help="run on Ray: auto (the cluster `ray start` set up), HOST:PORT, ray://HOST:PORT, or "
                             "local (a new one on this machine); default: corpus.ray, empty: a local process pool")
    corpus.add_argument("--retry-failed", action="store_true",
                        help="analyse again the videos that failed before (default: only when their file changed)")
    corpus.add_argument("--attempts", type=positive_int, metavar="N",
                        help="tries per video when its worker or node is lost (default: corpus.attempts)")
    corpus.add_argument("--checkpoint", type=float, default=2.0, metavar="S",
                        help="rewrite each video's partial results.json every S seconds (default 2)")
    return corpus


class ProgressBoard:
    """tqdm bars: the corpus (videos) and one per worker (frames of its current video)."""

    def __init__(self, videos: int) -> None:
        self.overall = tqdm(total=videos, unit="video", desc="corpus", position=0, disable=None, leave=False)
        self._bars: dict[str, tqdm] = {}

    def event(self, event: ProgressEvent) -> None:
        desc = f"{event.worker}: {Path(event.source).name}"
        bar = self._bars.get(event.worker)
        if bar is None:
            bar = tqdm(total=event.total, desc=desc, unit="frame", position=len(self._bars) + 1, disable=None,
                       leave=False)
            self._bars[event.worker] = bar
        bar.set_description(desc, refresh=False)
        bar.total = max(event.total, event.done)
        bar.n = event.done
        bar.refresh()

    def outcome(self, entry: VideoEntry, outcome: VideoOutcome) -> None:
        self.overall.update(1)
        tqdm.write(outcome_line(entry, outcome))

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self.overall.close()


def outcome_line(entry: VideoEntry, outcome: VideoOutcome) -> str:
    """One line per finished video: status, folder, frames and time, or the reason it failed."""
    if outcome.status == "done":
        resumed = f", {outcome.resumed_frames} resumed from its checkpoint" if outcome.resumed_frames else ""
        what = f"{outcome.frames} frames in {outcome.wall_s:.1f} s{resumed}"
    else:
        what = outcome.error or outcome.status
    where = f" [{outcome.worker}]" if outcome.worker else ""
    return f"{entry.status:<8}{entry.folder}: {what}{where}"


def run_corpus_command(args: argparse.Namespace, cfg: Config, settings: ClientSettings,
                       min_score: float | None = None) -> int:
    """Plan, check the servers, run and summarise; errors (MMWError) go up to the CLI's one-line handler."""
    out_dir = Path(args.out) if args.out else cfg.path(cfg.client.out_dir)
    corpus = CorpusSettings(
        fps=args.fps or cfg.client.fps, batch_size=args.batch_size or cfg.client.batch_size,
        outputs=OutputSelection.parse(args.outputs or cfg.corpus.outputs), retry_failed=args.retry_failed,
        checkpoint_s=args.checkpoint, cue_s=args.cue_s or cfg.client.cue_s, min_score=min_score)
    sources = collect_videos(args.inputs)
    plan = plan_corpus(sources, out_dir, corpus)
    index_path = out_dir / "corpus.json"
    if not plan.todo:
        failed = plan.skipped.get("failed", 0)
        hint = f" ({failed} failed: rerun with --retry-failed to try them again)" if failed else ""
        print(f"corpus: nothing to do: all {len(sources)} videos are finished, {plan.skipped.get('done', 0)} done"
              f"{hint}; index: {index_path}")
        return 0
    with SceneClient.from_settings(settings) as client:  # fail fast, before any worker starts
        client.check_ready()
    runner = open_runner(settings, args.ray if args.ray is not None else cfg.corpus.ray,
                         workers=cfg.corpus.workers if args.workers is None else args.workers,
                         attempts=args.attempts or cfg.corpus.attempts)
    before = sum(plan.skipped.values())
    print(f"corpus: {len(sources)} videos, {len(plan.todo)} to analyse" +
          (f" ({before} finished before)" if before else "") + f", on {runner.description}", file=sys.stderr,
          flush=True)
    board = ProgressBoard(len(plan.todo))
    try:
        report = run_corpus(plan, out_dir, runner, corpus, on_event=board.event, on_outcome=board.outcome)
    except Interrupted as exc:  # Ctrl-C or SIGTERM: every video in flight wrote its results so far
        board.close()
        print(f"{PROG}: {exc}; index: {index_path}", file=sys.stderr)
        return 130
    finally:
        board.close()
    counts = report.index.counts()
    left = counts["partial"] + counts["pending"]
    print(f"corpus: {counts['done']} done, {counts['failed']} failed, {left} left, in {report.wall_s:.1f} s on "
          f"{report.runner}; index: {report.index_path}")
    if left:
        print("corpus: note: rerun the same command to finish the videos left", file=sys.stderr)
    return 0
