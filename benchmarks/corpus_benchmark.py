"""What a corpus costs: the local process pool vs Ray on this machine, with and without the annotated MP4.

One tritonserver (``pipeline_benchmark.served``) and a corpus of short sample videos. Each variant analyses
the whole corpus into a fresh folder with ``clients.corpus.run_corpus``, the CLI's path:

- ``local, N workers``: ``LocalPool`` (spawned processes), every output;
- ``local, N workers, no mp4``: the same with ``--outputs results,coco,srt,vtt,csv`` (nothing drawn);
- ``ray, N workers``: ``RayCluster("local")``, a fresh Ray instance on this machine (its start is timed apart).

It prints seconds, frames/s and the CPU seconds per frame of the client processes and of the server, then the
ratios to the local pool measured in the same run. It is a script, never a timed test.

    .venv/bin/python -m benchmarks.corpus_benchmark [--videos 6] [--seconds 8] [--fps 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline_benchmark import ROOT, served, server_cpu_and_rss
from benchmarks.report import write_report


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_variant(name: str, sources: list[str], out: Path, runner: object, outputs: str, fps: float,
                server_pid: int) -> dict:
    """One pass of the corpus: wall seconds, frames, and CPU seconds of the client side and the server."""
    from clients.corpus import CorpusSettings, plan_corpus, run_corpus
    from clients.outputs.selection import OutputSelection

    settings = CorpusSettings(fps=fps, batch_size=4, outputs=OutputSelection.parse(outputs))
    server0, children0, self0 = server_cpu_and_rss(server_pid)[0], _children_cpu(), time.process_time()
    start = time.perf_counter()
    report = run_corpus(plan_corpus(sources, out, settings), out, runner, settings)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    frames = sum(o.frames for o in report.outcomes)
    client_cpu = _children_cpu() - children0 + time.process_time() - self0
    server_cpu = server_cpu_and_rss(server_pid)[0] - server0
    row = {"variant": name, "videos": len(report.outcomes), "frames": frames, "seconds": round(seconds, 2),
           "frames_per_s": round(frames / seconds, 2), "s_per_video": round(seconds / len(sources), 2),
           "server_cpu_s_per_frame": round(server_cpu / frames, 4),
           # Ray's workers are not this process's children: their CPU is not counted
           "client_cpu_s_per_frame": round(client_cpu / frames, 4) if name.startswith("local") else None,
           "done": report.index.counts()["done"]}
    print(f"{name:<28} {seconds:6.1f} s  {row['frames_per_s']:5.1f} frames/s  {row['s_per_video']:5.2f} s/video  "
          f"server {row['server_cpu_s_per_frame']:.3f} CPU s/frame"
          + (f"  client {row['client_cpu_s_per_frame']:.3f} CPU s/frame" if row["client_cpu_s_per_frame"] else ""),
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6, help="videos in the corpus (default 6)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each video (default 8)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames sampled per second (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="videos at once (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "corpus_benchmark.json")
    args = parser.parse_args(argv)

    from clients.corpus import LocalPool, RayCluster
    from clients.media.sample_video import make_sample_video
    from clients.transport import ClientSettings

    work = Path(tempfile.mkdtemp(prefix="mmw-corpus-bench-"))
    sources = [str(make_sample_video(work / "in" / f"clip{i}.mp4", seconds=args.seconds)) for i in range(args.videos)]
    cores = os.cpu_count() or 1
    print(f"# {cores} cores; {args.videos} videos of {args.seconds:g} s sampled at {args.fps:g} fps; one "
          f"tritonserver; {args.workers} videos at once", flush=True)
    rows: list[dict] = []
    all_outputs, no_mp4 = "results,coco,srt,vtt,csv,mp4", "results,coco,srt,vtt,csv"
    try:
        with served(work / "server") as (url, _http, pid):
            settings = ClientSettings(urls=(url,))
            w = args.workers
            rows.append(run_variant(f"local, {w} workers", sources, work / "local", LocalPool(settings, w),
                                    all_outputs, args.fps, pid))
            rows.append(run_variant(f"local, {w} workers, no mp4", sources, work / "local-no-mp4",
                                    LocalPool(settings, w), no_mp4, args.fps, pid))
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only
            start = time.perf_counter()
            ray_runner = RayCluster(settings, "local", workers=w)
            ray_start = time.perf_counter() - start
            print(f"ray start (ray.init of a new local instance): {ray_start:.1f} s", flush=True)
            rows.append(run_variant(f"ray, {w} workers", sources, work / "ray", ray_runner, all_outputs, args.fps,
                                    pid))
            rows[-1]["ray_start_s"] = round(ray_start, 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local = rows[0]["seconds"]
    print("\n# ratios to the local pool (same run)")
    for row in rows[1:]:
        row["vs_local"] = round(row["seconds"] / local, 3)
        print(f"{row['variant']:<28} {row['vs_local']:.2f}x the time")
    write_report(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
