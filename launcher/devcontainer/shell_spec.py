"""Pure builder of the dev container (``launcher shell`` / ``tao_ws``): options -> ``containers.create`` kwargs.

Nothing here talks to a daemon, so every rule (precedence of the command line over the mounts file,
GPU device requests, ports, ulimits, the user) is unit-tested without Docker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.devcontainer.mounts_file import MountsFile, parse_ulimit_value, port_key
from launcher.run_spec import Mount, RunSpec, Ulimit, docker_mounts, docker_ulimits, labels, parse_gpus, parse_size
from mmw.config import ENV_NAME_PATTERN
from mmw.errors import ConfigError

PROJECT_MOUNT = "/workspace/mmw"  # the checkout in the dev container (working directory)
DEFAULT_SHELL_SHM = "16G"


def parse_ulimit(text: str) -> Ulimit:
    """``--ulimit NAME=soft[:hard]`` (e.g. ``nofile=1024:2048``, ``stack=67108864``, ``memlock=-1``)."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ConfigError(f"--ulimit: expected NAME=soft[:hard] such as nofile=1024:2048, got {text!r}")
    return parse_ulimit_value(f"--ulimit {text}", name.strip(), value.strip())


def parse_volume(text: str, cwd: Path | None = None) -> Mount:
    """``--volume SRC:DST[:ro|rw]``; SRC may be relative to ``cwd`` and may start with ``~``."""
    parts = text.split(":")
    access = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        access = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"--volume: expected HOST_PATH:CONTAINER_PATH[:ro|rw], got {text!r}")
    source = Path(os.path.expanduser(parts[0]))
    if not source.is_absolute():
        source = (cwd or Path.cwd()) / source
    if not parts[1].startswith("/"):
        raise ConfigError(f"--volume {text}: expected an absolute container path, got {parts[1]!r}")
    return Mount(source=os.path.normpath(source), destination=os.path.normpath(parts[1]), read_only=access == "ro")


def parse_env(text: str, host_env: Mapping[str, str]) -> tuple[str, str]:
    """``--env VAR=value``; a bare ``VAR`` passes this machine's value through (an error if it is unset)."""
    name, sep, value = text.partition("=")
    if not ENV_NAME_PATTERN.match(name):
        raise ConfigError(f"--env: expected VAR=value with a name of letters, digits and _, got {text!r}")
    if not sep:
        if name not in host_env:
            raise ConfigError(f"--env {name}: expected VAR=value, or a variable set on this machine; {name} is unset")
        value = host_env[name]
    return name, value


def parse_port(text: str) -> tuple[str, int | tuple[str, int]]:
    """``--port [IP:]HOST:CONTAINER[/proto]`` or ``PORT`` -> (``'8888/tcp'``, host binding)."""
    spec, _, proto = text.partition("/")
    parts = spec.rsplit(":", 2)
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    where = f"--port {text}"
    container = port_key(where, parts[-1] + (f"/{proto}" if proto else ""))
    host_text = parts[-2]
    if not host_text.isdigit() or not 1 <= int(host_text) <= 65535:
        raise ConfigError(f"{where}: expected [IP:]HOST_PORT:CONTAINER_PORT such as 8889:8889, got {text!r}")
    if len(parts) == 3:
        return container, (parts[0].strip("[]") or "0.0.0.0", int(host_text))
    return container, int(host_text)


def is_root_user(user: str | None) -> bool:
    """True for no user (Docker's default: root), ``0``, ``root``, ``0:gid`` or ``root:gid``."""
    name = (user or "").split(":", 1)[0]
    return name in ("", "0", "root")


def _by_key(items: list[Any], key: Any) -> list[Any]:
    """Later items win over earlier ones with the same key; first-seen order is kept."""
    merged: dict[Any, Any] = {}
    for item in items:
        merged[key(item)] = item
    return list(merged.values())


@dataclass(frozen=True)
class ShellOptions:
    """``launcher shell`` / ``tao_ws`` options, already resolved against this machine."""

    image: str  # image ID (or reference) to run
    command: tuple[str, ...] = ()  # () = the image's default command (an interactive shell)
    gpus: str = "all"
    volumes: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    tty: bool = True  # allocate a TTY (the caller checked that stdin is a terminal)
    stdin_open: bool = True
    shm_size: str | None = None  # None: the mounts file's, else 16G
    run_as_user: bool = False
    host_user: str = ""  # "uid:gid" of this user, used by run_as_user
    image_user: str = ""  # the image's USER ('' = root)
    ulimits: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    project_root: str | None = None  # mounted at /workspace/mmw and made the working directory
    host_env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None  # relative --volume sources resolve against it


def shell_spec(opts: ShellOptions, mounts_file: MountsFile | None = None) -> RunSpec:
    """The dev container for ``opts``: command-line options override the mounts file, which overrides defaults."""
    mf = mounts_file or MountsFile()
    fo = mf.options
    warnings: list[str] = []
    cwd = Path(opts.cwd) if opts.cwd else None

    mounts: list[Mount] = []
    env: dict[str, str] = {}
    if opts.project_root:
        mounts.append(Mount(source=opts.project_root, destination=PROJECT_MOUNT))
        env["PYTHONPATH"] = PROJECT_MOUNT
    mounts += list(mf.mounts) + [parse_volume(v, cwd) for v in opts.volumes]
    mounts = _by_key(mounts, lambda m: m.destination)
    env.update(dict(mf.envs))
    env.update(parse_env(e, opts.host_env) for e in opts.env)

    ulimits = _by_key(list(fo.ulimits) + [parse_ulimit(u) for u in opts.ulimits], lambda u: u.name)
    ports: dict[str, Any] = dict(fo.ports)
    ports.update(parse_port(p) for p in opts.ports)

    if opts.run_as_user:
        user: str | None = opts.host_user
    else:
        user = fo.user
    if is_root_user(user if user is not None else opts.image_user):
        fix = ("you are root here, so --run_as_user runs as root too; set DockerOptions.user (e.g. 1000:1000) in the "
               "mounts file for another user") if opts.run_as_user else (
               "pass --run_as_user (or set DockerOptions.user in the mounts file) to run as yourself")
        warnings.append(f"the container runs as root: files it creates in mounted host folders will belong to root; "
                        f"{fix}")
    shm = opts.shm_size or fo.shm_size or DEFAULT_SHELL_SHM
    tty = opts.tty and fo.tty is not False

    kwargs: dict[str, Any] = {
        "image": opts.image,
        "command": list(opts.command) or None,
        "labels": labels("shell"),
        "environment": env,
        "mounts": docker_mounts(mounts),
        "shm_size": parse_size(shm, "--shm_size" if opts.shm_size else "shm_size"),
        "ulimits": docker_ulimits(ulimits),
        "tty": tty,
        "stdin_open": opts.stdin_open,
    }
    if user is not None:
        kwargs["user"] = user
    if opts.project_root:
        kwargs["working_dir"] = PROJECT_MOUNT
    if ports:
        kwargs["ports"] = ports
        if fo.network == "host":
            warnings.append(f"ports {', '.join(sorted(ports))} are not published: the container shares the host "
                            "network (DockerOptions.network: host), so its ports are the host's already")
    if fo.network:
        kwargs["network_mode"] = fo.network
    if fo.privileged:
        kwargs["privileged"] = True
    request = parse_gpus(opts.gpus)
    if request is not None:
        kwargs["device_requests"] = [request]
    return RunSpec(kwargs=kwargs, warnings=tuple(warnings))
