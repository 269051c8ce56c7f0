"""``launcher [--config PATH] {run,stop,status,logs,app,shell,doctor}``: Triton (local or in Docker), the app,
the dev container and the environment check.

Each server command looks its backend up once in ``launcher.registry`` and prints through
``launcher.report``; ``shell`` and ``doctor`` live in ``launcher.devcontainer``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Sequence

from launcher import admin_key, replicas
from launcher.backend import StartOptions
from launcher.devcontainer import cli as devcontainer_cli
from launcher.exposure import exposure_warning
from launcher.registry import BACKENDS, backend_for
from launcher.report import (
    replicas_ready_lines,
    replicas_status_json,
    replicas_status_text,
    replicas_stop_lines,
    stop_message,
)
from mmw.cli_args import non_negative_int, positive_float, positive_int
from mmw.config import Config, load_config
from mmw.contract import ENSEMBLE_NAME
from mmw.errors import ConfigError, MMWError
from mmw.processing.captions import caption_mode_line
from mmw.repository import write_repository

SAMPLE_VIDEO = "data/sample.mp4"  # written by `make sample`; the app offers it as an example


def default_models() -> list[str]:
    """The ensemble ``run`` waits for."""
    return [ENSEMBLE_NAME]


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """``launcher run`` options for choosing the backend, and for docker mode."""
    run.add_argument("--mode", choices=tuple(BACKENDS),
                     help="local tritonserver or the Triton container (default: server.mode)")
    run.add_argument("--gpus", metavar="LIST", help="docker mode: all, none or indices such as 0,1 "
                                                    "(default: docker.gpus)")
    run.add_argument("--pull", action="store_true", help="docker mode: pull the image if it is not local")
    run.add_argument("--allow-unpinned", action="store_true",
                     help="docker mode: run an image docker/manifest.json does not pin by digest")


def build_parser() -> argparse.ArgumentParser:
    """The ``launcher`` command line."""
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
    run.add_argument("--replicas", type=positive_int, metavar="N",
                     help="start N tritonservers; replica i listens on each config port + 3*i and keeps its state "
                          "in <state_dir>/replica-<i> (default: server.replicas, 1)")
    add_run_arguments(run)

    sub.add_parser("stop", help="stop the servers started by `launcher run`, every replica (SIGTERM, then SIGKILL); "
                                "cleans up after a crashed one")

    status = sub.add_parser("status", help="are the servers running, on which ports, which models are ready")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    logs = sub.add_parser("logs", help="print the server log (every replica's, each line prefixed, or --replica I)")
    logs.add_argument("-n", "--lines", type=non_negative_int, default=50, metavar="N", help="last N lines (50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("--replica", type=non_negative_int, metavar="I", help="only replica I's log (0: the first)")

    devcontainer_cli.add_parsers(sub)

    app = sub.add_parser("app", help="start the Gradio app (a client of the running Triton) in the foreground")
    app.add_argument("--host", metavar="ADDR", help="address to bind (default: app.host, 127.0.0.1)")
    app.add_argument("--port", type=positive_int, metavar="N", help="port to listen on (default: app.port, 7860)")
    app.add_argument("--insecure", action="store_true",
                     help="bind a non-loopback address without a login (app.auth_env / app.auth_file)")
    return parser


def run_config(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with ``run --mode`` / ``--gpus`` applied."""
    if args.mode:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, mode=args.mode))
    if args.gpus is not None:
        value = "" if args.gpus.strip() == "none" else args.gpus.strip()
        try:
            config = dataclasses.replace(config, docker=dataclasses.replace(config.docker, gpus=value))
        except ConfigError as exc:
            raise ConfigError(f"--gpus: {exc}") from None
    return config


def warn_exposure(what: str, host: str, setting: str, restricted: bool = False) -> None:
    """Print a warning line to stderr when ``what`` would listen beyond loopback (no authentication)."""
    if warning := exposure_warning(what, host, setting, restricted):
        print(f"launcher: warning: {warning}", file=sys.stderr, flush=True)


def _caption_line(config: Config) -> str:
    c = config.models.caption
    return caption_mode_line(c.model, c.num_beams, c.max_new_tokens, c.dense_top_k)


def _progress(line: str) -> None:
    print(line, flush=True)


def _cmd_run(config: Config, args: argparse.Namespace) -> int:
    config = run_config(config, args)
    backend = backend_for(config.server.mode)
    models = args.wait_for or default_models()
    count = args.replicas or config.server.replicas
    replicas.replica_ports(config, count)  # bad settings fail before anything changes
    restricted = admin_key.restriction(config) is not None
    if not args.no_write_repository:
        write_repository(config)
        print(_caption_line(config), flush=True)
    if args.restart:
        for index, result in replicas.restart_stop(config, also=backend):
            if result.changed:
                print(stop_message(result) if index == 0 else f"replica {index}: {stop_message(result)}", flush=True)
    warn_exposure("Triton", config.server.host, "server.host", restricted)
    options = StartOptions(allow_unpinned=args.allow_unpinned, pull=args.pull, progress=_progress)
    records = replicas.start_replicas(config, count, models, timeout_s=args.timeout, options=options)
    for line in replicas_ready_lines(config.server.mode, records, models):
        print(line, flush=True)
    return 0


def _cmd_stop(config: Config, args: argparse.Namespace) -> int:
    for line in replicas_stop_lines(replicas.stop_replicas(config)):
        print(line)
    return 0


def _cmd_status(config: Config, args: argparse.Namespace) -> int:
    items = replicas.replica_statuses(config)
    print(replicas_status_json(items) if args.json else replicas_status_text(items))
    return 0


def _cmd_logs(config: Config, args: argparse.Namespace) -> int:
    indices = replicas.log_indices(config, args.replica)
    prefix = len(indices) > 1

    def text(line: replicas.LogLine) -> str:
        return f"[replica {line.replica}] {line.text}" if prefix else line.text

    if not args.follow:
        for line in replicas.read_logs(config, indices, args.lines):
            print(text(line))
        return 0
    try:
        for line in replicas.follow_logs(config, indices, args.lines):
            print(text(line), flush=True)
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
                                      sample_video=sample if sample.is_file() else None, insecure=args.insecure)
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
            "shell": devcontainer_cli.cmd_shell, "doctor": devcontainer_cli.cmd_doctor}


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
