"""How many live streams one client keeps up with: N ffmpeg HTTP streams at ``--fps`` against a real Triton.

For each N in ``--streams`` it serves N copies of a sample video (``ffmpeg -re -stream_loop -1 ... -listen 1``
on 127.0.0.1, stopped by PID), follows them with one ``analyse_streams`` for ``--seconds`` of stream time
and prints, per N, the frames sampled, analysed and dropped (all streams together), the batch sizes the
client sent and the CPU time of the client and of tritonserver per analysed frame. A stream count "keeps
up" when under 2% of the sampled frames are dropped.

    .venv/bin/python -m benchmarks.live_streams_benchmark --streams 1,2,4,6 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.pipeline_benchmark import served
from clients.live import LiveSettings, analyse_streams
from clients.media.sample_video import make_sample_video
from clients.media.stream import StreamSettings
from clients.transport import SceneClient

KEEPS_UP = 0.02  # the most frames dropped, of those sampled, for a stream count that keeps up


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streams(video: Path, count: int) -> Iterator[list[str]]:
    """``count`` ffmpeg servers streaming ``video`` in a loop at real time; stopped by PID."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("live_streams_benchmark: needs ffmpeg (apt-get install ffmpeg)")
    procs, urls = [], []
    try:
        for _ in range(count):
            url = f"http://127.0.0.1:{_free_port()}"
            procs.append(subprocess.Popen([ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                                           "-stream_loop", "-1", "-i", str(video), "-c", "copy", "-f", "mpegts",
                                           "-listen", "1", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(url)
        time.sleep(1.0)  # every server listening
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children that were waited for (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (tritonserver's python backend stubs)."""
    total, todo, seen = 0.0, [pid], set()
    while todo and len(seen) < 256:
        p = todo.pop()
        seen.add(p)
        try:
            total += _cpu_s(p)
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children if int(c) not in seen)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,2,4", help="stream counts to try, comma-separated (default 1,2,4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="stream time per count (default 20)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames analysed per second per stream (default 2)")
    parser.add_argument("--size", default="640x480", help="frame size of the streamed video (default 640x480)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per request at most (default 4)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(c) for c in args.streams.split(",")]
    with tempfile.TemporaryDirectory(prefix="mmw-live-bench-") as tmp:
        root = Path(tmp)
        video = make_sample_video(root / "sample.mp4", seconds=10, size=(width, height))
        with served(root / "state") as (url, _http, server_pid):
            print(f"{'streams':>7} {'sampled':>7} {'analysed':>8} {'dropped':>7} {'batch':>5} "
                  f"{'client ms/frame':>15} {'server ms/frame':>15}  keeps up")
            for count in counts:
                with streams(video, count) as urls, SceneClient(url, timeout_s=60, max_in_flight=2) as client:
                    client.check_ready()
                    requests0 = sum(client.requests_per_endpoint().values())
                    client0 = resource.getrusage(resource.RUSAGE_SELF)
                    server0 = _tree_cpu_s(server_pid)
                    settings = LiveSettings(StreamSettings(fps=args.fps, seconds=args.seconds, reconnect_s=0),
                                            batch_size=args.batch_size)
                    runs = analyse_streams(urls, root / f"out-{count}", client, settings)
                    client1 = resource.getrusage(resource.RUSAGE_SELF)
                    server_s = _tree_cpu_s(server_pid) - server0
                    requests = sum(client.requests_per_endpoint().values()) - requests0
                sampled = sum(r.stats.frames_sampled for r in runs)
                analysed = sum(r.stats.frames_analysed for r in runs)
                dropped = sum(r.stats.frames_dropped for r in runs)
                client_s = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
                per = max(analysed, 1)
                print(f"{count:>7} {sampled:>7} {analysed:>8} {dropped:>7} {analysed / max(requests, 1):>5.2f} "
                      f"{1000 * client_s / per:>15.0f} {1000 * server_s / per:>15.0f}  "
                      f"{'yes' if dropped <= KEEPS_UP * sampled else 'no'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
