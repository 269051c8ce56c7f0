"""Which of Triton's APIs need the admin key, and where the key comes from (``server.restrict_apis``).

Off loopback (``server.host`` not 127.0.0.1/::1/localhost), and always with ``restrict_apis: always``, the
launcher passes ``--http-restricted-api`` and ``--grpc-restricted-protocol`` (``server_args.RestrictedApi``)
so that model-repository, shared-memory, trace and logging answer only with the header ``mmw-admin-key``.
The key comes from the environment variable ``MMW_TRITON_ADMIN_KEY``, else the file ``server.admin_key_file``;
it never goes into a record file (:func:`redact`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from launcher.exposure import is_loopback
from launcher.server_args import ADMIN_KEY_ENV, RESTRICTED_HEADER, RestrictedApi
from mmw.config import Config
from mmw.errors import ConfigError

REDACTED = "<redacted>"
HOW_TO_SET = f"set the environment variable {ADMIN_KEY_ENV} or server.admin_key_file (a file holding the key)"


def restricts(config: Config) -> bool:
    """True when ``config`` restricts Triton's admin APIs (``restrict_apis``: always, or auto off loopback)."""
    setting = config.server.restrict_apis
    return setting == "always" or (setting == "auto" and not is_loopback(config.server.host))


def admin_key(config: Config) -> str | None:
    """The key from ``MMW_TRITON_ADMIN_KEY``, else from ``server.admin_key_file``; None when neither is set.

    A configured file that cannot be read, or is empty, is a ConfigError naming it.
    """
    if key := os.environ.get(ADMIN_KEY_ENV, "").strip():
        return key
    name = config.server.admin_key_file
    if not name:
        return None
    path = config.path(name)
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"server.admin_key_file: cannot read {path} ({exc.strerror or exc}); expected a file "
                          "holding the admin key") from None
    if not key:
        raise ConfigError(f"server.admin_key_file: {path} is empty; expected the admin key in it")
    return key


def restriction(config: Config) -> RestrictedApi | None:
    """The restricted APIs ``launcher run`` passes to Triton for ``config``, or None when it restricts nothing.

    Raises ConfigError (one line, naming both ways to set the key) when they must be restricted and no key is set.
    """
    if not restricts(config):
        return None
    key = admin_key(config)
    if key is None:
        why = ("server.restrict_apis is always" if config.server.restrict_apis == "always"
               else f"server.host {config.server.host!r} is not a loopback address")
        raise ConfigError(f"{why}, so Triton's model-repository, shared-memory, trace and logging APIs must be "
                          f"restricted, and no admin key is set: {HOW_TO_SET}")
    try:
        return RestrictedApi(header=RESTRICTED_HEADER, key=key)
    except ConfigError as exc:
        raise ConfigError(f"admin key ({ADMIN_KEY_ENV} or server.admin_key_file): {exc}") from None


def probe_headers(config: Config) -> dict[str, str]:
    """The header the launcher's own HTTP probes send (repository index) when a key is set; {} otherwise.

    Never raises: ``status`` still reports what it can without the key.
    """
    try:
        key = admin_key(config)
    except ConfigError:
        return {}
    return {RESTRICTED_HEADER: key} if key else {}


def redact(argv: Sequence[str], restricted: RestrictedApi | None) -> list[str]:
    """``argv`` with the admin key replaced, for the record files (the key stays out of the state dir)."""
    if restricted is None:
        return list(argv)
    secret = f"{restricted.header}={restricted.key}"
    return [a.replace(secret, f"{restricted.header}={REDACTED}") for a in argv]
