"""``launcher shell`` (alias ``tao_ws``): the dev container, interactive or running one command.

Like ``docker run --rm -it``, through the Docker SDK: the container is created, attached to (stdin, stdout,
stderr over the hijacked connection), started, and removed when its command ends; the exit status is the
command's. With a terminal the local TTY is put in raw mode and its size follows the window.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from launcher.docker_client import (
    create_container,
    remove_container,
    sdk,
    start_container,
)
from launcher.images import ImageEntry, ResolvedImage, manifest_entry, resolve_image
from launcher.run_spec import RunSpec
from mmw.config import Config
from mmw.errors import DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker

GPU_FIX = "pass --gpus none to start the dev container without GPUs"
FALLBACK_SHELL = ["/bin/sh"]
_HEADER = 8  # stream (1 byte), 3 zero bytes, length (4 bytes, big endian) of non-TTY attach frames


@dataclass(frozen=True)
class ShellImage:
    """The dev image to run and what the launcher needs to know about it."""

    resolved: ResolvedImage
    user: str  # the image's USER ('' = root)
    has_command: bool  # the image has a CMD or ENTRYPOINT


def dev_image(config: Config, client: docker.DockerClient, tag: str | None = None, *,
              allow_unpinned: bool = False) -> ShellImage:
    """The manifest's ``dev`` image, or its ``--tag`` build (a local build, so no pin is required)."""
    entry: ImageEntry = manifest_entry(config.path(config.docker.manifest), "dev", tag=tag or "")
    resolved = resolve_image(client, entry, allow_unpinned=allow_unpinned or config.docker.allow_unpinned or bool(tag))
    attrs = client.images.get(resolved.id).attrs.get("Config") or {}
    return ShellImage(resolved=resolved, user=str(attrs.get("User") or ""),
                      has_command=bool(attrs.get("Cmd") or attrs.get("Entrypoint")))


def stdin_is_terminal(fd: int = 0) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def stdin_has_data_source(fd: int = 0) -> bool:
    """True when stdin is a pipe or a file (worth forwarding without a TTY); False for /dev/null or a closed fd."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def run_shell(client: docker.DockerClient, spec: RunSpec, *, stdin_fd: int | None = None,
              stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None) -> int:
    """Create, attach, start, wait and remove the container of ``spec``; return its exit status.

    ``stdin_fd`` is forwarded to the container (``spec`` must then have ``stdin_open``); with ``tty`` in
    ``spec`` and a terminal on ``stdin_fd`` the terminal goes raw while the container runs.
    """
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    tty = bool(spec.kwargs.get("tty"))
    what = f"starting the dev container from {spec.image[:19]}"
    container = create_container(client, spec.kwargs, what, GPU_FIX)
    try:
        params = {"stdin": 1 if stdin_fd is not None else 0, "stdout": 1, "stderr": 1, "stream": 1}
        try:
            sock = client.api.attach_socket(container.id, params=params)
        except sdk().errors.DockerException as exc:
            raise DockerError(f"cannot attach to the dev container: {exc}") from None
        raw = getattr(sock, "_sock", sock)
        start_container(container, what, GPU_FIX)
        with _terminal(client, container.id, stdin_fd if tty else None):
            try:
                _pump(raw, tty, stdin_fd, out, err)
            except KeyboardInterrupt:
                with contextlib.suppress(Exception):
                    container.kill()
                return 130
            finally:
                with contextlib.suppress(OSError):
                    raw.close()
        result = container.wait()
        return int(result.get("StatusCode", 1))
    finally:
        with contextlib.suppress(DockerError):
            remove_container(container)


def _pump(raw: socket.socket, tty: bool, stdin_fd: int | None, out: IO[bytes], err: IO[bytes]) -> None:
    """Copy stdin to the container and its output to ours until the container closes the stream."""
    sel = selectors.DefaultSelector()
    sel.register(raw, selectors.EVENT_READ, "container")
    if stdin_fd is not None:
        sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
    pending = b""
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "stdin":
                    data = os.read(stdin_fd, 65536) if stdin_fd is not None else b""
                    if data:
                        raw.sendall(data)
                    else:  # EOF: close the container's stdin, keep reading its output
                        sel.unregister(key.fileobj)
                        with contextlib.suppress(OSError):
                            raw.shutdown(socket.SHUT_WR)
                    continue
                data = raw.recv(65536)
                if not data:
                    return
                if tty:
                    out.write(data)
                    out.flush()
                else:
                    pending = _demux(pending + data, out, err)
    finally:
        sel.close()


def _demux(data: bytes, out: IO[bytes], err: IO[bytes]) -> bytes:
    """Write the complete frames of a non-TTY attach stream to stdout/stderr; return the incomplete rest."""
    while len(data) >= _HEADER:
        stream, length = struct.unpack(">BxxxL", data[:_HEADER])
        if len(data) < _HEADER + length:
            break
        target = err if stream == 2 else out
        target.write(data[_HEADER:_HEADER + length])
        target.flush()
        data = data[_HEADER + length:]
    return data


@contextlib.contextmanager
def _terminal(client: docker.DockerClient, container_id: str, fd: int | None) -> Iterator[None]:
    """Raw mode on the local terminal ``fd`` and the container's TTY sized like it (None: nothing to do)."""
    if fd is None or not stdin_is_terminal(fd):
        yield
        return
    import termios
    import tty

    def resize(*_: Any) -> None:
        with contextlib.suppress(Exception):
            size = os.get_terminal_size(fd)
            client.api.resize(container_id, height=size.lines, width=size.columns)

    saved = termios.tcgetattr(fd)
    previous = None
    try:
        tty.setraw(fd)
        resize()
        with contextlib.suppress(ValueError):  # not the main thread
            previous = signal.signal(signal.SIGWINCH, resize)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
