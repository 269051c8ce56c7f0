"""clients.live and ``python -m clients live``: an MPEG-TS stream served over HTTP on 127.0.0.1 by ffmpeg.

Each test starts its own ``ffmpeg -re -stream_loop -1 ... -listen 1 http://127.0.0.1:PORT`` (one client
per server), stops it by PID, and ends by itself (``seconds``, or a SIGINT it sends).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.live import LiveSettings, analyse_stream
from clients.media.sample_video import make_sample_video
from clients.media.stream import FrameQueue, StreamSettings
from clients.media.video import SampledFrame
from clients.results import VideoResults
from mmw.config import Config
from mmw.errors import InputError
from tests.conftest import FFMPEG, ROOT, StreamServers, first_line, free_ports
from tests.test_clients_tracking import ColourClient, moving_squares_video

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the stream source needs ffmpeg: apt-get install ffmpeg")


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return moving_squares_video(tmp_path_factory.mktemp("live") / "squares.mp4", seconds=4.0)


@needs_ffmpeg
def test_live_stream_ends_by_itself(serve: StreamServers, squares: Path, tmp_path: Path) -> None:
    url = serve(squares)
    run = analyse_stream(url, tmp_path / "out", ColourClient(), LiveSettings(StreamSettings(fps=2.0, seconds=3.0)))
    stats = run.stats
    assert (stats.stop_reason, stats.frames_sampled, stats.frames_dropped, stats.frames_analysed) == (
        "seconds", 6, 0, 6)
    assert stats.frames_decoded >= 29 and stats.wall_s >= 2.4  # real time: 3 s of stream take about 3 s
    assert [f.timestamp_s for f in run.results.frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.06)
    assert [p.name for p in run.files] == ["results.json", "annotated.mp4", "detections.coco.json", "captions.srt",
                                           "captions.vtt", "tracks.csv"]
    results = VideoResults.read(run.results_path)
    assert results.live == stats.__class__.from_dict(stats.to_dict(), "live") and results.complete
    assert results.source == url and (results.width, results.height) == (320, 240)
    assert results.object_counts == {"person": 1, "dog": 1}


@needs_ffmpeg
def test_frames_are_dropped_and_counted_when_the_analysis_is_behind(
    serve: StreamServers, squares: Path, tmp_path: Path
) -> None:
    url = serve(squares)
    slow = ColourClient(delay_s=0.5)  # 2 frames per second at most, asked for 5
    settings = LiveSettings(StreamSettings(fps=5.0, seconds=2.0), batch_size=1, max_waiting=1)
    stats = analyse_stream(url, tmp_path / "out", slow, settings).stats
    assert stats.frames_sampled == 10 and stats.stop_reason == "seconds"
    assert stats.frames_dropped >= 4 and stats.frames_analysed + stats.frames_dropped == stats.frames_sampled


def test_unreachable_stream_says_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}/live.ts"
    with pytest.raises(InputError, match=r"live source http://127\.0\.0\.1:\d+/live\.ts: cannot open it"):
        analyse_stream(url, tmp_path, ColourClient(), LiveSettings(StreamSettings(open_timeout_s=3)))
    with pytest.raises(InputError, match=r"not found \(expected a stream URL"):
        analyse_stream(str(tmp_path / "nothing.mp4"), tmp_path, ColourClient(), LiveSettings())
    with pytest.raises(InputError, match=r"expected fps > 0, got 0"):
        StreamSettings(fps=0)
    with pytest.raises(InputError, match=r"expected reconnect_s >= 0 seconds \(0: never reconnect\), got -1"):
        StreamSettings(reconnect_s=-1)
    with pytest.raises(InputError, match=r"expected batch_size >= 1, got 0"):
        LiveSettings(batch_size=0)


def test_frame_queue_drops_the_oldest() -> None:
    queue = FrameQueue(2)
    for k in range(5):
        queue.put(SampledFrame(k, k / 2, None))  # type: ignore[arg-type]
    assert queue.dropped == 3
    assert [f.index for f in queue.get_batch(4, 0.01)] == [3, 4]
    queue.close()
    assert queue.finished and queue.get_batch(4, 0.01) == []


@needs_ffmpeg
@pytest.mark.serving
def test_cli_live_on_triton_stops_cleanly_on_ctrl_c(
    triton: Config, serve: StreamServers, tmp_path: Path
) -> None:
    url = serve(make_sample_video(tmp_path / "sample.mp4", seconds=4, size=(320, 240)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "clients", "live", url, "--fps", "2", "--out", str(out),
                             "--url", f"127.0.0.1:{triton.server.grpc_port}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = first_line(proc.stderr)
        assert line.startswith(f"reading {url} at 2 fps"), line
        time.sleep(3.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "stopped: interrupted" in stdout and "Traceback" not in stderr, (stdout, stderr)
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["live"]["stop_reason"] == "interrupted" and data["live"]["frames_analysed"] >= 2
    assert len(data["frames"]) == data["live"]["frames_analysed"]
    assert data["frames"][0]["detections"] and (out / "annotated.mp4").is_file()
