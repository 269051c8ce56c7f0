"""Faults lose nothing: checkpointed results.json, ``video --resume`` after a SIGKILL, and retries while
tritonserver restarts (a real server: the session one, and one started and stopped by the tests here)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.media.sample_video import make_sample_video
from clients.media.video import sample_frames
from clients.pipeline import analyse_video
from clients.results import VideoResults
from clients.transport import SceneClient
from launcher.local_server import server_status, start_server, stop_server
from mmw.config import Config
from mmw.errors import InferenceError, InputError, ServerUnavailable
from tests.conftest import ROOT, serving

pytestmark = pytest.mark.serving
FPS = 4.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s sample video: 24 frames sampled at 4 fps."""
    return make_sample_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=6.0)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s sample video: 40 frames sampled at 4 fps."""
    return make_sample_video(tmp_path_factory.mktemp("long") / "long.mp4", seconds=10.0, size=(320, 240))


def _video_cmd(clip: Path, out: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clients", "video", str(clip), "--fps", f"{FPS:g}", "--out", str(out),
            "--url", f"127.0.0.1:{port}", "--batch-size", "1", "--max-in-flight", "1", *extra]


def _comparable(results: VideoResults) -> dict[str, Any]:
    d = results.to_dict()
    return {k: d[k] for k in ("frames", "tracks", "scenes", "object_counts", "complete", "error")}


def _read_partial(path: Path) -> VideoResults | None:
    try:
        return VideoResults.read(path)
    except InputError:  # not written yet
        return None


def _wait_for_frames(proc: subprocess.Popen, path: Path, count: int) -> VideoResults | None:
    """Poll the client's checkpoint until it holds ``count`` frames (or the client ends, or 120 s pass)."""
    partial = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        partial = _read_partial(path)
        if partial is not None and len(partial.frames) >= count:
            break
        time.sleep(0.02)
    return partial


def test_killed_client_resumes_without_losing_or_repeating_frames(triton: Config, clip: Path,
                                                                  tmp_path: Path) -> None:
    port = triton.server.grpc_port
    full = subprocess.run(_video_cmd(clip, tmp_path / "full", port), capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert full.returncode == 0, full.stderr
    expected = VideoResults.read(tmp_path / "full" / "results.json")
    assert len(expected.frames) == 24

    out = tmp_path / "killed"
    # The run to be killed talks HTTP: a SIGKILLed gRPC client cancels its requests in flight, and
    # tritonserver 2.51 can then crash (server#7368, fixed in 24.12), taking the session's server with it.
    proc = subprocess.Popen(_video_cmd(clip, out, triton.server.http_port, "--checkpoint", "0", "--protocol", "http"),
                            cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_frames(proc, out / "results.json", 3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the client finished before it could be killed"
    partial = VideoResults.read(out / "results.json")  # parses: never half-written
    assert not partial.complete and 3 <= len(partial.frames) < 24
    assert [f.to_dict() for f in partial.frames] == [f.to_dict() for f in expected.frames[: len(partial.frames)]]

    resumed = subprocess.run(_video_cmd(clip, out, port, "--resume"), capture_output=True, text=True, cwd=ROOT,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    final = VideoResults.read(out / "results.json")
    indices = [f.index for f in final.frames]
    assert len(indices) == len(set(indices)) == 24
    assert _comparable(final) == _comparable(expected)
    assert (out / "annotated.mp4").is_file() and (out / "tracks.csv").is_file()


def test_resume_refuses_another_fps_or_video(triton: Config, clip: Path, long_clip: Path, tmp_path: Path) -> None:
    port = triton.server.grpc_port
    out = tmp_path / "out"
    out.mkdir()
    none = subprocess.run(_video_cmd(clip, out, port, "--resume"), capture_output=True, text=True, cwd=ROOT)
    assert none.returncode == 1 and "--resume: expected the results of an earlier run" in none.stderr
    VideoResults(source=str(clip), fps_sampled=2.0, width=640, height=480, duration_s=6.0,
                 complete=False).write(out / "results.json")
    fps = subprocess.run(_video_cmd(clip, out, port, "--resume"), capture_output=True, text=True, cwd=ROOT)
    assert fps.returncode == 1 and "sampled at 2 fps, expected 4 fps" in fps.stderr
    other = subprocess.run(_video_cmd(long_clip, out, port, "--resume", "--fps", "2"), capture_output=True,
                           text=True, cwd=ROOT)
    assert other.returncode == 1 and f"is for source {str(clip)!r}, expected {str(long_clip)!r}" in other.stderr


def test_errors_the_server_answers_are_not_retried(triton: Config) -> None:
    with SceneClient(f"127.0.0.1:{triton.server.grpc_port}", model_name="no_such_model", retry_s=60) as client:
        t0 = time.monotonic()
        with pytest.raises(InferenceError, match="answered an error") as caught:
            list(client.infer_many([[b"x"]]))
        assert not isinstance(caught.value, ServerUnavailable)
        assert client.retries == 0 and time.monotonic() - t0 < 10


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("model", ["scene_understandng", "scene_understanding is not ready"])
def test_a_wrong_model_name_fails_at_once_with_one_line(triton: Config, protocol: str, model: str) -> None:
    """Retrying is decided by the answer's status (NOT_FOUND, 404: never retried), not by its text, which quotes
    the model name: the second name's text once read as a restarting server and was retried for retry_s."""
    from mmw.contract import ENSEMBLE_NAME

    port = triton.server.grpc_port if protocol == "grpc" else triton.server.http_port
    with SceneClient(f"127.0.0.1:{port}", protocol, model_name=model, retry_s=60) as client:  # type: ignore[arg-type]
        t0 = time.monotonic()
        with pytest.raises(InferenceError) as caught:
            list(client.infer_many([[b"x"]]))
        elapsed = time.monotonic() - t0
        assert not isinstance(caught.value, ServerUnavailable)
        assert client.retries == 0 and elapsed < 5
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert f"answered an error for model '{model}'" in message and "is not found" in message
    assert "(models served: " in message and ENSEMBLE_NAME in message.split("(models served: ")[1]


# --- a server of our own, stopped and restarted mid-video ---------------------------------------------------


@pytest.fixture(scope="module")
def own_server(triton: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A second tritonserver on free ports with its own state folder (the tests stop and restart it)."""
    with serving(tmp_path_factory.mktemp("own-triton-state"), exit_timeout_s=5) as config:
        yield config


def _ensure_running(config: Config) -> None:
    from mmw.contract import ENSEMBLE_NAME

    if not server_status(config).running:
        start_server(config, [ENSEMBLE_NAME], timeout_s=300)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_restart_mid_video_loses_no_frame(own_server: Config, long_clip: Path, tmp_path: Path,
                                                 protocol: str) -> None:
    from mmw.contract import ENSEMBLE_NAME

    _ensure_running(own_server)
    port = own_server.server.grpc_port if protocol == "grpc" else own_server.server.http_port
    restarted: list[BaseException | None] = []

    def restart() -> None:
        time.sleep(2.0)
        try:
            start_server(own_server, [ENSEMBLE_NAME], timeout_s=300)
            restarted.append(None)
        except BaseException as exc:  # reported by the test below
            restarted.append(exc)

    restarter = threading.Thread(target=restart)

    def progress(done: int, total: int) -> None:
        if done == 8 and not restarter.is_alive() and not restarted:
            stop_server(own_server)
            restarter.start()

    with SceneClient(f"127.0.0.1:{port}", protocol, retry_s=300, max_in_flight=2) as client:  # type: ignore[arg-type]
        run = analyse_video(long_clip, tmp_path / "out", client, fps=FPS, batch_size=2, progress=progress)
        retries = client.retries
    restarter.join(timeout=300)
    assert restarted == [None]
    assert run.error is None and run.results.complete
    assert retries > 0
    expected = [(f.index, round(f.timestamp_s, 3)) for f in sample_frames(long_clip, FPS)]
    assert [(f.index, f.timestamp_s) for f in VideoResults.read(run.results_path).frames] == expected
    assert len(expected) == 40


def test_server_that_stays_down_stops_with_partial_results_and_a_hint(own_server: Config, long_clip: Path,
                                                                      tmp_path: Path) -> None:
    _ensure_running(own_server)
    out = tmp_path / "out"
    proc = subprocess.Popen(_video_cmd(long_clip, out, own_server.server.grpc_port, "--checkpoint", "0",
                                       "--retry", "3"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_frames(proc, out / "results.json", 3)
        stop_server(own_server)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    assert time.monotonic() - t0 < 60
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("clients: error: ") and "not reachable" in message
    assert "gave up after retrying for 3 s" in message
    assert "`launcher run`" in message and "--resume" in message
    results = VideoResults.read(out / "results.json")
    assert not results.complete and results.error and "not reachable" in results.error
    indices = [f.index for f in results.frames]
    assert 3 <= len(indices) < 40 and len(set(indices)) == len(indices) and indices == sorted(indices)
    with pytest.raises(ServerUnavailable):
        with SceneClient(f"127.0.0.1:{own_server.server.grpc_port}", retry_s=0.5) as client:
            list(client.infer_many([[b"x"]]))
