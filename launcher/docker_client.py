"""The Docker SDK (``docker`` on PyPI): connect to the daemon and turn its errors into clear DockerErrors.

The SDK is imported lazily, so ``launcher`` in local mode works without it. The daemon is the one in
``docker.host`` when set, else the one ``DOCKER_HOST`` (and DOCKER_TLS_VERIFY / DOCKER_CERT_PATH) names,
else the default socket.
"""

from __future__ import annotations

import os
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mmw.errors import DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker

SDK_HINT = "install the Docker SDK: `pip install 'docker>=7.1'` in the project's venv (or `make install`)"
MIN_API_VERSION = "1.40"  # device requests (GPUs) need Docker Engine API 1.40 (Docker 19.03)
DEFAULT_TIMEOUT_S = 60
GPU_HINT = ("install the NVIDIA driver and the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure "
            "--runtime=docker && sudo systemctl restart docker` (`launcher doctor` checks both)")
LABEL = "mmw.launcher"
"""Every container the launcher makes carries ``mmw.launcher=1``; it only ever removes such containers."""
RLIMITS = ("cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as", "locks",
           "sigpending", "msgqueue", "nice", "rtprio", "rttime")  # Linux RLIMIT_* numbers, in order


def sdk() -> ModuleType:
    """The ``docker`` package, or a DockerError saying how to install it."""
    try:
        import docker
    except ImportError as exc:
        raise DockerError(f"the Docker SDK for Python is not installed ({exc}); {SDK_HINT}") from None
    return docker


def daemon_url(host: str = "") -> str:
    """The daemon address a client for ``host`` talks to (for messages)."""
    return host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(host: str = "", timeout_s: int = DEFAULT_TIMEOUT_S) -> docker.DockerClient:
    """A client of the daemon at ``host`` ('' = DOCKER_HOST or the default socket), checked with a ping."""
    d = sdk()
    url = daemon_url(host)
    try:
        client = d.DockerClient(base_url=host, timeout=timeout_s) if host else d.from_env(timeout=timeout_s)
        client.ping()
    except d.errors.DockerException as exc:
        raise DockerError(
            f"Docker daemon not reachable at {url}: {_short(exc)}; expected a running Docker Engine there: start "
            "it (`sudo systemctl start docker`), check DOCKER_HOST or docker.host in config.yaml, and that this "
            "user may use its socket (`sudo usermod -aG docker $USER`, then log in again)") from None
    return client


def api_version(client: docker.DockerClient) -> str:
    """The Engine API version the daemon speaks, e.g. ``1.41``."""
    try:
        return str(client.version().get("ApiVersion", "?"))
    except sdk().errors.DockerException as exc:
        raise DockerError(f"Docker daemon does not answer /version: {_short(exc)}") from None


def version_tuple(text: str) -> tuple[int, ...]:
    """``'1.41'`` -> ``(1, 41)`` (non-numbers count as 0)."""
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))


def _short(exc: BaseException) -> str:
    """The useful part of an SDK error."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain_api_error(exc: BaseException, what: str, gpu_fix: str) -> DockerError:
    """A DockerError for ``exc`` raised while ``what`` (e.g. 'starting container mmw-triton'), with the fix.

    ``gpu_fix`` says how to go on without GPUs in the caller's terms (``--gpus none``, ``docker.gpus: ""``).
    """
    text = _short(exc)
    if "could not select device driver" in text or "nvidia-container-cli" in text:
        return DockerError(f"{what}: GPUs were requested but the Docker daemon cannot provide them ({text}); "
                           f"{GPU_HINT}; or {gpu_fix}")
    if m := re.search(r"error setting rlimit type (\d+): operation not permitted", text):
        number = int(m.group(1))
        name = RLIMITS[number] if number < len(RLIMITS) else f"type {number}"
        return DockerError(f"{what}: this host refuses ulimit {name} ({text}); lower or drop that limit "
                           "(--ulimit / DockerOptions.ulimits / docker.ulimits), or raise the daemon's own limit "
                           f"(e.g. Limit{name.upper()}=infinity in docker.service)")
    if "port is already allocated" in text or "address already in use" in text:
        return DockerError(f"{what}: a published port is taken ({text}); free it or choose another port")
    if "bind source path does not exist" in text or "invalid mount config" in text:
        return DockerError(f"{what}: a mount source is missing on the Docker host ({text}); create it or fix the "
                           "path (--volume / Mounts in the mounts file)")
    if "Conflict" in text and "already in use" in text:
        return DockerError(f"{what}: {text}; remove that container (`docker rm -f NAME`) or choose another name")
    return DockerError(f"{what}: the Docker daemon refused: {text}")


def is_ours(attrs: dict[str, Any]) -> bool:
    """True if a container's attributes carry the launcher's label."""
    labels = (attrs.get("Config") or {}).get("Labels") or attrs.get("Labels") or {}
    return labels.get(LABEL) == "1"


def create_container(client: docker.DockerClient, kwargs: dict[str, Any], what: str, gpu_fix: str) -> Any:
    """``client.containers.create(**kwargs)`` with errors explained (the image must be local)."""
    errors = sdk().errors
    try:
        return client.containers.create(**kwargs)
    except errors.ImageNotFound as exc:
        raise DockerError(f"{what}: image {kwargs.get('image')} is not on this Docker host ({_short(exc)})") from None
    except errors.APIError as exc:
        raise explain_api_error(exc, what, gpu_fix) from None
    except errors.DockerException as exc:
        raise DockerError(f"{what}: {_short(exc)}") from None


def start_container(container: Any, what: str, gpu_fix: str) -> None:
    """Start a created container; if Docker refuses, remove it and raise the explained error."""
    errors = sdk().errors
    try:
        container.start()
    except errors.APIError as exc:
        remove_container(container)
        raise explain_api_error(exc, what, gpu_fix) from None


def remove_container(container: Any) -> None:
    """Remove a container the launcher made, whatever its state (already gone is fine)."""
    errors = sdk().errors
    if not is_ours(container.attrs):
        raise DockerError(f"container {container.name} ({container.short_id}) has no {LABEL}=1 label; the launcher "
                          "removes only containers it made")
    try:
        container.remove(force=True)
    except errors.NotFound:
        pass
    except errors.APIError as exc:
        if "already in progress" not in _short(exc):
            raise DockerError(f"cannot remove container {container.name}: {_short(exc)}") from None
