"""The one interface of a way to run Triton (``server.mode``), and the results every backend returns.

A backend is a module that has these functions (``launcher.local_server``, ``launcher.docker_server``);
it conforms to :class:`ServerBackend` without inheriting, and ``launcher.registry`` keys it by its mode.
How the results read lives in ``launcher.report``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from launcher.http_probe import ModelState
from launcher.processes import Leftovers
from launcher.records import BaseRecord, ServerRecord
from mmw.config import Config

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StartOptions:
    """How to start, beyond ``config``; a backend ignores what does not apply to it."""

    allow_unpinned: bool = False  # docker: run an image the manifest does not pin
    pull: bool = False  # docker: pull a missing image
    progress: Progress | None = None  # called with a line for each slow preparation step (and each cleanup)
    wait: bool = True  # False: return once started and recorded; ``wait_ready`` waits (replicas start together)


@dataclass(frozen=True)
class StopResult:
    """What ``stop`` did."""

    mode: str  # the backend that answered (server.mode value)
    record: BaseRecord | None  # what the state dir recorded (None: nothing)
    stopped: bool  # a running server was stopped
    stale: bool = False  # the record named a server that was gone; the record was removed
    forced: bool = False  # the exit timeout passed, so the server was killed
    removed: int = 0  # containers removed (the recorded one and leftovers of this state dir)
    elapsed_s: float = 0.0
    cleaned: Leftovers | None = None  # local: what a crashed server had left and was cleaned up

    @property
    def changed(self) -> bool:
        """True when something was stopped or cleaned up."""
        return self.stopped or self.stale or self.removed > 0 or bool(self.cleaned)

    @property
    def pid(self) -> int | None:
        """The recorded PID of a local server (None otherwise)."""
        return self.record.pid if isinstance(self.record, ServerRecord) else None


@dataclass(frozen=True)
class ServerStatus:
    """The truth about the configured server, as its record, its process or container and its HTTP endpoint tell."""

    mode: str  # the backend that answered (server.mode value)
    running: bool
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    server_ready: bool
    models: tuple[ModelState, ...]
    uptime_s: float | None
    record_file: Path  # the PID file or container record
    log_file: Path
    record: BaseRecord | None = None  # what the state dir records, running or not
    state: str = ""  # docker: the recorded container's state (running, exited, ...; '' = gone or none)
    exit_code: int | None = None  # docker: the recorded container's exit code
    busy_ports: tuple[str, ...] = ()  # nothing recorded runs, yet these ports are taken ('8000 (http_port)')
    leftovers: Leftovers | None = None  # local: what the recorded server, now gone, left (``stop`` cleans it)
    index_restricted: bool = False  # the repository index refused the launcher (no admin key here)

    @property
    def ready_models(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.state == "READY")

    @property
    def pid(self) -> int | None:
        """The PID of a running local server."""
        return self.record.pid if self.running and isinstance(self.record, ServerRecord) else None

    @property
    def stale_pid(self) -> int | None:
        """The PID of a local record whose process is gone, left for ``stop`` to clean."""
        return self.record.pid if not self.running and isinstance(self.record, ServerRecord) else None

    @property
    def pid_file(self) -> Path:
        return self.record_file


class ServerBackend(Protocol):
    """What ``launcher run|stop|status|logs`` needs from a way of running Triton."""

    def start(self, config: Config, wait_for_models: Sequence[str] = (), *, timeout_s: float | None = None,
              options: StartOptions | None = None) -> BaseRecord:
        """Start Triton for ``config``, record it in the state dir, return once ``wait_ready`` says so (at once when
        ``options.wait`` is False: ``launcher.replicas`` starts every replica, then waits for each)."""
        ...

    def wait_ready(self, config: Config, wait_for_models: Sequence[str] = (), *,
                   timeout_s: float | None = None) -> BaseRecord:
        """Wait until the recorded server and ``wait_for_models`` are ready (default ``server.startup_timeout_s``).

        A server that exits, stalls or times out is stopped, its record removed, and ServerError says why.
        """
        ...

    def stop(self, config: Config) -> StopResult:
        """Stop the recorded server and remove its record."""
        ...

    def status(self, config: Config) -> ServerStatus:
        """Whether the recorded server runs, its ports, readiness and models. Changes nothing."""
        ...

    def read_log(self, config: Config, lines: int = 50) -> list[str]:
        """The last ``lines`` lines of the server's log."""
        ...

    def follow_log(self, config: Config, lines: int = 50) -> Iterator[str]:
        """The last ``lines`` lines, then new ones as the server writes them."""
        ...

    def recorded(self, config: Config) -> bool:
        """True when the state dir holds a record of this backend (reads files only)."""
        ...
