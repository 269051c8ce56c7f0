"""``launcher [--config PATH] {run,stop,status,logs,app,shell,doctor}``: Triton (local or in Docker), the app,
the dev container and the environment check."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Sequence

from launcher import docker_cli
from launcher.exposure import exposure_warning
from launcher.local_server import (
    ServerStatus,
    follow_log,
    read_log,
    server_status,
    start_server,
    stop_server,
)
from mmw.cli_args import non_negative_int, positive_float, positive_int
from mmw.config import Config, load_config
from mmw.contract import ENSEMBLE_NAME
from mmw.errors import ConfigError, MMWError
from mmw.processing.captions import caption_mode_line

SAMPLE_VIDEO = "data/sample.mp4"  # written by `make sample`; the app offers it as an example


def default_models() -> list[str]:
    """The ensemble ``run`` waits for."""
    return [ENSEMBLE_NAME]


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,stop,status,logs,app,shell,doctor}")

    run = sub.add_parser("run", help="regenerate the model repository, start tritonserver, wait until ready")
    run.add_argument("--timeout", type=positive_float, metavar="S",
                     help="seconds to wait for readiness (default: server.startup_timeout_s)")
    run.add_argument("--wait-for", action="append", metavar="MODEL", dest="wait_for",
                     help=f"model to wait for; repeatable (default: the ensemble, {default_models()[0]})")
    run.add_argument("--restart", action="store_true",
                     help="stop the server recorded in the PID file first, if one is running")
    run.add_argument("--no-write-repository", action="store_true",
                     help="start on the model repository as it is, without regenerating its config.pbtxt files")
    docker_cli.add_run_arguments(run)

    sub.add_parser("stop", help="stop the server started by `launcher run` (SIGTERM, then SIGKILL)")

    status = sub.add_parser("status", help="is the server running, on which ports, which models are ready")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    logs = sub.add_parser("logs", help="print the server log")
    logs.add_argument("-n", "--lines", type=non_negative_int, default=50, metavar="N", help="last N lines (50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")

    docker_cli.add_shell_parser(sub)
    docker_cli.add_doctor_parser(sub)

    app = sub.add_parser("app", help="start the Gradio app (a client of the running Triton) in the foreground")
    app.add_argument("--host", metavar="ADDR", help="address to bind (default: app.host, 127.0.0.1)")
    app.add_argument("--port", type=positive_int, metavar="N", help="port to listen on (default: app.port, 7860)")
    return parser


def warn_exposure(what: str, host: str, setting: str) -> None:
    """Print a warning line to stderr when ``what`` would listen beyond loopback (no authentication)."""
    if warning := exposure_warning(what, host, setting):
        print(f"launcher: warning: {warning}", file=sys.stderr, flush=True)


def _caption_line(config: Config) -> str:
    c = config.models.caption
    return caption_mode_line(c.model, c.num_beams, c.max_new_tokens, c.dense_top_k)


def _cmd_run(config: Config, args: argparse.Namespace) -> int:
    config = docker_cli.run_config(config, args)
    models = args.wait_for or default_models()
    if config.server.mode == "docker":
        if not args.no_write_repository:
            print(_caption_line(config), flush=True)
        return docker_cli.cmd_run(config, args, models, write_repository)
    if not args.no_write_repository:
        write_repository(config)
        print(_caption_line(config), flush=True)
    if args.restart:
        stopped = stop_server(config)
        if stopped.stopped or stopped.stale:
            print(stopped.message, flush=True)
        if message := docker_cli.stop_recorded_container(config):
            print(message, flush=True)
    docker_cli.refuse_local_if_container(config)
    warn_exposure("Triton", config.server.host, "server.host")
    record = start_server(config, models, timeout_s=args.timeout)
    print(f"tritonserver ready (pid {record.pid}, models: {', '.join(models)}): HTTP {record.http_url}  "
          f"gRPC {record.grpc_url}  metrics {record.metrics_url}  log {record.log_path}", flush=True)
    return 0


def _cmd_stop(config: Config, args: argparse.Namespace) -> int:
    if docker_cli.active_mode(config) == "docker":
        return docker_cli.cmd_stop(config, args)
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
    if docker_cli.active_mode(config) == "docker":
        return docker_cli.cmd_status(config, args)
    st = server_status(config)
    print(_status_json(st) if args.json else _format_status(st))
    return 0


def _cmd_logs(config: Config, args: argparse.Namespace) -> int:
    read, follow = read_log, follow_log
    if docker_cli.active_mode(config) == "docker":
        from launcher.docker_server import follow_container_log, read_container_log

        read, follow = read_container_log, follow_container_log
    if not args.follow:
        for line in read(config, args.lines):
            print(line)
        return 0
    try:
        for line in follow(config, args.lines):
            print(line, flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_app(config: Config, args: argparse.Namespace) -> int:
    """Start the Gradio app in the foreground; Ctrl-C stops it. Warns (does not fail) when Triton is down."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from clients import app as gradio_app
    except ImportError as exc:
        raise ConfigError(f"the app needs gradio ({exc}); expected it installed: pip install -e '.[app]'") from None
    warning = gradio_app.triton_warning(config)
    if warning:
        print(f"launcher: warning: {warning}", file=sys.stderr, flush=True)
    warn_exposure("the app", args.host or config.app.host, "--host" if args.host else "app.host")
    sample = config.path(SAMPLE_VIDEO)
    demo, url = gradio_app.launch_app(config, host=args.host, port=args.port,
                                      sample_video=sample if sample.is_file() else None)
    print(f"app ready: {url}  (Ctrl-C stops it)", flush=True)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill PID` (make stop) closes the app like Ctrl-C

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while demo.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        demo.close()
    print("app stopped", flush=True)
    return 0


COMMANDS = {"run": _cmd_run, "stop": _cmd_stop, "status": _cmd_status, "logs": _cmd_logs, "app": _cmd_app,
            "shell": docker_cli.cmd_shell, "doctor": docker_cli.cmd_doctor}


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


def tao_ws_main(argv: Sequence[str] | None = None) -> int:
    """``tao_ws [options] [-- command args]``: the seed's name for ``launcher shell``."""
    args = list(sys.argv[1:] if argv is None else argv)
    config: list[str] = []
    if args[:1] == ["--config"] and len(args) > 1:
        config, args = args[:2], args[2:]
    return main([*config, "shell", *args])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
