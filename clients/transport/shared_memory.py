"""Raw frames through Triton's system shared memory: regions named after their owner, reused, always removed.

A region is a POSIX shared-memory object (``/dev/shm/<name>``) that this process maps and the server maps
too once it is registered (``register_system_shared_memory``); a request then names the region and the
byte range its FRAME tensor occupies instead of carrying the pixels. ``RegionPool`` keeps one region per
request in flight (``slot``), reused round-robin: a slot is written only once the server has answered the
request that used it before, and grows (a new, larger region, re-registered) when a batch needs more.

Names are ``mmw_client_<pid>_<n>`` (key ``/`` + name). The owner holds a shared ``flock`` on its regions as
long as it lives, so a region whose PID is not alive and whose lock is free is stale: ``remove_stale``
(run whenever a pool opens) unregisters such regions from the server and unlinks them; a region that is not
ours, or whose owner is alive, is never touched. Regions are removed by ``RegionPool.close`` (the client's
``close``: the end of a run, Ctrl-C, SIGTERM in the CLI) and, as a last resort, when the interpreter exits.

A region is made as a file in /dev/shm (what ``shm_open`` does on Linux), sized with ``posix_fallocate``
so that a full /dev/shm is a clear error rather than a SIGBUS, and written through ``mmap`` with one copy per
frame. ``tritonclient.utils.shared_memory`` is not used: it needs ``pkg_resources`` (gone from current
setuptools) and copies every array twice.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import mmap
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mmw.errors import InferenceError

PREFIX = "mmw_client_"
SHM_DIR = Path("/dev/shm")
_NAME = re.compile(rf"^{PREFIX}(\d+)_(\d+)$")
_COUNTER = itertools.count()  # region numbers of this process (several clients never share a name)
_PAGE = mmap.PAGESIZE
#: The longest ``RegionPool.close`` waits for requests still in flight (after Ctrl-C, say) before removing.
CLOSE_WAIT_S = 10.0
#: The longest unregistering retries while the server still uses a region (it lets go just after answering).
UNREGISTER_WAIT_S = 5.0


class SharedMemoryError(InferenceError):
    """A shared-memory region cannot be made, registered or used: too small, gone, or refused by the server."""


class RegionServer(Protocol):
    """What a pool needs of the server: SceneClient's calls, their errors already the project's."""

    def register_region(self, name: str, key: str, byte_size: int) -> None: ...

    def unregister_region(self, name: str) -> None: ...

    def registered_regions(self) -> dict[str, str]: ...  # region name -> key


def region_name(pid: int, n: int) -> str:
    """``mmw_client_<pid>_<n>``."""
    return f"{PREFIX}{pid}_{n}"


def owner_pid(name: str) -> int | None:
    """The PID in one of our region names; None for any other name."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one we may not signal exists too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink(name: str) -> None:
    try:
        (SHM_DIR / name).unlink()
    except FileNotFoundError:
        pass


class ShmRegion:
    """One shared-memory object of ``byte_size`` bytes, created, mapped and locked by this process."""

    def __init__(self, name: str, byte_size: int) -> None:
        self.name = name
        self.byte_size = int(byte_size)
        self.registered = False
        path = SHM_DIR / name
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise SharedMemoryError(f"shared-memory region {name}: cannot create {path} ({exc.strerror or exc}); "
                                    "is /dev/shm there and writable?") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH)  # held while we live: tells a live owner from a stale one
            os.posix_fallocate(self._fd, 0, self.byte_size)  # a full /dev/shm fails here, not as SIGBUS later
            self._inode = os.fstat(self._fd).st_ino
            self._map = mmap.mmap(self._fd, self.byte_size)
        except OSError as exc:
            os.close(self._fd)
            _unlink(name)
            raise SharedMemoryError(f"shared-memory region {name}: cannot size or map {self.byte_size} bytes in "
                                    f"{SHM_DIR} ({exc.strerror or exc})") from None

    @property
    def key(self) -> str:
        """The POSIX shared-memory key the server opens (``/`` + name)."""
        return "/" + self.name

    @property
    def closed(self) -> bool:
        return self._map.closed

    def describe(self) -> str:
        return f"shared-memory region {self.name} ({self.byte_size} bytes)"

    def check(self, needed: int) -> None:
        """Raise SharedMemoryError unless the region is still there (same file) and holds ``needed`` bytes."""
        if needed > self.byte_size:
            raise SharedMemoryError(f"{self.describe()} is too small: the request needs {needed} bytes")
        try:
            alive = not self.closed and os.stat(SHM_DIR / self.name).st_ino == self._inode
        except FileNotFoundError:
            alive = False
        if not alive:
            raise SharedMemoryError(f"{self.describe()} is gone (its file {SHM_DIR / self.name} was removed "
                                    f"under the client): the request needs {needed} bytes there")

    def write(self, frames: Sequence[np.ndarray]) -> int:
        """Copy same-shape uint8 frames one after the other from offset 0; returns the bytes written."""
        needed = sum(int(f.nbytes) for f in frames)
        self.check(needed)
        view = np.frombuffer(self._map, np.uint8, count=needed)
        try:
            offset = 0
            for frame in frames:
                view[offset:offset + frame.nbytes] = np.ascontiguousarray(frame).reshape(-1)
                offset += frame.nbytes
        finally:
            del view  # the map cannot close while a view of it exists
        return needed

    def close(self) -> None:
        """Unmap and unlink (idempotent); unregistering is the pool's job."""
        if self.closed:
            return
        self._map.close()
        try:
            _unlink_if_same(self.name, self._inode)
        finally:
            os.close(self._fd)  # drops the lock


def _unlink_if_same(name: str, inode: int) -> None:
    """Unlink ``/dev/shm/<name>`` only if it is still the file we made (never a newer one of that name)."""
    try:
        if os.stat(SHM_DIR / name).st_ino == inode:
            _unlink(name)
    except FileNotFoundError:
        pass


def _stale_files() -> list[str]:
    """Our region files in /dev/shm whose owner is dead and whose lock is free."""
    try:
        names = sorted(os.listdir(SHM_DIR))
    except OSError:
        return []
    stale = []
    for name in names:
        pid = owner_pid(name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        try:
            fd = os.open(SHM_DIR / name, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while any owner still holds its lock
            stale.append(name)
        except OSError:
            continue
        finally:
            os.close(fd)
    return stale


def _dead_owner(name: str) -> bool:
    pid = owner_pid(name)
    return pid is not None and pid != os.getpid() and not pid_alive(pid)


def remove_stale(server: RegionServer | None) -> list[str]:
    """Remove our stale regions (see the module doc): unregister them from ``server``, unlink their files.

    Returns the names removed, sorted. Call it once a region of ours has registered (the server then shares
    this /dev/shm): a registration of ours whose owner is dead and whose file is gone is stale too (its
    owner unlinked it but could not unregister it). Failures to unregister are ignored: the next run retries.
    """
    stale = set(_stale_files())
    registered: dict[str, str] = {}
    if server is not None:
        try:
            registered = server.registered_regions()
        except InferenceError:
            registered = {}
    for name, key in registered.items():
        ours = key == "/" + name and _dead_owner(name)
        if ours and (name in stale or not (SHM_DIR / name).exists()):
            try:
                server.unregister_region(name)  # type: ignore[union-attr]
            except InferenceError:
                continue
            stale.add(name)
    for name in stale:
        _unlink(name)
    return sorted(stale)


@dataclass
class _Slot:
    region: ShmRegion | None = None
    idle: threading.Event | None = None


class RegionPool:
    """``slots`` regions, one per request in flight, registered with ``server``; ``close`` removes them all."""

    def __init__(self, slots: int, server: RegionServer, wait_s: float) -> None:
        self.server = server
        self.wait_s = float(wait_s)  # longest wait for a slot's previous request
        self.removed_stale: list[str] = []
        self._slots = [_Slot(idle=_set_event()) for _ in range(slots)]
        self._lock = threading.Lock()
        _POOLS.add(self)

    def open(self) -> None:
        """Check that shared memory works with the server (a one-page region registers), then remove our
        stale regions (``removed_stale``). Raises SharedMemoryError (or ServerUnavailable) when it does not."""
        self._remove(self._create(_PAGE))
        self.removed_stale = remove_stale(self.server)

    def _create(self, byte_size: int) -> ShmRegion:
        region = ShmRegion(region_name(os.getpid(), next(_COUNTER)), byte_size)
        try:
            self.server.register_region(region.name, region.key, region.byte_size)
        except BaseException:
            region.close()
            raise
        region.registered = True
        return region

    def _remove(self, region: ShmRegion) -> None:
        """Unregister (retrying while the server still holds it for a request just answered), then unlink."""
        try:
            deadline = time.monotonic() + UNREGISTER_WAIT_S
            while region.registered:
                try:
                    self.server.unregister_region(region.name)
                    region.registered = False
                except SharedMemoryError:  # "currently in use": the server releases it just after answering
                    if time.monotonic() >= deadline:
                        region.registered = False  # left to the next run's remove_stale
                    time.sleep(0.02)
                except InferenceError:
                    region.registered = False  # the server is gone (or restarted): nothing registered there
        finally:
            region.close()

    def acquire(self, slot: int, needed: int) -> ShmRegion:
        """The region of ``slot``, holding at least ``needed`` bytes, once its previous request has finished."""
        entry = self._slots[slot]
        assert entry.idle is not None
        if not entry.idle.wait(self.wait_s):
            raise SharedMemoryError(f"shared-memory slot {slot}: its previous request has not finished after "
                                    f"{self.wait_s:g} s")
        with self._lock:
            region = entry.region
            if region is None or region.byte_size < needed:
                entry.region = None
                if region is not None:
                    self._remove(region)
                entry.region = region = self._create(max(needed, _PAGE))
            entry.idle.clear()
        return region

    def release(self, slot: int) -> None:
        """The server answered the request that used ``slot``: it may be written again."""
        idle = self._slots[slot].idle
        assert idle is not None
        idle.set()

    def reregister(self, slot: int) -> None:
        """Register ``slot``'s region again (the server restarted and forgot it)."""
        region = self._slots[slot].region
        if region is None:
            return
        try:
            self.server.unregister_region(region.name)
        except InferenceError:
            pass
        self.server.register_region(region.name, region.key, region.byte_size)
        region.registered = True

    def regions(self) -> list[ShmRegion]:
        return [s.region for s in self._slots if s.region is not None]

    def close(self) -> None:
        """Wait (up to ``CLOSE_WAIT_S`` in all) for requests still reading a region, then unregister and unlink
        every region (an unreachable server is skipped: it has forgotten them, or the next run unregisters)."""
        deadline = time.monotonic() + min(self.wait_s, CLOSE_WAIT_S)
        for entry in self._slots:
            if entry.idle is not None:
                entry.idle.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for entry in self._slots:
                if entry.region is not None:
                    region, entry.region = entry.region, None
                    self._remove(region)
        _POOLS.discard(self)


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


_POOLS: weakref.WeakSet[RegionPool] = weakref.WeakSet()


@atexit.register
def _close_pools_at_exit() -> None:
    """A client that was never closed: its regions go with the interpreter (a SIGKILL leaves them stale)."""
    for pool in list(_POOLS):
        try:
            pool.wait_s = min(pool.wait_s, 2.0)
            pool.close()
        except Exception:  # exiting: nothing left to tell
            pass


def translate_region_error(message: str, regions: Sequence[ShmRegion], needed: int) -> SharedMemoryError | None:
    """A server error about one of ``regions`` as a one-line SharedMemoryError; None when it names none of them."""
    for region in regions:
        if f"'{region.name}'" in message or region.name in message:
            if "byte size" in message.lower():
                return SharedMemoryError(f"{region.describe()} is too small for the server: the request needs "
                                         f"{needed} bytes ({message})")
            if "Unable to find" in message:
                return SharedMemoryError(f"{region.describe()} is no longer registered with the server (unregistered "
                                         f"under the client, or the server restarted): the request needs {needed} "
                                         f"bytes ({message})")
            return SharedMemoryError(f"{region.describe()}: the server refused it: {message}")
    return None
