"""``launcher [--config PATH] {run,stop,status,logs}``: manage the local tritonserver."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence

from launcher.local_server import (
    ServerStatus,
    follow_log,
    read_log,
    server_status,
    start_server,
    stop_server,
)
from mmw.cli_args import non_negative_int, positive_float
from mmw.config import Config, load_config
from mmw.errors import ConfigError, MMWError

DEFAULT_ENSEMBLE = "scene_understanding"


def default_models() -> list[str]:
    """The ensemble ``run`` waits for: ``mmw.specs.ENSEMBLE_NAME`` when that exists."""
    try:
        from mmw.specs import ENSEMBLE_NAME  # type: ignore[import-not-found]
    except Exception:
        return [DEFAULT_ENSEMBLE]
    return [str(ENSEMBLE_NAME)]


def write_repository(config: Config) -> bool:
    """Regenerate config.pbtxt files with ``mmw.repository.write_repository`` if that module exists."""
    if importlib.util.find_spec("mmw.repository") is None:
        return False
    try:
        module = importlib.import_module("mmw.repository")
    except Exception as exc:
        raise ConfigError(f"mmw.repository exists but cannot be imported ({type(exc).__name__}: {exc}); expected it "
                          "to regenerate the model repository; fix it or pass `launcher run --no-write-repository`"
                          ) from exc
    writer = getattr(module, "write_repository", None)
    if writer is None:
        raise ConfigError("mmw.repository has no write_repository(config); expected that function to regenerate the "
                          "model repository; pass `launcher run --no-write-repository` to start without it")
    writer(config)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launcher", description="Run the local Triton Inference Server.")
    parser.add_argument("--config", metavar="PATH",
                        help="config.yaml to use (default: the project's config/config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,stop,status,logs}")

    run = sub.add_parser("run", help="regenerate the model repository, start tritonserver, wait until ready")
    run.add_argument("--timeout", type=positive_float, metavar="S",
                     help="seconds to wait for readiness (default: server.startup_timeout_s)")
    run.add_argument("--wait-for", action="append", metavar="MODEL", dest="wait_for",
                     help=f"model to wait for; repeatable (default: the ensemble, {default_models()[0]})")
    run.add_argument("--restart", action="store_true",
                     help="stop the server recorded in the PID file first, if one is running")
    run.add_argument("--no-write-repository", action="store_true",
                     help="start on the model repository as it is, without regenerating its config.pbtxt files")

    sub.add_parser("stop", help="stop the server started by `launcher run` (SIGTERM, then SIGKILL)")

    status = sub.add_parser("status", help="is the server running, on which ports, which models are ready")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    logs = sub.add_parser("logs", help="print the server log")
    logs.add_argument("-n", "--lines", type=non_negative_int, default=50, metavar="N", help="last N lines (50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    return parser


def _cmd_run(config: Config, args: argparse.Namespace) -> int:
    if not args.no_write_repository:
        write_repository(config)
    models = args.wait_for or default_models()
    if args.restart:
        stopped = stop_server(config)
        if stopped.stopped or stopped.stale:
            print(stopped.message, flush=True)
    record = start_server(config, models, timeout_s=args.timeout)
    print(f"tritonserver ready (pid {record.pid}, models: {', '.join(models)}): HTTP {record.http_url}  "
          f"gRPC {record.grpc_url}  metrics {record.metrics_url}  log {record.log_path}", flush=True)
    return 0


def _cmd_stop(config: Config, args: argparse.Namespace) -> int:
    print(stop_server(config).message)
    return 0


def _format_status(st: ServerStatus) -> str:
    if not st.running:
        line = f"not running (ports in config: HTTP {st.http_port}, gRPC {st.grpc_port}, metrics {st.metrics_port})"
        if st.stale_pid is not None:
            line += (f"; stale PID file {st.pid_file} names pid {st.stale_pid}, which is gone "
                     "(`launcher stop` removes it)")
        if st.busy_ports:
            line += (f"; but port {', '.join(st.busy_ports)} is in use on {st.host} by a process launcher did not "
                     "start (`ss -ltnp` shows which)")
        return line
    assert st.record is not None and st.uptime_s is not None
    lines = [
        f"running: pid {st.pid}, up {st.uptime_s:.0f} s, server {'ready' if st.server_ready else 'NOT ready'}",
        f"  HTTP {st.record.http_url}  gRPC {st.record.grpc_url}  metrics {st.record.metrics_url}",
        f"  model repository {st.record.model_repository}",
        f"  log {st.log_file}",
    ]
    if not st.models:
        lines.append("  models: unknown (the HTTP endpoint does not answer)")
    for m in st.models:
        reason = f" - {m.reason}" if m.reason else ""
        lines.append(f"  model {m.name} v{m.version or '?'}: {m.state or 'unknown'}{reason}")
    return "\n".join(lines)


def _status_json(st: ServerStatus) -> str:
    data = {
        "running": st.running, "pid": st.pid, "host": st.host, "http_port": st.http_port, "grpc_port": st.grpc_port,
        "metrics_port": st.metrics_port, "server_ready": st.server_ready, "uptime_s": st.uptime_s,
        "ready_models": list(st.ready_models), "models": [dataclasses.asdict(m) for m in st.models],
        "stale_pid": st.stale_pid, "busy_ports": list(st.busy_ports), "pid_file": str(st.pid_file),
        "log_file": str(st.log_file),
    }
    return json.dumps(data, indent=2)


def _cmd_status(config: Config, args: argparse.Namespace) -> int:
    st = server_status(config)
    print(_status_json(st) if args.json else _format_status(st))
    return 0


def _cmd_logs(config: Config, args: argparse.Namespace) -> int:
    if not args.follow:
        for line in read_log(config, args.lines):
            print(line)
        return 0
    try:
        for line in follow_log(config, args.lines):
            print(line, flush=True)
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS = {"run": _cmd_run, "stop": _cmd_stop, "status": _cmd_status, "logs": _cmd_logs}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``launcher`` command. Returns the exit code (1: error, 2: usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        config = load_config(args.config)
        return COMMANDS[args.command](config, args)
    except MMWError as exc:
        print(f"launcher: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("launcher: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
