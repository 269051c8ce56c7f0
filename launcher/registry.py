"""Every server backend, keyed by the ``server.mode`` value that selects it.

Commands look their backend up here once: :func:`backend_for` for the configured mode (``run``),
:func:`active_backend` for whatever this state dir records (``stop``, ``status``, ``logs``).
"""

from __future__ import annotations

from launcher import docker_server, local_server
from launcher.backend import ServerBackend, StopResult
from mmw.config import Config
from mmw.errors import ConfigError

BACKENDS: dict[str, ServerBackend] = {
    local_server.MODE: local_server,
    docker_server.MODE: docker_server,
}
"""The keys are the values ``server.mode`` allows (``mmw.config.ServerConfig``)."""


def backend_for(mode: str) -> ServerBackend:
    """The backend of ``mode``; ConfigError naming the allowed values for any other."""
    try:
        return BACKENDS[mode]
    except KeyError:
        allowed = ", ".join(repr(m) for m in BACKENDS)
        raise ConfigError(f"server.mode: expected one of {allowed}, got {mode!r}") from None


def active_backend(config: Config) -> ServerBackend:
    """The backend whose server this state dir records, else the one ``server.mode`` names."""
    for backend in BACKENDS.values():
        if backend.recorded(config):
            return backend
    return backend_for(config.server.mode)


def stop_recorded(config: Config, also: ServerBackend) -> list[StopResult]:
    """``run --restart``: stop every recorded server of this state dir, and whatever ``also`` left behind."""
    return [backend.stop(config) for backend in BACKENDS.values() if backend is also or backend.recorded(config)]
