"""Safe checks of whether a recorded tritonserver process still runs, and what it leaves behind.

A PID is only trusted while ``/proc/<pid>`` shows a tritonserver started at the recorded clock tick,
so a recycled PID (another program now) is never signalled. A server killed with SIGKILL leaves python
backend stubs (reparented to init, ignoring SIGTERM, hundreds of MB each) and their ``/dev/shm`` regions:
:func:`find_leftovers` finds exactly those of a recorded server, :func:`clean_leftovers` ends and removes them.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from launcher.records import ServerRecord
from mmw.errors import ServerError

BINARY_NAME = "tritonserver"
STUB_NAME = "triton_python_backend_stub"
SHM_DIR = "/dev/shm"
SHM_PREFIX = f"{SHM_DIR}/triton_python_backend_shm_region_"
_REGION_NAME = re.compile(r"^triton_python_backend_shm_region_[0-9A-Za-z_-]+$")
TERM_WAIT_S = 3.0
"""How long leftover stubs get after SIGTERM before SIGKILL (a crashed server's stubs ignore SIGTERM)."""
KILL_WAIT_S = 10.0


def proc_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None if it does not exist)."""
    stat = _read_stat(pid)
    return None if stat is None else int(stat[19])


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2:].split()


def is_tritonserver(pid: int, start_ticks: int | None = None) -> bool:
    """True only if ``pid`` is a live (not zombie) tritonserver, started at ``start_ticks`` when given."""
    if pid <= 0:
        return False
    if not Path("/proc/self/stat").exists():
        raise ServerError("cannot check processes: /proc is not available (the launcher supports Linux only)")
    stat = _read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if start_ticks is not None and int(stat[19]) != start_ticks:
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return Path(argv0).name == BINARY_NAME


def record_is_alive(record: ServerRecord) -> bool:
    """True if the recorded server process still runs."""
    return is_tritonserver(record.pid, record.proc_start_ticks)


def shm_regions(pid: int) -> set[Path]:
    """The python backend's shared-memory regions that ``pid`` maps (Triton leaks some when a load fails)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {Path(line.split(maxsplit=5)[5].removesuffix(" (deleted)")) for line in maps.splitlines()
            if SHM_PREFIX in line and len(line.split(maxsplit=5)) == 6}


def remove_regions(regions: set[Path]) -> None:
    """Unlink shared-memory regions a stopped server left behind."""
    for region in regions:
        try:
            region.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class StubProcess:
    """A python backend stub of a server the launcher started, as /proc showed it."""

    pid: int
    start_ticks: int
    rss_bytes: int
    regions: frozenset[Path]  # the shm regions it maps or names in its argv


@dataclass(frozen=True)
class Leftovers:
    """What a server the launcher started left behind: its stub processes and shm regions (if it is gone)."""

    server_pid: int
    stubs: tuple[StubProcess, ...] = ()
    regions: tuple[Path, ...] = ()  # regions that still exist
    region_bytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.stubs or self.regions)

    @property
    def rss_bytes(self) -> int:
        return sum(s.rss_bytes for s in self.stubs)

    def summary(self) -> str:
        """``3 stub processes (1.3 GB), 3 shm regions (45 MB)``."""
        parts = []
        if self.stubs:
            parts.append(f"{len(self.stubs)} stub process{'es' if len(self.stubs) != 1 else ''} "
                         f"({human_bytes(self.rss_bytes)})")
        if self.regions:
            parts.append(f"{len(self.regions)} shm region{'s' if len(self.regions) != 1 else ''} "
                         f"({human_bytes(self.region_bytes)})")
        return ", ".join(parts) or "nothing"


def human_bytes(n: int) -> str:
    """``1.3 GB``, ``45 MB``, ``512 kB`` (powers of 1000, as ``ps``/``free -h`` users read them roughly)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def _argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else None


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def stub_binary(backend_dir: Path) -> Path:
    """The stub that a server started with ``--backend-directory=backend_dir`` runs (``prepare_backend_dir``)."""
    return backend_dir / "python" / STUB_NAME


def _is_our_stub(pid: int, pgid: int, stub: Path, min_ticks: int | None) -> bool:
    """``pid`` is alive, in process group ``pgid``, started no earlier than ``min_ticks`` and runs ``stub``."""
    stat = _read_stat(pid)
    if stat is None or stat[0] in ("Z", "X") or int(stat[2]) != pgid:
        return False
    if min_ticks is not None and int(stat[19]) < min_ticks:
        return False
    argv = _argv(pid)
    return bool(argv) and os.path.realpath(argv[0]) == os.path.realpath(stub)


def _named_regions(argv: list[str]) -> set[Path]:
    """The regions a stub's argv names (its second argument: ``triton_python_backend_shm_region_<uuid>``)."""
    return {Path(SHM_DIR) / a for a in argv[1:] if _REGION_NAME.match(a)}


def orphaned_stubs(record: ServerRecord, backend_dir: Path) -> list[StubProcess]:
    """The stubs of the recorded server that still run although it is gone (none while it runs).

    A stub counts only when all of these hold: it is in the server's process group (the launcher starts
    tritonserver as a session leader: pgid = pid), it started after the server, and ``/proc/<pid>/cmdline`` runs
    the stub binary of ``backend_dir`` (the state dir's prepared backend). Anything else is never touched.
    """
    if record_is_alive(record):
        return []
    pgid = record.pgid if record.pgid is not None else record.pid
    stub = stub_binary(backend_dir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if not _is_our_stub(pid, pgid, stub, record.proc_start_ticks):
            continue
        stat, argv = _read_stat(pid), _argv(pid)
        if stat is None or argv is None:
            continue
        found.append(StubProcess(pid=pid, start_ticks=int(stat[19]), rss_bytes=_rss_bytes(pid),
                                 regions=frozenset(shm_regions(pid) | _named_regions(argv))))
    return sorted(found, key=lambda s: s.pid)


def _region_bytes(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512  # the memory it holds (tmpfs), not its apparent size
    except OSError:
        return 0


def find_leftovers(record: ServerRecord, backend_dir: Path) -> Leftovers:
    """The stubs and shm regions the recorded server left, once it is gone; empty while it runs.

    Regions count when a leftover stub maps them or names them in its argv, or the record lists them (the
    regions the server mapped when it was ready); only regions with the python backend's prefix, that exist.
    """
    if record_is_alive(record):
        return Leftovers(server_pid=record.pid)
    stubs = orphaned_stubs(record, backend_dir)
    named = {Path(r) for r in record.shm_regions if _REGION_NAME.match(Path(r).name) and str(Path(r).parent) == SHM_DIR}
    regions = sorted({r for s in stubs for r in s.regions} | named)
    existing = tuple(r for r in regions if r.exists())
    return Leftovers(server_pid=record.pid, stubs=tuple(stubs), regions=existing,
                     region_bytes=sum(_region_bytes(r) for r in existing))


def _send(stub: StubProcess, pgid: int, binary: Path, sig: int) -> None:
    """Signal ``stub`` after checking once more that it is the same process (no PID reuse in between)."""
    if not _is_our_stub(stub.pid, pgid, binary, stub.start_ticks):
        return
    stat = _read_stat(stub.pid)
    if stat is None or int(stat[19]) != stub.start_ticks:
        return
    try:
        os.kill(stub.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _still_runs(stub: StubProcess) -> bool:
    """``stub`` exists and is not a zombie (from its stat only: an exiting process's cmdline reads empty)."""
    stat = _read_stat(stub.pid)
    return stat is not None and stat[0] not in ("Z", "X") and int(stat[19]) == stub.start_ticks


def _wait_stubs_gone(stubs: list[StubProcess], wait_s: float) -> list[StubProcess]:
    """Wait up to ``wait_s`` for ``stubs`` to end; the ones still running."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = [s for s in stubs if _still_runs(s)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def clean_leftovers(record: ServerRecord, backend_dir: Path, term_wait_s: float = TERM_WAIT_S,
                    kill_wait_s: float = KILL_WAIT_S) -> Leftovers:
    """End what :func:`find_leftovers` finds (SIGTERM, then SIGKILL after ``term_wait_s``), remove its regions.

    Returns what was found (and cleaned). ServerError if a stub survives SIGKILL for ``kill_wait_s``.
    """
    found = find_leftovers(record, backend_dir)
    if not found:
        return found
    pgid = record.pgid if record.pgid is not None else record.pid
    binary = stub_binary(backend_dir)
    stubs = list(found.stubs)
    for stub in stubs:
        _send(stub, pgid, binary, signal.SIGTERM)
    survivors = _wait_stubs_gone(stubs, term_wait_s)
    for stub in survivors:  # the stubs of a crashed server ignore SIGTERM
        _send(stub, pgid, binary, signal.SIGKILL)
    survivors = _wait_stubs_gone(survivors, kill_wait_s)
    if survivors:
        raise ServerError(f"python backend stub pid {', '.join(str(s.pid) for s in survivors)} of the crashed "
                          f"tritonserver (pid {record.pid}) survived SIGKILL for {kill_wait_s:g} s; check with "
                          f"`ps -o pid,stat,args -g {pgid}`")
    remove_regions(set(found.regions))
    return found


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
