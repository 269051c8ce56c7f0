"""Start, stop and inspect a local tritonserver process described by ``Config.server``.

The server runs detached (its own session), logs to ``<state_dir>/tritonserver.log`` and is recorded in
``<state_dir>/tritonserver.pid`` (JSON), so a later command can find it. It is only ever signalled by
the recorded PID, after checking that the PID still belongs to that tritonserver.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from launcher import http_probe, triton_log
from launcher.http_probe import ModelState
from launcher.pidfile import (
    PID_FILE_NAME,
    ServerRecord,
    is_tritonserver,
    proc_start_ticks,
    read_record,
    reap,
    record_is_alive,
    remove_record,
    remove_regions,
    shm_regions,
    start_lock,
    write_record,
)
from launcher.ports import check_ports_free, port_in_use
from launcher.triton_binary import (
    INSTALL_HINT,
    TritonInstall,
    find_triton,
    prepare_backend_dir,
    server_env,
    supported_flags,
)
from mmw.config import Config
from mmw.engine_provenance import check_repository_plans
from mmw.errors import ConfigError, ServerError

POLL_S = 0.25
KILL_WAIT_S = 10.0
# Our own children, so that stop() in the same process reaps them instead of leaving zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ServerPaths:
    """Files of one configured server."""

    state_dir: Path
    pid_file: Path
    log_file: Path
    backend_dir: Path
    model_repository: Path


@dataclass(frozen=True)
class StopResult:
    """What ``stop_server`` did."""

    pid: int | None  # the PID in the PID file (None: there was none)
    stopped: bool  # a running server was stopped
    stale: bool = False  # the PID file named a process that was gone; the file was removed
    forced: bool = False  # SIGTERM was not enough, SIGKILL was sent
    elapsed_s: float = 0.0

    @property
    def message(self) -> str:
        if self.stopped:
            how = "killed (SIGKILL after SIGTERM timed out)" if self.forced else "stopped"
            return f"tritonserver (pid {self.pid}) {how} in {self.elapsed_s:.1f} s"
        if self.stale:
            return f"no server running; removed a stale PID file (pid {self.pid} is gone)"
        return "no server running (no PID file)"


@dataclass(frozen=True)
class ServerStatus:
    """The truth about the configured server, as far as the PID file, /proc and its HTTP endpoint tell."""

    running: bool
    pid: int | None
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    server_ready: bool
    models: tuple[ModelState, ...]
    uptime_s: float | None
    stale_pid: int | None  # PID of a stale PID file (process gone), left for `stop` to clean
    pid_file: Path
    log_file: Path
    record: ServerRecord | None = None
    busy_ports: tuple[str, ...] = ()  # not running per the PID file, yet these ports are taken ('8000 (http_port)')

    @property
    def ready_models(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.state == "READY")


def server_paths(config: Config) -> ServerPaths:
    """Resolve the state dir, PID file, log, backend dir and model repository of ``config``."""
    state = config.path(config.server.state_dir)
    return ServerPaths(
        state_dir=state,
        pid_file=state / PID_FILE_NAME,
        log_file=state / triton_log.LOG_FILE_NAME,
        backend_dir=state / "backends",
        model_repository=config.path(config.server.model_repository),
    )


def build_command(install: TritonInstall, config: Config, paths: ServerPaths) -> list[str]:
    """The tritonserver command line for ``config``."""
    s = config.server
    cmd = [
        str(install.binary),
        f"--model-repository={paths.model_repository}",
        f"--backend-directory={paths.backend_dir}",
        f"--http-port={s.http_port}",
        f"--grpc-port={s.grpc_port}",
        f"--metrics-port={s.metrics_port}",
        f"--http-address={s.host}",
        f"--grpc-address={s.host}",
    ]
    if "--metrics-address" in supported_flags(install):
        cmd.append(f"--metrics-address={s.host}")
    cmd += [
        f"--exit-timeout-secs={s.exit_timeout_s}",
        f"--log-verbose={s.log_verbose}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-on-error=true",
    ]
    return cmd


def _refuse_if_running(paths: ServerPaths) -> None:
    record = read_record(paths.pid_file)
    if record is None:
        return
    if record_is_alive(record):
        raise ServerError(f"a tritonserver started by launcher already runs (pid {record.pid}, {record.http_url}, "
                          f"up {record.uptime_s:.0f} s, PID file {paths.pid_file}); run `launcher stop` first")
    remove_record(paths.pid_file)  # stale: the process is gone


def _rotate_log(log_file: Path) -> None:
    if log_file.exists():
        os.replace(log_file, log_file.with_name(log_file.name + ".1"))


def prepare_start(config: Config, timeout_s: float | None) -> tuple[float, ServerPaths]:
    """Check the startup timeout, the repository and its TensorRT plans' provenance, create the state dir."""
    s = config.server
    timeout = s.startup_timeout_s if timeout_s is None else timeout_s
    if timeout <= 0:
        raise ConfigError(f"startup timeout: expected a positive number of seconds, got {timeout}")
    paths = server_paths(config)
    if not paths.model_repository.is_dir():
        raise ConfigError(f"server.model_repository: expected a directory of models, got {paths.model_repository} "
                          "which does not exist")
    check_repository_plans(paths.model_repository)  # a foreign TensorRT plan is refused before Triton starts
    try:
        paths.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"server.state_dir: cannot create {paths.state_dir}: {exc}") from exc
    return timeout, paths


def start_server(
    config: Config, wait_for_models: Sequence[str] = (), *, timeout_s: float | None = None
) -> ServerRecord:
    """Start tritonserver detached and wait until it and ``wait_for_models`` are ready.

    Raises ServerError if a recorded server still runs, a port is taken, Triton exits while starting
    (with Triton's reason from its log), or it is not ready within ``timeout_s`` (default
    ``server.startup_timeout_s``); in the last two cases the started process is stopped.
    """
    s = config.server
    timeout, paths = prepare_start(config, timeout_s)
    with start_lock(paths.state_dir):
        _refuse_if_running(paths)
        check_ports_free(s.host, {"server.http_port": s.http_port, "server.grpc_port": s.grpc_port,
                                  "server.metrics_port": s.metrics_port})
        install = find_triton()
        prepare_backend_dir(install, paths.backend_dir)
        cmd = build_command(install, config, paths)
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
            log_path=str(paths.log_file), proc_start_ticks=proc_start_ticks(proc.pid), argv=cmd,
        )
        try:
            write_record(paths.pid_file, record)
            _wait_ready(proc, record, list(wait_for_models), timeout, paths)
        except BaseException:
            _terminate(record, grace_s=float(s.exit_timeout_s) + KILL_WAIT_S)
            remove_record(paths.pid_file)
            raise
    return record


def _exit_description(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def _wait_ready(proc: subprocess.Popen[bytes], record: ServerRecord, names: list[str], timeout: float,
                paths: ServerPaths) -> None:
    """Poll until the server and every model in ``names`` are ready; raise with Triton's reason otherwise."""
    url = record.http_url
    deadline = time.monotonic() + timeout
    watcher = triton_log.LogWatcher(paths.log_file)
    while True:
        if stuck := triton_log.stuck_reasons(watcher.new_lines()):
            raise ServerError(f"tritonserver (pid {record.pid}) cannot finish loading its models: {'; '.join(stuck)}; "
                              f"Triton would wait forever, so it was stopped. Full log: {paths.log_file}")
        rc = proc.poll()
        if rc is not None:
            reason = triton_log.explain_failure(triton_log.read_from(paths.log_file))
            raise ServerError(f"tritonserver {_exit_description(rc)} before it was ready: "
                              f"{reason or 'no reason found in its log'}. Full log: {paths.log_file} "
                              "(`launcher logs`)")
        if http_probe.server_ready(url):
            if http_probe.models_ready(url, names, paths.model_repository):
                return
        if time.monotonic() >= deadline:
            raise ServerError(_timeout_message(record, names, timeout, paths))
        time.sleep(POLL_S)


def _timeout_message(record: ServerRecord, names: list[str], timeout: float, paths: ServerPaths) -> str:
    url = record.http_url
    text = triton_log.read_from(paths.log_file)
    if not http_probe.server_live(url):
        loading = triton_log.loading_models(text)
        what = f"its HTTP endpoint {url} does not answer yet" + (
            f"; still loading: {', '.join(loading)}" if loading else "")
    else:
        index = {m.name: m for m in http_probe.repository_index(url) or []}
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


def _terminate(record: ServerRecord, grace_s: float) -> bool:
    """SIGTERM, wait ``grace_s``, then SIGKILL. Returns True if SIGKILL was needed.

    Afterwards removes the python backend's shared-memory regions this server mapped and left behind.
    """
    regions = shm_regions(record.pid) if record_is_alive(record) else set()
    _signal(record, signal.SIGTERM)
    forced = not _wait_gone(record, grace_s)
    if forced:
        _signal(record, signal.SIGKILL)
        if not _wait_gone(record, KILL_WAIT_S):
            raise ServerError(f"tritonserver pid {record.pid} survived SIGKILL for {KILL_WAIT_S:g} s; check it with "
                              f"`ps -p {record.pid}`")
    remove_regions(regions)
    return forced


def stop_server(config: Config) -> StopResult:
    """Stop the recorded server: SIGTERM, then SIGKILL after ``server.exit_timeout_s`` + 10 s; remove the PID file."""
    paths = server_paths(config)
    record = read_record(paths.pid_file)
    if record is None:
        return StopResult(pid=None, stopped=False)
    if not record_is_alive(record):
        remove_record(paths.pid_file)
        return StopResult(pid=record.pid, stopped=False, stale=True)
    t0 = time.monotonic()
    forced = _terminate(record, grace_s=float(config.server.exit_timeout_s) + KILL_WAIT_S)
    remove_record(paths.pid_file)
    return StopResult(pid=record.pid, stopped=True, forced=forced, elapsed_s=time.monotonic() - t0)


def server_status(config: Config) -> ServerStatus:
    """Whether the configured server runs, its ports, readiness, models and uptime. Changes nothing."""
    paths = server_paths(config)
    s = config.server
    record = read_record(paths.pid_file)
    alive = record is not None and record_is_alive(record)
    base = ServerStatus(running=False, pid=None, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
                        metrics_port=s.metrics_port, server_ready=False, models=(), uptime_s=None,
                        stale_pid=record.pid if record is not None and not alive else None,
                        pid_file=paths.pid_file, log_file=paths.log_file)
    if record is None or not alive:
        ports = {"http_port": s.http_port, "grpc_port": s.grpc_port, "metrics_port": s.metrics_port}
        busy = tuple(f"{port} ({key})" for key, port in ports.items() if port_in_use(s.host, port))
        return replace(base, busy_ports=busy)
    url = record.http_url
    return replace(
        base, running=True, pid=record.pid, host=record.host, http_port=record.http_port,
        grpc_port=record.grpc_port, metrics_port=record.metrics_port, server_ready=http_probe.server_ready(url),
        models=tuple(http_probe.repository_index(url) or ()), uptime_s=record.uptime_s, record=record,
    )


def read_log(config: Config, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of the server log."""
    return triton_log.tail(server_paths(config).log_file, lines)


def follow_log(config: Config, lines: int = 50, poll_s: float = 0.5) -> Iterator[str]:
    """The last ``lines`` lines, then new ones as the server writes them (never ends; stop iterating to stop)."""
    return triton_log.follow(server_paths(config).log_file, lines, poll_s)
