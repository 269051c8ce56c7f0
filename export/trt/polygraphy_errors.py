"""Where Polygraphy meets our error family: ``PolygraphyException`` becomes one ``EngineError`` line.

Polygraphy reports a failure by logging it (``G_LOGGER.critical``) and raising ``PolygraphyException``;
a missing ``tensorrt`` module is reported the same way, on first use. Every call into Polygraphy that can
fail goes through :func:`polygraphy_calls`, which also keeps Polygraphy (and TensorRT, whose log it
forwards) to warnings and errors.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from polygraphy.exception import PolygraphyException
from polygraphy.logger import G_LOGGER

from mmw.errors import EngineError

# Colours would need the optional `colored` module; without it Polygraphy prints a nag line on its first message.
G_LOGGER.colors = False

_NOT_OURS = ("POLYGRAPHY_AUTOINSTALL_DEPS",)  # Polygraphy's own hints that do not apply here (it never pip-installs)
_MISSING_MODULE = re.compile(r"Module: '([\w.]+)' is required but could not be imported")


def polygraphy_message(exc: PolygraphyException) -> str:
    """Polygraphy's (often multi-line) message as one line, without its hints about self-installing."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and not any(hint in line for hint in _NOT_OURS)).rstrip(".")


@contextlib.contextmanager
def polygraphy_calls(what: str, hint: str = "") -> Iterator[None]:
    """Run Polygraphy quietly (warnings and errors); a ``PolygraphyException`` becomes ``EngineError("what: why")``.

    ``hint`` (what to do) follows the reason; a module Polygraphy could not import gets "pip install <module>".
    """
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        try:
            yield
        except PolygraphyException as exc:
            missing = _MISSING_MODULE.search(str(exc))
            hint = f"pip install {missing.group(1)}" if missing else hint
            raise EngineError(f"{what}: {polygraphy_message(exc)}" + (f"; {hint}" if hint else "")) from exc
