"""Shared fixtures: real photos, the built ONNX networks, a real tritonserver on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from export.fidelity import PHOTOS as PHOTOS  # the project's real photos (re-exported for the tests)
from launcher.local_server import start_server, stop_server
from mmw.config import Config, build

ROOT = Path(__file__).resolve().parent.parent

#: What a test needs decides its marker (pyproject.toml lists them): a fixture or file that starts a real
#: server, Docker or a browser, or does slower real work (the networks, a wheel, ffmpeg). The rest is ``unit``.
_SERVING_FIXTURES = {"triton", "neural_triton", "captioning_server", "merging_server", "ray_fleet"}
_INTEGRATION_FIXTURES = {"engines", "tiny_captioners", "exported_captioners", "installed", "serve"}
_MARKED_FILES = {"test_docker_launcher.py": "docker"}
_KINDS = ("gpu", "docker", "browser", "serving", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test exactly one of the kinds gpu, docker, browser, serving, integration, else unit."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        kinds = {m.name for m in item.iter_markers() if m.name in _KINDS}
        if fixtures & _SERVING_FIXTURES:
            kinds.add("serving")
        if "browser" in fixtures:
            kinds.add("browser")
        if item.path.name in _MARKED_FILES:
            kinds.add(_MARKED_FILES[item.path.name])
        if fixtures & _INTEGRATION_FIXTURES:
            kinds.add("integration")
        kind = next((k for k in _KINDS if k in kinds), "unit")
        item.add_marker(getattr(pytest.mark, kind))


def project_sources(suffix: str = ".py") -> list[Path]:
    """The project's own files (git's tracked and untracked-but-not-ignored ones): no venv, build or cache."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    return sorted(ROOT / name for name in listed if name.endswith(suffix) and (ROOT / name).is_file())


def photo(name: str) -> np.ndarray:
    """An RGB photo shipped by scikit-image (the fidelity photos' loader)."""
    from export.fidelity import photo as sample_photo

    return sample_photo(name)


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (RGB, 8 bit) but has no pixel data: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def engines() -> dict[str, Path]:
    """The ONNX networks in the model repository, built (or found up to date) once per session."""
    from export.__main__ import build_engines

    build_engines(None, force=False)
    return {name: ROOT / "model_repository" / name / "1" / "model.onnx" for name in ("detector", "labeller")}


#: Headless Chromium for the browser tests (Debian's package), started without its background networking.
CHROMIUM = os.environ.get("MMW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Playwright), one per test module; skipped with the reason when it is not installed."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"headless Chromium not found at {CHROMIUM}: apt-get install chromium (or set MMW_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                    out.append(int(entry.name))
    return out


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def serving(state_dir: Path, models: dict | None = None, scheduling: dict | None = None,
            **server: object) -> Iterator[Config]:
    """A real tritonserver on free loopback ports, serving the project's repository; stopped by PID.

    ``models`` and ``scheduling`` are config.yaml's ``models`` and ``serving`` sections; ``server`` its ``server``.
    """
    from mmw.contract import ENSEMBLE_NAME
    from mmw.repository import write_repository

    http, grpc, metrics = free_ports(3)
    config = build(Config, {"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                                       "state_dir": str(state_dir), **server}, "models": models or {},
                           "serving": scheduling or {}})
    write_repository(config)
    start_server(config, [ENSEMBLE_NAME], timeout_s=300)
    try:
        yield config
    finally:
        stop_server(config)


@pytest.fixture(scope="session")
def triton(engines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """The session's tritonserver (see :func:`serving`)."""
    with serving(tmp_path_factory.mktemp("triton-state")) as config:
        yield config


@pytest.fixture(scope="session")
def tiny_captioners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight BLIP and GIT checkpoints (model, tokenizer, image processor), built from configs."""
    from export.tiny_captioners import build_tiny_captioner

    root = tmp_path_factory.mktemp("checkpoints")
    return {arch: build_tiny_captioner(arch, root / f"tiny-{arch}") for arch in ("blip", "git")}


@pytest.fixture(scope="session")
def exported_captioners(tiny_captioners: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny checkpoints exported to ONNX (encoder, KV-cache decoder, no-cache decoder) by ``make engines``' code."""
    from export.captioner_onnx import build_captioner

    root = tmp_path_factory.mktemp("captioners")
    out = {}
    for arch, checkpoint in tiny_captioners.items():
        out[arch] = root / arch
        build_captioner(str(checkpoint), out[arch], ROOT)
    return out


NEURAL_CAPTION_SETTINGS = {"num_beams": 1, "max_new_tokens": 8, "dense_top_k": 3, "dense_min_score": 0.5}


@contextlib.contextmanager
def neural_serving(root: Path, checkpoint: Path, **settings: object) -> Iterator[Config]:
    """A tritonserver whose ensemble captions with ``checkpoint`` (exported into a copy of the repository)."""
    import shutil

    from export.captioner_onnx import build_captioner

    repo = root / "model_repository"
    shutil.copytree(ROOT / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__", "*.plan"))
    build_captioner(str(checkpoint), repo / "caption" / "1", ROOT)
    models = {"caption": {"model": str(checkpoint), **NEURAL_CAPTION_SETTINGS, **settings}}
    with serving(root / "state", models=models, model_repository=str(repo)) as config:
        yield config


@pytest.fixture(scope="session")
def neural_triton(engines: dict[str, Path], tiny_captioners: dict[str, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A tritonserver whose ensemble captions with the tiny BLIP checkpoint (dense captions on)."""
    with neural_serving(tmp_path_factory.mktemp("neural"), tiny_captioners["blip"]) as config:
        yield config


# --- live stream sources: ffmpeg serving MPEG-TS over HTTP on 127.0.0.1 (tests/test_clients_live*.py) --------------

FFMPEG = shutil.which("ffmpeg")


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc: connecting would use up the one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


class StreamServers:
    """``serve(video)`` -> an http:// URL streaming ``video`` in a loop at real time (one client per server).

    ``serve(video, port)`` serves on that port (a restart); ``kill(url)`` kills that server by its PID, and
    ``close`` stops every server still running, by PID.
    """

    def __init__(self, logs: Path) -> None:
        self.procs: dict[str, Any] = {}
        self.logs = logs

    def __call__(self, video: Path, port: int | None = None) -> str:
        import subprocess
        import time

        assert FFMPEG is not None
        port = port or free_ports(1)[0]
        url = f"http://127.0.0.1:{port}"
        log = self.logs / f"ffmpeg-{port}-{len(self.procs)}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop",
                                     "-1", "-i", str(video), "-c", "copy", "-f", "mpegts", "-listen", "1", url],
                                    stdout=subprocess.DEVNULL, stderr=err)
        self.procs[f"{url}#{proc.pid}"] = proc
        deadline = time.monotonic() + 10
        while not listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                said = log.read_text(errors="replace").strip()[-500:]
                pytest.fail(f"ffmpeg did not start serving {url} (exit status {proc.poll()}): {said}")
            time.sleep(0.05)
        return url

    def kill(self, url: str) -> None:
        """Kill (SIGKILL) the running server of ``url`` by its PID and reap it."""
        import signal

        for key, proc in self.procs.items():
            if key.startswith(f"{url}#") and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def close(self) -> None:
        import signal
        import subprocess

        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def first_line(stream: Any, skip: str = "clients: note: ", most: int = 20) -> str:
    """The first line of a client's stderr that is not a note (stale shared-memory regions of other clients...)."""
    line = ""
    for _ in range(most):
        line = stream.readline()
        if not line.startswith(skip):
            break
    return line


@pytest.fixture
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamServers]:
    """ffmpeg stream servers on 127.0.0.1 (:class:`StreamServers`), every one stopped by PID at the end."""
    servers = StreamServers(tmp_path_factory.mktemp("ffmpeg-logs"))
    try:
        yield servers
    finally:
        servers.close()
