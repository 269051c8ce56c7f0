"""Load soak: many concurrent clients against one Triton, counting errors and watching server memory.

``--clients`` threads, each with its own ``SceneClient`` over gRPC (one request in flight each), send
single-image requests (or ``--batch`` images per request) until ``--requests`` requests in total have been
sent or ``--max-seconds`` have passed, only to 127.0.0.1. Reports the error count, p50/p99 latency and the
server's RSS (tritonserver plus its python-backend stub processes) after a warm-up, halfway and at the end,
with the ratio end / after warm-up (target: flat within 10%). Prints a table and writes JSON.

Starts its own tritonserver on free loopback ports unless ``--grpc-port`` and ``--server-pid`` name a running
one (e.g. ``launcher run``'s, whose PID ``launcher status`` prints).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.pipeline_benchmark import RssSampler, _descendants, free_ports, server_cpu_and_rss
from benchmarks.report import write_report

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
RSS_TARGET = 1.10


@dataclass
class SoakResult:
    """What one soak run measured."""

    clients: int
    batch: int
    requested: int
    sent: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests_per_s: float
    rss_warm_mb: float
    rss_mid_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    server_cpu_s: float
    timed_out: bool
    error_messages: list[str] = field(default_factory=list)  # the first few, for the report
    rss_curve_mb: list[float] = field(default_factory=list)  # summed RSS at 20 even points of the run
    rss_by_process_warm_mb: dict[str, float] = field(default_factory=dict)
    rss_by_process_end_mb: dict[str, float] = field(default_factory=dict)

    @property
    def rss_ratio(self) -> float:
        """RSS at the end / after the warm-up."""
        return self.rss_end_mb / self.rss_warm_mb if self.rss_warm_mb else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "rss_end_over_warm": self.rss_ratio}


def rss_by_process(pid: int) -> dict[str, float]:
    """RSS (MB) of tritonserver and of each python-backend stub, named by its model (``detector#2``...)."""
    out: dict[str, float] = {}
    for p in _descendants(pid):
        try:
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            rss = int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            continue
        script = next((a.decode() for a in argv if a.endswith(b"model.py")), "")
        name = Path(script).parent.parent.name if script else Path(argv[0].decode()).name
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name}#{n}"
        out[key] = round(rss, 1)
    return out


def small_jpeg(width: int = 320, height: int = 240, quality: int = 90) -> bytes:
    """scikit-image's coffee photo resized to ``width`` x ``height``, as JPEG."""
    import cv2

    from clients.media.images import encode_jpeg
    from clients.media.sample_video import load_photo

    rgb = cv2.resize(load_photo("coffee"), (width, height), interpolation=cv2.INTER_AREA)
    return encode_jpeg(rgb, quality)


def soak(grpc_port: int, server_pid: int, image: bytes, clients: int = 8, requests: int = 10_000, batch: int = 1,
         warmup: int = 125, max_seconds: float = 1800.0, timeout_s: float = 60.0) -> SoakResult:
    """Run the soak against the server on 127.0.0.1:``grpc_port`` whose tritonserver process is ``server_pid``.

    Each client first sends ``warmup`` requests (not counted); the ``requests`` requests are then shared out
    among the clients through one counter, so the total is exact. Sending stops at ``max_seconds``.
    """
    from clients.transport import SceneClient

    url = f"{HOST}:{grpc_port}"
    images = [image] * batch
    lock = threading.Lock()
    issued = [0]
    errors: list[str] = []
    latencies: list[list[float]] = [[] for _ in range(clients)]
    warm = threading.Barrier(clients + 1)
    go = threading.Event()
    deadline = [float("inf")]
    rss_mid = [0.0]

    def take() -> bool:
        with lock:
            if issued[0] >= requests or time.monotonic() > deadline[0]:
                return False
            issued[0] += 1
            midway = issued[0] == requests // 2 + 1
        if midway:  # outside the lock: reading /proc takes a few ms
            rss_mid[0] = server_cpu_and_rss(server_pid)[1]
        return True

    def worker(i: int) -> None:
        client = None
        try:
            client = SceneClient(url, protocol="grpc", timeout_s=timeout_s, max_in_flight=1)
            for _ in range(warmup):
                client.infer(images)
        except Exception as exc:
            with lock:
                errors.append(f"client {i} warm-up: {exc}")
        finally:
            warm.wait()
        go.wait()
        while client is not None and take():
            t = time.perf_counter()
            try:
                results = client.infer(images)
                bad = [r.error for r in results if r.error]
                if len(results) != batch or bad:
                    raise RuntimeError(f"{len(results)} results for {batch} images; errors {bad}")
            except Exception as exc:
                with lock:
                    errors.append(f"client {i}: {exc}")
                continue
            latencies[i].append(time.perf_counter() - t)
        if client is not None:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    warm.wait()
    cpu0, rss_warm = server_cpu_and_rss(server_pid)
    by_process_warm = rss_by_process(server_pid)
    with RssSampler(server_pid) as sampler:
        start = time.perf_counter()
        deadline[0] = time.monotonic() + max_seconds
        go.set()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
    cpu1, rss_end = server_cpu_and_rss(server_pid)
    curve = [round(sampler.at(i / 19), 1) for i in range(20)] if sampler.samples else []
    lat = np.asarray([x for per in latencies for x in per]) * 1000
    ok = lat.size
    stats = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max())) if ok else (0.0,) * 3
    return SoakResult(clients=clients, batch=batch, requested=requests, sent=issued[0], errors=len(errors),
                      seconds=seconds, p50_ms=stats[0], p99_ms=stats[1], max_ms=stats[2],
                      requests_per_s=ok / seconds if seconds else 0.0, rss_warm_mb=rss_warm,
                      rss_mid_mb=rss_mid[0] or sampler.at(0.5), rss_end_mb=rss_end,
                      rss_peak_mb=max(sampler.peak, rss_end), server_cpu_s=cpu1 - cpu0,
                      timed_out=issued[0] < requests, error_messages=errors[:10], rss_curve_mb=curve,
                      rss_by_process_warm_mb=by_process_warm, rss_by_process_end_mb=rss_by_process(server_pid))


def print_report(r: SoakResult) -> None:
    """The result as a small table."""
    rows = [
        ("clients x batch", f"{r.clients} x {r.batch}"),
        ("requests sent / asked", f"{r.sent} / {r.requested}" + (" (stopped at --max-seconds)" if r.timed_out else "")),
        ("errors", str(r.errors)),
        ("seconds", f"{r.seconds:.1f}"),
        ("requests/s", f"{r.requests_per_s:.1f}"),
        ("latency p50 / p99 / max ms", f"{r.p50_ms:.1f} / {r.p99_ms:.1f} / {r.max_ms:.1f}"),
        ("server RSS after warm-up / middle / end MB",
         f"{r.rss_warm_mb:.0f} / {r.rss_mid_mb:.0f} / {r.rss_end_mb:.0f}"),
        ("server RSS peak MB", f"{r.rss_peak_mb:.0f}"),
        ("server RSS end / after warm-up", f"{r.rss_ratio:.3f} (target < {RSS_TARGET:.2f}: "
                                           f"{'met' if r.rss_ratio < RSS_TARGET else 'NOT met'})"),
        ("server CPU s", f"{r.server_cpu_s:.1f}"),
    ]
    print("measure | value")
    print("--- | ---")
    for key, value in rows:
        print(f"{key} | {value}")
    print("server RSS over the run MB: " + " ".join(f"{x:.0f}" for x in r.rss_curve_mb))
    print("RSS by process, after warm-up -> end MB: " + ", ".join(
        f"{k} {v:.0f}->{r.rss_by_process_end_mb.get(k, 0.0):.0f}" for k, v in r.rss_by_process_warm_mb.items()))
    for message in r.error_messages:
        print(f"error: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads), default 8")
    parser.add_argument("--requests", type=int, default=10_000, help="requests in total, default 10000")
    parser.add_argument("--batch", type=int, default=1, help="images per request, default 1")
    parser.add_argument("--image", type=Path, help="JPEG/PNG to send (default: coffee photo at 320x240)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="stop sending after this, default 1800")
    parser.add_argument("--warmup", type=int, default=125, help="uncounted requests per client first, default 125")
    parser.add_argument("--grpc-port", type=int, help="use the running server on 127.0.0.1 at this gRPC port")
    parser.add_argument("--server-pid", type=int, help="its tritonserver PID (for RSS); needed with --grpc-port")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "soak.json")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.batch < 1:
        parser.error("--clients, --requests and --batch must be >= 1")
    if (args.grpc_port is None) != (args.server_pid is None):
        parser.error("--grpc-port and --server-pid go together")
    image = args.image.read_bytes() if args.image else small_jpeg()

    config = None
    if args.grpc_port is None:
        from launcher.local_server import start_server
        from mmw.config import Config, build
        from mmw.contract import ENSEMBLE_NAME
        from mmw.repository import write_repository

        http, grpc, metrics = free_ports(3)
        config = build(Config, {"server": {"host": HOST, "http_port": http, "grpc_port": grpc,
                                           "metrics_port": metrics,
                                           "state_dir": tempfile.mkdtemp(prefix="mmw-soak-")}})
        write_repository(config)
        record = start_server(config, [ENSEMBLE_NAME], timeout_s=300)
        grpc_port, server_pid = grpc, record.pid
    else:
        grpc_port, server_pid = args.grpc_port, args.server_pid
    print(f"# soak: {args.clients} clients, {args.requests} requests of {args.batch} image(s) "
          f"({len(image)} bytes) to {HOST}:{grpc_port}, server pid {server_pid}", flush=True)
    try:
        result = soak(grpc_port, server_pid, image, clients=args.clients, requests=args.requests, batch=args.batch,
                      warmup=args.warmup, max_seconds=args.max_seconds)
    finally:
        if config is not None:
            from launcher.local_server import stop_server

            stop_server(config)
    print_report(result)
    write_report(args.out, {"image_bytes": len(image), **result.as_dict()})
    return 0 if result.errors == 0 and not result.timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
