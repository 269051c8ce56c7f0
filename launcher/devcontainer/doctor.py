"""``launcher doctor``: does this machine have what the chosen mode needs? (the seed's ``runner/envsetup.sh``)

Each check says ok or missing, with the fix. Local mode needs the tritonserver binary; docker mode needs
the SDK, a reachable daemon (API >= 1.40), the pinned image and, when GPUs are requested, the NVIDIA driver
and container toolkit. Both need disk space and free ports; the mounts file's sources must exist.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.devcontainer.mounts_file import DEFAULT_MOUNTS_FILE, load_mounts_file
from launcher.docker_client import GPU_HINT, MIN_API_VERSION, SDK_HINT, api_version, connect, version_tuple
from launcher.docker_server import resolve_triton_image
from launcher.ports import port_in_use
from launcher.processes import record_is_alive
from launcher.records import ContainerRecord, ServerRecord, read_record
from launcher.registry import backend_for
from launcher.state_dir import server_paths
from launcher.triton_binary import INSTALL_HINT, find_triton, stub_for
from mmw.config import GPUS_PATTERN, Config
from mmw.errors import ConfigError, MMWError

MIN_PYTHON = (3, 10)
MIN_FREE_STATE_GIB = 2.0
MIN_FREE_DOCKER_GIB = 20.0  # the NGC Triton image is about 15 GB unpacked
DISTRIBUTION = "multi-model-workflows"
ConnectFn = Callable[[str], Any]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("missing" if self.required else "warn")


def _python() -> Check:
    v = sys.version_info
    ok = (v.major, v.minor) >= MIN_PYTHON
    return Check("python", ok, f"{v.major}.{v.minor}.{v.micro} at {sys.executable} "
                               f"(expected >= {'.'.join(map(str, MIN_PYTHON))})",
                 "" if ok else "create the venv with Python 3.10 or newer (`make install PYTHON=python3.11`)")


def _project() -> Check:
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return Check("project installed", False, f"{DISTRIBUTION} is not installed in {sys.prefix}",
                     "run `make install` (or `pip install -e .` in the venv)")
    return Check("project installed", True, f"{DISTRIBUTION} {version} in {sys.prefix}")


def _tritonserver() -> Check:
    try:
        install = find_triton()
        stub = stub_for(install)
    except MMWError as exc:
        return Check("tritonserver (local mode)", False, str(exc), INSTALL_HINT)
    return Check("tritonserver (local mode)", True, f"{install.binary} (python backend stub {stub.parent.name})")


def _free_gib(path: Path) -> float:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / 1024**3


def _disk(name: str, path: Path, minimum: float) -> Check:
    try:
        free = _free_gib(path)
    except OSError as exc:
        return Check(name, False, f"cannot measure free space at {path}: {exc}", "check that the path exists")
    ok = free >= minimum
    return Check(name, ok, f"{free:.1f} GiB free at {path} (expected >= {minimum:g} GiB)",
                 "" if ok else f"free some space on the filesystem of {path}")


def _ports(config: Config) -> Check:
    s = config.server
    paths = server_paths(config)
    local = read_record(paths.pid_file, ServerRecord)
    container = read_record(ContainerRecord.path(paths.state_dir), ContainerRecord)
    if (local is not None and record_is_alive(local)) or container is not None:
        return Check("ports free", True, "a server recorded by the launcher holds them (`launcher status` tells "
                                         "whether it runs)")
    ports = {"server.http_port": s.http_port, "server.grpc_port": s.grpc_port, "server.metrics_port": s.metrics_port}
    try:
        busy = [f"{port} ({key})" for key, port in ports.items() if port_in_use(s.host, port)]
    except ConfigError as exc:
        return Check("ports free", False, str(exc), "fix server.host in config.yaml")
    listed = ", ".join(f"{p}" for p in ports.values())
    if busy:
        return Check("ports free", False, f"in use on {s.host}: {', '.join(busy)}",
                     "stop whatever listens there (`ss -ltnp`) or choose other ports in config.yaml")
    return Check("ports free", True, f"{listed} on {s.host}")


def _mounts(mounts_file: str | None, required: bool) -> Check:
    name = "mounts file sources"
    try:
        mf = load_mounts_file(mounts_file)
    except ConfigError as exc:
        return Check(name, False, str(exc), "fix the mounts file (`launcher shell --help` shows the format)", required)
    if mf.path is None:
        return Check(name, True, f"no mounts file at {DEFAULT_MOUNTS_FILE} (optional)")
    absent = [m.source for m in mf.mounts if not Path(m.source).exists()]
    if absent:
        return Check(name, False, f"{mf.path}: missing on this machine: {', '.join(absent)}",
                     "create those folders or fix Mounts[].source", required)
    return Check(name, True, f"{mf.path}: {len(mf.mounts)} mount(s), all sources present")


def _nvidia_driver() -> Check:
    version_file = Path("/proc/driver/nvidia/version")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index,name,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return Check("NVIDIA driver", False, f"nvidia-smi failed: {exc}", "reinstall the NVIDIA driver")
        if out.returncode == 0 and out.stdout.strip():
            gpus = "; ".join(line.strip() for line in out.stdout.strip().splitlines())
            return Check("NVIDIA driver", True, f"GPUs: {gpus}")
        return Check("NVIDIA driver", False, f"nvidia-smi found no GPU: {(out.stderr or out.stdout).strip()}",
                     "install the NVIDIA driver (>= 535) and reboot")
    if version_file.exists():
        return Check("NVIDIA driver", True, version_file.read_text().splitlines()[0])
    return Check("NVIDIA driver", False, "no nvidia-smi and no /proc/driver/nvidia/version: no NVIDIA driver",
                 "install the NVIDIA driver (>= 535), or run without GPUs (--gpus none, docker.gpus: \"\")")


def _toolkit(info: dict[str, Any] | None) -> Check:
    tools = [t for t in ("nvidia-container-runtime-hook", "nvidia-ctk", "nvidia-container-cli") if shutil.which(t)]
    runtimes = sorted((info or {}).get("Runtimes") or {})
    if tools or "nvidia" in runtimes:
        return Check("NVIDIA container toolkit", True, f"found {', '.join(tools) or 'nvidia runtime'}; "
                                                       f"daemon runtimes: {', '.join(runtimes) or '?'}")
    return Check("NVIDIA container toolkit", False, "none of nvidia-container-runtime-hook, nvidia-ctk, "
                 f"nvidia-container-cli on PATH; daemon runtimes: {', '.join(runtimes) or '?'}", GPU_HINT)


def _docker_checks(config: Config, gpus: str, connect_fn: ConnectFn) -> list[Check]:
    checks: list[Check] = []
    try:
        import docker
    except ImportError:
        return [Check("Docker SDK", False, "the python package `docker` is not installed", SDK_HINT)]
    checks.append(Check("Docker SDK", True, f"docker {docker.__version__}"))
    try:
        client = connect_fn(config.docker.host)
        api = api_version(client)
        info = client.info()
    except MMWError as exc:
        checks.append(Check("Docker daemon", False, str(exc), "see above"))
        client, info = None, None
    else:
        ok = version_tuple(api) >= version_tuple(MIN_API_VERSION)
        checks.append(Check("Docker daemon", ok, f"reachable, Engine {info.get('ServerVersion', '?')}, API {api} "
                                                 f"(expected >= {MIN_API_VERSION})",
                            "" if ok else "upgrade Docker Engine to 19.03 or newer"))
    if client is not None:
        try:
            image = resolve_triton_image(config, client)
            checks.append(Check("Triton image", True, image.description))
        except MMWError as exc:
            checks.append(Check("Triton image", False, str(exc)))
        root = Path(str(info.get("DockerRootDir", "/var/lib/docker"))) if info else None
        if root is not None and root.exists():
            checks.append(_disk("free disk (Docker data root)", root, MIN_FREE_DOCKER_GIB))
    if gpus.strip() not in ("", "none"):
        checks += [_nvidia_driver(), _toolkit(info)]
    return checks


def _local_checks(config: Config, gpus: str, connect_fn: ConnectFn) -> list[Check]:
    return [_tritonserver()]


@dataclass(frozen=True)
class ModeNeeds:
    """What one ``server.mode`` needs from this machine."""

    checks: Callable[[Config, str, ConnectFn], list[Check]]
    uses_gpus: bool  # the report names the GPUs checked for
    mounts_required: bool  # a broken mounts file is an error (else a warning)


NEEDS: dict[str, ModeNeeds] = {
    "local": ModeNeeds(_local_checks, uses_gpus=False, mounts_required=False),
    "docker": ModeNeeds(_docker_checks, uses_gpus=True, mounts_required=True),
}
"""Keyed like ``launcher.registry.BACKENDS``."""


def needs(mode: str) -> ModeNeeds:
    """What ``mode`` needs; ConfigError naming the allowed modes for an unknown one."""
    backend_for(mode)
    return NEEDS[mode]


def run_checks(config: Config, *, mode: str | None = None, gpus: str | None = None,
               mounts_file: str | None = None, connect_fn: ConnectFn = connect) -> list[Check]:
    """Every check for ``mode`` (default ``server.mode``) with ``gpus`` (default ``docker.gpus``)."""
    mode = mode or config.server.mode
    gpus = config.docker.gpus if gpus is None else gpus
    if not GPUS_PATTERN.match(gpus.strip()):
        raise ConfigError(f"--gpus: expected 'all', 'none' or comma-separated GPU indices such as '0,1', got {gpus!r}")
    mode_needs = needs(mode)
    checks = [_python(), _project(), *mode_needs.checks(config, gpus, connect_fn)]
    checks.append(_disk("free disk (state dir)", server_paths(config).state_dir, MIN_FREE_STATE_GIB))
    checks.append(_ports(config))
    checks.append(_mounts(mounts_file, required=mode_needs.mounts_required))
    return checks
