"""Triton in a container (``server.mode: docker``): start, wait until ready, status, logs, stop.

The image is the manifest's (``docker/manifest.json``), pinned by digest; the container carries the label
``mmw.launcher=1`` and is recorded in ``<state_dir>/triton-container.json``, so ``stop`` removes exactly
what ``run`` made. Readiness is checked over HTTP as in local mode.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher import http_probe, triton_log
from launcher.container_record import (
    CONTAINER_LOG_NAME,
    ContainerRecord,
    read_container_record,
    record_path,
    remove_container_record,
    write_container_record,
)
from launcher.container_site import prepare_site
from launcher.docker_client import (
    LABEL,
    connect,
    create_container,
    is_ours,
    remove_container,
    sdk,
    start_container,
)
from launcher.http_probe import ModelState
from launcher.images import ResolvedImage, manifest_entry, resolve_image
from launcher.local_server import prepare_start, server_paths
from launcher.pidfile import read_record, record_is_alive, start_lock
from launcher.ports import check_ports_free, port_in_use
from launcher.run_spec import triton_spec
from mmw.config import PROJECT_ROOT, Config
from mmw.errors import DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker

POLL_S = 0.25
GPU_FIX = 'set docker.gpus: "" (or `launcher run --mode docker --gpus none`) to run Triton without GPUs'
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ContainerStopResult:
    """What ``stop_container_server`` did."""

    name: str | None
    container_id: str | None
    stopped: bool  # a running container was stopped and removed
    removed: int = 0  # containers removed (the recorded one and leftovers of this state dir)
    stale: bool = False  # the record named a container that was gone; the record was removed
    exit_code: int | None = None
    elapsed_s: float = 0.0
    log_path: str = ""

    @property
    def message(self) -> str:
        if self.stopped:
            how = "killed (SIGKILL after the exit timeout)" if self.exit_code == 137 else "stopped"
            return (f"tritonserver container {self.name} ({self.container_id}) {how} and removed in "
                    f"{self.elapsed_s:.1f} s; its log is saved in {self.log_path}")
        if self.stale:
            return f"no container running; removed a stale record (container {self.name} is gone)"
        if self.removed:
            return f"removed {self.removed} leftover container(s) of this state dir"
        return "no server running (no container recorded)"


@dataclass(frozen=True)
class ContainerStatus:
    """The Triton container of this config, as the record, Docker and its HTTP endpoint tell."""

    running: bool
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    server_ready: bool
    models: tuple[ModelState, ...]
    uptime_s: float | None
    record_file: Path
    log_file: Path
    record: ContainerRecord | None = None
    state: str = ""  # Docker's state of the recorded container: running, exited, ... ('' = gone or none)
    exit_code: int | None = None
    busy_ports: tuple[str, ...] = ()

    @property
    def ready_models(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.state == "READY")


def _client(config: Config, client: docker.DockerClient | None, host: str | None = None) -> docker.DockerClient:
    return client if client is not None else connect(config.docker.host if host is None else host)


def _get(client: docker.DockerClient, container_id: str) -> Any | None:
    errors = sdk().errors
    try:
        return client.containers.get(container_id)
    except errors.NotFound:
        return None
    except errors.DockerException as exc:
        raise DockerError(f"cannot inspect container {container_id[:12]}: {exc}") from None


def resolve_triton_image(config: Config, client: docker.DockerClient, *, allow_unpinned: bool = False,
                         pull: bool = False) -> ResolvedImage:
    """The Triton image ``config`` asks for (manifest entry ``triton`` or ``release``), local and pinned."""
    d = config.docker
    key = "triton" if d.image_kind == "ngc" else "release"
    entry = manifest_entry(config.path(d.manifest), key, d.image, d.tag)
    return resolve_image(client, entry, allow_unpinned=allow_unpinned or d.allow_unpinned, pull=pull)


def _refuse_if_running(config: Config, client: docker.DockerClient) -> None:
    paths = server_paths(config)
    local = read_record(paths.pid_file)
    if local is not None and record_is_alive(local):
        raise DockerError(f"a local tritonserver started by launcher runs (pid {local.pid}, {local.http_url}); "
                          "run `launcher stop` first")
    rpath = record_path(paths.state_dir)
    record = read_container_record(rpath)
    if record is not None:
        container = _get(client, record.container_id)
        if container is not None and container.status == "running":
            raise DockerError(f"a tritonserver container started by launcher already runs ({record.name}, "
                              f"{record.http_url}, up {record.uptime_s:.0f} s, record {rpath}); run `launcher stop` "
                              "first")
        if container is not None:
            _save_log(container, Path(record.log_path))
            remove_container(container)
        remove_container_record(rpath)
    name = config.docker.container_name
    existing = _get(client, name)
    if existing is None:
        return
    if not is_ours(existing.attrs):
        raise DockerError(f"a container named {name} exists and was not made by the launcher (no {LABEL}=1 label); "
                          "remove or rename it, or set docker.container_name")
    if existing.status == "running":
        raise DockerError(f"container {name} made by launcher runs but is not recorded in {rpath} (another state "
                          f"dir?); stop it with `docker rm -f {name}` or use another docker.container_name")
    remove_container(existing)


def start_container_server(
    config: Config,
    wait_for_models: Sequence[str] = (),
    *,
    timeout_s: float | None = None,
    client: docker.DockerClient | None = None,
    allow_unpinned: bool = False,
    pull: bool = False,
    progress: Progress | None = None,
) -> ContainerRecord:
    """Start the Triton container and wait until it and ``wait_for_models`` are ready.

    Raises DockerError when the daemon is unreachable, the image is missing or unpinned, GPUs are requested
    but unavailable, the container exits while starting (with Triton's reason from its log), or it is not
    ready within ``timeout_s``; in the last cases the container is removed and its log saved.
    """
    s, d = config.server, config.docker
    timeout, paths = prepare_start(config, timeout_s)
    client = _client(config, client)
    with start_lock(paths.state_dir):
        _refuse_if_running(config, client)
        check_ports_free(s.host, {"server.http_port": s.http_port, "server.grpc_port": s.grpc_port,
                                  "server.metrics_port": s.metrics_port})
        image = resolve_triton_image(config, client, allow_unpinned=allow_unpinned, pull=pull)
        site = None
        if d.image_kind == "ngc" and d.container_python:
            arch = str(client.info().get("Architecture", "x86_64"))
            if progress is not None:
                progress(f"preparing the python models' packages for the container's Python {d.container_python} "
                         f"({arch}) in {paths.state_dir} (pip; once)")
            site = prepare_site(paths.state_dir, d.container_python, arch)
        spec = triton_spec(config, image.id, model_repository=paths.model_repository,
                           mmw_package=PROJECT_ROOT / "mmw", site_dir=site, state_dir=paths.state_dir)
        what = f"starting container {d.container_name} from {image.entry.ref}"
        container = create_container(client, spec.kwargs, what, GPU_FIX)
        log_path = paths.state_dir / CONTAINER_LOG_NAME
        record = ContainerRecord(
            container_id=container.id, name=d.container_name, image=image.entry.ref, image_id=image.id,
            pinned=image.pinned, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
            metrics_port=s.metrics_port, started_at=time.time(), model_repository=str(paths.model_repository),
            docker_host=d.host, gpus=d.gpus, network=d.network, log_path=str(log_path),
            argv=list(spec.kwargs["command"]),
        )
        rpath = record_path(paths.state_dir)
        try:
            write_container_record(rpath, record)
            start_container(container, what, GPU_FIX)
            _wait_ready(container, record, list(wait_for_models), timeout, config)
        except BaseException:
            with contextlib.suppress(Exception):
                _save_log(container, log_path)
            with contextlib.suppress(Exception):
                remove_container(container)
            remove_container_record(rpath)
            raise
    return record


def _logs_text(container: Any, tail: int | str = "all") -> str:
    errors = sdk().errors
    try:
        return container.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace")
    except errors.DockerException:
        return ""


def _save_log(container: Any, path: Path) -> None:
    text = _logs_text(container)
    if text:
        path.write_text(text, encoding="utf-8")


def _wait_ready(container: Any, record: ContainerRecord, names: list[str], timeout: float, config: Config) -> None:
    """Poll until the server and ``names`` are ready; raise with Triton's reason otherwise."""
    url = record.http_url
    deadline = time.monotonic() + timeout
    errors = sdk().errors
    while True:
        try:
            container.reload()
        except errors.NotFound:
            raise DockerError(f"container {record.name} disappeared while starting (removed by someone "
                              "else?)") from None
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            text = _logs_text(container)
            reason = triton_log.explain_failure(text) or _last_line(text) or "no reason found in its log"
            raise DockerError(f"tritonserver container {record.name} exited with code {code} before it was ready: "
                              f"{reason}. Its log is saved in {record.log_path} (`launcher logs`)")
        if stuck := triton_log.stuck_reasons(_logs_text(container, 200).splitlines()):
            raise DockerError(f"tritonserver container {record.name} cannot finish loading its models: "
                              f"{'; '.join(stuck)}; it was stopped. Log: {record.log_path}")
        if http_probe.server_ready(url):
            if http_probe.models_ready(url, names, record.model_repository, DockerError):
                return
        if time.monotonic() >= deadline:
            errors_text = triton_log.explain_failure(_logs_text(container))
            what = "its HTTP endpoint does not answer" if not http_probe.server_live(url) else (
                f"models not ready: {', '.join(n for n in names if not http_probe.model_ready(url, n)) or 'none'}")
            raise DockerError(f"tritonserver container {record.name} not ready after {timeout:g} s at {url}: {what}"
                              + (f"; log errors: {errors_text}" if errors_text else "")
                              + f". Removed it; log saved in {record.log_path}; if loading is just slow, raise "
                              "server.startup_timeout_s or use `launcher run --timeout S`")
        time.sleep(POLL_S)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _leftovers(client: docker.DockerClient, state_dir: Path) -> list[Any]:
    """Containers the launcher made for this state dir (e.g. a run that crashed before recording)."""
    filters = {"label": [f"{LABEL}=1", "mmw.role=triton", f"mmw.state_dir={state_dir}"]}
    return client.containers.list(all=True, filters=filters)


def stop_container_server(config: Config, client: docker.DockerClient | None = None) -> ContainerStopResult:
    """Stop and remove the recorded container (SIGTERM, SIGKILL after ``server.exit_timeout_s``), save its log."""
    paths = server_paths(config)
    rpath = record_path(paths.state_dir)
    record = read_container_record(rpath)
    client = _client(config, client, None if record is None else record.docker_host)
    if record is None:
        removed = 0
        for container in _leftovers(client, paths.state_dir):
            remove_container(container)
            removed += 1
        return ContainerStopResult(name=None, container_id=None, stopped=False, removed=removed)
    container = _get(client, record.container_id)
    if container is None:
        remove_container_record(rpath)
        return ContainerStopResult(name=record.name, container_id=record.container_id[:12], stopped=False,
                                   stale=True)
    t0 = time.monotonic()
    was_running = container.status == "running"
    errors = sdk().errors
    if was_running:
        try:
            container.stop(timeout=config.server.exit_timeout_s)
        except errors.DockerException as exc:
            raise DockerError(f"cannot stop container {record.name}: {exc}") from None
        container.reload()
    exit_code = container.attrs.get("State", {}).get("ExitCode")
    _save_log(container, Path(record.log_path))
    remove_container(container)
    removed = 1
    for other in _leftovers(client, paths.state_dir):
        remove_container(other)
        removed += 1
    remove_container_record(rpath)
    return ContainerStopResult(name=record.name, container_id=record.container_id[:12], stopped=was_running,
                               removed=removed, stale=not was_running, exit_code=exit_code,
                               elapsed_s=time.monotonic() - t0, log_path=record.log_path)


def container_status(config: Config, client: docker.DockerClient | None = None) -> ContainerStatus:
    """Whether the recorded container runs, its ports, readiness and models. Changes nothing."""
    paths = server_paths(config)
    s = config.server
    rpath = record_path(paths.state_dir)
    record = read_container_record(rpath)
    base = ContainerStatus(running=False, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
                           metrics_port=s.metrics_port, server_ready=False, models=(), uptime_s=None,
                           record_file=rpath, log_file=paths.state_dir / CONTAINER_LOG_NAME)
    ports = {"http_port": s.http_port, "grpc_port": s.grpc_port, "metrics_port": s.metrics_port}
    if record is None:
        busy = tuple(f"{port} ({key})" for key, port in ports.items() if port_in_use(s.host, port))
        return replace(base, busy_ports=busy)
    container = _get(_client(config, client, record.docker_host), record.container_id)
    state = "" if container is None else container.status
    exit_code = None if container is None else container.attrs.get("State", {}).get("ExitCode")
    found = replace(base, record=record, state=state, exit_code=exit_code, host=record.host,
                    http_port=record.http_port, grpc_port=record.grpc_port, metrics_port=record.metrics_port)
    if state != "running":
        return found
    url = record.http_url
    return replace(found, running=True, server_ready=http_probe.server_ready(url),
                   models=tuple(http_probe.repository_index(url) or ()), uptime_s=record.uptime_s)


def read_container_log(config: Config, lines: int = 50, client: docker.DockerClient | None = None) -> list[str]:
    """The last ``lines`` lines of the container's log (the saved log once the container is gone)."""
    if lines < 0:
        raise DockerError(f"log lines: expected a number >= 0, got {lines}")
    paths = server_paths(config)
    record = read_container_record(record_path(paths.state_dir))
    if record is not None:
        container = _get(_client(config, client, record.docker_host), record.container_id)
        if container is not None:
            return _logs_text(container, lines).splitlines()[-lines:] if lines else []
    return triton_log.tail(paths.state_dir / CONTAINER_LOG_NAME, lines)


def follow_container_log(config: Config, lines: int = 50,
                         client: docker.DockerClient | None = None) -> Iterator[str]:
    """The last ``lines`` lines, then new ones until the container stops."""
    paths = server_paths(config)
    record = read_container_record(record_path(paths.state_dir))
    container = None
    if record is not None:
        container = _get(_client(config, client, record.docker_host), record.container_id)
    if container is None:
        yield from triton_log.tail(paths.state_dir / CONTAINER_LOG_NAME, lines)
        return
    pending = b""
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True, tail=lines):
        pending += chunk
        *done, pending = pending.split(b"\n")
        for line in done:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
