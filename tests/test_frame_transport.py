"""How frames travel (``client.transport``): jpeg, raw FRAME tensors, or raw through system shared memory.

Against the session's real tritonserver: shm results equal raw ones exactly, raw ones equal the in-process
pipeline; ``auto`` picks shm on loopback and falls back when a region cannot register; no region of ours
(a /dev/shm file or a server registration) outlives a normal run, Ctrl-C or SIGTERM, and a SIGKILL's are
removed by the next run, which leaves a live client's alone; a region gone, unregistered or too small is
one clear line. Every wait is bounded; subprocesses are ended by their PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import clients.cli as cli
import clients.transport.shared_memory as shm
from clients.media.images import encode_jpeg
from clients.media.sample_video import make_sample_video
from clients.results import VideoResults
from clients.transport import SceneClient, SharedMemoryError
from clients.transport.decoding import parse_outputs
from clients.transport.frames import split_batch
from clients.transport.options import is_loopback
from mmw.config import Config, load_config
from mmw.contract import RAW_ENSEMBLE_NAME
from mmw.errors import InputError
from mmw.onnx_runtime import InProcessPipeline
from tests.conftest import ROOT, jpeg, photo
from tests.test_serving import in_process  # noqa: F401  (the fixture: the in-process pipeline as served)

WAIT_S = 120.0  # the longest any wait here lasts


def _url(config: Config, protocol: str = "grpc") -> str:
    return f"127.0.0.1:{config.server.grpc_port if protocol == 'grpc' else config.server.http_port}"


def _frames() -> list[np.ndarray]:
    """Real photos of three sizes (astronaut 512x512, chelsea 451x300, coffee 600x400 pixels), one flipped."""
    astronaut, chelsea, coffee = photo("astronaut"), photo("chelsea"), photo("coffee")
    return [astronaut, chelsea, np.ascontiguousarray(astronaut[:, ::-1]), coffee, chelsea]


def _files(pid: int) -> list[str]:
    """Our region files of process ``pid`` in /dev/shm."""
    return sorted(n for n in os.listdir(shm.SHM_DIR) if shm.owner_pid(n) == pid)


def _registered(config: Config, pid: int) -> list[str]:
    """The server's system shared-memory registrations of process ``pid``."""
    with grpcclient.InferenceServerClient(_url(config)) as client:
        status = client.get_system_shared_memory_status(as_json=True)
    return sorted(n for n in status.get("regions", {}) if shm.owner_pid(n) == pid)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen | None = None, timeout_s: float = WAIT_S) -> bool:
    """Poll ``condition`` every 20 ms until it holds, ``proc`` ends or ``timeout_s`` pass."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(0.02)
    return False


def _frames_done(path: Path) -> int:
    try:
        return len(VideoResults.read(path).frames)
    except InputError:  # not written yet
        return 0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s 320x240 sample video (10 fps): long enough to be interrupted mid-run."""
    return make_sample_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=20.0, size=(320, 240))


def _video(clip: Path, out: Path, config: Config, *extra: str, protocol: str = "grpc") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "clients", "video", str(clip), "--fps", "10", "--out", str(out), "--url",
           _url(config, protocol), "--protocol", protocol, "--transport", "shm", "--checkpoint", "0", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _end(proc: subprocess.Popen) -> tuple[str, str]:
    """Wait for ``proc`` (bounded); SIGKILL it by its PID if it does not end."""
    try:
        return proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def client_cleanup() -> Iterator[list[SceneClient]]:
    made: list[SceneClient] = []
    yield made
    for client in made:
        client.close()


# --- results: shm == raw == in-process; jpeg == encoded images ------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shm_results_equal_raw_results_exactly(triton: Config, protocol: str) -> None:
    frames = _frames()
    batches = [frames, frames[:1], frames[1:4], [frames[3]] * 3]  # mixed sizes; a region grows for the last one
    got = {}
    for transport in ("raw", "shm"):
        with SceneClient(_url(triton, protocol), protocol, transport=transport,  # type: ignore[arg-type]
                         max_in_flight=2) as client:
            assert client.frame_transport() == transport
            got[transport] = list(client.infer_frames_many(batches))
            if transport == "shm":
                assert len(_files(os.getpid())) == 2  # one region per request in flight
        assert _files(os.getpid()) == [] and _registered(triton, os.getpid()) == []
    assert got["shm"] == got["raw"]
    assert [len(r) for r in got["shm"]] == [5, 1, 3, 3]
    first = got["shm"][0]
    assert [r.detections[0].class_name for r in first] == ["person", "cat", "person", "cup", "cat"]
    assert first[1] == first[4]  # the same photo in two requests of one batch, results in the batch's order


def test_raw_transport_equals_the_in_process_pipeline(triton: Config, in_process: InProcessPipeline) -> None:  # noqa: F811
    frames = _frames()[:2]
    with SceneClient(_url(triton), transport="raw") as client:
        served = client.infer_frames(frames)
    for frame, result in zip(frames, served, strict=True):
        (local,) = parse_outputs(in_process.frames(frame[None]))
        assert [d.class_name for d in result.detections] == [d.class_name for d in local.detections]
        np.testing.assert_allclose([d.box for d in result.detections], [d.box for d in local.detections], atol=1e-3)
        np.testing.assert_allclose([d.score for d in result.detections], [d.score for d in local.detections],
                                   atol=1e-5)
        assert result.caption == local.caption and [s.name for s in result.labels] == [s.name for s in local.labels]


def test_jpeg_transport_sends_what_the_encoded_path_sends(triton: Config) -> None:
    frames = _frames()[:3]
    with SceneClient(_url(triton), transport="jpeg", jpeg_quality=90) as client:
        assert client.frame_transport() == "jpeg" and client.describe()["ensemble"] == "scene_understanding"
        assert client.infer_frames(frames) == client.infer([encode_jpeg(f, 90) for f in frames])
        assert client.frame_payload(frames[0]) == encode_jpeg(frames[0], 90)


# --- auto ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_auto_picks_shm_on_loopback(triton: Config, host: str) -> None:
    with SceneClient(f"{host}:{triton.server.grpc_port}", transport="auto") as client:
        assert client.frame_transport() == "shm"
        assert client.transport_notes == []
        models = client.describe()
        assert (models["transport"], models["ensemble"]) == ("shm", RAW_ENSEMBLE_NAME)
        assert isinstance(client.frame_payload(_frames()[0]), np.ndarray)


def test_auto_is_jpeg_for_a_server_elsewhere() -> None:
    assert is_loopback("127.0.0.1:8001") and is_loopback("[::1]:8001") and is_loopback("localhost:1")
    assert not is_loopback("10.1.2.3:8001") and not is_loopback("triton.example.com:8001")
    with SceneClient("10.1.2.3:8001", transport="auto") as client:  # decided without asking the server
        assert client.frame_transport() == "jpeg"


def test_auto_falls_back_to_jpeg_when_no_region_registers_and_shm_fails_clearly(
        triton: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose /dev/shm the server does not see (a container without a shared /dev/shm)."""
    monkeypatch.setattr(shm, "SHM_DIR", tmp_path)
    with SceneClient(_url(triton), transport="auto") as client:
        assert client.frame_transport() == "jpeg"
        (note,) = client.transport_notes
        assert note.startswith("transport auto: shared memory does not work here (")
        assert note.endswith("; frames travel as JPEG")
        assert "Unable to open shared memory region" in note and len(note.splitlines()) == 1
        assert len(client.infer_frames(_frames()[:1])) == 1
    with SceneClient(_url(triton), transport="shm") as client:
        with pytest.raises(SharedMemoryError) as caught:
            client.frame_transport()
    message = str(caught.value)
    assert message.startswith("transport shm: registering shared-memory region mmw_client_") and "\n" not in message
    assert "same /dev/shm" in message
    assert list(tmp_path.iterdir()) == [] and _registered(triton, os.getpid()) == []


def test_a_batch_splits_into_one_request_per_kind_and_frame_size() -> None:
    small, big = np.zeros((2, 3, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)
    parts = split_batch([small, big, b"jpeg", small, big, b"png"])
    assert [(p.positions, p.raw) for p in parts] == [((0, 3), True), ((1, 4), True), ((2, 5), False)]
    assert parts[0].shape == (2, 2, 3, 3) and parts[1].nbytes == 2 * big.nbytes
    for bad in ([], [np.zeros((2, 3), np.uint8)], [np.zeros((2, 3, 3), np.float32)], [b""], ["text"]):
        with pytest.raises(InputError):
            split_batch(bad)  # type: ignore[arg-type]


def test_cli_transport_flag_defaults_to_the_config() -> None:
    cfg = load_config()
    for flags, want in (([], cfg.client.transport), (["--transport", "raw"], "raw")):
        args = cli.build_parser().parse_args(["video", "clip.mp4", *flags])
        with cli.make_client(args, cfg) as client:
            assert client.transport == want and client.jpeg_quality == cfg.client.jpeg_quality
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["image", "a.jpg", "--transport", "carrier-pigeon"])


# --- bad regions ----------------------------------------------------------------------------------------------


def _one_region_client(triton: Config, made: list[SceneClient]) -> tuple[SceneClient, str, int]:
    """A shm client with one slot that has sent one frame: (client, its region's name, the frame's bytes)."""
    client = SceneClient(_url(triton), transport="shm", max_in_flight=1)
    made.append(client)
    frame = _frames()[1]
    client.infer_frames([frame])
    (name,) = _files(os.getpid())
    return client, name, frame.nbytes


def test_a_region_gone_under_the_client_is_one_clear_error(triton: Config, client_cleanup: list) -> None:
    client, name, size = _one_region_client(triton, client_cleanup)
    (shm.SHM_DIR / name).unlink()
    with pytest.raises(SharedMemoryError) as caught:
        client.infer_frames([_frames()[1]])
    assert str(caught.value) == (f"shared-memory region {name} ({size} bytes) is gone (its file /dev/shm/{name} was "
                                 f"removed under the client): the request needs {size} bytes there")
    client.close()
    assert _registered(triton, os.getpid()) == []


def test_a_region_unregistered_under_the_client_is_one_clear_error(triton: Config, client_cleanup: list) -> None:
    client, name, size = _one_region_client(triton, client_cleanup)
    with grpcclient.InferenceServerClient(_url(triton)) as other:
        other.unregister_system_shared_memory(name)
    with pytest.raises(SharedMemoryError) as caught:
        client.infer_frames([_frames()[1]])
    message = str(caught.value)
    assert message.startswith(f"shared-memory region {name} ({size} bytes) is no longer registered with the server")
    assert f"the request needs {size} bytes" in message and "\n" not in message
    client.close()
    assert _files(os.getpid()) == []


def test_a_region_too_small_is_one_clear_error(triton: Config, client_cleanup: list) -> None:
    client, name, size = _one_region_client(triton, client_cleanup)
    with grpcclient.InferenceServerClient(_url(triton)) as other:  # the server's idea of it shrinks
        other.unregister_system_shared_memory(name)
        other.register_system_shared_memory(name, "/" + name, size // 2)
    with pytest.raises(SharedMemoryError) as caught:
        client.infer_frames([_frames()[1]])
    message = str(caught.value)
    assert message.startswith(f"shared-memory region {name} ({size} bytes) is too small for the server: the request "
                              f"needs {size} bytes") and "\n" not in message
    client.close()
    assert _files(os.getpid()) == [] and _registered(triton, os.getpid()) == []
    region = shm.ShmRegion(shm.region_name(os.getpid(), 10**9), 100)  # and on the client's side
    try:
        with pytest.raises(SharedMemoryError, match=rf"^shared-memory region {region.name} \(100 bytes\) is too "
                                                    r"small: the request needs 192 bytes$"):
            region.write([np.zeros((8, 8, 3), np.uint8)])
    finally:
        region.close()
    assert _files(os.getpid()) == []


def test_the_cli_stops_with_one_line_when_its_region_goes(triton: Config, clip: Path, tmp_path: Path) -> None:
    results = tmp_path / "out" / "results.json"
    proc = _video(clip, tmp_path / "out", triton, "--batch-size", "1", "--max-in-flight", "1")
    try:
        assert _wait_for(lambda: _frames_done(results) >= 1, proc), "the run did not get going"
        gone = _files(proc.pid)  # its one region (one request in flight)
        assert len(gone) == 1, gone
        (shm.SHM_DIR / gone[0]).unlink()
    finally:
        _, stderr = _end(proc)
    assert proc.returncode == 1, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"clients: error: shared-memory region {gone[0]} (") and "is gone" in line, stderr
    assert _files(proc.pid) == [] and _registered(triton, proc.pid) == []
    partial = VideoResults.read(results)
    assert not partial.complete and partial.error and "is gone" in partial.error


# --- cleanup ---------------------------------------------------------------------------------------------------


def test_no_region_is_left_after_a_normal_run(triton: Config, tmp_path: Path) -> None:
    short = make_sample_video(tmp_path / "short.mp4", seconds=2.0, size=(320, 240))
    proc = _video(short, tmp_path / "out", triton)
    _, stderr = _end(proc)
    assert proc.returncode == 0, stderr
    models = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["models"]
    assert (models["transport"], models["ensemble"]) == ("shm", RAW_ENSEMBLE_NAME)
    assert len(VideoResults.read(tmp_path / "out" / "results.json").frames) == 20
    assert _files(proc.pid) == [] and _registered(triton, proc.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_no_region_is_left_after_ctrl_c_or_sigterm(triton: Config, clip: Path, tmp_path: Path, sig: int) -> None:
    results = tmp_path / "out" / "results.json"
    proc = _video(clip, tmp_path / "out", triton)
    try:
        assert _wait_for(lambda: _frames_done(results) >= 4, proc), "the run did not get going"
        assert proc.poll() is None, "the run ended before it could be interrupted: make the clip longer"
        assert _files(proc.pid) and _registered(triton, proc.pid)
        os.kill(proc.pid, sig)
    finally:
        _, stderr = _end(proc)
    assert proc.returncode == 130, stderr
    assert _files(proc.pid) == [] and _registered(triton, proc.pid) == []
    partial = VideoResults.read(results)
    assert 4 <= len(partial.frames) < 200 and not partial.complete


def test_a_sigkilled_run_leaves_stale_regions_that_the_next_run_removes(triton: Config, clip: Path, tmp_path: Path,
                                                                        client_cleanup: list) -> None:
    live = SceneClient(_url(triton), transport="shm", max_in_flight=1)  # a live client's region: never touched
    client_cleanup.append(live)
    live.infer_frames(_frames()[:1])
    mine = _files(os.getpid())
    assert len(mine) == 1 and _registered(triton, os.getpid()) == mine
    # The run to be killed talks HTTP: a SIGKILLed gRPC client cancels its requests in flight, and
    # tritonserver 2.51 can then crash (server#7368, fixed in 24.12), taking the session's server with it.
    proc = _video(clip, tmp_path / "killed", triton, protocol="http")
    try:
        assert _wait_for(lambda: _frames_done(tmp_path / "killed" / "results.json") >= 2, proc)
        assert proc.poll() is None, "the run ended before it could be killed: make the clip longer"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        _end(proc)
    stale = _files(proc.pid)
    assert stale and _registered(triton, proc.pid) == stale  # SIGKILL: nothing could clean up

    image = tmp_path / "chelsea.jpg"
    image.write_bytes(jpeg(photo("chelsea")))
    rerun = subprocess.Popen([sys.executable, "-m", "clients", "image", str(image), "--out", str(tmp_path / "again"),
                              "--url", _url(triton), "--transport", "shm"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _, stderr = _end(rerun)
    assert rerun.returncode == 0, stderr
    notes = [line for line in stderr.splitlines() if "stale shared-memory region" in line]
    assert len(notes) == 1 and notes[0].startswith("clients: note: removed "), stderr
    assert all(name in notes[0] for name in stale), stderr
    assert _files(proc.pid) == [] and _registered(triton, proc.pid) == []
    assert _files(rerun.pid) == [] and _registered(triton, rerun.pid) == []
    assert _files(os.getpid()) == mine and _registered(triton, os.getpid()) == mine  # the live client's: kept
    assert len(live.infer_frames(_frames()[:1])) == 1


def test_stale_files_are_recognised_by_name_pid_and_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only our names, with a dead PID and a free lock, are stale; a foreign or live owner's file stays."""
    import fcntl

    monkeypatch.setattr(shm, "SHM_DIR", tmp_path)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True, timeout=60)
    dead = int(ended.stdout)
    assert not shm.pid_alive(dead)
    names = {"stale": shm.region_name(dead, 1), "locked": shm.region_name(dead, 2),
             "alive": shm.region_name(1, 3), "foreign": f"someone_else_{dead}_1"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    fd = os.open(tmp_path / names["locked"], os.O_RDONLY)  # an owner alive elsewhere (another PID namespace)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        assert shm.remove_stale(None) == [names["stale"]]
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "stale")
