"""The ``tao_ws`` mounts file (default ``~/.tao_mounts.json``): mounts, environment and docker options.

Format (the seed's, plus ``Envs`` and more ``DockerOptions``)::

    {
      "Mounts": [{"source": "~/data", "destination": "/workspace/data", "read_only": false}],
      "Envs": [{"variable": "CUDA_VISIBLE_DEVICES", "value": "0"}],
      "DockerOptions": {"user": "1000:1000", "shm_size": "16G", "ulimits": {"memlock": -1, "stack": 67108864},
                        "ports": {"8888": 8888}, "network": "host", "privileged": false, "tty": true}
    }

``Envs`` may also be an object ``{"VAR": "value"}``; a ulimit may be ``N``, ``"soft:hard"`` or
``{"soft": N, "hard": M}``; ``ports`` maps a container port (``"8888"`` or ``"8888/udp"``) to a host port.
Sources are expanded (``~``, ``$VAR``) and a relative source is relative to the mounts file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.run_spec import Mount, Ulimit
from mmw.config import ENV_NAME_PATTERN, SIZE_PATTERN, ULIMIT_NAMES
from mmw.errors import ConfigError

DEFAULT_MOUNTS_FILE = "~/.tao_mounts.json"
TOP_KEYS = ("DockerOptions", "Envs", "Mounts")
MOUNT_KEYS = ("destination", "read_only", "source")
ENV_KEYS = ("value", "variable")
OPTION_KEYS = ("network", "ports", "privileged", "shm_size", "tty", "ulimits", "user")


@dataclass(frozen=True)
class DockerOptions:
    """``DockerOptions`` of the mounts file; None means not set."""

    user: str | None = None
    shm_size: str | None = None
    ulimits: tuple[Ulimit, ...] = ()
    ports: tuple[tuple[str, int], ...] = ()  # ("8888/tcp", 8888): container port -> host port
    network: str | None = None
    privileged: bool | None = None
    tty: bool | None = None


@dataclass(frozen=True)
class MountsFile:
    """The whole mounts file (empty when there is none)."""

    path: Path | None = None
    mounts: tuple[Mount, ...] = ()
    envs: tuple[tuple[str, str], ...] = ()
    options: DockerOptions = field(default_factory=DockerOptions)


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _check_keys(where: str, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise _fail(f"{where}.{unknown[0]}" if where else unknown[0],
                    f"unknown key; allowed keys{' under ' + where if where else ''}: {', '.join(allowed)}")


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"expected a non-empty string, got {type(value).__name__} {value!r}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise _fail(where, f"expected an integer, got {type(value).__name__} {value!r}")
    return value


def parse_ulimit_value(where: str, name: str, value: Any) -> Ulimit:
    """``N``, ``"soft:hard"`` or ``{"soft": N, "hard": M}`` for limit ``name``."""
    if name not in ULIMIT_NAMES:
        raise _fail(where, f"unknown limit {name!r}; allowed: {', '.join(ULIMIT_NAMES)}")
    if isinstance(value, dict):
        _check_keys(where, value, ("hard", "soft"))
        soft = _int(f"{where}.soft", value.get("soft", value.get("hard")))
        hard = _int(f"{where}.hard", value.get("hard", soft))
    elif isinstance(value, str) and ":" in value:
        soft_text, hard_text = value.split(":", 1)
        soft, hard = _int(where, soft_text), _int(where, hard_text)
    else:
        soft = hard = _int(where, value)
    for v in (soft, hard):
        if v < -1:
            raise _fail(where, f"expected -1 (unlimited) or a number >= 0, got {v}")
    if hard != -1 and (soft == -1 or soft > hard):
        raise _fail(where, f"soft limit {soft} is above the hard limit {hard}")
    return Ulimit(name=name, soft=soft, hard=hard)


def port_key(where: str, container: str) -> str:
    """``"8888"`` -> ``"8888/tcp"``; checks the number and protocol."""
    number, _, proto = container.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 1 <= int(number) <= 65535 or proto not in ("tcp", "udp", "sctp"):
        raise _fail(where, f"expected a container port such as 8888 or 8888/udp, got {container!r}")
    return f"{int(number)}/{proto}"


def _resolve_source(where: str, source: str, base: Path | None) -> str:
    expanded = os.path.expandvars(os.path.expanduser(source))
    path = Path(expanded)
    if not path.is_absolute():
        if base is None:
            raise _fail(where, f"expected an absolute path, got {source!r}")
        path = base / path
    return os.path.normpath(path)


def _mounts(where: str, value: Any, base: Path | None) -> tuple[Mount, ...]:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list of {{\"source\": ..., \"destination\": ...}}, got "
                           f"{type(value).__name__}")
    mounts = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _fail(w, f"expected an object with source and destination, got {type(item).__name__}")
        _check_keys(w, item, MOUNT_KEYS)
        for key in ("source", "destination"):
            if key not in item:
                raise _fail(f"{w}.{key}", "missing; every mount needs source and destination")
        destination = _string(f"{w}.destination", item["destination"])
        if not destination.startswith("/"):
            raise _fail(f"{w}.destination", f"expected an absolute path in the container, got {destination!r}")
        mounts.append(Mount(source=_resolve_source(f"{w}.source", _string(f"{w}.source", item["source"]), base),
                            destination=os.path.normpath(destination),
                            read_only=_bool(f"{w}.read_only", item.get("read_only", False))))
    return tuple(mounts)


def _envs(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            w = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise _fail(w, f"expected {{\"variable\": ..., \"value\": ...}}, got {type(item).__name__}")
            _check_keys(w, item, ENV_KEYS)
            if "variable" not in item or "value" not in item:
                raise _fail(w, "expected both variable and value")
            pairs.append((item["variable"], item["value"]))
    else:
        raise _fail(where, f"expected a list of {{\"variable\": ..., \"value\": ...}} or an object, got "
                           f"{type(value).__name__}")
    envs = []
    for name, val in pairs:
        if not isinstance(name, str) or not ENV_NAME_PATTERN.match(name):
            raise _fail(where, f"expected variable names of letters, digits and _, got {name!r}")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise _fail(f"{where}.{name}", f"expected a string or number, got {type(val).__name__} {val!r}")
        envs.append((name, str(val)))
    return tuple(envs)


def _options(where: str, value: Any) -> DockerOptions:
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    _check_keys(where, value, OPTION_KEYS)
    user = value.get("user")
    if user is not None:
        user = _string(f"{where}.user", str(user) if isinstance(user, int) and not isinstance(user, bool) else user)
    shm = value.get("shm_size")
    if shm is not None:
        shm = str(shm) if isinstance(shm, int) and not isinstance(shm, bool) else shm
        if not isinstance(shm, str) or not SIZE_PATTERN.match(shm):
            raise _fail(f"{where}.shm_size", f"expected a size such as 16G or 512m, got {shm!r}")
    ulimits: list[Ulimit] = []
    raw_ulimits = value.get("ulimits", {})
    if not isinstance(raw_ulimits, dict):
        raise _fail(f"{where}.ulimits", f"expected an object such as {{\"stack\": 67108864}}, got "
                                        f"{type(raw_ulimits).__name__}")
    for name, limit in raw_ulimits.items():
        ulimits.append(parse_ulimit_value(f"{where}.ulimits.{name}", name, limit))
    ports: list[tuple[str, int]] = []
    raw_ports = value.get("ports", {})
    if not isinstance(raw_ports, dict):
        raise _fail(f"{where}.ports", f"expected an object of container port -> host port such as "
                                      f"{{\"8888\": 8888}}, got {type(raw_ports).__name__}")
    for container, host in raw_ports.items():
        w = f"{where}.ports.{container}"
        host_port = _int(w, host)
        if not 1 <= host_port <= 65535:
            raise _fail(w, f"expected a host port in 1..65535, got {host_port}")
        ports.append((port_key(w, str(container)), host_port))
    network = value.get("network")
    return DockerOptions(
        user=user, shm_size=shm, ulimits=tuple(ulimits), ports=tuple(ports),
        network=_string(f"{where}.network", network) if network is not None else None,
        privileged=_bool(f"{where}.privileged", value["privileged"]) if "privileged" in value else None,
        tty=_bool(f"{where}.tty", value["tty"]) if "tty" in value else None,
    )


def parse_mounts(data: Any, path: Path | None = None) -> MountsFile:
    """Validate the parsed JSON of a mounts file (relative sources resolve against ``path``'s folder)."""
    name = str(path) if path is not None else "mounts file"
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected an object with {', '.join(TOP_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{name}: {unknown[0]}: unknown key; allowed keys: {', '.join(TOP_KEYS)}")
    base = path.parent if path is not None else None
    return MountsFile(
        path=path,
        mounts=_mounts(f"{name}: Mounts", data["Mounts"], base) if "Mounts" in data else (),
        envs=_envs(f"{name}: Envs", data["Envs"]) if "Envs" in data else (),
        options=_options(f"{name}: DockerOptions", data["DockerOptions"]) if "DockerOptions" in data
        else DockerOptions(),
    )


def load_mounts_file(path: str | Path | None = None) -> MountsFile:
    """Read and validate a mounts file; the default ``~/.tao_mounts.json`` may be absent, a named one may not."""
    explicit = path is not None
    p = Path(os.path.expanduser(str(path if explicit else DEFAULT_MOUNTS_FILE)))
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"mounts file {p}: not found; expected a JSON file with Mounts, Envs and "
                              "DockerOptions (see `launcher shell --help`)") from None
        return MountsFile()
    except OSError as exc:
        raise ConfigError(f"mounts file {p}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"mounts file {p}: not valid JSON ({exc}); note that JSON allows no trailing "
                          "commas") from None
    return parse_mounts(data, p.resolve())
