"""The Docker side of the ``launcher`` command: ``run --mode docker``, ``shell`` (alias ``tao_ws``), ``doctor``.

``launcher.cli`` owns the parser and dispatches here; ``stop``/``status``/``logs`` come here when a
container is recorded in the state dir (or ``server.mode`` is docker and nothing local is recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from launcher.container_record import read_container_record, record_path
from launcher.local_server import server_paths
from launcher.mounts_file import DEFAULT_MOUNTS_FILE
from mmw.config import PROJECT_ROOT, Config
from mmw.errors import ConfigError

SHELL_DESCRIPTION = """\
Run the dev container (docker/Dockerfile; the seed's `tao_ws`): an interactive shell, or `-- COMMAND ARGS`
whose exit status becomes this command's. The checkout is mounted at /workspace/mmw (the working
directory, on PYTHONPATH). The mounts file (default ~/.tao_mounts.json) adds:

  {"Mounts": [{"source": "~/data", "destination": "/workspace/data", "read_only": false}],
   "Envs": [{"variable": "CUDA_VISIBLE_DEVICES", "value": "0"}],
   "DockerOptions": {"user": "1000:1000", "shm_size": "16G", "ulimits": {"memlock": -1, "stack": 67108864},
                     "ports": {"8888": 8888}, "network": "host", "privileged": false, "tty": true}}

Command-line options override the file.
"""


def active_mode(config: Config) -> str:
    """Where the server of this state dir lives: a recorded container, a PID file, else ``server.mode``."""
    paths = server_paths(config)
    if record_path(paths.state_dir).exists():
        return "docker"
    if paths.pid_file.exists():
        return "local"
    return config.server.mode


# ---------------------------------------------------------------- parser


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """``launcher run`` options for docker mode."""
    run.add_argument("--mode", choices=("local", "docker"),
                     help="local tritonserver or the Triton container (default: server.mode)")
    run.add_argument("--gpus", metavar="LIST", help="docker mode: all, none or indices such as 0,1 "
                                                    "(default: docker.gpus)")
    run.add_argument("--pull", action="store_true", help="docker mode: pull the image if it is not local")
    run.add_argument("--allow-unpinned", action="store_true",
                     help="docker mode: run an image docker/manifest.json does not pin by digest")


def _both(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """``--mounts_file`` (tao_ws spelling) and ``--mounts-file``."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]


def add_shell_parser(sub: argparse._SubParsersAction, name: str = "shell") -> argparse.ArgumentParser:
    shell = sub.add_parser(name, help="run the dev container: an interactive shell or `-- COMMAND ARGS`",
                           description=SHELL_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_shell_parser(shell)
    return shell


def configure_shell_parser(shell: argparse.ArgumentParser) -> None:
    """The ``tao_ws`` options (underscore spellings as in the seed; dashes work too)."""
    shell.add_argument("--gpus", metavar="GPUS", help="comma-separated GPU indices, all, or none "
                                                      "(default: docker.gpus)")
    shell.add_argument("--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                       help="bind a host path (like docker -v); repeatable")
    shell.add_argument("--env", action="append", default=[], metavar="VAR=value",
                       help="environment variable in the container (VAR alone passes this machine's); repeatable")
    shell.add_argument("--no-tty", "--no_tty", dest="no_tty", action="store_true",
                       help="no TTY, even on a terminal")
    _both(shell, "mounts_file", metavar="PATH", help=f"the mounts file (default: {DEFAULT_MOUNTS_FILE})")
    _both(shell, "shm_size", metavar="SIZE", help="shared memory size, e.g. 16G (default: the mounts file's, "
                                                  "else 16G)")
    _both(shell, "run_as_user", action="store_true", help="run as this user (uid:gid), not root")
    shell.add_argument("--tag", metavar="TAG", help="run this tag of the dev image (e.g. $USER after "
                                                    "docker/build.sh --build); no digest pin needed")
    shell.add_argument("--ulimit", action="append", default=[], metavar="NAME=soft[:hard]",
                       help="resource limit, e.g. stack=67108864; repeatable")
    shell.add_argument("--port", action="append", default=[], metavar="HOST:CONTAINER",
                       help="publish a port (e.g. 8889:8889); repeatable")
    _both(shell, "allow_unpinned", action="store_true", help="run an unpinned dev image")
    shell.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS",
                       help="run this instead of an interactive shell")


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser("doctor", help="check what the chosen mode needs (ok / missing, with the fix)")
    doctor.add_argument("--mode", choices=("local", "docker"), help="default: server.mode")
    doctor.add_argument("--gpus", metavar="LIST", help="GPUs to check for in docker mode (default: docker.gpus)")
    _both(doctor, "mounts_file", metavar="PATH", help=f"mounts file to check (default: {DEFAULT_MOUNTS_FILE})")


# ---------------------------------------------------------------- run / stop / status / logs


def run_config(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with ``run --mode`` / ``--gpus`` applied."""
    mode = getattr(args, "mode", None)
    if mode:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, mode=mode))
    gpus = getattr(args, "gpus", None)
    if gpus is not None:
        value = "" if gpus.strip() == "none" else gpus.strip()
        try:
            config = dataclasses.replace(config, docker=dataclasses.replace(config.docker, gpus=value))
        except ConfigError as exc:
            raise ConfigError(f"--gpus: {exc}") from None
    return config


def refuse_local_if_container(config: Config) -> None:
    """Local ``run``: refuse while a Triton container of this state dir is recorded."""
    rpath = record_path(server_paths(config).state_dir)
    record = read_container_record(rpath)
    if record is not None:
        raise ConfigError(f"a Triton container started by launcher is recorded ({record.name}, {record.http_url}, "
                          f"record {rpath}); run `launcher stop` first (or `launcher run --restart`)")


def stop_recorded_container(config: Config) -> str | None:
    """``run --restart``: stop a recorded container; the message, or None when there was none."""
    if not record_path(server_paths(config).state_dir).exists():
        return None
    from launcher.docker_server import stop_container_server

    return stop_container_server(config).message


def cmd_run(config: Config, args: argparse.Namespace, models: list[str],
            write_repository: Callable[[Config], bool]) -> int:
    from launcher.docker_server import start_container_server, stop_container_server
    from launcher.local_server import stop_server

    if not args.no_write_repository:
        write_repository(config)
    if args.restart:
        for message in (stop_container_server(config).message if active_mode(config) == "docker" else None,
                        stop_server(config).message if server_paths(config).pid_file.exists() else None):
            if message and not message.startswith("no server running"):
                print(message, flush=True)
    record = start_container_server(config, models, timeout_s=args.timeout, allow_unpinned=args.allow_unpinned,
                                    pull=args.pull, progress=lambda m: print(m, flush=True))
    pin = "pinned" if record.pinned else "UNPINNED"
    print(f"tritonserver ready in container {record.name} ({record.container_id[:12]}, {record.image} {pin}, GPUs: "
          f"{record.gpus or 'none'}, models: {', '.join(models)}): HTTP {record.http_url}  gRPC {record.grpc_url}  "
          f"metrics {record.metrics_url}  log `launcher logs`", flush=True)
    return 0


def cmd_stop(config: Config, args: argparse.Namespace) -> int:
    from launcher.docker_server import stop_container_server

    print(stop_container_server(config).message)
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from launcher.docker_server import container_status

    st = container_status(config)
    if args.json:
        rec = st.record
        print(json.dumps({
            "mode": "docker", "running": st.running, "state": st.state, "exit_code": st.exit_code,
            "container_id": rec.container_id if rec else None, "container_name": rec.name if rec else None,
            "image": rec.image if rec else None, "image_id": rec.image_id if rec else None,
            "pinned": rec.pinned if rec else None, "gpus": rec.gpus if rec else None, "host": st.host,
            "http_port": st.http_port, "grpc_port": st.grpc_port, "metrics_port": st.metrics_port,
            "server_ready": st.server_ready, "uptime_s": st.uptime_s, "ready_models": list(st.ready_models),
            "models": [dataclasses.asdict(m) for m in st.models], "busy_ports": list(st.busy_ports),
            "record_file": str(st.record_file), "log_file": str(st.log_file),
        }, indent=2))
        return 0
    rec = st.record
    if rec is None:
        line = (f"not running (docker mode; no container recorded in {st.record_file}; ports in config: HTTP "
                f"{st.http_port}, gRPC {st.grpc_port}, metrics {st.metrics_port})")
        if st.busy_ports:
            line += (f"; but port {', '.join(st.busy_ports)} is in use on {st.host} by something launcher did not "
                     "start (`ss -ltnp`)")
        print(line)
        return 0
    if not st.running:
        state = f"{st.state} (exit code {st.exit_code})" if st.state else "gone"
        print(f"not running: container {rec.name} ({rec.container_id[:12]}) recorded in {st.record_file} is {state}; "
              "`launcher logs` shows its log, `launcher stop` cleans up")
        return 0
    lines = [
        f"running: container {rec.name} ({rec.container_id[:12]}), up {st.uptime_s:.0f} s, server "
        f"{'ready' if st.server_ready else 'NOT ready'}",
        f"  image {rec.image} ({rec.image_id[:19]}, {'pinned' if rec.pinned else 'UNPINNED'}), GPUs: "
        f"{rec.gpus or 'none'}, network {rec.network}",
        f"  HTTP {rec.http_url}  gRPC {rec.grpc_url}  metrics {rec.metrics_url}",
        f"  model repository {rec.model_repository}",
        f"  log `launcher logs` (docker logs {rec.name})",
    ]
    if not st.models:
        lines.append("  models: unknown (the repository index does not answer)")
    for m in st.models:
        reason = f" - {m.reason}" if m.reason else ""
        lines.append(f"  model {m.name} v{m.version or '?'}: {m.state or 'unknown'}{reason}")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------- shell, doctor


def _command(args: Sequence[str]) -> tuple[str, ...]:
    items = list(args)
    if items and items[0] == "--":
        items = items[1:]
    return tuple(items)


def cmd_shell(config: Config, args: argparse.Namespace) -> int:
    from launcher.dev_shell import FALLBACK_SHELL, dev_image, run_shell, stdin_has_data_source, stdin_is_terminal
    from launcher.docker_client import connect
    from launcher.mounts_file import load_mounts_file
    from launcher.run_spec import ShellOptions, shell_spec

    mounts = load_mounts_file(args.mounts_file)
    for m in mounts.mounts:
        if not Path(m.source).exists():
            raise ConfigError(f"mounts file {mounts.path}: Mounts source {m.source} does not exist on this machine; "
                              "create it or fix the mounts file")
    client = connect(config.docker.host)
    image = dev_image(config, client, args.tag, allow_unpinned=args.allow_unpinned)
    command = _command(args.argv)
    if not command and not image.has_command:
        command = tuple(FALLBACK_SHELL)
    terminal = stdin_is_terminal(0) and stdin_is_terminal(1)
    tty = terminal and not args.no_tty
    forward = tty or (not terminal and stdin_has_data_source(0))
    opts = ShellOptions(
        image=image.resolved.id, command=command,
        gpus=config.docker.gpus if args.gpus is None else args.gpus,
        volumes=tuple(args.volume), env=tuple(args.env), tty=tty, stdin_open=forward, shm_size=args.shm_size,
        run_as_user=args.run_as_user, host_user=f"{os.getuid()}:{os.getgid()}", image_user=image.user,
        ulimits=tuple(args.ulimit), ports=tuple(args.port), project_root=str(PROJECT_ROOT),
        host_env=dict(os.environ), cwd=os.getcwd(),
    )
    spec = shell_spec(opts, mounts)
    for warning in spec.warnings:
        print(f"launcher: warning: {warning}", file=sys.stderr, flush=True)
    if not image.resolved.pinned:
        print(f"launcher: note: running {image.resolved.description}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    return run_shell(client, spec, stdin_fd=0 if forward else None)


def cmd_doctor(config: Config, args: argparse.Namespace) -> int:
    from launcher.doctor import run_checks

    mode = args.mode or config.server.mode
    gpus = config.docker.gpus if args.gpus is None else args.gpus
    checks = run_checks(config, mode=mode, gpus=gpus, mounts_file=args.mounts_file)
    print(f"launcher doctor: mode {mode}" + (f", GPUs {gpus or 'none'}" if mode == "docker" else ""))
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"  {c.status:<8} {c.name:<{width}}  {c.detail}")
        if c.fix and not c.ok:
            print(f"  {'':<8} {'':<{width}}  fix: {c.fix}")
    missing = [c.name for c in checks if not c.ok and c.required]
    print(f"{len(missing)} required item(s) missing: {', '.join(missing)}" if missing
          else "everything this mode needs is here")
    return 1 if missing else 0
