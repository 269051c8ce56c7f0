"""The videos of a corpus: files, folders, globs, text files of paths, and URLs.

``collect_videos`` expands the command line's inputs into sources, in order and without repeats:

- a folder: every video under it (``VIDEO_SUFFIXES``, recursively, sorted);
- a glob (``*``, ``?``, ``[``; ``**`` recurses): the files it matches;
- a text file (``.txt`` or ``.lst``, or any file given as ``@FILE``): one input per line, relative to the
  file's folder; blank lines and ``#`` comments are skipped;
- a URL (``s3://``, ``https://``, ...): kept as it is; ``fetch_url`` copies it to local disk with fsspec;
- anything else: a video path. A path that does not exist is kept, and fails as that one video.

``folder_names`` gives each source a results folder named after its file, numbered when two collide;
names already in the corpus index keep their folder.
"""

from __future__ import annotations

import glob
import hashlib
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mmw.errors import InputError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".flv",
                            ".wmv", ".3gp"})
LIST_SUFFIXES = frozenset({".txt", ".lst"})
_GLOB_CHARS = re.compile(r"[*?\[]")


def is_url(source: str) -> bool:
    """Whether ``source`` names a remote file (``scheme://...``) rather than a local path."""
    return "://" in source


def _videos_under(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _expand(item: str, base: Path | None, in_list: bool) -> list[str]:
    if is_url(item):
        return [item]
    if item.startswith("@") and not in_list:
        return _read_list(Path(item[1:]))
    path = Path(item).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if _GLOB_CHARS.search(item):
        found = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise InputError(f"corpus input {item!r}: the pattern matched no file")
        return found
    if path.is_dir():
        videos = _videos_under(path)
        if not videos:
            raise InputError(f"corpus input {item}: the folder holds no video (expected files ending in "
                             f"{', '.join(sorted(VIDEO_SUFFIXES))})")
        return videos
    if path.suffix.lower() in LIST_SUFFIXES and path.is_file() and not in_list:
        return _read_list(path)
    return [str(path)]


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"corpus list {path}: cannot read it (expected a text file of paths): {exc}") from None
    found: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip() if not is_url(line) else line.strip()
        if line:
            found.extend(_expand(line, path.parent, in_list=True))
    return found


def collect_videos(inputs: Sequence[str]) -> list[str]:
    """The sources named by ``inputs``, in order, each once; InputError when there are none."""
    if not inputs:
        raise InputError("corpus: expected at least one input (a video, a folder, a glob or a text file of paths)")
    seen: dict[str, None] = {}
    for item in inputs:
        for source in _expand(item, None, in_list=False):
            seen.setdefault(source if is_url(source) else str(Path(source).absolute()), None)
    return list(seen)


def _slug(source: str) -> str:
    name = source.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"


def folder_names(sources: Iterable[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """A results folder name per source: its file's stem, ``stem-2``, ``stem-3``... on a collision.

    ``known`` (source -> folder, from an earlier run's index) is kept as it is.
    """
    names = dict(known or {})
    taken = set(names.values())
    for source in sources:
        if source in names:
            continue
        base = _slug(source)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        names[source] = name
        taken.add(name)
    return names


def fetch_url(url: str, cache_dir: Path) -> Path:
    """A local copy of ``url`` in ``cache_dir`` (fsspec: s3://, gs://, https://, ...; kept for reruns)."""
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: reading URLs needs fsspec (pip install fsspec)") from None
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    local = cache_dir / f"{digest}-{_slug(url)}{Path(url.split('?', 1)[0]).suffix}"
    if local.is_file():
        return local
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".part")
    try:
        with fsspec.open(url, "rb") as remote, partial.open("wb") as out:
            shutil.copyfileobj(remote, out, length=1 << 20)
    except (OSError, ValueError, ImportError) as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{url}: cannot download it (expected a URL fsspec can read): {exc}") from None
    partial.replace(local)
    return local
