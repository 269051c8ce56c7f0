"""Read tritonserver's log: its last lines, follow it, and pull out why a start failed."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mmw.errors import ServerError

LOG_FILE_NAME = "tritonserver.log"

# Lines Triton prints on every CPU-only machine; never the reason a start failed.
HARMLESS = re.compile(r"NVML|DCGM|CudaDriverHelper|CUDA|cuda|pinned memory|pinned_memory", re.IGNORECASE)
# Triton's default log format: "E1125 02:35:36.753015 3640 model_lifecycle.cc:642] "message"".
_LOG_LINE = re.compile(r'^(?P<level>[IWE])\d{4} [\d:.]+\s+\d+\s+(?P<src>[\w.]+:\d+)\]\s?(?P<msg>.*)$')
_FAILED_LOAD = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*)", re.DOTALL)
_TABLE_ROW = re.compile(r"^\|\s*(?P<model>[^|\s]+)\s*\|\s*(?P<version>\d+)\s*\|\s*UNAVAILABLE: (?P<reason>.*?)\s*\|$")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t"}
MAX_REASONS = 5


def _unquote(msg: str) -> str:
    """Triton quotes messages and escapes newlines: undo that."""
    msg = msg.strip()
    if len(msg) >= 2 and msg[0] == msg[-1] == '"':
        msg = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), msg[1:-1])
    return msg


def _summarise_reason(reason: str) -> str:
    """First line of a (python) error, plus the innermost frame of its traceback that is not Python's own."""
    lines = [ln.strip() for ln in reason.strip().splitlines() if ln.strip()]
    if not lines:
        return reason.strip()
    head = lines[0]
    frames = lines[lines.index("At:") + 1:] if "At:" in lines else []
    frame = next((f for f in frames if not f.startswith("<frozen")), None)
    return f"{head} (at {frame})" if frame else head


def explain_failure(text: str) -> str:
    """Triton's own reason a start failed, condensed from its log ``text``; empty if none is found."""
    reasons: list[str] = []
    other_errors: list[str] = []
    fatal: list[str] = []
    table: list[str] = []
    stub_errors: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        m = _LOG_LINE.match(line)
        if m:
            msg = _unquote(m.group("msg"))
            failed = _FAILED_LOAD.search(msg)
            if failed and m.group("level") == "E":
                reasons.append(f"model '{failed.group('model')}' (version {failed.group('version')}) failed to load: "
                               f"{_summarise_reason(failed.group('reason'))}")
            elif m.group("level") == "E" and not HARMLESS.search(msg) and "Failed to create instance" not in msg:
                other_errors.append(_summarise_reason(msg))
            elif m.group("src").startswith("pb_stub") and msg.startswith("Failed to"):
                stub_errors.append(_summarise_reason(msg))  # e.g. a model.py that is missing
            continue
        row = _TABLE_ROW.match(line)
        if row:
            table.append(f"model '{row.group('model')}' (version {row.group('version')}) failed to load: "
                         f"{row.group('reason')}")
        elif line.startswith("error: ") or line.startswith("terminate called"):
            fatal.append(line.removeprefix("error: "))
    found = reasons or table or stub_errors
    found = list(dict.fromkeys(found + other_errors))[:MAX_REASONS]
    return "; ".join(found + [f"Triton: {f}" for f in dict.fromkeys(fatal)])


_STUCK = re.compile(r"Failed to preinitialize Python stub: .*")


def stuck_reasons(lines: list[str]) -> list[str]:
    """Failures after which Triton 2.51 waits forever instead of failing (e.g. a missing model.py)."""
    found = []
    for line in lines:
        m = _LOG_LINE.match(line.rstrip())
        if m and m.group("src").startswith("pb_stub") and (stuck := _STUCK.search(_unquote(m.group("msg")))):
            found.append(stuck.group(0).strip())
    return found


class LogWatcher:
    """Hands out the lines appended to a log since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *done, self.partial = (self.partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in done]


def loading_models(text: str) -> list[str]:
    """Models the log shows as loading but neither loaded nor failed yet."""
    state: dict[str, str] = {}
    for line in text.splitlines():
        if m := re.search(r'"loading: ([^:"]+):\d+"', line):
            state[m.group(1)] = "loading"
        elif m := re.search(r"(?:successfully loaded|failed to load) '([^']+)'", line):
            state[m.group(1)] = "done"
    return [name for name, s in state.items() if s == "loading"]


def read_from(path: Path, offset: int = 0) -> str:
    """The log from byte ``offset`` on ('' if there is no log)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _last_lines(f: BinaryIO, end: int, lines: int) -> list[str]:
    """The last ``lines`` lines of the open file ``f`` before byte ``end``."""
    if lines == 0:
        return []
    block, data, pos = 64 * 1024, b"", end
    while pos > 0 and data.count(b"\n") <= lines:
        pos = max(0, pos - block)
        f.seek(pos)
        data = f.read(end - pos)
    return data.decode(errors="replace").splitlines()[-lines:]


def _open_log(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ServerError(f"no server log at {path}: expected one after `launcher run` (with this config)") from None


def tail(path: Path, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of the log."""
    if lines < 0:
        raise ServerError(f"log lines: expected a number >= 0, got {lines}")
    with _open_log(path) as f:
        return _last_lines(f, f.seek(0, os.SEEK_END), lines)


def follow(path: Path, lines: int = 50, poll_s: float = 0.5,
           keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
    """Yield the last ``lines`` lines, then new lines as they are written (reopens a rotated log)."""
    if lines < 0:
        raise ServerError(f"log lines: expected a number >= 0, got {lines}")
    f = _open_log(path)
    try:
        end = f.seek(0, os.SEEK_END)
        yield from _last_lines(f, end, lines)
        f.seek(end)
        inode = os.fstat(f.fileno()).st_ino
        pending = b""
        while keep_going():
            chunk = f.read()
            if chunk:
                pending += chunk
                *done, pending = pending.split(b"\n")
                for ln in done:
                    yield ln.decode(errors="replace")
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_ino != inode or st.st_size < f.tell()):
                f.close()
                f = path.open("rb")
                inode, pending = os.fstat(f.fileno()).st_ino, b""
                continue
            time.sleep(poll_s)
    finally:
        f.close()
