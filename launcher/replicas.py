"""``launcher run --replicas N``: N identical Triton servers on one machine, each with its own ports and state.

Replica 0 is the server ``launcher run`` has always started: the ports of config.yaml and ``server.state_dir``
(so one replica is exactly the single server, records included). Replica i >= 1 listens on each of the three
ports + 3*i (with 8000/8001/8002: 8003/8004/8005, 8006/8007/8008, ...), keeps its record, log and backend dir
in ``<state_dir>/replica-<i>/`` and, in docker mode, runs in the container ``<container_name>-<i>``. Every
replica is an ordinary server of its backend, started, waited for, stopped and inspected by the backend's own
functions on :func:`replica_config`; this module only lays them out and coordinates them: all start, then
``run`` waits for all; when one fails the others this run started are stopped.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from launcher.backend import ServerBackend, ServerStatus, StartOptions, StopResult
from launcher.ports import check_ports_free
from launcher.records import BaseRecord, ContainerRecord, ServerRecord, client_host
from launcher.registry import active_backend, backend_for, stop_recorded
from launcher.report import cleanup_line
from launcher.state_dir import REPLICA_DIR, replica_state_dir, startup_timeout
from mmw.config import Config
from mmw.errors import ConfigError, MMWError, ServerError

PORT_STRIDE = 3
"""Replica i listens on http_port + 3*i, grpc_port + 3*i and metrics_port + 3*i."""
PORT_NAMES = ("http_port", "grpc_port", "metrics_port")
MAX_PORT = 65535
MAX_PARALLEL_STOPS = 16
_T = TypeVar("_T")


def replica_config(config: Config, index: int) -> Config:
    """``config`` for replica ``index``: its ports, its state dir, its container name (index 0: ``config``)."""
    if index == 0:
        return config
    s, d = config.server, config.docker
    shift = PORT_STRIDE * index
    server = dataclasses.replace(s, http_port=s.http_port + shift, grpc_port=s.grpc_port + shift,
                                 metrics_port=s.metrics_port + shift, replicas=1,
                                 state_dir=str(replica_state_dir(s.state_dir, index)))
    return dataclasses.replace(config, server=server,
                               docker=dataclasses.replace(d, container_name=f"{d.container_name}-{index}"))


def _port_label(index: int, name: str) -> str:
    return f"server.{name}" if index == 0 else f"replica {index}'s {name}, server.{name} + {PORT_STRIDE * index}"


def replica_ports(config: Config, count: int) -> dict[str, int]:
    """Every port of ``count`` replicas, keyed by what it is (``server.http_port``, ``replica 1's http_port, ...``).

    ConfigError when a port would pass 65535 or two replicas would share one (base ports that are not
    consecutive, such as 8000/8003/8006); the message names both.
    """
    s = config.server
    owners: dict[int, str] = {}
    ports: dict[str, int] = {}
    for index in range(count):
        for name in PORT_NAMES:
            port = getattr(s, name) + PORT_STRIDE * index
            label = _port_label(index, name)
            if port > MAX_PORT:
                raise ConfigError(f"--replicas {count}: {label} would be port {port}, beyond {MAX_PORT}; choose "
                                  "lower ports in config.yaml or fewer replicas")
            if port in owners:
                raise ConfigError(f"--replicas {count}: {label} would be port {port}, which is {owners[port]}; "
                                  "give server.http_port, grpc_port and metrics_port consecutive ports (e.g. 8000, "
                                  f"8001, 8002): replica i adds {PORT_STRIDE}*i to each")
            owners[port] = label
            ports[label] = port
    return ports


def _has_record(config: Config) -> bool:
    state = config.path(config.server.state_dir)
    return ServerRecord.path(state).exists() or ContainerRecord.path(state).exists()


def _replica_dirs(config: Config) -> list[int]:
    """The indices i >= 1 whose ``replica-<i>`` dir exists in the state dir."""
    state = config.path(config.server.state_dir)
    try:
        entries = list(state.iterdir())
    except OSError:
        return []
    return sorted(int(m.group("index")) for e in entries if e.is_dir() and (m := REPLICA_DIR.match(e.name)))


def recorded_indices(config: Config) -> list[int]:
    """Replica 0 and every replica whose state dir records a server (running or not): what status/stop cover."""
    return [0] + [i for i in _replica_dirs(config) if _has_record(replica_config(config, i))]


def known_indices(config: Config) -> list[int]:
    """Replica 0 and every replica with a state dir (a record or a log): what ``logs --replica`` accepts."""
    return [0, *_replica_dirs(config)]


def _url(config: Config) -> str:
    host = client_host(config.server.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.server.http_port}"


def _refuse_running_extras(config: Config, count: int, options: StartOptions) -> None:
    """A replica beyond ``count`` left by an earlier run: refuse while it runs; clean it (a stale record) if not."""
    for index in recorded_indices(config):
        if index < count:
            continue
        rc = replica_config(config, index)
        backend = active_backend(rc)
        st = backend.status(rc)
        if st.running:
            raise ServerError(f"replica {index} of an earlier `launcher run --replicas` still runs ({_url(rc)}); "
                              "`launcher stop` stops every replica (or `launcher run --restart`)")
        result = backend.stop(rc)
        if result.cleaned and options.progress is not None:
            options.progress(f"replica {index}: {cleanup_line(result.cleaned)}")


def _refuse_running(config: Config, count: int) -> None:
    for index in range(count):
        rc = replica_config(config, index)
        if _has_record(rc) and (st := active_backend(rc).status(rc)).running:
            raise ServerError(f"replica {index} of {count} already runs ({_url(rc)}, record {st.record_file}); run "
                              "`launcher stop` first (or `launcher run --restart`)")


def start_replicas(config: Config, count: int, wait_for_models: Sequence[str] = (), *,
                   timeout_s: float | None = None, options: StartOptions | None = None) -> list[BaseRecord]:
    """Start ``count`` replicas of ``server.mode`` and wait until every one is ready; their records, in order.

    ``count`` 1 is the single server (``backend.start``). Otherwise: every port of every replica is checked
    free first (the error names the one taken), all are started, then all are waited for within one
    ``timeout_s`` (default ``server.startup_timeout_s``). When one fails to start or to get ready, the others
    this run started are stopped and ServerError says which failed and why, in one line.
    """
    if count < 1:
        raise ConfigError(f"--replicas: expected a whole number >= 1, got {count}")
    opts = options or StartOptions()
    backend = backend_for(config.server.mode)
    ports = replica_ports(config, count)
    _refuse_running_extras(config, count, opts)
    if count == 1:
        return [backend.start(config, wait_for_models, timeout_s=timeout_s, options=opts)]
    deadline = time.monotonic() + startup_timeout(config, timeout_s)
    _refuse_running(config, count)
    check_ports_free(config.server.host, ports)
    started: list[tuple[int, Config]] = []
    records: list[BaseRecord] = []
    index = 0
    try:
        for index in range(count):
            rc = replica_config(config, index)
            progress = opts.progress
            each = dataclasses.replace(
                opts, wait=False,
                progress=None if progress is None else (lambda line, i=index, p=progress: p(f"replica {i}: {line}")))
            records.append(backend.start(rc, wait_for_models, timeout_s=timeout_s, options=each))
            started.append((index, rc))
        for index, rc in started:
            remaining = max(deadline - time.monotonic(), 1.0)
            records[index] = backend.wait_ready(rc, wait_for_models, timeout_s=remaining)
    except BaseException as exc:
        others = [rc for i, rc in started if i != index]

        def stop_quietly(rc: Config) -> None:
            try:
                backend.stop(rc)
            except MMWError:
                pass

        _stop_each(others, stop_quietly)
        if not isinstance(exc, MMWError):
            raise
        stopped = f"; stopped the {len(others)} other replica(s) this run started" if others else ""
        raise type(exc)(f"replica {index} of {count} ({_url(replica_config(config, index))}) failed to start: "
                        f"{exc}{stopped}") from exc
    return records


def _stop_each(configs: Sequence[Config], stop: Callable[[Config], _T]) -> list[_T]:
    """``stop`` every config at once (each waits for its server's exit timeout), results in order."""
    if len(configs) <= 1:
        return [stop(c) for c in configs]
    with ThreadPoolExecutor(max_workers=min(len(configs), MAX_PARALLEL_STOPS)) as pool:
        return list(pool.map(stop, configs))


def stop_replicas(config: Config) -> list[tuple[int, StopResult]]:
    """Stop every replica the state dir records, all at once (replica 0 always answers, as ``launcher stop``
    always did)."""
    indices = recorded_indices(config)
    results = _stop_each([replica_config(config, i) for i in indices], lambda rc: active_backend(rc).stop(rc))
    return list(zip(indices, results, strict=True))


def restart_stop(config: Config, also: ServerBackend) -> list[tuple[int, StopResult]]:
    """``run --restart``: stop every recorded server of every replica, and whatever ``also`` left in replica 0's."""
    indices = recorded_indices(config)
    results = _stop_each([replica_config(config, i) for i in indices],
                         lambda rc: stop_recorded(rc, also) if rc is config else [active_backend(rc).stop(rc)])
    return [(i, r) for i, rs in zip(indices, results, strict=True) for r in rs]


def replica_statuses(config: Config) -> list[tuple[int, ServerStatus]]:
    """The status of replica 0 and of every other recorded replica."""
    return [(i, active_backend(rc).status(rc)) for i in recorded_indices(config) for rc in [replica_config(config, i)]]


@dataclass(frozen=True)
class LogLine:
    """One line of a replica's server log."""

    replica: int
    text: str


def _check_index(config: Config, index: int) -> Config:
    known = known_indices(config)
    if index not in known:
        raise ConfigError(f"--replica {index}: expected one of the replicas of state dir "
                          f"{config.path(config.server.state_dir)}: {', '.join(map(str, known))}")
    return replica_config(config, index)


def log_indices(config: Config, replica: int | None) -> list[int]:
    """The replicas ``launcher logs`` prints: ``replica``, else every recorded one."""
    if replica is not None:
        _check_index(config, replica)
        return [replica]
    return recorded_indices(config)


def read_logs(config: Config, indices: Sequence[int], lines: int = 50) -> list[LogLine]:
    """The last ``lines`` lines of each replica's log, replica by replica."""
    out: list[LogLine] = []
    for index in indices:
        rc = replica_config(config, index)
        out += [LogLine(index, text) for text in active_backend(rc).read_log(rc, lines)]
    return out


def follow_logs(config: Config, indices: Sequence[int], lines: int = 50) -> Iterator[LogLine]:
    """The last ``lines`` lines of each log, then new lines of all of them as they come (stop iterating to stop).

    One daemon thread per replica follows its log; the first error of any of them is raised here.
    """
    if len(indices) == 1:
        rc = replica_config(config, indices[0])
        for text in active_backend(rc).follow_log(rc, lines):
            yield LogLine(indices[0], text)
        return
    lines_q: queue.Queue[LogLine | BaseException | None] = queue.Queue(maxsize=10000)

    def pump(index: int) -> None:
        rc = replica_config(config, index)
        try:
            for text in active_backend(rc).follow_log(rc, lines):
                lines_q.put(LogLine(index, text))
        except BaseException as exc:  # handed to the reader
            lines_q.put(exc)
        finally:
            lines_q.put(None)

    for index in indices:
        threading.Thread(target=pump, args=(index,), name=f"follow-replica-{index}", daemon=True).start()
    ended = 0
    while ended < len(indices):
        item = lines_q.get()
        if item is None:
            ended += 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item
