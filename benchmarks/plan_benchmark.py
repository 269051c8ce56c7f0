"""Which serving plan is fastest here (``make bench-plan``): instances x threads per step, measured in one run.

``serving.instances`` / ``serving.onnx_threads: auto`` plan each step from the core count
(:func:`mmw.specs.serving_plan`). This script serves the sample video through Triton under that plan and
under the uniform alternatives (every step N instances x T threads), for each CPU runtime, and prints
frames/s and the server's CPU seconds per frame, so the ``auto`` plan can be checked against measurement.
Each plan gets a fresh tritonserver on a copy of the repository (the committed configs are never touched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.pipeline_benchmark import ROOT, free_ports, run_ours
from mmw.contract import ENSEMBLE_NAME


def candidate_plans(cores: int) -> list[tuple[str, object, object]]:
    """(label, serving.instances, serving.onnx_threads): auto, then every N x T with N * T == cores."""
    plans: list[tuple[str, object, object]] = [("auto", "auto", "auto")]
    plans += [(f"{n} x {cores // n}", n, cores // n) for n in range(1, cores + 1) if cores % n == 0]
    return plans


def serve_and_measure(video: Path, fps: float, runtime: str, instances: object, threads: object,
                      work: Path, in_flight: int) -> dict:
    from launcher.local_server import start_server, stop_server
    from mmw.config import Config, build, load_config
    from mmw.repository import write_repository

    repo = work / "model_repository"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(ROOT / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__"))
    http, grpc, metrics = free_ports(3)
    config: Config = build(Config, {
        "server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics, "state_dir": str(work / "state"),
                   "model_repository": str(repo)},
        "serving": {"cpu_runtime": runtime, "instances": instances, "onnx_threads": threads}})
    write_repository(config)
    record = start_server(config, [ENSEMBLE_NAME], timeout_s=300)
    try:
        url = f"127.0.0.1:{grpc}"
        quality = load_config().client.jpeg_quality
        run_ours(video, fps, url, in_flight, record.pid, quality)  # warm-up
        result = run_ours(video, fps, url, in_flight, record.pid, quality)
    finally:
        stop_server(config)
    return {"frames_per_s": result["frames"] / result["seconds"],
            "server_cpu_ms_per_frame": 1000 * result["server_cpu_s"] / result["frames"],
            "server_peak_rss_mb": result["server_peak_rss_mb"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the sample video")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight (enough to fill every plan)")
    parser.add_argument("--runtimes", default="openvino,onnxruntime")
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
    rows = []
    for runtime in args.runtimes.split(","):
        for label, instances, threads in candidate_plans(cores):
            row = {"runtime": runtime, "plan": label,
                   **serve_and_measure(video, args.fps, runtime, instances, threads, work, args.in_flight)}
            rows.append(row)
            print(f"{runtime} | {label} | {row['frames_per_s']:.1f} | {row['server_cpu_ms_per_frame']:.1f} | "
                  f"{row['server_peak_rss_mb']:.0f}", flush=True)
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
