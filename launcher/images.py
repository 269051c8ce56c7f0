"""``docker/manifest.json``: which images the launcher runs, pinned by digest, and finding them locally.

Each entry (``triton``, ``dev``, ``release``) names an image, a tag and up to two pins: ``digest``, the
registry digest (``docker pull IMAGE@DIGEST``, listed in the image's RepoDigests), and ``id``, the local image
ID (``docker image inspect --format '{{.Id}}'``, which ``docker save``/``docker load`` keeps). A local image
is accepted when either pin matches; the container is then started from that exact image ID.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.docker_client import sdk
from mmw.errors import ConfigError, DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker

ENTRY_KEYS = ("image", "tag", "digest", "id")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageEntry:
    """One image of the manifest."""

    key: str  # triton, dev, release
    image: str  # repository, e.g. nvcr.io/nvidia/tritonserver
    tag: str
    digest: str | None = None  # registry (manifest) digest
    id: str | None = None  # local image ID
    manifest: Path | None = None

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}"

    @property
    def pinned(self) -> bool:
        return bool(self.digest or self.id)

    @property
    def pull_ref(self) -> str:
        """What to ``docker pull``: by digest when pinned so."""
        return f"{self.image}@{self.digest}" if self.digest else self.ref


@dataclass(frozen=True)
class ResolvedImage:
    """A local image ready to run."""

    entry: ImageEntry
    id: str  # sha256:... of the local image
    pinned: bool  # the manifest pin matched (False: ran unpinned on request)

    @property
    def description(self) -> str:
        return f"{self.entry.ref} ({self.id[:19]}{', pinned' if self.pinned else ', NOT pinned'})"


def load_manifest(path: Path) -> dict[str, ImageEntry]:
    """Every entry of the manifest, validated (errors name the file and the key)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"docker.manifest: {path} not found; expected the JSON image manifest such as "
                          "docker/manifest.json") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"docker.manifest: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of images (triton, dev, release), got {type(data).__name__}")
    entries = {}
    for key, value in data.items():
        if key.startswith("_"):  # comments
            continue
        entries[key] = _entry(path, key, value)
    return entries


def _entry(path: Path, key: str, value: Any) -> ImageEntry:
    where = f"{path}: {key}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object with {', '.join(ENTRY_KEYS)}, got {type(value).__name__}")
    unknown = sorted(set(value) - set(ENTRY_KEYS) - {"comment"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed keys: {', '.join(ENTRY_KEYS)}, comment")
    for name in ("image", "tag"):
        if not isinstance(value.get(name), str) or not value[name]:
            raise ConfigError(f"{where}.{name}: expected a non-empty string, got {value.get(name)!r}")
    for name in ("digest", "id"):
        pin = value.get(name)
        if pin is not None and not (isinstance(pin, str) and _DIGEST.match(pin)):
            raise ConfigError(f"{where}.{name}: expected null or 'sha256:' and 64 hex digits, got {pin!r}")
    return ImageEntry(key=key, image=value["image"], tag=value["tag"], digest=value.get("digest"),
                      id=value.get("id"), manifest=path)


def manifest_entry(path: Path, key: str, image: str = "", tag: str = "") -> ImageEntry:
    """Entry ``key`` of the manifest; another ``image``/``tag`` than the manifest's drops the pins."""
    entries = load_manifest(path)
    if key not in entries:
        raise ConfigError(f"{path}: no image {key!r}; expected one of {', '.join(sorted(entries)) or 'none'}")
    entry = entries[key]
    if (image and image != entry.image) or (tag and tag != entry.tag):
        entry = replace(entry, image=image or entry.image, tag=tag or entry.tag, digest=None, id=None)
    return entry


def missing_image_message(entry: ImageEntry) -> str:
    """How to get an image onto this machine, online and offline."""
    login = f"`docker login {entry.image.split('/')[0]}` first, " if entry.image.startswith("nvcr.io/") else ""
    return (f"image {entry.ref} is not on this Docker host; pull it ({login}`docker pull {entry.pull_ref}`, "
            f"or `launcher run --mode docker --pull`), or offline: on a machine with access run "
            f"`docker pull {entry.pull_ref} && docker save {entry.pull_ref} -o image.tar`, copy image.tar here and "
            "`docker load -i image.tar`")


def unpinned_message(entry: ImageEntry) -> str:
    where = entry.manifest or "docker/manifest.json"
    return (f"image {entry.ref} is not pinned: {where} records no digest or id for {entry.key!r} with this tag; "
            f"expected a pinned image. Get the image (`docker pull {entry.ref}`), record its digest with "
            f"`docker/build.sh --pin {entry.key}`, or run it unpinned on purpose "
            "(`--allow-unpinned`, or docker.allow_unpinned: true)")


def find_local(client: docker.DockerClient, entry: ImageEntry) -> Any | None:
    """The local image of ``entry`` (by tag, else by its pinned digest), or None."""
    errors = sdk().errors
    refs = [entry.ref] + ([f"{entry.image}@{entry.digest}"] if entry.digest else []) + (
        [entry.id] if entry.id else [])
    for ref in refs:
        try:
            return client.images.get(ref)
        except errors.ImageNotFound:
            continue
        except errors.DockerException as exc:
            raise DockerError(f"cannot look up image {ref}: {exc}") from None
    return None


def pin_matches(image: Any, entry: ImageEntry) -> bool:
    """True if the local ``image`` is the one the manifest pins (by id or registry digest)."""
    if entry.id and image.id == entry.id:
        return True
    repo_digests = image.attrs.get("RepoDigests") or []
    return bool(entry.digest) and any(d.endswith(f"@{entry.digest}") for d in repo_digests)


def resolve_image(client: docker.DockerClient, entry: ImageEntry, *, allow_unpinned: bool = False,
                  pull: bool = False) -> ResolvedImage:
    """The local image to run for ``entry``: present, and the pinned one unless ``allow_unpinned``.

    With ``pull`` a missing image is pulled (by digest when pinned). Raises DockerError saying how to get
    or pin the image otherwise.
    """
    if not entry.pinned and not allow_unpinned:
        raise DockerError(unpinned_message(entry))
    image = find_local(client, entry)
    if image is None and pull:
        errors = sdk().errors
        try:
            image = client.images.pull(entry.pull_ref)
        except errors.DockerException as exc:
            raise DockerError(f"cannot pull {entry.pull_ref}: {exc}; " + missing_image_message(entry)) from None
    if image is None:
        raise DockerError(missing_image_message(entry))
    if not entry.pinned:
        return ResolvedImage(entry=entry, id=image.id, pinned=False)
    if not pin_matches(image, entry):
        have = ", ".join([image.id, *(image.attrs.get("RepoDigests") or [])])
        want = ", ".join(p for p in (entry.digest, entry.id) if p)
        raise DockerError(f"local image {entry.ref} is {have}, but {entry.manifest or 'the manifest'} pins {want}; "
                          f"pull the pinned image (`docker pull {entry.pull_ref}`), or if this one is right, record "
                          f"it with `docker/build.sh --pin {entry.key}`")
    return ResolvedImage(entry=entry, id=image.id, pinned=True)
