"""What ``launcher run`` leaves in the state dir so later commands find its server: one JSON record per backend.

``tritonserver.pid`` records a local process, ``triton-container.json`` a container. Both share the fields
and URLs of :class:`BaseRecord` and are written, read and removed by the same three functions. Reading
one needs neither /proc nor the Docker SDK.
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
from typing import ClassVar, TypeVar

from mmw.errors import ServerError

PID_FILE_NAME = "tritonserver.pid"
RECORD_FILE_NAME = "triton-container.json"
CONTAINER_LOG_NAME = "triton-container.log"  # the container's log, saved when it is stopped or fails


def client_host(host: str) -> str:
    """Map a bind address to one a local client can connect to."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, kw_only=True)
class BaseRecord:
    """Where a launched server listens and what it serves, whichever backend started it."""

    FILE_NAME: ClassVar[str]
    WHAT: ClassVar[str]  # how messages name the file
    WRITER: ClassVar[str]  # the command that writes it
    SERVER: ClassVar[str]  # what it records, for "if no ... runs, delete it"

    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    started_at: float  # time.time() at start
    model_repository: str
    log_path: str
    argv: list[str] = field(default_factory=list)  # the command line, the admin key redacted
    restricted_apis: list[str] = field(default_factory=list)  # the APIs that need the admin key ([]: none)

    @classmethod
    def path(cls, state_dir: Path) -> Path:
        """Where this kind of record lives in ``state_dir``."""
        return state_dir / cls.FILE_NAME

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


@dataclass(frozen=True, kw_only=True)
class ServerRecord(BaseRecord):
    """A local tritonserver process (``server.mode: local``)."""

    FILE_NAME: ClassVar[str] = PID_FILE_NAME
    WHAT: ClassVar[str] = "PID file"
    WRITER: ClassVar[str] = "`launcher run`"
    SERVER: ClassVar[str] = "tritonserver"

    pid: int
    binary: str
    proc_start_ticks: int | None = None  # field 22 of /proc/<pid>/stat: guards against PID reuse
    pgid: int | None = None  # its process group (= pid: started as a session leader); None in older records
    shm_regions: list[str] = field(default_factory=list)  # the python backend regions it mapped once ready


@dataclass(frozen=True, kw_only=True)
class ContainerRecord(BaseRecord):
    """A Triton container (``server.mode: docker``), named by ID so ``stop`` removes exactly what ``run`` made."""

    FILE_NAME: ClassVar[str] = RECORD_FILE_NAME
    WHAT: ClassVar[str] = "container record"
    WRITER: ClassVar[str] = "`launcher run --mode docker`"
    SERVER: ClassVar[str] = "such container"

    container_id: str
    name: str
    image: str  # repository:tag
    image_id: str  # sha256:... actually run
    pinned: bool
    docker_host: str  # '' = DOCKER_HOST / default socket at the time
    gpus: str
    network: str


R = TypeVar("R", bound=BaseRecord)


def write_record(path: Path, record: BaseRecord) -> None:
    """Write ``record`` to ``path`` atomically (JSON)."""
    data = asdict(record)
    data["started_at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.started_at))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ServerError(f"cannot write the {record.WHAT} {path}: {exc}") from exc


def read_record(path: Path, kind: type[R]) -> R | None:
    """The ``kind`` record in ``path``, or None when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServerError(f"{kind.WHAT} {path} is unreadable ({exc}); expected JSON written by {kind.WRITER}. "
                          f"If no {kind.SERVER} runs, delete it") from exc
    known = set(kind.__dataclass_fields__)
    try:
        return kind(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise ServerError(f"{kind.WHAT} {path} lacks fields ({exc}); expected the JSON written by {kind.WRITER}. "
                          f"If no {kind.SERVER} runs, delete it") from exc


def remove_record(path: Path) -> None:
    """Delete a record file if it is there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
