"""Many live streams in one client: shared batches, a folder each, reconnects, ``python -m clients live URL...``.

The streams are ``ffmpeg -re -stream_loop -1 ... -listen 1 http://127.0.0.1:PORT`` servers (``serve`` in
tests/conftest.py), each serving moving squares on its own background colour, so a fake client can tell
which stream a frame came from. Servers are killed and stopped by PID; every run ends by ``seconds`` or a
signal the test sends.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.live import LiveSettings, LiveSource, analyse_streams, live_sources, read_streams_file, stream_name
from clients.media.stream import FrameQueues, StreamSettings
from clients.media.video import SampledFrame, probe
from clients.results import ImageResult, SceneLabel, VideoResults
from mmw.config import Config
from mmw.errors import InputError
from tests.conftest import FFMPEG, ROOT, StreamServers, first_line, free_ports
from tests.test_clients_tracking import ColourClient, colour_detections, moving_squares_video

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the stream sources need ffmpeg: apt-get install ffmpeg")

#: Background colour of each stream's video (far from the red and blue squares the fake detector finds).
BACKGROUNDS = {"green": (40, 90, 40), "yellow": (200, 200, 60), "cyan": (60, 180, 180), "white": (235, 235, 235)}
FPS = 2.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streams")
    return {name: moving_squares_video(root / f"{name}.mp4", seconds=4.0, background=colour)
            for name, colour in BACKGROUNDS.items()}


def background_of(rgb: np.ndarray) -> str:
    """The stream a frame came from: the background colour nearest its top-left corner."""
    corner = rgb[2:8, 2:8].reshape(-1, 3).mean(axis=0)
    return min(BACKGROUNDS, key=lambda name: float(np.abs(corner - BACKGROUNDS[name]).sum()))


class RecordingClient(ColourClient):
    """A ColourClient that records which stream each frame of each batch came from and labels it so."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.batches: list[list[str]] = []

    def infer_frames_many(self, batches: Iterable[list[bytes]]) -> Iterator[list[ImageResult]]:
        for batch in batches:
            if self.delay_s:
                time.sleep(self.delay_s)
            rgbs = [cv2.cvtColor(cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    for d in batch]
            names = [background_of(rgb) for rgb in rgbs]
            self.batches.append(names)
            yield [ImageResult(colour_detections(rgb), [SceneLabel(name, 0.9)], f"a {name} field", "template")
                   for rgb, name in zip(rgbs, names, strict=True)]


def _gaps(results: VideoResults) -> list[float]:
    times = [f.timestamp_s for f in results.frames]
    assert times == sorted(times) and len(set(times)) == len(times), "timestamps must only grow"
    return [b - a for a, b in pairwise(times)]


# --- naming the streams, the streams file, the shared queues ------------------------------------------------


def test_stream_names_are_stable_slugs_of_the_url() -> None:
    assert stream_name("http://127.0.0.1:8554") == "127.0.0.1-8554"
    assert stream_name("rtsp://user:secret@10.0.0.5:8554/cam/main?token=x") == "10.0.0.5-8554-cam-main"
    assert stream_name("/dev/video0") == "video0" and stream_name("clips/street 1.mp4") == "street-1.mp4"
    sources = live_sources(["http://h:1/a", "http://h:1/a", "udp://h:2"])
    assert [s.name for s in sources] == ["h-1-a", "h-1-a-2", "h-2"]


def test_streams_file(tmp_path: Path) -> None:
    path = tmp_path / "streams.txt"
    path.write_text("# cameras\n\ngate rtsp://10.0.0.5/cam   # the gate\nhttp://127.0.0.1:8090\n  # off: x\n",
                    encoding="utf-8")
    assert read_streams_file(path) == [LiveSource("rtsp://10.0.0.5/cam", "gate"), LiveSource("http://127.0.0.1:8090")]
    assert [s.name for s in live_sources(["udp://h:9"], path)] == ["h-9", "gate", "127.0.0.1-8090"]
    path.write_text("a b c\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"streams\.txt:1: expected URL or NAME URL, got 3 fields"):
        read_streams_file(path)
    path.write_text("../up http://h\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"streams\.txt:1: live source http://h: expected a name of letters"):
        read_streams_file(path)
    path.write_text("cam http://h:1\ncam http://h:2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"expected each NAME once, got 'cam' twice"):
        live_sources([], path)
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"expected at least one URL or a --streams FILE, got none \(.* lists none\)"):
        live_sources([], path)
    with pytest.raises(InputError, match=r"--streams .*missing\.txt: cannot read it"):
        read_streams_file(tmp_path / "missing.txt")


def test_frame_queues_take_each_stream_in_turn() -> None:
    queues = FrameQueues(3, maxlen=2)
    for k in range(3):
        queues.queues[0].put(SampledFrame(k, k / 2, None))  # type: ignore[arg-type]
    queues.queues[2].put(SampledFrame(10, 0.0, None))  # type: ignore[arg-type]
    assert queues.queues[0].dropped == 1
    assert [(s, f.index) for s, f in queues.get_batch(2, 0.01)] == [(0, 1), (2, 10)]
    assert [(s, f.index) for s, f in queues.get_batch(4, 0.01)] == [(0, 2)]
    started = time.monotonic()
    assert queues.get_batch(4, 0.05) == [] and time.monotonic() - started < 1.0
    for queue in queues.queues:
        queue.close()
    assert queues.finished


# --- streams served by ffmpeg ---------------------------------------------------------------------------------


@needs_ffmpeg
def test_a_killed_stream_reconnects_and_the_others_never_stop(
    serve: StreamServers, videos: dict[str, Path], tmp_path: Path
) -> None:
    urls = [serve(video) for video in videos.values()]
    victim = urls[1]
    port = int(victim.rsplit(":", 1)[1])
    problems: list[BaseException] = []
    restarted_at: list[float] = []

    def kill_and_restart() -> None:
        time.sleep(3.0)
        serve.kill(victim)
        time.sleep(1.5)
        for _ in range(3):  # a restart that cannot bind the port yet is tried again, a few times
            try:
                serve(videos["yellow"], port)
            except BaseException as exc:  # reported by the test below
                problems.append(exc)
                time.sleep(0.3)
            else:
                restarted_at.append(time.monotonic())
                return

    helper = threading.Thread(target=kill_and_restart, daemon=True)
    settings = LiveSettings(StreamSettings(fps=FPS, seconds=10.0, reconnect_s=10.0))
    started = time.monotonic()
    helper.start()
    runs = analyse_streams(urls, tmp_path / "out", ColourClient(), settings)
    helper.join(10)
    assert restarted_at, problems
    assert [r.results_path.parent for r in runs] == [tmp_path / "out" / stream_name(u) for u in urls]
    for run, url in zip(runs, urls, strict=True):
        stats, gaps = run.stats, _gaps(run.results)
        assert stats.stop_reason == "seconds" and run.error is None and run.results.complete, (url, stats)
        assert VideoResults.read(run.results_path).live == type(stats).from_dict(stats.to_dict(), "live")
        assert run.results.source == url
        if url == victim:
            assert stats.reconnects is not None and stats.reconnects >= 1 and stats.offline_s
            assert max(gaps) > 1.2, gaps  # the outage is a gap in its timeline...
            after = [f for f in run.results.frames if f.timestamp_s > restarted_at[0] - started]
            assert len(after) >= 3, [f.timestamp_s for f in run.results.frames]  # ...and its frames came back
            assert probe(run.annotated_path).duration_s >= run.results.frames[-1].timestamp_s  # type: ignore[arg-type]
        else:
            assert stats.reconnects == 0 and stats.frames_analysed >= 18, (url, stats)
            assert max(gaps) <= 2 / FPS + 0.1, (url, gaps)


@needs_ffmpeg
def test_batches_mix_the_streams_and_results_go_back_to_each(
    serve: StreamServers, videos: dict[str, Path], tmp_path: Path
) -> None:
    urls = {name: serve(video) for name, video in videos.items()}
    sources = [LiveSource(url, name) for name, url in urls.items()]
    client = RecordingClient(delay_s=0.4)  # frames of several streams wait meanwhile
    runs = analyse_streams(sources, tmp_path / "out", client, LiveSettings(StreamSettings(fps=FPS, seconds=3.0)))
    assert max(len(set(batch)) for batch in client.batches) >= 3, client.batches
    assert sum(len(batch) for batch in client.batches) >= sum(r.stats.frames_analysed for r in runs)
    for run in runs:
        assert run.results_path == tmp_path / "out" / run.name / "results.json"
        labels = {f.image.labels[0].name for f in run.results.frames}
        assert labels == {run.name}, (run.name, labels)  # every result went back to its own stream
        assert run.stats.frames_analysed >= 3 and run.results.object_counts == {"person": 1, "dog": 1}


@needs_ffmpeg
def test_a_stream_that_stays_away_is_given_up_and_files_do_not_reconnect(
    serve: StreamServers, videos: dict[str, Path], tmp_path: Path
) -> None:
    kept, lost = serve(videos["green"]), serve(videos["cyan"])
    never = f"http://127.0.0.1:{free_ports(1)[0]}"
    sources = [kept, lost, never, str(videos["white"])]  # the file ends after 4 s
    stopper = threading.Timer(2.0, serve.kill, [lost])
    stopper.start()
    try:
        settings = LiveSettings(StreamSettings(fps=FPS, seconds=6.0, reconnect_s=1.5, open_timeout_s=3))
        runs = analyse_streams(sources, tmp_path / "out", ColourClient(), settings)
    finally:
        stopper.cancel()
    by_source = {r.results.source: r for r in runs}
    assert by_source[kept].stats.stop_reason == "seconds" and by_source[kept].results.complete
    file_run = by_source[str(videos["white"])]
    assert (file_run.name, file_run.stats.stop_reason, file_run.stats.reconnects) == ("white.mp4", "end of stream", 0)
    for url, where in ((lost, r"lost at t=\d"), (never, "never opened")):
        run = by_source[url]
        assert run.stats.stop_reason == "gave up reconnecting" and run.stats.reconnects == 0, run.stats
        assert run.error is not None and not run.results.complete
        assert (run.results.error or "").startswith(f"live source {url}: ")
        assert "gave up after 1.5 s of reconnecting" in str(run.error) and re.search(where, str(run.error))
        data = json.loads(run.results_path.read_text(encoding="utf-8"))
        assert data["live"]["stop_reason"] == "gave up reconnecting" and data["complete"] is False
        assert (data["frames"] == []) == (url == never)
    assert by_source[lost].stats.frames_analysed >= 2 and not by_source[never].results.frames
    assert max(_gaps(by_source[kept].results)) <= 2 / FPS + 0.1


@needs_ffmpeg
@pytest.mark.serving
def test_cli_live_follows_several_streams_and_sigterm_writes_them_all(
    triton: Config, serve: StreamServers, videos: dict[str, Path], tmp_path: Path
) -> None:
    urls = [serve(video) for video in videos.values()]
    streams = tmp_path / "streams.txt"
    streams.write_text(f"# two more\ngate {urls[2]}\n{urls[3]}  # no name\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "clients", "live", urls[0], urls[1], "--streams", str(streams),
                             "--fps", "1", "--out", str(out), "--url", f"127.0.0.1:{triton.server.grpc_port}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = first_line(proc.stderr)
        assert line.startswith("reading 4 streams ("), line
        time.sleep(6.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in stderr, (stdout, stderr)
    names = [stream_name(urls[0]), stream_name(urls[1]), "gate", stream_name(urls[3])]
    lines = [line for line in stdout.splitlines() if line.split(":")[0] in names]
    assert [line.split(":")[0] for line in lines] == names, stdout
    for name, url, line in zip(names, urls, lines, strict=True):
        data = json.loads((out / name / "results.json").read_text(encoding="utf-8"))
        assert data["source"] == url and data["live"]["stop_reason"] == "interrupted", (name, data["live"])
        assert data["live"]["reconnects"] == 0 and len(data["frames"]) == data["live"]["frames_analysed"] >= 1
        assert "stopped: interrupted" in line and f"{out / name / 'results.json'}" in line
