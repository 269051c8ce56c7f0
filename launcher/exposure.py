"""Warnings for services bound beyond this machine: the app and Triton's inference have no authentication."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True when ``host`` only reaches this machine (127.0.0.0/8, ::1, localhost); "" and 0.0.0.0 are not."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name, or "" (every interface)


def exposure_warning(what: str, host: str, setting: str, restricted: bool = False) -> str | None:
    """A one-line warning when ``what`` would listen on the non-loopback ``host``; None on loopback.

    ``restricted``: Triton's admin APIs need the admin key (``launcher.admin_key``), inference does not.
    """
    if is_loopback(host):
        return None
    where = "every interface" if host.strip() in ("", "0.0.0.0", "::", "[::]") else host
    if restricted:
        return (f"{what} listens on {where} ({setting}: {host!r}), beyond this machine; its model-repository, "
                "shared-memory, trace and logging APIs need the admin key, but inference, metadata and health have "
                f"no authentication: anyone who can reach it can run inference; set {setting}: 127.0.0.1 unless "
                "that is intended")
    return (f"{what} listens on {where} ({setting}: {host!r}), beyond this machine, and has no authentication: "
            f"anyone who can reach it can use it; set {setting}: 127.0.0.1 unless that is intended")
