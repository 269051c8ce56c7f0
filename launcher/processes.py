"""Safe checks of whether a recorded tritonserver process still runs, and what it leaves behind.

A PID is only trusted while ``/proc/<pid>`` shows a tritonserver started at the recorded clock tick,
so a recycled PID (another program now) is never signalled.
"""

from __future__ import annotations

import os
from pathlib import Path

from launcher.records import ServerRecord
from mmw.errors import ServerError

BINARY_NAME = "tritonserver"
STUB_NAME = "triton_python_backend_stub"
SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"


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


def orphaned_stubs(server_pid: int) -> list[int]:
    """Python backend stubs still in the stopped server's process group (a load that hangs can leave them).

    The launcher starts tritonserver as a session leader, so its stubs share its process group ID.
    """
    stubs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is None or int(stat[2]) != server_pid or stat[0] in ("Z", "X"):
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        if Path(argv0).name == STUB_NAME:
            stubs.append(int(entry.name))
    return stubs


def kill_orphaned_stubs(server_pid: int) -> None:
    """SIGKILL the stubs :func:`orphaned_stubs` finds once their server is gone."""
    for pid in orphaned_stubs(server_pid):
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
