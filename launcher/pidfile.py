"""The PID file of a launched tritonserver, and safe checks of whether that process still runs.

A PID is only trusted while ``/proc/<pid>`` shows a tritonserver started at the recorded clock tick,
so a recycled PID (another program now) is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmw.errors import ServerError

PID_FILE_NAME = "tritonserver.pid"
BINARY_NAME = "tritonserver"


@dataclass(frozen=True)
class ServerRecord:
    """What the PID file says about a launched server."""

    pid: int
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    started_at: float  # time.time() at start
    model_repository: str
    binary: str
    log_path: str
    proc_start_ticks: int | None = None  # field 22 of /proc/<pid>/stat: guards against PID reuse
    argv: list[str] = field(default_factory=list)

    @property
    def client_host(self) -> str:
        """The address a client on this machine connects to (a wildcard bind means loopback)."""
        return client_host(self.host)

    @property
    def http_url(self) -> str:
        return f"http://{_url_host(self.client_host)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_url_host(self.client_host)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.client_host)}:{self.metrics_port}/metrics"

    @property
    def uptime_s(self) -> float:
        return max(0.0, time.time() - self.started_at)


def client_host(host: str) -> str:
    """Map a bind address to one a local client can connect to."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def write_record(path: Path, record: ServerRecord) -> None:
    """Write the PID file atomically (JSON)."""
    data = asdict(record)
    data["started_at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.started_at))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ServerError(f"cannot write the PID file {path}: {exc}") from exc


def read_record(path: Path) -> ServerRecord | None:
    """The record in the PID file, or None when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServerError(f"PID file {path} is unreadable ({exc}); expected JSON written by `launcher run`. "
                          "If no tritonserver runs, delete it") from exc
    known = set(ServerRecord.__dataclass_fields__)
    try:
        return ServerRecord(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise ServerError(f"PID file {path} lacks fields ({exc}); expected the JSON written by `launcher run`. "
                          "If no tritonserver runs, delete it") from exc


def remove_record(path: Path) -> None:
    """Delete the PID file if it is there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def proc_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None if it does not exist)."""
    stat = _read_stat(pid)
    return None if stat is None else int(stat[19])


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2:].split()


def is_tritonserver(pid: int, start_ticks: int | None = None) -> bool:
    """True only if ``pid`` is a live (not zombie) tritonserver, started at ``start_ticks`` when given."""
    if pid <= 0:
        return False
    if not Path("/proc/self/stat").exists():
        raise ServerError("cannot check processes: /proc is not available (the launcher supports Linux only)")
    stat = _read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if start_ticks is not None and int(stat[19]) != start_ticks:
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return Path(argv0).name == BINARY_NAME


def record_is_alive(record: ServerRecord) -> bool:
    """True if the recorded server process still runs."""
    return is_tritonserver(record.pid, record.proc_start_ticks)


SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"


def shm_regions(pid: int) -> set[Path]:
    """The python backend's shared-memory regions that ``pid`` maps (Triton leaks some when a load fails)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {Path(line.split(maxsplit=5)[5].removesuffix(" (deleted)")) for line in maps.splitlines()
            if SHM_PREFIX in line and len(line.split(maxsplit=5)) == 6}


def remove_regions(regions: set[Path]) -> None:
    """Unlink shared-memory regions a stopped server left behind."""
    for region in regions:
        try:
            region.unlink()
        except OSError:
            pass


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@contextlib.contextmanager
def start_lock(state_dir: Path) -> Iterator[None]:
    """Only one ``launcher run`` at a time per state dir, whatever the mode."""
    path = state_dir / "launcher.lock"
    with path.open("a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServerError(f"another `launcher run` is starting a server with state dir {state_dir} "
                              f"(it holds {path}); wait for it, then `launcher status`") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
