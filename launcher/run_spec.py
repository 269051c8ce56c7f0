"""Pure builders: settings -> the keyword arguments of the Docker SDK's ``containers.create``.

Nothing here talks to a daemon, so the Triton container's spec (GPU device requests, ports, ulimits, mounts,
its command line) is unit-tested without Docker. The dev container's spec (``launcher.devcontainer``)
builds on the same types and helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher import server_args
from launcher.docker_client import LABEL, sdk
from launcher.server_args import RestrictedApi, container_args
from mmw.config import GPUS_PATTERN, SIZE_PATTERN, Config
from mmw.errors import ConfigError

MMW_MOUNT = "/opt/mmw"  # MMW_PYTHONPATH in the Triton container: mmw/ below it, site/ the python models' packages
REPOSITORY_MOUNT = server_args.CONTAINER_REPOSITORY  # the model repository in the Triton container
CONTAINER_PORTS = server_args.CONTAINER_PORTS  # Triton's ports inside a bridge-networked container
PYTHONPATH_ENV = "MMW_PYTHONPATH"
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass(frozen=True)
class Mount:
    """A bind mount: host ``source`` (absolute) at container ``destination``."""

    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class Ulimit:
    """One resource limit (-1: unlimited)."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class RunSpec:
    """What to create: ``client.containers.create(**spec.kwargs)``; plus warnings for the user."""

    kwargs: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return str(self.kwargs["image"])


def parse_gpus(text: str) -> Any | None:
    """``all`` -> every GPU, ``0,1`` -> those indices, ``''``/``none`` -> None, as a Docker DeviceRequest."""
    value = text.strip().replace(" ", "")
    if not GPUS_PATTERN.match(value):
        raise ConfigError(f"gpus: expected 'all', 'none' or comma-separated GPU indices such as '0,1', got {text!r}")
    if value in ("", "none"):
        return None
    types = sdk().types
    if value == "all":
        return types.DeviceRequest(count=-1, capabilities=[["gpu"]])
    return types.DeviceRequest(device_ids=value.split(","), capabilities=[["gpu"]])


def parse_size(text: str, where: str = "shm_size") -> int:
    """Docker's size syntax (``16G``, ``512m``, ``1024``; units are powers of 1024) in bytes."""
    value = text.strip()
    if not SIZE_PATTERN.match(value):
        raise ConfigError(f"{where}: expected a size such as 16G, 512m or a number of bytes, got {text!r}")
    unit = value[-1].lower() if value[-1].isalpha() else "b"
    number = value[:-1] if value[-1].isalpha() else value
    size = int(float(number) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{where}: expected a size above 0, got {text!r}")
    return size


def labels(role: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of a container the launcher makes (``mmw.launcher=1``: it may remove it)."""
    return {LABEL: "1", "mmw.role": role, **(extra or {})}


def docker_mounts(mounts: list[Mount]) -> list[Any]:
    """Bind mounts as the SDK's ``Mount`` objects."""
    types = sdk().types
    return [types.Mount(target=m.destination, source=m.source, type="bind", read_only=m.read_only) for m in mounts]


def docker_ulimits(ulimits: list[Ulimit]) -> list[Any]:
    """Resource limits as the SDK's ``Ulimit`` objects."""
    types = sdk().types
    return [types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in ulimits]


def triton_command(config: Config, repository: str = REPOSITORY_MOUNT,
                   restricted: RestrictedApi | None = None) -> list[str]:
    """The tritonserver command line inside the container: ``tritonserver``, then ``server_args.container_args``
    (ports 8000-8002 published on server.host by Docker, or the config's ports with ``docker.network: host``)."""
    return ["tritonserver", *container_args(config, repository, restricted)]


def triton_spec(config: Config, image: str, *, model_repository: Path, mmw_package: Path,
                site_dir: Path | None = None, state_dir: Path | None = None,
                restricted: RestrictedApi | None = None) -> RunSpec:
    """The Triton container for ``config`` (``server.mode: docker``).

    ``image_kind: ngc`` mounts the model repository read-only at /models, the project's ``mmw`` package at
    /opt/mmw/mmw and ``site_dir`` (the python models' packages built for the image's Python) at /opt/mmw/site,
    and sets MMW_PYTHONPATH; ``release`` images carry all of that inside.
    """
    s, d = config.server, config.docker
    env: dict[str, str] = {}
    mounts: list[Mount] = []
    if d.image_kind == "ngc":
        mounts.append(Mount(source=str(model_repository), destination=REPOSITORY_MOUNT, read_only=True))
        mounts.append(Mount(source=str(mmw_package), destination=f"{MMW_MOUNT}/mmw", read_only=True))
        path = [MMW_MOUNT]
        if site_dir is not None:
            mounts.append(Mount(source=str(site_dir), destination=f"{MMW_MOUNT}/site", read_only=True))
            path.append(f"{MMW_MOUNT}/site")
        env[PYTHONPATH_ENV] = ":".join(path)
    env.update(d.env)
    ulimits = [Ulimit(name=name, soft=value, hard=value) for name, value in d.ulimits.items()]
    extra = {"mmw.state_dir": str(state_dir)} if state_dir is not None else {}
    kwargs: dict[str, Any] = {
        "image": image,
        "command": triton_command(config, restricted=restricted),
        "name": d.container_name,
        "labels": labels("triton", extra),
        "environment": env,
        "mounts": docker_mounts(mounts),
        "shm_size": parse_size(d.shm_size, "docker.shm_size"),
        "ulimits": docker_ulimits(ulimits),
    }
    if d.network == "host":
        kwargs["network_mode"] = "host"
    else:
        host_ports = (s.http_port, s.grpc_port, s.metrics_port)
        kwargs["ports"] = {f"{c}/tcp": (s.host, h) for c, h in zip(CONTAINER_PORTS, host_ports, strict=True)}
    request = parse_gpus(d.gpus)
    if request is not None:
        kwargs["device_requests"] = [request]
    return RunSpec(kwargs=kwargs)
