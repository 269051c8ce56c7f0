"""Throughput of one ``SceneClient`` over 1 and 2 tritonserver replicas on this machine, and the CPU per replica.

Each replica is a tritonserver on its own free loopback ports and its own copy of the model repository
(``pipeline_benchmark.served``). The client is the CLI's path (``frame_payload`` in a prefetch thread,
``infer_frames_many``) given every replica's URL: it spreads requests over them (least in flight).
Per replica it reports the requests it got and the CPU seconds of its tritonserver and stub processes
per frame it served. On a machine with few cores the replicas share them, so 2 replicas cannot double
the throughput; the CPU per frame says where the time goes.

    .venv/bin/python -m benchmarks.replicas_benchmark [--video data/sample.mp4] [--fps 10] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline_benchmark import BATCH, ROOT, batched, prefetched, sampled_frames, served, server_cpu_and_rss


def run(video: Path, fps: float, urls: list[str], pids: list[int], in_flight: int, transport: str) -> dict:
    """One pass of the video over ``urls``: frames, seconds, and per replica requests and CPU seconds."""
    from clients.transport import SceneClient

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = [server_cpu_and_rss(p)[0] for p in pids]
    frames = 0
    with SceneClient(urls, max_in_flight=in_flight, transport=transport) as client:  # type: ignore[arg-type]
        payloads = (client.frame_payload(rgb) for rgb in sampled_frames(video, fps))
        start = time.perf_counter()
        for results in client.infer_frames_many(batched(prefetched(payloads), BATCH)):
            frames += len(results)
        seconds = time.perf_counter() - start
        requests = client.requests_per_endpoint()
        sent_as = client.frame_transport()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = [server_cpu_and_rss(p)[0] - c for p, c in zip(pids, cpu0, strict=True)]
    rss = [server_cpu_and_rss(p)[1] for p in pids]
    total_requests = sum(requests.values()) or 1
    replicas = [{"url": u, "requests": requests.get(u, 0), "server_cpu_s": c, "rss_mb": r,
                 "frames_served": frames * requests.get(u, 0) / total_requests,
                 "cpu_s_per_frame": c / max(1e-9, frames * requests.get(u, 0) / total_requests)}
                for u, c, r in zip(urls, cpu, rss, strict=True)]
    return {"replicas": len(urls), "frames": frames, "seconds": seconds, "fps": frames / seconds,
            "transport": sent_as, "in_flight": in_flight, "per_replica": replicas,
            "server_cpu_s": sum(cpu), "server_cpu_s_per_frame": sum(cpu) / max(1, frames),
            "client_cpu_s": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=ROOT / "data" / "sample.mp4")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="instead of --video, a generated sample video this long (make_sample_video)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (default 10)")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--transport", default="auto", help="auto (shm on loopback), jpeg, raw or shm")
    parser.add_argument("--max-replicas", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "replicas_benchmark.json")
    args = parser.parse_args(argv)
    (ROOT / ".triton").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="replicas-benchmark-", dir=ROOT / ".triton"))
    try:
        return _measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, work: Path) -> int:

    if args.seconds > 0:
        from clients.media.sample_video import make_sample_video

        work.mkdir(parents=True, exist_ok=True)
        args.video = make_sample_video(work / f"sample-{args.seconds:g}s.mp4", seconds=args.seconds)
    rows = []
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(served(work / f"replica-{i}", {})) for i in range(args.max_replicas)]
        for url, _, _ in servers:  # warm-up: every replica's models have run once
            run(args.video, 2.0, [url], [servers[0][2]], args.in_flight, args.transport)
        for n in range(1, args.max_replicas + 1):
            chosen = servers[:n]
            row = run(args.video, args.fps, [u for u, _, _ in chosen], [p for _, _, p in chosen], args.in_flight,
                      args.transport)
            rows.append(row)
            per = ", ".join(f"{r['requests']} req, {r['cpu_s_per_frame']:.3f} cpu-s/frame" for r in row["per_replica"])
            print(f"{n} replica(s): {row['frames']} frames in {row['seconds']:.1f} s = {row['fps']:.2f} frames/s; "
                  f"server CPU {row['server_cpu_s_per_frame']:.3f} s/frame ({per}); client CPU "
                  f"{row['client_cpu_s'] / max(1, row['frames']):.3f} s/frame; transport {row['transport']}",
                  flush=True)
    result = {"video": str(args.video), "fps": args.fps, "cores": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
