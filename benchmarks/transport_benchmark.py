"""How frames travel, side by side: jpeg, raw and shm (``client.transport``), ratios measured in one run.

On the sample video's sampled frames, at one batch size and one number of requests in flight, each
transport runs the CLI's client path (decode in a prefetch thread, ``SceneClient.frame_payload`` there,
``infer_frames_many`` of batches, no outputs written) and reports:

- ``client ms/frame``: the client's own work per frame to encode and send it: ``frame_payload`` (the JPEG
  encoding, or nothing) plus building and handing over each request (serialising FRAME bytes into the
  request for raw, writing them into the shared-memory region for shm);
- ``client CPU ms/frame``: the whole client process's CPU time per frame (decoding, gRPC, parsing included);
- ``frames/s``: frames analysed per second, end to end;
- ``preprocess ms/request``: the server's preprocessing step per request (decoding the JPEGs, or not), from
  Triton's statistics; and, for a server this script starts, the server's CPU ms per frame.

Transports run in rounds (jpeg, raw, shm, jpeg, ...), each after a warm-up; the median round counts. Starts
its own tritonserver on free loopback ports unless ``--url`` names a running one (on loopback, for shm).
Prints a table and the ratios against jpeg, and writes JSON. Numbers on a shared host are indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.pipeline_benchmark import batched, model_stats, prefetched, served, server_cpu_and_rss
from benchmarks.report import write_report

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("jpeg", "raw", "shm")
PREPROCESS = {"jpeg": "preprocess", "raw": "preprocess_frames", "shm": "preprocess_frames"}


def _timed(fn: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """``fn`` that adds the seconds each call takes to ``spent[0]`` (calls may come from two threads)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t
    return wrapper


def run_transport(transport: str, video: Path, fps: float, url: str, batch: int, in_flight: int,
                  quality: int, limit: int | None = None) -> dict[str, Any]:
    """One pass of the client path over the video with ``transport``."""
    from clients.media.video import sample_frames
    from clients.transport import SceneClient

    encode, send = [0.0], [0.0]
    frames = 0
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    with SceneClient(url, max_in_flight=in_flight, transport=transport, jpeg_quality=quality) as client:  # type: ignore[arg-type]
        if client.frame_transport() != transport:
            raise RuntimeError(f"transport {transport}: the client chose {client.frame_transport()} "
                               f"({'; '.join(client.transport_notes)})")
        payload = _timed(client.frame_payload, encode)
        client._send = _timed(client._send, send)  # type: ignore[method-assign]  # the request hand-over
        sampled = (f.rgb for f in itertools.islice(sample_frames(video, fps), limit))
        start = time.perf_counter()
        for results in client.infer_frames_many(batched(prefetched(payload(rgb) for rgb in sampled), batch)):
            frames += len(results)
        seconds = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {"transport": transport, "frames": frames, "seconds": seconds, "frames_per_s": frames / seconds,
            "client_ms_per_frame": (encode[0] + send[0]) * 1000 / frames, "encode_ms_per_frame":
            encode[0] * 1000 / frames, "send_ms_per_frame": send[0] * 1000 / frames,
            "client_cpu_ms_per_frame": cpu * 1000 / frames}


def _step_ms(before: dict, after: dict, model: str) -> tuple[int, float]:
    """(requests, mean compute_infer ms per request) of ``model`` between two statistics snapshots."""
    new, old = after.get(model, {}).get("inference_stats", {}), before.get(model, {}).get("inference_stats", {})
    n = new.get("success", {}).get("count", 0) - old.get("success", {}).get("count", 0)
    ns = new.get("compute_infer", {}).get("ns", 0) - old.get("compute_infer", {}).get("ns", 0)
    return n, (ns / n / 1e6 if n else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the sample video (default 8)")
    parser.add_argument("--size", default="640x480", help="frame size of the sample video (default 640x480)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (default: all of 10)")
    parser.add_argument("--batch", type=int, help="frames per request (default: client.batch_size)")
    parser.add_argument("--in-flight", type=int, help="requests in flight (default: client.max_in_flight)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three transports (default 3)")
    parser.add_argument("--url", help="a running server's gRPC HOST:PORT (default: start one on free ports)")
    parser.add_argument("--http-port", type=int, help="with --url: its HTTP port, for the per-step statistics")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "transport_benchmark.json")
    args = parser.parse_args(argv)

    from clients.media.sample_video import make_sample_video
    from mmw.config import load_config

    client_cfg = load_config().client
    batch, in_flight = args.batch or client_cfg.batch_size, args.in_flight or client_cfg.max_in_flight
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="mmw-transport-bench-"))
    video = make_sample_video(work / "sample.mp4", seconds=args.seconds, size=(width, height))
    server = contextlib.ExitStack()
    server_pid = None
    url, http_port = args.url, args.http_port
    if url is None:
        from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME

        url, http_port, server_pid = server.enter_context(served(work, models=(ENSEMBLE_NAME, RAW_ENSEMBLE_NAME)))
    print(f"# {os.cpu_count()} cores; sample video {args.seconds:g} s {width}x{height} at 10 fps, sampled at "
          f"{args.fps:g} fps; batches of {batch}, {in_flight} in flight; {args.rounds} rounds; server {url}",
          flush=True)
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in TRANSPORTS}
    with server:
        for transport in TRANSPORTS:  # warm-up: arenas, regions, the raw ensemble's first batches
            run_transport(transport, video, args.fps, url, batch, in_flight, client_cfg.jpeg_quality, limit=4 * batch)
        for k in range(args.rounds):
            for transport in TRANSPORTS:
                before = model_stats(http_port) if http_port else {}
                cpu0 = server_cpu_and_rss(server_pid)[0] if server_pid else 0.0
                row = run_transport(transport, video, args.fps, url, batch, in_flight, client_cfg.jpeg_quality)
                if server_pid:
                    row["server_cpu_ms_per_frame"] = (server_cpu_and_rss(server_pid)[0] - cpu0) * 1000 / row["frames"]
                if http_port:
                    row["preprocess_requests"], row["preprocess_ms_per_request"] = _step_ms(
                        before, model_stats(http_port), PREPROCESS[transport])
                rounds[transport].append(row)
                print(f"round {k + 1} {transport}: {row['frames_per_s']:.1f} frames/s, client "
                      f"{row['client_ms_per_frame']:.2f} ms/frame", flush=True)

    def median(transport: str, key: str) -> float:
        values = [r[key] for r in rounds[transport] if key in r]
        return float(statistics.median(values)) if values else float("nan")

    keys = ("frames_per_s", "client_ms_per_frame", "encode_ms_per_frame", "send_ms_per_frame",
            "client_cpu_ms_per_frame", "server_cpu_ms_per_frame", "preprocess_ms_per_request")
    table = {t: {key: median(t, key) for key in keys} for t in TRANSPORTS}
    print("\ntransport | frames/s | client ms/frame (encode + send) | client CPU ms/frame | server CPU ms/frame | "
          "preprocess ms/request")
    print(" | ".join("---" for _ in range(6)))
    for t, m in table.items():
        print(f"{t} | {m['frames_per_s']:.1f} | {m['client_ms_per_frame']:.2f} ({m['encode_ms_per_frame']:.2f} + "
              f"{m['send_ms_per_frame']:.2f}) | {m['client_cpu_ms_per_frame']:.2f} | "
              f"{m['server_cpu_ms_per_frame']:.2f} | {m['preprocess_ms_per_request']:.2f}")
    ratios = {}
    for t in TRANSPORTS[1:]:
        ratios[f"{t} / jpeg (frames/s)"] = table[t]["frames_per_s"] / table["jpeg"]["frames_per_s"]
        ratios[f"{t} / jpeg (client ms/frame)"] = table[t]["client_ms_per_frame"] / table["jpeg"]["client_ms_per_frame"]
    print("\nratio | measured")
    for key, value in ratios.items():
        print(f"{key} | {value:.2f}")
    write_report(args.out, {
              "settings": {"seconds": args.seconds, "size": [width, height], "fps": args.fps, "batch": batch,
                           "in_flight": in_flight, "rounds": args.rounds, "url": url},
              "medians": table, "ratios": ratios, "rounds": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
