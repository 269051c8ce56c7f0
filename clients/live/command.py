"""``python -m clients live URL... [--streams FILE]``: its arguments and its run (``clients.cli`` delegates here).

One stream keeps the single-stream output: results directly in ``--out`` and the lines ``video`` prints.
Several write ``--out/NAME`` each and print one summary line per stream, then the captions note.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clients.analysis.summary import video_lines
from clients.live.run import LiveRun, LiveSettings, analyse_streams
from clients.live.sources import live_sources
from clients.media.stream import RECONNECT_FIRST_S, RECONNECT_MAX_S, StreamSettings, parse_ffmpeg_options
from clients.pipeline import ProgressFn, one_line
from mmw.cli_args import bounded, positive_float, positive_int
from mmw.config import Config
from mmw.errors import InputError, MMWError


def add_live_arguments(live: argparse.ArgumentParser) -> None:
    """The ``live`` subcommand's own arguments (the server and caption options are ``clients.cli``'s)."""
    live.add_argument("sources", nargs="*", metavar="URL",
                      help="rtsp://, http(s)://, udp:// stream, a webcam such as /dev/video0, or a video file; "
                           "several are followed at once, each into --out/NAME")
    live.add_argument("--streams", metavar="FILE",
                      help="more streams, one a line: URL or NAME URL (# starts a comment)")
    live.add_argument("--seconds", type=positive_float, metavar="N", help="stop after N seconds of stream time")
    live.add_argument("--fps", type=positive_float, help="frames analysed per second (default: client.fps)")
    live.add_argument("--format", metavar="FMT", help="FFmpeg input format, e.g. v4l2 (webcams), mpegts")
    live.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="FFmpeg input option, e.g. rtsp_transport=udp (repeatable)")
    live.add_argument("--max-waiting", type=positive_int, metavar="N",
                      help="frames of a stream waiting for the server before its oldest is dropped "
                           "(default: the batch size)")
    live.add_argument("--reconnect", type=bounded(float, 0), metavar="S",
                      help=f"a stream URL that drops is opened again ({RECONNECT_FIRST_S:g} s apart, doubling to "
                           f"{RECONNECT_MAX_S:g} s) for S seconds, then given up (default: client.reconnect_s; "
                           "0: never; files never reconnect)")


def stream_line(run: LiveRun, fps: float) -> str:
    """One stream's summary on one line."""
    s = run.stats
    again = f", {s.reconnects} reconnect{'s' if s.reconnects != 1 else ''}" if s.reconnects else ""
    error = f" ({one_line(run.error)})" if run.error else ""
    return (f"{run.name}: {s.frames_analysed} frames analysed of {s.frames_sampled} sampled at {fps:g} fps "
            f"({s.frames_decoded} decoded, {s.frames_dropped} dropped{again}); stopped: {s.stop_reason}{error}; "
            f"results: {run.results_path}")


def _print_one(run: LiveRun, fps: float) -> None:
    stats = run.stats
    partial = " (stopped by an error)" if run.error else ""
    print(f"results{partial}: {run.results_path}")
    if run.annotated_path is not None:
        print(f"annotated video: {run.annotated_path} ({run.codec}, {stats.frames_analysed} frames at {fps:g} fps)")
    again = f", {stats.reconnects} reconnects" if stats.reconnects else ""
    print(f"{stats.frames_analysed} frames analysed of {stats.frames_sampled} sampled at {fps:g} fps "
          f"({stats.frames_decoded} decoded, {stats.frames_dropped} dropped because the analysis was behind{again}) "
          f"in {stats.wall_s:.1f} s; stopped: {stats.stop_reason}")
    for line in video_lines(run.results, run.exports):
        print(line)


def run_live_command(
    args: argparse.Namespace,
    cfg: Config,
    *,
    out_dir: Path,
    make_client: Callable[[argparse.Namespace, Config], Any],
    ready: Callable[[Any], None],
    batch_size: Callable[[argparse.Namespace, Config, Any], int],
    progress: Callable[[tqdm], ProgressFn],
    min_score: float | None = None,
) -> int:
    """Analyse the live sources until --seconds, their ends or Ctrl-C/SIGTERM (results so far written; exit 0).

    ``make_client``, ``ready`` and ``batch_size`` are the CLI's (a client from the options, its readiness
    check and notes, the batch size clamped to the model's); ``min_score`` is what the results show (after
    tracking); exits 1 (an MMWError) when a stream failed.
    """
    sources = live_sources(args.sources, args.streams)  # checked before the server is contacted
    fps = args.fps or cfg.client.fps
    reconnect_s = cfg.client.reconnect_s if args.reconnect is None else args.reconnect
    stream = StreamSettings(fps=fps, seconds=args.seconds, input_format=args.format,
                            options=parse_ffmpeg_options(args.option), reconnect_s=reconnect_s)
    with make_client(args, cfg) as client:
        ready(client)
        settings = LiveSettings(stream, batch_size=batch_size(args, cfg, client), max_waiting=args.max_waiting,
                                min_score=min_score)
        total = len(sources) * round(args.seconds * fps) if args.seconds else None
        what = sources[0].url if len(sources) == 1 else f"{len(sources)} streams ({', '.join(s.name for s in sources)})"
        print(f"reading {what} at {fps:g} fps" + (f" for {args.seconds:g} s" if args.seconds else "") +
              "; Ctrl-C stops and writes the results so far", file=sys.stderr, flush=True)
        with tqdm(total=total, unit="frame", desc="live", disable=None, leave=False) as bar:
            runs = analyse_streams(sources, out_dir, client, settings, progress=progress(bar))
    if len(runs) == 1:
        _print_one(runs[0], fps)
    else:
        for run in runs:
            print(stream_line(run, fps))
    print(f"captions: {runs[0].results.captions.note}")
    _raise_failed(runs)
    return 0


def _raise_failed(runs: Sequence[LiveRun]) -> None:
    """The error of a failed stream: the run's own with one stream, one line naming each failed one with several."""
    failed = [r for r in runs if r.error is not None]
    if not failed:
        return
    if len(runs) == 1 or (len({id(r.error) for r in failed}) == 1 and len(failed) == len(runs)):
        error = failed[0].error
        assert isinstance(error, MMWError)
        raise error
    names = "; ".join(f"{r.name}: {one_line(r.error)}" for r in failed if r.error)
    raise InputError(f"live: {len(failed)} of {len(runs)} streams stopped by an error (expected every stream to "
                     f"run to its end): {names}")
