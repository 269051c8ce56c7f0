"""argparse value types shared by the command lines: numbers with bounds, with clear messages."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type[int] | type[float], minimum: float, exclusive: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` that parses ``kind`` and requires ``> minimum`` (exclusive) or ``>= minimum``."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {noun} {'>' if exclusive else '>='} {minimum:g}, got {text}")
        return value

    return parse


positive_float = bounded(float, 0, exclusive=True)
positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)


def unit_interval(text: str) -> float:
    """An argparse ``type``: a number in [0, 1] (a score)."""
    value = bounded(float, 0)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value
