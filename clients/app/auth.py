"""The app's login: users and passwords from ``app.auth_env`` or ``app.auth_file``, for Gradio's ``auth=``.

Both hold ``user:password`` entries (one a line in the file; in the variable, several separated by
commas or newlines). The password may contain ``:``; the user may not. ``check_exposure`` refuses to
bind an address other than loopback without a login, unless ``insecure`` says so on purpose.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from mmw.config import Config
from mmw.errors import ConfigError

Credentials = list[tuple[str, str]]


def _parse(text: str, where: str) -> Credentials:
    out: Credentials = []
    for n, raw in enumerate(text.replace(",", "\n").splitlines(), 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            got = "a user with no password" if user.strip() else "no user"
            raise ConfigError(f"{where}: entry {n}: expected user:password, got {got}")
        out.append((user.strip(), password))
    return out


def load_auth(config: Config) -> Credentials | None:
    """The app's users and passwords (``app.auth_env`` wins over ``app.auth_file``); None: no login."""
    app = config.app
    if app.auth_env and (value := os.environ.get(app.auth_env, "").strip()):
        return _parse(value, f"the environment variable {app.auth_env} (app.auth_env)") or None
    if app.auth_file:
        path = config.path(app.auth_file)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"app.auth_file: cannot read {path}: {exc.strerror or exc}") from None
        users = _parse(text, f"app.auth_file {path}")
        if not users:
            raise ConfigError(f"app.auth_file: {path} holds no user:password line")
        return users
    return None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an address the app binds) is this host's loopback only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: Credentials | None, insecure: bool) -> None:
    """ConfigError when the app would bind ``host`` off loopback without a login and without ``insecure``."""
    if auth or insecure or is_loopback_host(host):
        return
    raise ConfigError(f"app.host {host} is not a loopback address and the app has no login: set a user:password "
                      "in app.auth_env (default: the environment variable MMW_APP_AUTH) or app.auth_file, or "
                      "pass --insecure to expose it without one")
