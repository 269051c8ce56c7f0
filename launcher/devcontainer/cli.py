"""The dev container's commands: ``launcher shell`` (alias ``tao_ws``) and ``launcher doctor``.

``launcher.cli`` owns the top-level parser; it adds these subcommands with :func:`add_parsers` and
calls the ``cmd_*`` functions, which print and return the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from launcher.devcontainer.doctor import needs, run_checks
from launcher.devcontainer.mounts_file import DEFAULT_MOUNTS_FILE, load_mounts_file
from launcher.devcontainer.shell import FALLBACK_SHELL, dev_image, run_shell, stdin_has_data_source, stdin_is_terminal
from launcher.devcontainer.shell_spec import ShellOptions, shell_spec
from launcher.docker_client import connect
from launcher.registry import BACKENDS
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


def _both(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """``--mounts_file`` (tao_ws spelling) and ``--mounts-file``."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]


def add_shell_parser(sub: argparse._SubParsersAction, name: str = "shell") -> argparse.ArgumentParser:
    """``launcher shell``: the dev container."""
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``launcher shell`` and ``launcher doctor``."""
    add_shell_parser(sub)
    add_doctor_parser(sub)


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    """``launcher doctor``: the environment check."""
    doctor = sub.add_parser("doctor", help="check what the chosen mode needs (ok / missing, with the fix)")
    doctor.add_argument("--mode", choices=tuple(BACKENDS), help="default: server.mode")
    doctor.add_argument("--gpus", metavar="LIST", help="GPUs to check for in docker mode (default: docker.gpus)")
    _both(doctor, "mounts_file", metavar="PATH", help=f"mounts file to check (default: {DEFAULT_MOUNTS_FILE})")


def _command(args: Sequence[str]) -> tuple[str, ...]:
    """The command after ``--`` (argparse keeps the separator in REMAINDER)."""
    items = list(args)
    if items and items[0] == "--":
        items = items[1:]
    return tuple(items)


def cmd_shell(config: Config, args: argparse.Namespace) -> int:
    """Run the dev container; the exit status is its command's."""
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
    """Print each check as ok / missing with the fix; 1 when a required item is missing."""
    mode = args.mode or config.server.mode
    gpus = config.docker.gpus if args.gpus is None else args.gpus
    checks = run_checks(config, mode=mode, gpus=gpus, mounts_file=args.mounts_file)
    print(f"launcher doctor: mode {mode}" + (f", GPUs {gpus or 'none'}" if needs(mode).uses_gpus else ""))
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"  {c.status:<8} {c.name:<{width}}  {c.detail}")
        if c.fix and not c.ok:
            print(f"  {'':<8} {'':<{width}}  fix: {c.fix}")
    missing = [c.name for c in checks if not c.ok and c.required]
    print(f"{len(missing)} required item(s) missing: {', '.join(missing)}" if missing
          else "everything this mode needs is here")
    return 1 if missing else 0
