"""Side-by-side benchmark of the whole pipeline (``make bench``): ratios taken in one run on one machine.

Runs, on the sample video and on one 10x longer, with the same models and the same sampled frames:

1. ``floor-openvino``    the pipeline in-process: PyAV decode (in its own thread), shared numpy pre/post,
   OpenVINO at the precision the server serves (serving.cpu_precision through the gate), one worker per
   core (each 1 thread, batches of 4 raw frames); ``floor-onnxruntime`` the same with onnxruntime fp32;
2. ``eager``  what a user would write instead: PyTorch eager, frame by frame;
3. ``opencv`` the ORIGINAL SSD frozen graph through OpenCV dnn, detector only, vs ``floor-detector``
   (the same detector ONNX in onnxruntime, same frames, same threads);
4. ``ours``   the client through Triton over gRPC as the CLI sends frames (``client.transport``, shared
   memory on loopback) at 1, 2 and 4 requests in flight, the networks on ``serving.cpu_runtime``; and
   ``before``, the server as it was before OpenVINO (onnxruntime, frames as JPEG), at 2 in flight;
   ``perf_analyzer`` on the ensemble;
5. ``networks`` ms per image of each network on every CPU runtime and precision here, with the fidelity
   gate of each against onnxruntime fp32 (int8 quantized by NNCF for the occasion).

Every in-process variant runs in a fresh child process, so its CPU time and peak RSS are its own.
For Triton, server CPU time and RSS cover tritonserver and its python-backend stub processes.
Prints a table, the ratios against the targets, a per-step breakdown from Triton's statistics
extension, and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import write_report
from mmw.contract import ENSEMBLE_NAME

ROOT = Path(__file__).resolve().parent.parent
BATCH = 4
TARGETS = {
    "ours / floor-openvino (frames/s)": 0.9,
    "ours / floor-onnxruntime (frames/s)": 2.0,
    "ours / before (frames/s)": 2.0,
    "ours / eager (frames/s)": 2.0,
    "floor-detector / opencv": 1.5,
    "4 in flight / 1 in flight": 1.8,
    "long / short (ours frames/s)": 0.9,
    "ours / floor-openvino, long video (frames/s)": 0.9,
}


# --- frames -----------------------------------------------------------------------------------------------

def prefetched(items: Iterator, depth: int = 8) -> Iterator:
    """The clients' prefetch (decoding overlaps inference), as the CLI uses it."""
    from clients.media.prefetch import prefetched as clients_prefetched

    return clients_prefetched(items, depth)


def sampled_frames(video: Path, fps: float) -> Iterator[np.ndarray]:
    from clients.media.video import sample_frames

    for frame in sample_frames(video, fps):
        yield frame.rgb


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- in-process variants (each runs in a child process) ------------------------------------------------------

def run_floor(video: Path, fps: float, workers: int, runtime: str = "onnxruntime") -> dict:
    """The pipeline in-process: one pipeline per worker thread, 1 inference thread each; onnxruntime fp32, or
    OpenVINO at the precision the server would serve (config.yaml's serving.cpu_precision, through the gate)."""
    from mmw.config import load_config
    from mmw.onnx_runtime import InProcessPipeline
    config = load_config()
    repo = ROOT / "model_repository"
    precision = config.serving.cpu_precision if runtime == "openvino" else "f32"
    pipes = [InProcessPipeline.served(config.models, repo / "detector/1/model.onnx", repo / "labeller/1/model.onnx",
                                      threads=1, runtime=runtime, precision=precision)
             for _ in range(workers)]
    work: queue.Queue = queue.Queue(2 * workers)
    latencies: list[float] = []
    count = [0]

    def worker(pipe: InProcessPipeline) -> None:
        while (batch := work.get()) is not None:
            t = time.perf_counter()
            pipe.frames(np.stack(batch))
            latencies.append(time.perf_counter() - t)
            count[0] += len(batch)

    threads = [threading.Thread(target=worker, args=(p,)) for p in pipes]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for batch in batched(prefetched(sampled_frames(video, fps)), BATCH):
        work.put(batch)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    return {"frames": count[0], "seconds": time.perf_counter() - start, "latencies_s": latencies,
            "runs_on": pipes[0].detector.description}


def network_timings() -> list[dict]:
    """ms per image of each network (batch 1 and 4, 1 and 2 threads) on every CPU runtime and precision this
    machine has, with the fidelity gate of each against onnxruntime fp32 (int8: quantized here by NNCF)."""
    import shutil

    from export.fidelity import fidelity_frames
    from export.openvino_ir import calibration_frames, onnx_to_int8_ir
    from export.precision_gate import detector_gate, labeller_gate, ms_per_image
    from mmw.config import load_config
    from mmw.network_runtimes import OnnxRuntimeRunner, PrecisionChoice, cpu_capabilities, ir_path, open_network
    from mmw.processing.images import detector_input, labeller_input

    config = load_config()
    precisions = ["f32", *(["bf16"] if "BF16" in cpu_capabilities() else []), "int8"]
    frames = fidelity_frames()
    calibration = calibration_frames(config)
    rows = []
    for network, prepare, gate in (("detector", detector_input, detector_gate),
                                   ("labeller", labeller_input, labeller_gate)):
        work = Path(tempfile.mkdtemp(prefix=f"mmw-bench-{network}-"))
        onnx = work / "model.onnx"  # a copy: the int8 model made here never reaches the repository
        shutil.copy2(ROOT / "model_repository" / network / "1" / "model.onnx", onnx)
        for suffix in (".xml", ".bin"):
            shutil.copy2(ir_path(ROOT / "model_repository" / network / "1" / "model.onnx").with_suffix(suffix),
                         onnx.with_suffix(suffix))
        onnx_to_int8_ir(onnx, network, calibration)
        reference = OnnxRuntimeRunner(onnx, threads=2)
        feeds = {b: {"images": np.stack([prepare(rgb) for rgb in list(frames.values())[:b]])} for b in (1, 4)}
        candidates: list[tuple[str, str, Callable[[int], object]]] = [
            ("onnxruntime", "fp32", lambda t, onnx=onnx: OnnxRuntimeRunner(onnx, threads=t))]
        candidates += [("openvino", p, lambda t, p=p, onnx=onnx: open_network(onnx, "openvino", threads=t,
                                                                              choice=PrecisionChoice(p))[0])
                       for p in precisions]
        for runtime, precision, make in candidates:
            row = {"network": network, "runtime": runtime, "precision": precision}
            for threads in (1, 2):
                runner = make(threads)
                for batch, feed in feeds.items():
                    row[f"ms_b{batch}_t{threads}"] = ms_per_image(runner, feed, repeats=10)
            row["gate"] = "reference" if runtime == "onnxruntime" else gate(reference, make(2), frames,
                                                                               precision).detail.split(";")[0]
            rows.append(row)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def run_eager(video: Path, fps: float, limit: int) -> dict:
    """PyTorch eager, frame by frame, as a user would write it."""
    import torch

    from export.efficientnet_lite import load_efficientnet_lite0
    from export.ssd_mobilenet_v2 import load_ssd_mobilenet_v2
    from mmw.processing.classification import top_k
    from mmw.processing.detection import postprocess_detections
    from mmw.processing.images import detector_input, labeller_input

    torch.set_num_threads(os.cpu_count() or 1)
    detector, labeller = load_ssd_mobilenet_v2(), load_efficientnet_lite0()
    latencies: list[float] = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i, rgb in enumerate(sampled_frames(video, fps)):
            if i >= limit:
                break
            t = time.perf_counter()
            boxes, scores = detector(torch.from_numpy(detector_input(rgb)[None]))
            postprocess_detections(boxes[0].numpy(), scores[0].numpy(), rgb.shape[:2], 0.3, 0.6, 100)
            top_k(labeller(torch.from_numpy(labeller_input(rgb)[None])).numpy(), 5)
            latencies.append(time.perf_counter() - t)
    return {"frames": len(latencies), "seconds": time.perf_counter() - start, "latencies_s": latencies}


def run_detector_only(video: Path, fps: float, runtime: str) -> dict:
    """The detector alone, batch 1, all cores: OpenCV dnn on the original graph vs our ONNX in onnxruntime."""
    import cv2

    from mmw.processing.images import detector_input

    frames = [detector_input(rgb) for rgb in sampled_frames(video, fps)]
    cores = os.cpu_count() or 1
    if runtime == "opencv":
        from export.ssd_mobilenet_v2 import frozen_graph_paths

        cv2.setNumThreads(cores)
        pb, pbtxt = frozen_graph_paths()
        net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))

        def infer(x: np.ndarray) -> None:
            net.setInput(cv2.dnn.blobFromImage(x, size=(300, 300), swapRB=False))
            net.forward()
    else:
        from mmw.onnx_runtime import create_session

        session = create_session(ROOT / "model_repository/detector/1/model.onnx", threads=cores)

        def infer(x: np.ndarray) -> None:
            session.run(None, {"images": x[None]})

    infer(frames[0])  # warm-up
    latencies = []
    start = time.perf_counter()
    for x in frames:
        t = time.perf_counter()
        infer(x)
        latencies.append(time.perf_counter() - t)
    return {"frames": len(frames), "seconds": time.perf_counter() - start, "latencies_s": latencies}


def run_child(variant: str, video: Path, fps: float, extra: int) -> dict:
    """Run one in-process variant in a fresh interpreter; add its CPU time and peak RSS."""
    cmd = [sys.executable, "-m", "benchmarks.pipeline_benchmark", "--child", variant, "--video", str(video),
           "--fps", str(fps), "--extra", str(extra)]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child {variant} failed with exit {proc.returncode}")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    result.update(client_cpu_s=usage.ru_utime + usage.ru_stime, client_peak_rss_mb=usage.ru_maxrss / 1024)
    return result


# --- Triton ----------------------------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def server_cpu_and_rss(pid: int) -> tuple[float, float]:
    """CPU seconds and RSS (MB) of tritonserver and its stub processes."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = rss = 0.0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


class RssSampler:
    """Peak of the summed RSS of the server processes while a run lasts."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(server_cpu_and_rss(self.pid)[1])
            self.peak = max(self.peak, self.samples[-1])
            time.sleep(0.2)

    def at(self, fraction: float) -> float:
        """RSS (MB) at this fraction of the run (0.25: a quarter in)."""
        return self.samples[min(len(self.samples) - 1, int(fraction * len(self.samples)))] if self.samples else 0.0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_ours(video: Path, fps: float, url: str, in_flight: int, server_pid: int, quality: int,
             transport: str = "auto") -> dict:
    """The client path of the CLI: sample -> ``frame_payload`` (prefetch thread) -> ``infer_frames_many``, gRPC."""
    from clients.transport import SceneClient

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, _ = server_cpu_and_rss(server_pid)
    frames = 0
    with SceneClient(url, max_in_flight=in_flight, transport=transport, jpeg_quality=quality) as client, \
            RssSampler(server_pid) as rss:
        payloads = (client.frame_payload(rgb) for rgb in sampled_frames(video, fps))
        start = time.perf_counter()
        for results in client.infer_frames_many(batched(prefetched(payloads), BATCH)):
            frames += len(results)
        seconds = time.perf_counter() - start
        latencies = list(client.latencies_s)
        sent_as = client.frame_transport()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu1, _ = server_cpu_and_rss(server_pid)
    return {"frames": frames, "seconds": seconds, "latencies_s": latencies, "transport": sent_as,
            "client_cpu_s": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
            "client_peak_rss_mb": usage1.ru_maxrss / 1024, "server_cpu_s": cpu1 - cpu0,
            "server_peak_rss_mb": rss.peak, "server_rss_quarter_mb": rss.at(0.25), "server_rss_end_mb": rss.at(1.0)}


def model_stats(http_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/stats", timeout=10) as r:
        return {m["name"]: m for m in json.load(r)["model_stats"]}


def step_breakdown(before: dict, after: dict) -> list[dict]:
    """Per step: requests, executions (batches) and mean ms per request of queue/input/infer/output."""
    rows = []
    for name, stats in after.items():
        prev = before.get(name, {"inference_stats": {}, "inference_count": 0, "execution_count": 0})
        inf, old = stats["inference_stats"], prev["inference_stats"]
        n = inf["success"]["count"] - old.get("success", {}).get("count", 0)
        if n <= 0:
            continue

        def ms(key: str, inf: dict = inf, old: dict = old, n: int = n) -> float:
            return (inf[key]["ns"] - old.get(key, {}).get("ns", 0)) / n / 1e6

        rows.append({"model": name, "requests": n,
                     "executions": stats["execution_count"] - prev["execution_count"],
                     "queue_ms": ms("queue"), "input_ms": ms("compute_input"), "infer_ms": ms("compute_infer"),
                     "output_ms": ms("compute_output")})
    return rows


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_perf_analyzer(grpc_url: str, image: bytes, work: Path) -> list[dict]:
    from clients.transport.perf_analyzer import perf_analyzer_command, run_perf_analyzer, write_input_data

    data = write_input_data([image], work / "input.json")
    csv = work / "perf.csv"
    cmd = perf_analyzer_command(ENSEMBLE_NAME, grpc_url, "grpc", data, "1:4", 4000, csv,
                                extra=["-b", str(BATCH)])
    run_perf_analyzer(cmd, work / "lib", timeout_s=600)
    lines = csv.read_text().strip().splitlines()
    header = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        v = dict(zip(header, line.split(","), strict=True))
        rows.append({"concurrency": int(v["Concurrency"]), "images_per_s": float(v["Inferences/Second"]),
                     "p50_ms": float(v["p50 latency"]) / 1000, "p99_ms": float(v["p99 latency"]) / 1000})
    return rows


# --- report ----------------------------------------------------------------------------------------------------

def summarise(name: str, video: str, r: dict) -> dict:
    lat = np.asarray(r.pop("latencies_s")) * 1000 if r.get("latencies_s") else np.zeros(1)
    return {"variant": name, "video": video, "frames": r["frames"], "frames_per_s": r["frames"] / r["seconds"],
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            **{k: v for k, v in r.items() if k not in ("frames", "seconds")}}


def print_table(rows: list[dict]) -> None:
    cols = ["variant", "video", "frames", "frames_per_s", "p50_ms", "p99_ms", "client_cpu_s", "client_peak_rss_mb",
            "server_cpu_s", "server_peak_rss_mb"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        cells = [f"{r[c]:.1f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        print(" | ".join(cells))


def print_networks(rows: list[dict]) -> None:
    print("network | runtime | precision | ms/image b1 t1 | b4 t1 | b1 t2 | b4 t2 | gate vs onnxruntime fp32")
    print("--- | --- | --- | --- | --- | --- | --- | ---")
    for r in rows:
        print(f"{r['network']} | {r['runtime']} | {r['precision']} | {r['ms_b1_t1']:.1f} | {r['ms_b4_t1']:.1f} | "
              f"{r['ms_b1_t2']:.1f} | {r['ms_b4_t2']:.1f} | {r['gate']}", flush=True)


@contextlib.contextmanager
def served(state: Path, scheduling: dict | None = None,
           models: Sequence[str] = (ENSEMBLE_NAME,)) -> Iterator[tuple[str, int, int]]:
    """A tritonserver on free loopback ports, ready once ``models`` are: (gRPC url, HTTP port, server PID).

    With ``scheduling`` (config.yaml's serving section, on top of its settings) it serves a copy of the
    repository, whose configs are rewritten for it; without, the project's repository as it is.
    """
    import shutil

    from launcher.local_server import start_server, stop_server
    from mmw.config import Config, build
    from mmw.repository import write_repository

    server = {"state_dir": str(state / "triton")}
    if scheduling:
        repo = state / "model_repository"
        shutil.copytree(ROOT / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__"))
        server["model_repository"] = str(repo)
    http, grpc, metrics = free_ports(3)
    config: Config = build(Config, {"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                                               **server}, "serving": scheduling or {}})
    write_repository(config)
    record = start_server(config, list(models), timeout_s=300)
    try:
        yield f"127.0.0.1:{grpc}", http, record.pid
    finally:
        stop_server(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (default: all of 10)")
    parser.add_argument("--long-factor", type=int, default=10, help="the long video is this many times longer")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the short video")
    parser.add_argument("--eager-frames", type=int, default=40, help="frames PyTorch eager runs (it is slow)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmark.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--extra", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # inside a fresh interpreter: one in-process variant
        runners: dict[str, Callable[[], dict]] = {
            "floor-onnxruntime": lambda: run_floor(args.video, args.fps, args.extra),
            "floor-openvino": lambda: run_floor(args.video, args.fps, args.extra, "openvino"),
            "eager": lambda: run_eager(args.video, args.fps, args.extra),
            "opencv": lambda: run_detector_only(args.video, args.fps, "opencv"),
            "floor-detector": lambda: run_detector_only(args.video, args.fps, "onnxruntime"),
            "networks": lambda: {"rows": network_timings(), "frames": 0, "seconds": 1.0},
        }
        print(json.dumps(runners[args.child]()))
        return 0

    from clients.media.images import encode_jpeg
    from clients.media.sample_video import make_sample_video
    from mmw.config import load_config

    work = Path(tempfile.mkdtemp(prefix="mmw-bench-"))
    short, long = work / "short.mp4", work / "long.mp4"
    make_sample_video(short, seconds=args.seconds)
    make_sample_video(long, seconds=args.seconds * args.long_factor)
    cores = os.cpu_count() or 1
    rows: list[dict] = []
    print(f"# {cores} cores; videos {args.seconds:g} s and {args.seconds * args.long_factor:g} s at 10 fps, "
          f"sampled at {args.fps:g} fps, batches of {BATCH}", flush=True)
    networks = run_child("networks", short, args.fps, 0)["rows"]
    print_networks(networks)
    for variant in ("floor-openvino", "floor-onnxruntime"):
        for name, video in (("short", short), ("long", long)):
            rows.append(summarise(variant, name, run_child(variant, video, args.fps, cores)))
            print(f"{variant} {name}: {rows[-1]['frames_per_s']:.1f} frames/s ({rows[-1]['runs_on']})", flush=True)
    rows.append(summarise("eager", "short", run_child("eager", short, args.fps, args.eager_frames)))
    for variant in ("opencv", "floor-detector"):
        rows.append(summarise(variant, "short", run_child(variant, short, args.fps, 0)))

    config = load_config()
    quality, in_flight = config.client.jpeg_quality, config.client.max_in_flight
    # Before OpenVINO and the frame transports: the networks on onnxruntime, frames as JPEG.
    with served(work / "before", {"cpu_runtime": "onnxruntime"}) as (url, http, pid):
        run_ours(short, args.fps, url, in_flight, pid, quality, "jpeg")  # warm-up
        rows.append(summarise("before", "short", run_ours(short, args.fps, url, in_flight, pid, quality, "jpeg")))
        print(f"before ({in_flight} in flight, onnxruntime, jpeg): {rows[-1]['frames_per_s']:.1f} frames/s",
              flush=True)
    with served(work / "ours") as (url, http, pid):
        run_ours(short, args.fps, url, in_flight, pid, quality)  # warm-up
        before = model_stats(http)
        # The long video runs right after the short one at the same level (the client's default), before
        # 4 in flight grows the server's arenas, so peak memory compares like with like.
        for level, video, label in ((1, short, "short"), (in_flight, short, "short"), (in_flight, long, "long"),
                                    (4, short, "short")):
            if label == "short" and any(r["variant"] == f"ours-{level}" for r in rows):
                continue
            rows.append(summarise(f"ours-{level}", label, run_ours(video, args.fps, url, level, pid, quality)))
            print(f"ours {level} in flight, {label}: {rows[-1]['frames_per_s']:.1f} frames/s "
                  f"({rows[-1]['transport']})", flush=True)
        breakdown = step_breakdown(before, model_stats(http))
        from clients.media.sample_video import load_photo

        perf = run_perf_analyzer(url, encode_jpeg(load_photo("coffee"), quality), work / "perf")

    def fps(variant: str, video: str = "short") -> float:
        return next(r["frames_per_s"] for r in rows if r["variant"] == variant and r["video"] == video)

    ours_best = f"ours-{in_flight}"
    ratios = {
        "ours / floor-openvino (frames/s)": fps(ours_best) / fps("floor-openvino"),
        "ours / floor-onnxruntime (frames/s)": fps(ours_best) / fps("floor-onnxruntime"),
        "ours / before (frames/s)": fps(ours_best) / fps("before"),
        "ours / eager (frames/s)": fps(ours_best) / fps("eager"),
        "floor-detector / opencv": fps("floor-detector") / fps("opencv"),
        "4 in flight / 1 in flight": fps("ours-4") / fps("ours-1"),
        "long / short (ours frames/s)": fps(ours_best, "long") / fps(ours_best),
        "ours / floor-openvino, long video (frames/s)": fps(ours_best, "long") / fps("floor-openvino", "long"),
    }
    short_row = next(r for r in rows if r["variant"] == ours_best and r["video"] == "short")
    long_row = next(r for r in rows if r["variant"] == ours_best and r["video"] == "long")
    memory = {"server peak RSS short/long (MB)": (short_row["server_peak_rss_mb"], long_row["server_peak_rss_mb"]),
              "client peak RSS short/long (MB)": (short_row["client_peak_rss_mb"], long_row["client_peak_rss_mb"]),
              "server RSS a quarter into / at the end of the long video (MB)": (long_row["server_rss_quarter_mb"],
                                                                              long_row["server_rss_end_mb"])}

    print()
    print_table(rows)
    print("\nratio | measured | target | met")
    for key, value in ratios.items():
        print(f"{key} | {value:.2f} | >= {TARGETS[key]} | {'yes' if value >= TARGETS[key] else 'NO'}")
    for key, (a, b) in memory.items():
        print(f"{key}: {a:.0f} / {b:.0f}")
    print("\nper step (ours, short video, all in-flight levels) | requests | executions | queue | input | infer | "
          "output (ms per request)")
    for s in breakdown:
        print(f"{s['model']} | {s['requests']} | {s['executions']} | {s['queue_ms']:.2f} | {s['input_ms']:.2f} | "
              f"{s['infer_ms']:.2f} | {s['output_ms']:.2f}")
    print("\nperf_analyzer (batch 4, coffee JPEG) | images/s | p50 ms | p99 ms")
    for p in perf:
        print(f"concurrency {p['concurrency']} | {p['images_per_s']:.1f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f}")

    write_report(args.out, {"rows": rows, "ratios": ratios, "targets": TARGETS, "memory": memory,
                            "steps": breakdown, "perf_analyzer": perf, "networks": networks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
