"""Several Triton servers behind one ``SceneClient``: which endpoints, which one gets the next request, and
whether each is healthy.

Endpoints (``parse_endpoints``) come as a list of ``HOST:PORT`` (``client.urls``, a repeated ``--url``),
a comma-separated string (``SceneClient("a:8001,b:8001")``), or one DNS name that resolves to several
addresses (a Kubernetes headless Service): every address becomes an endpoint on the name's port. A name
with one address (``localhost`` included) stays a name; a list's duplicates are dropped.

``Endpoints`` keeps one ``Endpoint`` each: its connection (the client's own for the first, so one
endpoint behaves as before), its HTTP workers and shared-memory regions (regions are per server: each
endpoint registers its own), the requests in flight on it and those sent in all. ``pick`` gives a request
to the healthy endpoint with the fewest requests in flight (then the fewest sent, then the first).

Health: a failed request (``ServerUnavailable``) marks its endpoint down. With more than one endpoint, a
background thread asks each endpoint whether the server and the ensemble are ready, on its own
connections: a down endpoint after ``HEALTH_FIRST_S``, then at doubling intervals up to
``HEALTH_MAX_S``, a healthy one every ``HEALTH_MAX_S``. An endpoint that answers ready again is back;
before its next request the sender opens a fresh connection and registers its regions again (a restarted
server has forgotten them).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.transport.connection import CONTROL_TIMEOUT_S, ServerConnection
from clients.transport.http_workers import HttpWorkers
from clients.transport.options import normalize_url, url_host
from clients.transport.shared_memory import RegionPool
from mmw.errors import ConfigError

#: First wait before a down endpoint is checked again; the wait doubles up to ``HEALTH_MAX_S``.
HEALTH_FIRST_S = 0.5
#: The longest wait between two health checks of one endpoint (healthy ones are checked this often).
HEALTH_MAX_S = 5.0

Resolver = Callable[..., list[tuple[Any, ...]]]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _join(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def expand_name(url: str, resolve: Resolver = socket.getaddrinfo) -> list[str]:
    """``HOST:PORT`` -> one ``ADDRESS:PORT`` per address of HOST when it resolves to several (IPv4 ones
    when it has any); else ``[url]`` (an address, a name with one address, or one that does not resolve:
    its health check says so)."""
    url = normalize_url(url)
    host = url_host(url)
    if _is_address(host) or host.lower() == "localhost" or url.count(":") == 0:
        return [url]
    port = url.rsplit(":", 1)[1]
    try:
        infos = resolve(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return [url]
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    v4 = [a for a in addresses if ":" not in a]
    addresses = v4 or addresses
    return [_join(a, port) for a in addresses] if len(addresses) > 1 else [url]


def parse_endpoints(urls: str | Sequence[str], resolve: Resolver = socket.getaddrinfo) -> list[str]:
    """The endpoints (``HOST:PORT``, in order, no duplicates) of ``urls``: a list, or a comma-separated string."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    if not items or any(not isinstance(u, str) for u in items):
        raise ConfigError(f"server url: expected HOST:PORT or a list of them, got {urls!r}")
    out: list[str] = []
    for item in items:
        out.extend(expand_name(item, resolve))
    if not out:
        raise ConfigError(f"server url: expected at least one HOST:PORT, got {urls!r}")
    return list(dict.fromkeys(out))


def ready_first(urls: list[str], connect: Callable[[str], ServerConnection]) -> list[str]:
    """``urls`` with the first whose server is ready moved to the front (it answers the client's metadata
    calls); unchanged when none is ready."""
    for i, url in enumerate(urls):
        connection = connect(url)
        try:
            if connection.server_ready():
                return [url, *urls[:i], *urls[i + 1:]]
        finally:
            connection.close()
    return urls


@dataclass(eq=False)
class Endpoint:
    """One server: its connection, workers and regions, and what was sent to it."""

    url: str
    connection: ServerConnection
    healthy: bool = True
    revived: bool = False  # came back after being down: reconnect and register regions before the next request
    in_flight: int = 0
    sent: int = 0  # requests sent in all (resends included)
    failures: int = 0  # requests that failed because the server was unreachable
    workers: HttpWorkers | None = None
    pool: RegionPool | None = None
    next_slot: int = 0
    check_after_s: float = HEALTH_FIRST_S
    next_check: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.sent += 1

    def finished(self) -> None:
        with self.lock:
            self.in_flight -= 1


class Endpoints:
    """The client's endpoints, the choice of the next one, and (with several) their health checks."""

    def __init__(self, first: ServerConnection, urls: Sequence[str],
                 connect: Callable[..., ServerConnection], models: Callable[[], Sequence[str]]) -> None:
        """``first`` is the client's own connection (``urls[0]``); ``connect(url)`` opens one for another URL
        (``connect(url, CONTROL_TIMEOUT_S)`` for health checks); ``models()`` names the models a healthy
        endpoint must have ready."""
        self._connect = connect
        self._models = models
        self.all = [Endpoint(urls[0], first)] + [Endpoint(u, connect(u)) for u in urls[1:]]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None
        if len(self.all) > 1:
            self._checker = threading.Thread(target=self._check_loop, name="scene-health", daemon=True)
            self._checker.start()

    def __len__(self) -> int:
        return len(self.all)

    @property
    def first(self) -> Endpoint:
        return self.all[0]

    def pick(self, exclude: Endpoint | None = None) -> Endpoint | None:
        """The healthy endpoint (not ``exclude``) with the fewest requests in flight; None when none is healthy."""
        with self._lock:
            healthy = [e for e in self.all if e.healthy and e is not exclude]
        if not healthy:
            return None
        return min(healthy, key=lambda e: (e.in_flight, e.sent, self.all.index(e)))

    def failed(self, endpoint: Endpoint) -> None:
        """A request on ``endpoint`` found its server unreachable: down until a health check says ready."""
        with self._lock:
            endpoint.failures += 1
            if endpoint.healthy and len(self.all) > 1:
                endpoint.healthy = False
                endpoint.check_after_s = HEALTH_FIRST_S
                endpoint.next_check = time.monotonic() + HEALTH_FIRST_S

    def check_now(self) -> None:
        """Check every endpoint at once (the sender calls it when none is healthy, before it waits)."""
        for endpoint in self.all:
            if len(self.all) > 1:
                self._check(endpoint, endpoint.connection)

    def _check(self, endpoint: Endpoint, connection: ServerConnection) -> None:
        ready = connection.server_ready() and all(connection.model_ready(m) for m in self._models())
        now = time.monotonic()
        with self._lock:
            if ready:
                if not endpoint.healthy:
                    endpoint.revived = True
                endpoint.healthy = True
                endpoint.check_after_s = HEALTH_MAX_S
            else:
                was_healthy, endpoint.healthy = endpoint.healthy, False
                endpoint.check_after_s = HEALTH_FIRST_S if was_healthy else min(endpoint.check_after_s * 2,
                                                                                 HEALTH_MAX_S)
            endpoint.next_check = now + endpoint.check_after_s

    def _check_loop(self) -> None:
        """Health checks on connections of this thread's own (HTTP clients must stay in their thread)."""
        own: dict[int, ServerConnection] = {}
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for i, endpoint in enumerate(self.all):
                    if self._stop.is_set() or endpoint.next_check > now:
                        continue
                    try:
                        if i not in own:
                            own[i] = self._connect(endpoint.url, CONTROL_TIMEOUT_S)
                        self._check(endpoint, own[i])
                    except Exception:  # a closed client or a bad name: down, checked again later
                        with self._lock:
                            endpoint.healthy = False
                            endpoint.next_check = time.monotonic() + HEALTH_MAX_S
                with self._lock:
                    soonest = min(e.next_check for e in self.all)
                self._stop.wait(max(0.05, min(HEALTH_MAX_S, soonest - time.monotonic())))
        finally:
            for connection in own.values():
                connection.close()

    def counts(self) -> dict[str, int]:
        """Requests sent per endpoint URL (resends included)."""
        return {e.url: e.sent for e in self.all}

    def close(self) -> None:
        """Stop the health checks; close every endpoint's regions, workers and (but the first's) connection."""
        self._stop.set()
        if self._checker is not None:
            self._checker.join(timeout=HEALTH_MAX_S + 15)
        try:
            for endpoint in self.all:
                if endpoint.pool is not None:
                    pool, endpoint.pool = endpoint.pool, None
                    pool.close()
        finally:
            for endpoint in self.all:
                if endpoint.workers is not None:
                    endpoint.workers.close()
                    endpoint.workers = None
            for endpoint in self.all[1:]:
                endpoint.connection.close()
