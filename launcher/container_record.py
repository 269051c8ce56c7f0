"""The record of a Triton container started by ``launcher run --mode docker`` (like the PID file of local mode).

``<state_dir>/triton-container.json`` names the container by ID, so ``status``, ``logs`` and ``stop``
find exactly what ``run`` made. Reading it needs no Docker SDK.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from launcher.pidfile import client_host
from mmw.errors import ServerError

RECORD_FILE_NAME = "triton-container.json"
CONTAINER_LOG_NAME = "triton-container.log"  # the container's log, saved when it is stopped or fails


@dataclass(frozen=True)
class ContainerRecord:
    """What ``launcher run --mode docker`` started."""

    container_id: str
    name: str
    image: str  # repository:tag
    image_id: str  # sha256:... actually run
    pinned: bool
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    started_at: float
    model_repository: str
    docker_host: str  # '' = DOCKER_HOST / default socket at the time
    gpus: str
    network: str
    log_path: str  # the saved log after the container is gone
    argv: list[str] = field(default_factory=list)

    def _url_host(self) -> str:
        host = client_host(self.host)
        return f"[{host}]" if ":" in host else host

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host()}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._url_host()}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._url_host()}:{self.metrics_port}/metrics"

    @property
    def uptime_s(self) -> float:
        return max(0.0, time.time() - self.started_at)


def record_path(state_dir: Path) -> Path:
    return state_dir / RECORD_FILE_NAME


def write_container_record(path: Path, record: ContainerRecord) -> None:
    """Write the record atomically (JSON)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ServerError(f"cannot write the container record {path}: {exc}") from exc


def read_container_record(path: Path) -> ContainerRecord | None:
    """The record, or None when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServerError(f"container record {path} is unreadable ({exc}); expected JSON written by "
                          "`launcher run --mode docker`. If no such container runs, delete it") from exc
    known = set(ContainerRecord.__dataclass_fields__)
    try:
        return ContainerRecord(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise ServerError(f"container record {path} lacks fields ({exc}); if no such container runs, delete "
                          "it") from exc


def remove_container_record(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
