"""``server.mode: docker``: Triton in a container (a :class:`ServerBackend`): start, wait until ready, status,
logs, stop.

The image is the manifest's (``docker/manifest.json``), pinned by digest; the container carries the label
``mmw.launcher=1`` and is recorded in ``<state_dir>/triton-container.json``, so ``stop`` removes exactly
what ``run`` made. Readiness is checked over HTTP as in local mode.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher import admin_key, http_probe, triton_log
from launcher.backend import ServerStatus, StartOptions, StopResult
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
from launcher.images import ResolvedImage, manifest_entry, resolve_image
from launcher.ports import check_ports_free, port_in_use
from launcher.processes import clean_leftovers, record_is_alive
from launcher.records import (
    CONTAINER_LOG_NAME,
    ContainerRecord,
    ServerRecord,
    read_record,
    remove_record,
    start_lock,
    write_record,
)
from launcher.run_spec import triton_spec
from launcher.state_dir import prepare_start, server_paths, shared_state_dir, startup_timeout
from mmw.config import PROJECT_ROOT, Config
from mmw.errors import DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker

MODE = "docker"
POLL_S = 0.25
GPU_FIX = 'set docker.gpus: "" (or `launcher run --mode docker --gpus none`) to run Triton without GPUs'


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


def _record_path(config: Config) -> Path:
    return ContainerRecord.path(server_paths(config).state_dir)


def _refuse_if_running(config: Config, client: docker.DockerClient) -> None:
    paths = server_paths(config)
    local = read_record(paths.pid_file, ServerRecord)
    if local is not None and record_is_alive(local):
        raise DockerError(f"a local tritonserver started by launcher runs (pid {local.pid}, {local.http_url}); "
                          "run `launcher stop` first")
    if local is not None:  # stale: its process is gone, its python backend stubs may not be
        clean_leftovers(local, paths.backend_dir)
    remove_record(paths.pid_file)
    rpath = ContainerRecord.path(paths.state_dir)
    record = read_record(rpath, ContainerRecord)
    if record is not None:
        container = _get(client, record.container_id)
        if container is not None and container.status == "running":
            raise DockerError(f"a tritonserver container started by launcher already runs ({record.name}, "
                              f"{record.http_url}, up {record.uptime_s:.0f} s, record {rpath}); run `launcher stop` "
                              "first")
        if container is not None:
            _save_log(container, Path(record.log_path))
            remove_container(container)
        remove_record(rpath)
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


def start(config: Config, wait_for_models: Sequence[str] = (), *, timeout_s: float | None = None,
          options: StartOptions | None = None, client: docker.DockerClient | None = None) -> ContainerRecord:
    """Start the Triton container and wait until it and ``wait_for_models`` are ready.

    Raises DockerError when the daemon is unreachable, the image is missing or unpinned, GPUs are requested
    but unavailable, the container exits while starting (with Triton's reason from its log), or it is not
    ready within ``timeout_s``; in the last cases the container is removed and its log saved. With
    ``options.wait`` False it returns once the container is started and recorded (then call ``wait_ready``).
    """
    s, d = config.server, config.docker
    opts = options or StartOptions()
    restricted = admin_key.restriction(config)
    timeout, paths = prepare_start(config, timeout_s)
    client = _client(config, client)
    with start_lock(paths.state_dir):
        _refuse_if_running(config, client)
        check_ports_free(s.host, {"server.http_port": s.http_port, "server.grpc_port": s.grpc_port,
                                  "server.metrics_port": s.metrics_port})
        image = resolve_triton_image(config, client, allow_unpinned=opts.allow_unpinned, pull=opts.pull)
        site = None
        if d.image_kind == "ngc" and d.container_python:
            arch = str(client.info().get("Architecture", "x86_64"))
            if opts.progress is not None:
                opts.progress(f"preparing the python models' packages for the container's Python "
                              f"{d.container_python} ({arch}) in {paths.state_dir} (pip; once)")
            site = prepare_site(shared_state_dir(paths.state_dir), d.container_python, arch)  # once per replicas
        spec = triton_spec(config, image.id, model_repository=paths.model_repository,
                           mmw_package=PROJECT_ROOT / "mmw", site_dir=site, state_dir=paths.state_dir,
                           restricted=restricted)
        what = f"starting container {d.container_name} from {image.entry.ref}"
        container = create_container(client, spec.kwargs, what, GPU_FIX)
        record = ContainerRecord(
            container_id=container.id, name=d.container_name, image=image.entry.ref, image_id=image.id,
            pinned=image.pinned, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
            metrics_port=s.metrics_port, started_at=time.time(), model_repository=str(paths.model_repository),
            docker_host=d.host, gpus=d.gpus, network=d.network, log_path=str(paths.state_dir / CONTAINER_LOG_NAME),
            argv=admin_key.redact(spec.kwargs["command"], restricted),
            restricted_apis=list(restricted.apis) if restricted else [],
        )
        try:
            write_record(ContainerRecord.path(paths.state_dir), record)
            start_container(container, what, GPU_FIX)
        except BaseException:
            _discard(container, record, ContainerRecord.path(paths.state_dir))
            raise
        if opts.wait:
            _ready_or_removed(container, record, wait_for_models, timeout, ContainerRecord.path(paths.state_dir),
                              admin_key.probe_headers(config))
    return record


def wait_ready(config: Config, wait_for_models: Sequence[str] = (), *, timeout_s: float | None = None,
               client: docker.DockerClient | None = None) -> ContainerRecord:
    """Wait until the recorded container and ``wait_for_models`` are ready; remove it if it fails (see ``start``)."""
    timeout = startup_timeout(config, timeout_s)
    rpath = _record_path(config)
    record = read_record(rpath, ContainerRecord)
    container = None if record is None else _get(_client(config, client, record.docker_host), record.container_id)
    if record is None or container is None:
        raise DockerError(f"no tritonserver container recorded in {rpath} (or it is gone): expected one started by "
                          "`launcher run --mode docker`")
    _ready_or_removed(container, record, wait_for_models, timeout, rpath, admin_key.probe_headers(config))
    return record


def _discard(container: Any, record: ContainerRecord, rpath: Path) -> None:
    """Save the log of a container that failed to start, remove it and its record."""
    with contextlib.suppress(Exception):
        _save_log(container, Path(record.log_path))
    with contextlib.suppress(Exception):
        remove_container(container)
    remove_record(rpath)


def _ready_or_removed(container: Any, record: ContainerRecord, names: Sequence[str], timeout: float,
                      rpath: Path, headers: dict[str, str]) -> None:
    try:
        _wait_ready(container, record, list(names), timeout, headers)
    except BaseException:
        _discard(container, record, rpath)
        raise


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


def _wait_ready(container: Any, record: ContainerRecord, names: list[str], timeout: float,
                headers: dict[str, str]) -> None:
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
            if http_probe.models_ready(url, names, record.model_repository, DockerError, headers):
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


def stop(config: Config, client: docker.DockerClient | None = None) -> StopResult:
    """Stop and remove the recorded container (SIGTERM, SIGKILL after ``server.exit_timeout_s``), save its log."""
    paths = server_paths(config)
    rpath = ContainerRecord.path(paths.state_dir)
    record = read_record(rpath, ContainerRecord)
    client = _client(config, client, None if record is None else record.docker_host)
    if record is None:
        removed = 0
        for container in _leftovers(client, paths.state_dir):
            remove_container(container)
            removed += 1
        return StopResult(mode=MODE, record=None, stopped=False, removed=removed)
    container = _get(client, record.container_id)
    if container is None:
        remove_record(rpath)
        return StopResult(mode=MODE, record=record, stopped=False, stale=True)
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
    remove_record(rpath)
    return StopResult(mode=MODE, record=record, stopped=was_running, stale=not was_running, forced=exit_code == 137,
                      removed=removed, elapsed_s=time.monotonic() - t0)


def status(config: Config, client: docker.DockerClient | None = None) -> ServerStatus:
    """Whether the recorded container runs, its ports, readiness and models. Changes nothing."""
    paths = server_paths(config)
    s = config.server
    rpath = ContainerRecord.path(paths.state_dir)
    record = read_record(rpath, ContainerRecord)
    base = ServerStatus(mode=MODE, running=False, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
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
    headers = admin_key.probe_headers(config)
    index = http_probe.repository_index(url, headers=headers)
    return replace(found, running=True, server_ready=http_probe.server_ready(url), models=tuple(index or ()),
                   uptime_s=record.uptime_s, index_restricted=index is None and http_probe.index_refused(url, headers))


def _recorded_container(config: Config, client: docker.DockerClient | None) -> Any | None:
    record = read_record(_record_path(config), ContainerRecord)
    return None if record is None else _get(_client(config, client, record.docker_host), record.container_id)


def read_log(config: Config, lines: int = 50, client: docker.DockerClient | None = None) -> list[str]:
    """The last ``lines`` lines of the container's log (the saved log once the container is gone)."""
    if lines < 0:
        raise DockerError(f"log lines: expected a number >= 0, got {lines}")
    container = _recorded_container(config, client)
    if container is not None:
        return _logs_text(container, lines).splitlines()[-lines:] if lines else []
    return triton_log.tail(server_paths(config).state_dir / CONTAINER_LOG_NAME, lines)


def follow_log(config: Config, lines: int = 50, client: docker.DockerClient | None = None) -> Iterator[str]:
    """The last ``lines`` lines, then new ones until the container stops."""
    container = _recorded_container(config, client)
    if container is None:
        yield from triton_log.tail(server_paths(config).state_dir / CONTAINER_LOG_NAME, lines)
        return
    pending = b""
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True, tail=lines):
        pending += chunk
        *done, pending = pending.split(b"\n")
        for line in done:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def recorded(config: Config) -> bool:
    """True when the state dir holds a container record."""
    return _record_path(config).exists()
