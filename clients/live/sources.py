"""Which streams a live run follows: ``LiveSource`` (a name and a URL), names made from URLs, the streams file.

A streams file has one stream per line, ``URL`` or ``NAME URL``; ``#`` starts a comment (at the start of a
line or after a space) and blank lines are skipped. A stream without a name is named after its URL
(``stream_name``): host, port and path, without the scheme, the login or the query, e.g.
``rtsp://user:pw@10.0.0.5:8554/cam?x=1`` -> ``10.0.0.5-8554-cam``; a file or webcam by its file name.
Names that repeat get ``-2``, ``-3``... With several streams each writes into ``OUT/NAME``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clients.media.stream import is_url
from mmw.errors import InputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._]+")  # runs of these (and of dashes) become one dash


@dataclass(frozen=True)
class LiveSource:
    """One stream of a live run: ``name`` is its output folder under ``--out`` when there are several."""

    url: str
    name: str = ""

    def __post_init__(self) -> None:
        if not self.url:
            raise InputError("live source: expected a stream URL, webcam or video file, got an empty string")
        if self.name and (not _NAME.fullmatch(self.name) or set(self.name) == {"."}):
            raise InputError(f"live source {self.url}: expected a name of letters, digits, '.', '_' and '-' "
                             f"(at most 80, starting with a letter or digit), got {self.name!r}")


def stream_name(url: str) -> str:
    """A folder name for ``url``: host-port-path of a URL, the file name of a file or webcam."""
    if is_url(url):
        parts = urlsplit(url)
        host = parts.hostname or ""
        text = "/".join(p for p in (host, str(parts.port or ""), parts.path) if p)
    else:
        text = Path(url).name
    name = _UNSAFE.sub("-", text).strip("-._")[:80].strip("-._")
    return name or "stream"


def named(sources: Sequence[LiveSource]) -> list[LiveSource]:
    """``sources`` each with a name (its own, or ``stream_name``), unique: a repeated name gets ``-2``..."""
    out: list[LiveSource] = []
    given = {s.name for s in sources if s.name}
    used: set[str] = set()
    for source in sources:
        if source.name:
            if source.name in used:
                raise InputError(f"live sources: expected each NAME once, got {source.name!r} twice")
            name = source.name
        else:
            base = name = stream_name(source.url)
            k = 2
            while name in used or name in given:
                name, k = f"{base}-{k}", k + 1
        used.add(name)
        out.append(LiveSource(source.url, name))
    return out


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    match = re.search(r"\s#", line)
    return (line[: match.start()] if match else line).strip()


def read_streams_file(path: str | Path) -> list[LiveSource]:
    """The streams of a streams file (``URL`` or ``NAME URL`` per line, ``#`` comments); InputError names the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--streams {path}: cannot read it (expected a text file of URL or NAME URL lines): "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    sources = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = _strip_comment(line).split()
        if not fields:
            continue
        if len(fields) > 2:
            raise InputError(f"--streams {path}:{number}: expected URL or NAME URL, got {len(fields)} fields")
        try:
            sources.append(LiveSource(fields[-1], fields[0] if len(fields) == 2 else ""))
        except InputError as exc:
            raise InputError(f"--streams {path}:{number}: {exc}") from None
    return sources


def live_sources(urls: Sequence[str], streams_file: str | Path | None = None) -> list[LiveSource]:
    """The URLs given, then the streams file's, named; InputError when there is none."""
    sources = [LiveSource(u) for u in urls] + (read_streams_file(streams_file) if streams_file else [])
    if not sources:
        where = f" ({streams_file} lists none)" if streams_file else ""
        raise InputError(f"live: expected at least one URL or a --streams FILE, got none{where}")
    return named(sources)
