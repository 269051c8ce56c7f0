"""What a ``SceneClient`` is told: the server address, how frames travel and the per-request caption options."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from mmw.contract import CAPTION_PARAMETERS
from mmw.errors import ConfigError

PROTOCOLS = ("grpc", "http")
#: How frames travel (``client.transport``): auto picks shm for a server on loopback, else jpeg.
TRANSPORTS = ("auto", "jpeg", "raw", "shm")


@dataclass(frozen=True)
class CaptionOptions:
    """Per-request caption settings; None leaves the server's default (``models.caption`` of its config).

    ``num_beams``: 1 greedy, more beam search (1..16); ``max_new_tokens``: caption length limit
    (1..512); ``dense_top_k``: caption at most this many detections per image (0..32, 0: none).
    """

    num_beams: int | None = None
    max_new_tokens: int | None = None
    dense_top_k: int | None = None

    def __post_init__(self) -> None:
        for name, (low, high) in CAPTION_PARAMETERS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name}: expected an integer in {low}..{high}, got {value!r}")
            if not low <= int(value) <= high:
                raise ConfigError(f"{name}: expected an integer in {low}..{high}, got {value}")

    def parameters(self) -> dict[str, int]:
        """The Triton request parameters to send (only the options that are set)."""
        return {name: int(getattr(self, name)) for name in CAPTION_PARAMETERS if getattr(self, name) is not None}

    def merged(self, other: CaptionOptions | None) -> CaptionOptions:
        """These options with ``other``'s set values on top."""
        if other is None:
            return self
        return CaptionOptions(**{name: getattr(other, name) if getattr(other, name) is not None else getattr(self, name)
                                 for name in CAPTION_PARAMETERS})


@dataclass(frozen=True)
class ClientSettings:
    """Everything a ``SceneClient`` is opened with, as one picklable value (a worker process opens its own)."""

    urls: tuple[str, ...]
    protocol: str = "grpc"
    timeout_s: float = 60.0
    max_in_flight: int = 2
    retry_s: float = 0.0
    caption: CaptionOptions | None = None
    transport: str = "auto"
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if not self.urls:
            raise ConfigError("client: expected at least one server url (HOST:PORT), got none")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"client protocol: expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        check_transport(self.transport)
        check_caption(self.caption)

    def client_kwargs(self) -> dict[str, object]:
        """``SceneClient``'s keyword arguments: one url, or the list of several to spread over."""
        return dict(url=self.urls[0] if len(self.urls) == 1 else list(self.urls), protocol=self.protocol,
                    timeout_s=self.timeout_s, max_in_flight=self.max_in_flight, retry_s=self.retry_s,
                    caption=self.caption, transport=self.transport, jpeg_quality=self.jpeg_quality)


def check_caption(caption: object) -> CaptionOptions | None:
    """``caption`` when it is CaptionOptions or None; ConfigError otherwise."""
    if caption is not None and not isinstance(caption, CaptionOptions):
        raise ConfigError(f"caption: expected CaptionOptions, got {type(caption).__name__}")
    return caption


def normalize_url(url: str) -> str:
    """``http://host:port/`` or ``grpc://host:port`` -> ``host:port`` (what tritonclient wants)."""
    u = url.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if u.lower().startswith(scheme):
            u = u[len(scheme) :]
    u = u.rstrip("/")
    if not u or "/" in u:
        raise ConfigError(f"server url: expected HOST:PORT such as 127.0.0.1:8001, got {url!r}")
    return u


def url_host(url: str) -> str:
    """The host of ``HOST:PORT`` (``[::1]:8001`` -> ``::1``)."""
    u = normalize_url(url)
    if u.startswith("["):
        return u[1:].split("]", 1)[0]
    return u.rsplit(":", 1)[0] if u.count(":") == 1 else u


def is_loopback(url: str) -> bool:
    """Whether the server at ``url`` is on this host's loopback (localhost, 127.0.0.0/8, ::1)."""
    host = url_host(url).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(transport: object) -> str:
    """``transport`` when it is one of TRANSPORTS; ConfigError otherwise."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport: expected one of {', '.join(TRANSPORTS)}, got {transport!r}")
    return str(transport)
