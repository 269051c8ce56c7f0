"""The files of one configured server (``server.state_dir``) and the checks every backend makes before it starts.

Replica 0 of ``launcher run --replicas N`` is the server of ``server.state_dir`` itself; replica i >= 1 keeps its
files in ``<state_dir>/replica-<i>/`` (:func:`replica_state_dir`), and shares what does not depend on the
server (the container's site packages) with the base state dir (:func:`shared_state_dir`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from launcher import triton_log
from launcher.records import ServerRecord
from mmw.config import Config
from mmw.engine_provenance import check_repository_plans
from mmw.errors import ConfigError

REPLICA_DIR = re.compile(r"^replica-(?P<index>[1-9][0-9]*)$")
"""The state dir of replica i >= 1, below the base state dir."""


def replica_state_dir(state_dir: str | Path, index: int) -> Path:
    """Where replica ``index`` keeps its record, log and backend dir (replica 0: ``state_dir`` itself)."""
    return Path(state_dir) if index == 0 else Path(state_dir) / f"replica-{index}"


def shared_state_dir(state_dir: Path) -> Path:
    """The base state dir a replica's state dir belongs to (``state_dir`` itself for replica 0)."""
    return state_dir.parent if REPLICA_DIR.match(state_dir.name) else state_dir


@dataclass(frozen=True)
class ServerPaths:
    """Files of one configured server."""

    state_dir: Path
    pid_file: Path
    log_file: Path
    backend_dir: Path
    model_repository: Path


def server_paths(config: Config) -> ServerPaths:
    """Resolve the state dir, PID file, log, backend dir and model repository of ``config``."""
    state = config.path(config.server.state_dir)
    return ServerPaths(
        state_dir=state,
        pid_file=ServerRecord.path(state),
        log_file=state / triton_log.LOG_FILE_NAME,
        backend_dir=state / "backends",
        model_repository=config.path(config.server.model_repository),
    )


def startup_timeout(config: Config, timeout_s: float | None) -> float:
    """``timeout_s``, or ``server.startup_timeout_s`` when None; positive."""
    timeout = config.server.startup_timeout_s if timeout_s is None else timeout_s
    if timeout <= 0:
        raise ConfigError(f"startup timeout: expected a positive number of seconds, got {timeout}")
    return timeout


def prepare_start(config: Config, timeout_s: float | None) -> tuple[float, ServerPaths]:
    """Check the startup timeout, the repository and its TensorRT plans' provenance, create the state dir."""
    timeout = startup_timeout(config, timeout_s)
    paths = server_paths(config)
    if not paths.model_repository.is_dir():
        raise ConfigError(f"server.model_repository: expected a directory of models, got {paths.model_repository} "
                          "which does not exist")
    check_repository_plans(paths.model_repository)  # a foreign TensorRT plan is refused before Triton starts
    try:
        paths.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"server.state_dir: cannot create {paths.state_dir}: {exc}") from exc
    return timeout, paths
