"""Which serving plan is fastest here (``make bench-plan``): instances x threads per step, measured in one run.

``serving.instances`` / ``serving.onnx_threads: auto`` plan each step from the core count
(:func:`mmw.specs.serving_plan`). This script serves the sample video through Triton under that plan and
under the uniform alternatives (every step N instances x T threads), for each CPU runtime, and prints
frames/s and the server's CPU ms per frame, so the ``auto`` plan can be checked against measurement. Each
plan gets its own tritonserver on a copy of the repository (the committed configs are never touched); all of
them run at once and are measured in interleaved rounds, the median of which is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.pipeline_benchmark import ROOT, run_ours, served


def candidate_plans(cores: int) -> list[tuple[str, object, object]]:
    """(label, serving.instances, serving.onnx_threads): auto, then every N x T with N * T == cores."""
    plans: list[tuple[str, object, object]] = [("auto", "auto", "auto")]
    plans += [(f"{n} x {cores // n}", n, cores // n) for n in range(1, cores + 1) if cores % n == 0]
    return plans


def measure(video: Path, fps: float, url: str, pid: int, in_flight: int, quality: int) -> dict:
    result = run_ours(video, fps, url, in_flight, pid, quality)
    return {"frames_per_s": result["frames"] / result["seconds"],
            "server_cpu_ms_per_frame": 1000 * result["server_cpu_s"] / result["frames"],
            "server_peak_rss_mb": result["server_peak_rss_mb"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the sample video")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight (enough to fill every plan)")
    parser.add_argument("--runtimes", default="openvino,onnxruntime")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per plan (the median counts)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "plan_benchmark.json")
    args = parser.parse_args(argv)

    from clients.media.sample_video import make_sample_video

    work = Path(tempfile.mkdtemp(prefix="mmw-plan-"))
    video = work / "sample.mp4"
    make_sample_video(video, seconds=args.seconds)
    cores = os.cpu_count() or 1
    print(f"# {cores} cores; {args.seconds:g} s video sampled at {args.fps:g} fps, {args.in_flight} requests "
          "in flight", flush=True)
    print("runtime | plan (instances x threads) | frames/s | server CPU ms/frame | server peak RSS MB")
    print("--- | --- | --- | --- | ---")
    from mmw.config import load_config

    quality = load_config().client.jpeg_quality
    plans = [(runtime, *plan) for runtime in args.runtimes.split(",") for plan in candidate_plans(cores)]
    rounds: dict[int, list[dict]] = {i: [] for i in range(len(plans))}
    with contextlib.ExitStack() as stack:  # every plan's server at once (idle ones cost memory, not CPU)
        servers = [stack.enter_context(served(work / f"plan{i}", {"cpu_runtime": runtime, "instances": n,
                                                                  "onnx_threads": t}))
                   for i, (runtime, _, n, t) in enumerate(plans)]
        for url, _, pid in servers:
            run_ours(video, args.fps, url, args.in_flight, pid, quality)  # warm-up
        for _ in range(args.rounds):  # interleaved rounds: drift on a shared host hits every plan alike
            for i, (url, _, pid) in enumerate(servers):
                rounds[i].append(measure(video, args.fps, url, pid, args.in_flight, quality))
    rows = []
    for i, (runtime, label, _, _) in enumerate(plans):
        median = {k: statistics.median(r[k] for r in rounds[i]) for k in rounds[i][0]}
        rows.append({"runtime": runtime, "plan": label, **median})
        print(f"{runtime} | {label} | {median['frames_per_s']:.1f} | {median['server_cpu_ms_per_frame']:.1f} | "
              f"{median['server_peak_rss_mb']:.0f}", flush=True)
    for runtime in args.runtimes.split(","):
        mine = [r for r in rows if r["runtime"] == runtime]
        best = max(mine, key=lambda r: r["frames_per_s"])
        auto = next(r for r in mine if r["plan"] == "auto")
        print(f"{runtime}: auto / best ({best['plan']}) = {auto['frames_per_s'] / best['frames_per_s']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "rows": rows}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
