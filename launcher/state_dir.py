"""The files of one configured server (``server.state_dir``) and the checks every backend makes before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launcher import triton_log
from launcher.records import ServerRecord
from mmw.config import Config
from mmw.engine_provenance import check_repository_plans
from mmw.errors import ConfigError


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
