"""Check, before starting Triton, that its ports are free on the configured host."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping

from mmw.errors import ConfigError, ServerError


def port_in_use(host: str, port: int) -> bool:
    """True if binding ``host:port`` fails because something already uses it.

    Binds the way Triton does (SO_REUSEADDR), so sockets in TIME_WAIT do not count as in use.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"server.host: cannot resolve {host!r} ({exc}); expected an address of this machine "
                          "such as 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"server.host: {host!r} is not an address of this machine; expected e.g. "
                                  "127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)") from None
            if exc.errno == errno.EACCES:
                raise ConfigError(f"port {port} on {host}: permission denied (ports below 1024 need root); "
                                  "choose a port in 1024..65535") from None
            raise
    return False


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Raise ServerError naming the config key of the first port (``server.http_port`` ...) already in use."""
    busy = [(key, port) for key, port in ports.items() if port_in_use(host, port)]
    if busy:
        listed = ", ".join(f"{port} ({key})" for key, port in busy)
        noun = "port" if len(busy) == 1 else "ports"
        raise ServerError(f"{noun} {listed} already in use on {host}: expected free ports for tritonserver; stop "
                          "whatever listens there (`launcher status`, `ss -ltnp`), or choose other ports in "
                          "config.yaml")
