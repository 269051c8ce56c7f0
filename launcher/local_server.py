"""``server.mode: local``: a tritonserver process from the nvidia-pytriton wheel (a :class:`ServerBackend`).

The server runs detached (its own session and process group), logs to ``<state_dir>/tritonserver.log`` and is
recorded in ``<state_dir>/tritonserver.pid`` (JSON), so a later command can find it. It is only ever signalled
by the recorded PID, after checking that the PID still belongs to that tritonserver. When the recorded server
is gone (killed, crashed), ``run`` and ``stop`` end the python backend stubs it left in its process group and
remove their shared-memory regions (``launcher.processes``); ``status`` reports them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from launcher import admin_key, http_probe, triton_log
from launcher.backend import ServerStatus, StartOptions, StopResult
from launcher.ports import check_ports_free, port_in_use
from launcher.processes import (
    Leftovers,
    clean_leftovers,
    find_leftovers,
    is_tritonserver,
    proc_start_ticks,
    reap,
    record_is_alive,
    remove_regions,
    shm_regions,
)
from launcher.records import (
    ContainerRecord,
    ServerRecord,
    read_record,
    remove_record,
    start_lock,
    write_record,
)
from launcher.report import cleanup_line
from launcher.server_args import RestrictedApi, local_args
from launcher.state_dir import ServerPaths, prepare_start, server_paths, startup_timeout
from launcher.triton_binary import (
    INSTALL_HINT,
    TritonInstall,
    find_triton,
    prepare_backend_dir,
    server_env,
    supported_flags,
)
from mmw.config import Config
from mmw.errors import ConfigError, ServerError

MODE = "local"
POLL_S = 0.25
KILL_WAIT_S = 10.0
# Our own children, so that stop() in the same process reaps them instead of leaving zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def build_command(install: TritonInstall, config: Config, paths: ServerPaths,
                  restricted: RestrictedApi | None = None) -> list[str]:
    """The tritonserver command line for ``config``: the binary, then ``server_args.local_args``."""
    return [str(install.binary), *local_args(config, model_repository=str(paths.model_repository),
                                             backend_directory=str(paths.backend_dir),
                                             metrics_address="--metrics-address" in supported_flags(install),
                                             restricted=restricted)]


def _refuse_if_running(paths: ServerPaths) -> Leftovers | None:
    """Refuse while a recorded server runs; for a stale record, clean what its server left and remove it."""
    container = read_record(ContainerRecord.path(paths.state_dir), ContainerRecord)
    if container is not None:
        raise ConfigError(f"a Triton container started by launcher is recorded ({container.name}, "
                          f"{container.http_url}, record {ContainerRecord.path(paths.state_dir)}); run `launcher "
                          "stop` first (or `launcher run --restart`)")
    record = read_record(paths.pid_file, ServerRecord)
    if record is None:
        return
    if record_is_alive(record):
        raise ServerError(f"a tritonserver started by launcher already runs (pid {record.pid}, {record.http_url}, "
                          f"up {record.uptime_s:.0f} s, PID file {paths.pid_file}); run `launcher stop` first")
    found = clean_leftovers(record, paths.backend_dir)  # stale: the process is gone; its stubs may not be
    remove_record(paths.pid_file)
    return found or None


def _rotate_log(log_file: Path) -> None:
    if log_file.exists():
        os.replace(log_file, log_file.with_name(log_file.name + ".1"))


def start(config: Config, wait_for_models: Sequence[str] = (), *, timeout_s: float | None = None,
          options: StartOptions | None = None) -> ServerRecord:
    """Start tritonserver detached and wait until it and ``wait_for_models`` are ready.

    Raises ServerError if a recorded server still runs, a port is taken, Triton exits while starting
    (with Triton's reason from its log), or it is not ready within ``timeout_s`` (default
    ``server.startup_timeout_s``); in the last two cases the started process is stopped.
    ``options.progress`` gets the cleanup line when a crashed server's leftovers were removed; with
    ``options.wait`` False it returns once the server is started and recorded (then call ``wait_ready``).
    ``options``' docker settings do not apply here.
    """
    s = config.server
    opts = options or StartOptions()
    restricted = admin_key.restriction(config)
    timeout, paths = prepare_start(config, timeout_s)
    with start_lock(paths.state_dir):
        cleaned = _refuse_if_running(paths)
        if cleaned is not None and opts.progress is not None:
            opts.progress(cleanup_line(cleaned))
        check_ports_free(s.host, {"server.http_port": s.http_port, "server.grpc_port": s.grpc_port,
                                  "server.metrics_port": s.metrics_port})
        install = find_triton()
        prepare_backend_dir(install, paths.backend_dir)
        cmd = build_command(install, config, paths, restricted)
        _rotate_log(paths.log_file)
        with paths.log_file.open("wb") as log:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=server_env(install), cwd=paths.state_dir, start_new_session=True)
            except OSError as exc:
                raise ServerError(f"cannot start {install.binary}: {exc}; {INSTALL_HINT}") from exc
        _CHILDREN[proc.pid] = proc
        record = ServerRecord(
            pid=proc.pid, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port, metrics_port=s.metrics_port,
            started_at=time.time(), model_repository=str(paths.model_repository), binary=str(install.binary),
            log_path=str(paths.log_file), proc_start_ticks=proc_start_ticks(proc.pid),
            argv=admin_key.redact(cmd, restricted), pgid=proc.pid,  # start_new_session: its own process group
            restricted_apis=list(restricted.apis) if restricted else [],
        )
        try:
            write_record(paths.pid_file, record)
        except BaseException:
            _terminate(record, grace_s=_grace_s(config), backend_dir=paths.backend_dir)
            raise
        if not opts.wait:
            return record
        return _ready_or_stopped(config, record, wait_for_models, timeout, paths)


def wait_ready(config: Config, wait_for_models: Sequence[str] = (), *,
               timeout_s: float | None = None) -> ServerRecord:
    """Wait until the recorded server and ``wait_for_models`` are ready; stop it if it fails (see ``start``)."""
    timeout = startup_timeout(config, timeout_s)
    paths = server_paths(config)
    record = read_record(paths.pid_file, ServerRecord)
    if record is None:
        raise ServerError(f"no tritonserver recorded in {paths.pid_file}: expected one started by `launcher run`")
    return _ready_or_stopped(config, record, wait_for_models, timeout, paths)


def _grace_s(config: Config) -> float:
    return float(config.server.exit_timeout_s) + KILL_WAIT_S


def _ready_or_stopped(config: Config, record: ServerRecord, names: Sequence[str], timeout: float,
                      paths: ServerPaths) -> ServerRecord:
    """Wait until ready, then record the shm regions the server maps (so a crash's leftovers are known)."""
    try:
        _wait_ready(record, list(names), timeout, paths, admin_key.probe_headers(config))
        regions = sorted(str(r) for r in shm_regions(record.pid))
        if regions != record.shm_regions:
            record = replace(record, shm_regions=regions)
            write_record(paths.pid_file, record)
    except BaseException:
        _terminate(record, grace_s=_grace_s(config), backend_dir=paths.backend_dir)
        remove_record(paths.pid_file)
        raise
    return record


def _exit_description(record: ServerRecord) -> str | None:
    """How the recorded server ended (None while it runs); the exit code is known for our own children."""
    proc = _CHILDREN.get(record.pid)
    if proc is None:
        reap(record.pid)
        return None if record_is_alive(record) else "exited"
    rc = proc.poll()
    if rc is None:
        return None
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def _wait_ready(record: ServerRecord, names: list[str], timeout: float, paths: ServerPaths,
                headers: dict[str, str]) -> None:
    """Poll until the server and every model in ``names`` are ready; raise with Triton's reason otherwise."""
    url = record.http_url
    deadline = time.monotonic() + timeout
    watcher = triton_log.LogWatcher(paths.log_file)
    while True:
        if stuck := triton_log.stuck_reasons(watcher.new_lines()):
            raise ServerError(f"tritonserver (pid {record.pid}) cannot finish loading its models: {'; '.join(stuck)}; "
                              f"Triton would wait forever, so it was stopped. Full log: {paths.log_file}")
        ended = _exit_description(record)
        if ended is not None:
            reason = triton_log.explain_failure(triton_log.read_from(paths.log_file))
            raise ServerError(f"tritonserver {ended} before it was ready: "
                              f"{reason or 'no reason found in its log'}. Full log: {paths.log_file} "
                              "(`launcher logs`)")
        if http_probe.server_ready(url):
            if http_probe.models_ready(url, names, paths.model_repository, headers=headers):
                return
        if time.monotonic() >= deadline:
            raise ServerError(_timeout_message(record, names, timeout, paths, headers))
        time.sleep(POLL_S)


def _timeout_message(record: ServerRecord, names: list[str], timeout: float, paths: ServerPaths,
                     headers: dict[str, str]) -> str:
    url = record.http_url
    text = triton_log.read_from(paths.log_file)
    if not http_probe.server_live(url):
        loading = triton_log.loading_models(text)
        what = f"its HTTP endpoint {url} does not answer yet" + (
            f"; still loading: {', '.join(loading)}" if loading else "")
    else:
        index = {m.name: m for m in http_probe.repository_index(url, headers=headers) or []}
        not_ready = [n for n in names if not http_probe.model_ready(url, n)] or [
            m.name for m in index.values() if m.state != "READY"]
        parts = [f"{n} ({index[n].state or 'unknown'}{': ' + index[n].reason if index[n].reason else ''})"
                 if n in index else n for n in not_ready]
        what = f"models not ready: {', '.join(parts) or 'none reported, but /v2/health/ready is not 200'}"
    errors = triton_log.explain_failure(text)
    return (f"tritonserver (pid {record.pid}) not ready after {timeout:g} s: {what}"
            + (f"; log errors: {errors}" if errors else "")
            + f". Stopped it. Log: {paths.log_file}; if loading is just slow, raise server.startup_timeout_s "
            "or use `launcher run --timeout S`")


def _wait_gone(record: ServerRecord, wait_s: float) -> bool:
    """Wait until the recorded server is gone; True if it is."""
    deadline = time.monotonic() + wait_s
    proc = _CHILDREN.get(record.pid)
    while True:
        if proc is not None:
            proc.poll()
        else:
            reap(record.pid)
        if not record_is_alive(record):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1.0)
                _CHILDREN.pop(record.pid, None)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S / 2)


def _signal(record: ServerRecord, sig: signal.Signals) -> None:
    """Send ``sig`` to the recorded tritonserver (SIGKILL: its whole process group, python stubs included)."""
    if not is_tritonserver(record.pid, record.proc_start_ticks):
        return
    try:
        if sig == signal.SIGKILL and os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise ServerError(f"not allowed to signal tritonserver pid {record.pid} ({exc}); it was started by "
                          "another user, stop it as that user") from exc


def _terminate(record: ServerRecord, grace_s: float, backend_dir: Path) -> bool:
    """SIGTERM, wait ``grace_s``, then SIGKILL. Returns True if SIGKILL was needed.

    Afterwards ends the stubs it left (a server that exits while a model hangs in loading leaves its stubs) and
    removes the python backend's shared-memory regions this server mapped and left behind.
    """
    regions = shm_regions(record.pid) if record_is_alive(record) else set()
    _signal(record, signal.SIGTERM)
    forced = not _wait_gone(record, grace_s)
    if forced:
        _signal(record, signal.SIGKILL)
        if not _wait_gone(record, KILL_WAIT_S):
            raise ServerError(f"tritonserver pid {record.pid} survived SIGKILL for {KILL_WAIT_S:g} s; check it with "
                              f"`ps -p {record.pid}`")
    clean_leftovers(record, backend_dir)
    remove_regions(regions)
    return forced


def stop(config: Config) -> StopResult:
    """Stop the recorded server: SIGTERM, then SIGKILL after ``server.exit_timeout_s`` + 10 s; remove the PID file."""
    paths = server_paths(config)
    record = read_record(paths.pid_file, ServerRecord)
    if record is None:
        return StopResult(mode=MODE, record=None, stopped=False)
    if not record_is_alive(record):
        cleaned = clean_leftovers(record, paths.backend_dir)
        remove_record(paths.pid_file)
        return StopResult(mode=MODE, record=record, stopped=False, stale=True, cleaned=cleaned or None)
    t0 = time.monotonic()
    forced = _terminate(record, grace_s=_grace_s(config), backend_dir=paths.backend_dir)
    remove_record(paths.pid_file)
    return StopResult(mode=MODE, record=record, stopped=True, forced=forced, elapsed_s=time.monotonic() - t0)


def status(config: Config) -> ServerStatus:
    """Whether the configured server runs, its ports, readiness, models and uptime. Changes nothing."""
    paths = server_paths(config)
    s = config.server
    record = read_record(paths.pid_file, ServerRecord)
    base = ServerStatus(mode=MODE, running=False, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
                        metrics_port=s.metrics_port, server_ready=False, models=(), uptime_s=None,
                        record_file=paths.pid_file, log_file=paths.log_file, record=record)
    if record is None or not record_is_alive(record):
        ports = {"http_port": s.http_port, "grpc_port": s.grpc_port, "metrics_port": s.metrics_port}
        busy = tuple(f"{port} ({key})" for key, port in ports.items() if port_in_use(s.host, port))
        leftovers = find_leftovers(record, paths.backend_dir) if record is not None else None
        return replace(base, busy_ports=busy, leftovers=leftovers or None)
    url = record.http_url
    headers = admin_key.probe_headers(config)
    index = http_probe.repository_index(url, headers=headers)
    return replace(
        base, running=True, host=record.host, http_port=record.http_port, grpc_port=record.grpc_port,
        metrics_port=record.metrics_port, server_ready=http_probe.server_ready(url), models=tuple(index or ()),
        uptime_s=record.uptime_s, index_restricted=index is None and http_probe.index_refused(url, headers),
    )


def read_log(config: Config, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of the server log."""
    return triton_log.tail(server_paths(config).log_file, lines)


def follow_log(config: Config, lines: int = 50, poll_s: float = 0.5) -> Iterator[str]:
    """The last ``lines`` lines, then new ones as the server writes them (never ends; stop iterating to stop)."""
    return triton_log.follow(server_paths(config).log_file, lines, poll_s)


def recorded(config: Config) -> bool:
    """True when the state dir holds a PID file."""
    return server_paths(config).pid_file.exists()


# The names other code imports.
start_server = start
stop_server = stop
server_status = status
