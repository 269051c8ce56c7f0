"""tritonserver's arguments from settings: one pure description for every place that starts Triton.

``launcher run`` passes these arguments in local mode (:func:`local_args`, what ``local_server.build_command``
builds after the binary) and in a container (:func:`container_args`, what ``run_spec.triton_command`` builds
after ``tritonserver``). The Helm chart ``deploy/helm/mmw-triton`` renders :func:`container_args` plus the
restricted APIs (:class:`RestrictedApi`); ``tests/test_helm_chart.py`` checks that the rendered args and both
launcher commands equal these for the same settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmw.config import Config
from mmw.contract import ADMIN_KEY_ENV, GRPC_HEADER_PREFIX, RESTRICTED_HEADER  # declared once, for clients too
from mmw.errors import ConfigError

__all__ = ["ADMIN_KEY_ENV", "CONTAINER_PORTS", "CONTAINER_REPOSITORY", "GRPC_HEADER_PREFIX", "RESTRICTED_APIS",
           "RESTRICTED_HEADER", "RestrictedApi", "ServerArgs", "container_args", "local_args"]

CONTAINER_PORTS = (8000, 8001, 8002)
"""HTTP, gRPC and metrics ports inside a container (a bridge-networked Docker container, a Kubernetes pod)."""
CONTAINER_REPOSITORY = "/models"
"""The model repository inside a container: mounted there by the launcher, baked there by docker/release."""
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
"""Triton API categories that need the admin header when restricted (health, metadata, inference stay open)."""
_HEADER = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True)
class RestrictedApi:
    """``--http-restricted-api`` / ``--grpc-restricted-protocol``: ``apis`` answer only with ``header: key``."""

    header: str
    key: str
    apis: tuple[str, ...] = RESTRICTED_APIS

    def __post_init__(self) -> None:
        if not _HEADER.match(self.header):
            raise ConfigError(f"restricted API header: expected lowercase letters, digits and '-' (gRPC metadata "
                              f"keys are lowercase), got {self.header!r}")
        if not self.key or any(c.isspace() or c in ",:" for c in self.key):
            raise ConfigError("restricted API key: expected a non-empty value without spaces, ',' or ':' "
                              f"(Triton splits the setting on them), got {len(self.key)} characters")
        if not self.apis:
            raise ConfigError(f"restricted APIs: expected at least one of {', '.join(RESTRICTED_APIS)}, got none")

    @property
    def setting(self) -> str:
        """``<apis>:<header>=<key>``, the value of both flags."""
        return f"{','.join(self.apis)}:{self.header}={self.key}"

    def args(self) -> list[str]:
        return [f"--http-restricted-api={self.setting}", f"--grpc-restricted-protocol={self.setting}"]


@dataclass(frozen=True)
class ServerArgs:
    """Everything the launcher decides about a tritonserver command line, except the binary."""

    model_repository: str
    http_port: int
    grpc_port: int
    metrics_port: int
    exit_timeout_s: int
    log_verbose: int
    backend_directory: str | None = None
    address: str | None = None
    """Bind address of the HTTP and gRPC (and metrics) endpoints; None: Triton's default, every interface."""
    metrics_address: bool = True
    """Also pass ``--metrics-address`` with ``address`` (the binary must list the flag)."""
    restricted: RestrictedApi | None = None

    def args(self) -> list[str]:
        """The arguments, in the order the launcher has always passed them."""
        out = [f"--model-repository={self.model_repository}"]
        if self.backend_directory is not None:
            out.append(f"--backend-directory={self.backend_directory}")
        out += [f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}"]
        if self.address is not None:
            out += [f"--http-address={self.address}", f"--grpc-address={self.address}"]
            if self.metrics_address:
                out.append(f"--metrics-address={self.address}")
        out += [
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
        ]
        if self.restricted is not None:
            out += self.restricted.args()
        return out


def local_args(config: Config, *, model_repository: str, backend_directory: str, metrics_address: bool,
               restricted: RestrictedApi | None = None) -> list[str]:
    """What ``server.mode: local`` passes after the binary: config ports, bound to ``server.host``."""
    s = config.server
    return ServerArgs(model_repository=model_repository, backend_directory=backend_directory,
                      http_port=s.http_port, grpc_port=s.grpc_port, metrics_port=s.metrics_port,
                      address=s.host, metrics_address=metrics_address, exit_timeout_s=s.exit_timeout_s,
                      log_verbose=s.log_verbose, restricted=restricted).args()


def container_args(config: Config, repository: str = CONTAINER_REPOSITORY,
                   restricted: RestrictedApi | None = None) -> list[str]:
    """What a container passes after ``tritonserver``: fixed ports on every interface (Docker publishes them on
    ``server.host``; a pod is reached through its Services), or the config's ports on ``server.host`` with
    ``docker.network: host``."""
    s = config.server
    host_network = config.docker.network == "host"
    ports = (s.http_port, s.grpc_port, s.metrics_port) if host_network else CONTAINER_PORTS
    return ServerArgs(model_repository=repository, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2],
                      address=s.host if host_network else None, exit_timeout_s=s.exit_timeout_s,
                      log_verbose=s.log_verbose, restricted=restricted).args()
