"""The background prefetch that overlaps video decoding with inference."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from clients.media.prefetch import prefetched
from mmw.errors import InputError


def test_items_arrive_in_order_and_are_produced_ahead() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(6):
            produced.append(i)
            yield i

    it = prefetched(source(), depth=3)
    assert next(it) == 0
    deadline = time.monotonic() + 2
    while len(produced) < 4 and time.monotonic() < deadline:  # runs ahead while the consumer is busy
        time.sleep(0.01)
    assert len(produced) >= 4
    assert [0, *it] == list(range(6))


def test_an_error_while_producing_comes_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise InputError("video x.mp4: decoding stopped after t=0.50 s")

    got: list[int] = []
    with pytest.raises(InputError, match="decoding stopped"):
        for item in prefetched(source()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_producer() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    it = prefetched(endless(), depth=2)
    assert next(it) == 0
    it.close()
    deadline = time.monotonic() + 2
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before
