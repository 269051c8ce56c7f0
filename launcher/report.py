"""Every line ``launcher run|stop|status`` prints about a server, for each backend, in one place.

The shared parts (endpoints, ports, models, JSON fields) are written once; a :class:`View` per
``server.mode`` adds what only that backend knows (a PID, or a container and its image). With several
replicas (``launcher run --replicas N``) each replica's lines are prefixed ``replica i:``; one replica reads
exactly as a single server always has.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from launcher.backend import ServerStatus, StopResult
from launcher.processes import Leftovers
from launcher.records import BaseRecord, ContainerRecord, ServerRecord
from launcher.server_args import RESTRICTED_HEADER

# ---------------------------------------------------------------- shared pieces


def _endpoints(record: BaseRecord) -> str:
    return f"HTTP {record.http_url}  gRPC {record.grpc_url}  metrics {record.metrics_url}"


def _config_ports(st: ServerStatus) -> str:
    return f"ports in config: HTTP {st.http_port}, gRPC {st.grpc_port}, metrics {st.metrics_port}"


def _busy(st: ServerStatus, by_whom: str) -> str:
    return f"; but port {', '.join(st.busy_ports)} is in use on {st.host} by {by_whom}" if st.busy_ports else ""


def cleanup_line(found: Leftovers) -> str:
    """The one line ``run`` and ``stop`` print after cleaning up after a crashed server."""
    return f"cleaned up after a crashed server (pid {found.server_pid}): {found.summary()}"


def _leftovers_note(found: Leftovers | None) -> str:
    if not found:
        return ""
    return (f"; the crashed server (pid {found.server_pid}) left {found.summary()}: `launcher stop` (or "
            "`launcher run`) ends and removes them")


def _leftovers_json(found: Leftovers | None) -> dict[str, Any] | None:
    if not found:
        return None
    return {"server_pid": found.server_pid, "stub_pids": [s.pid for s in found.stubs], "rss_bytes": found.rss_bytes,
            "shm_regions": [str(r) for r in found.regions], "shm_bytes": found.region_bytes}


def _running_lines(st: ServerStatus, record: BaseRecord, who: str, details: list[str], log: str,
                   no_index: str) -> list[str]:
    lines = [f"running: {who}, up {st.uptime_s or 0:.0f} s, server {'ready' if st.server_ready else 'NOT ready'}",
             *[f"  {line}" for line in details],
             f"  {_endpoints(record)}",
             f"  model repository {record.model_repository}",
             f"  log {log}"]
    if record.restricted_apis:
        lines.append(f"  restricted APIs (header {RESTRICTED_HEADER}): {', '.join(record.restricted_apis)}")
    if not st.models and st.index_restricted:
        lines.append("  models: unknown (the repository index needs the admin key: set MMW_TRITON_ADMIN_KEY or "
                     "server.admin_key_file)")
    elif not st.models:
        lines.append(f"  models: unknown ({no_index} does not answer)")
    for m in st.models:
        reason = f" - {m.reason}" if m.reason else ""
        lines.append(f"  model {m.name} v{m.version or '?'}: {m.state or 'unknown'}{reason}")
    return lines


def _common_json(st: ServerStatus) -> dict[str, Any]:
    return {"host": st.host, "http_port": st.http_port, "grpc_port": st.grpc_port, "metrics_port": st.metrics_port,
            "server_ready": st.server_ready, "uptime_s": st.uptime_s, "ready_models": list(st.ready_models),
            "models": [dataclasses.asdict(m) for m in st.models],
            "restricted_apis": list(st.record.restricted_apis) if st.record is not None and st.running else []}


# ---------------------------------------------------------------- local: a tritonserver process


def _local_ready(record: BaseRecord, models: Sequence[str]) -> str:
    assert isinstance(record, ServerRecord)
    return (f"tritonserver ready (pid {record.pid}, models: {', '.join(models)}): {_endpoints(record)}  "
            f"log {record.log_path}")


def _local_stop(result: StopResult) -> str:
    if result.stopped:
        how = "killed (SIGKILL after SIGTERM timed out)" if result.forced else "stopped"
        return f"tritonserver (pid {result.pid}) {how} in {result.elapsed_s:.1f} s"
    if result.stale:
        cleaned = f"; {cleanup_line(result.cleaned)}" if result.cleaned else ""
        return f"no server running; removed a stale PID file (pid {result.pid} is gone){cleaned}"
    return "no server running (no PID file)"


def _local_status(st: ServerStatus) -> str:
    if not st.running or st.record is None:
        line = f"not running ({_config_ports(st)})"
        if st.stale_pid is not None:
            line += (f"; stale PID file {st.record_file} names pid {st.stale_pid}, which is gone "
                     "(`launcher stop` removes it)")
        return line + _leftovers_note(st.leftovers) + _busy(st, "a process launcher did not start "
                                                                "(`ss -ltnp` shows which)")
    return "\n".join(_running_lines(st, st.record, f"pid {st.pid}", [], str(st.log_file), "the HTTP endpoint"))


def _local_json(st: ServerStatus) -> dict[str, Any]:
    return {"running": st.running, "pid": st.pid, **_common_json(st), "stale_pid": st.stale_pid,
            "leftovers": _leftovers_json(st.leftovers), "busy_ports": list(st.busy_ports),
            "pid_file": str(st.record_file), "log_file": str(st.log_file)}


# ---------------------------------------------------------------- docker: a Triton container


def _container(record: BaseRecord | None) -> ContainerRecord | None:
    assert record is None or isinstance(record, ContainerRecord)
    return record


def _docker_ready(record: BaseRecord, models: Sequence[str]) -> str:
    rec = _container(record)
    assert rec is not None
    pin = "pinned" if rec.pinned else "UNPINNED"
    return (f"tritonserver ready in container {rec.name} ({rec.container_id[:12]}, {rec.image} {pin}, GPUs: "
            f"{rec.gpus or 'none'}, models: {', '.join(models)}): {_endpoints(rec)}  log `launcher logs`")


def _docker_stop(result: StopResult) -> str:
    rec = _container(result.record)
    if rec is not None and result.stopped:
        how = "killed (SIGKILL after the exit timeout)" if result.forced else "stopped"
        return (f"tritonserver container {rec.name} ({rec.container_id[:12]}) {how} and removed in "
                f"{result.elapsed_s:.1f} s; its log is saved in {rec.log_path}")
    if rec is not None and result.stale:
        return f"no container running; removed a stale record (container {rec.name} is gone)"
    if result.removed:
        return f"removed {result.removed} leftover container(s) of this state dir"
    return "no server running (no container recorded)"


def _docker_status(st: ServerStatus) -> str:
    rec = _container(st.record)
    if rec is None:
        return (f"not running (docker mode; no container recorded in {st.record_file}; {_config_ports(st)})"
                + _busy(st, "something launcher did not start (`ss -ltnp`)"))
    if not st.running:
        state = f"{st.state} (exit code {st.exit_code})" if st.state else "gone"
        return (f"not running: container {rec.name} ({rec.container_id[:12]}) recorded in {st.record_file} is "
                f"{state}; `launcher logs` shows its log, `launcher stop` cleans up")
    image = (f"image {rec.image} ({rec.image_id[:19]}, {'pinned' if rec.pinned else 'UNPINNED'}), GPUs: "
             f"{rec.gpus or 'none'}, network {rec.network}")
    return "\n".join(_running_lines(st, rec, f"container {rec.name} ({rec.container_id[:12]})", [image],
                                    f"`launcher logs` (docker logs {rec.name})", "the repository index"))


def _docker_json(st: ServerStatus) -> dict[str, Any]:
    rec = _container(st.record)
    return {"mode": st.mode, "running": st.running, "state": st.state, "exit_code": st.exit_code,
            "container_id": rec.container_id if rec else None, "container_name": rec.name if rec else None,
            "image": rec.image if rec else None, "image_id": rec.image_id if rec else None,
            "pinned": rec.pinned if rec else None, "gpus": rec.gpus if rec else None, **_common_json(st),
            "busy_ports": list(st.busy_ports), "record_file": str(st.record_file), "log_file": str(st.log_file)}


# ---------------------------------------------------------------- one view per backend


@dataclass(frozen=True)
class View:
    """How one backend's results read."""

    ready: Callable[[BaseRecord, Sequence[str]], str]
    stop: Callable[[StopResult], str]
    status: Callable[[ServerStatus], str]
    status_json: Callable[[ServerStatus], dict[str, Any]]


VIEWS: dict[str, View] = {
    "local": View(_local_ready, _local_stop, _local_status, _local_json),
    "docker": View(_docker_ready, _docker_stop, _docker_status, _docker_json),
}
"""Keyed like ``launcher.registry.BACKENDS``."""


def ready_line(mode: str, record: BaseRecord, models: Sequence[str]) -> str:
    """What ``launcher run`` prints once the server of ``mode`` is ready."""
    return VIEWS[mode].ready(record, models)


def stop_message(result: StopResult) -> str:
    """What ``launcher stop`` prints."""
    return VIEWS[result.mode].stop(result)


def status_text(st: ServerStatus) -> str:
    """What ``launcher status`` prints."""
    return VIEWS[st.mode].status(st)


def status_json(st: ServerStatus) -> str:
    """What ``launcher status --json`` prints."""
    return json.dumps(VIEWS[st.mode].status_json(st), indent=2)


# ---------------------------------------------------------------- several replicas


def _prefix(index: int, text: str) -> str:
    return f"replica {index}: {text}"


def replicas_ready_lines(mode: str, records: Sequence[BaseRecord], models: Sequence[str]) -> list[str]:
    """What ``launcher run --replicas N`` prints once all are ready (one replica: the single ready line)."""
    if len(records) == 1:
        return [ready_line(mode, records[0], models)]
    return [*(_prefix(i, ready_line(mode, r, models)) for i, r in enumerate(records)),
            f"{len(records)} replicas ready; gRPC endpoints (client.urls): {', '.join(r.grpc_url for r in records)}"]


def replicas_stop_lines(results: Sequence[tuple[int, StopResult]]) -> list[str]:
    """What ``launcher stop`` prints: one line per replica (a single replica's line as it always was)."""
    if len(results) == 1:
        return [stop_message(results[0][1])]
    return [_prefix(i, stop_message(r)) for i, r in results]


def replicas_status_text(items: Sequence[tuple[int, ServerStatus]]) -> str:
    """What ``launcher status`` prints: each replica's status under ``replica i:``."""
    if len(items) == 1:
        return status_text(items[0][1])
    return "\n".join(_prefix(i, status_text(st)) for i, st in items)


def replicas_status_json(items: Sequence[tuple[int, ServerStatus]]) -> str:
    """``launcher status --json``: replica 0's fields as always, plus ``replicas`` (each with its index) when
    there are more."""
    first = VIEWS[items[0][1].mode].status_json(items[0][1])
    if len(items) > 1:
        first["replicas"] = [{"replica": i, **VIEWS[st.mode].status_json(st)} for i, st in items]
    return json.dumps(first, indent=2)
