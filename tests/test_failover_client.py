"""A client that uses every endpoint: endpoint parsing, the least-in-flight choice, and failover between two
real tritonservers (one SIGKILLed mid-video, then brought back)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clients.cli import build_parser, make_client
from clients.media.sample_video import make_sample_video
from clients.media.video import sample_frames
from clients.results import ImageResult
from clients.transport import SceneClient
from clients.transport.endpoints import Endpoints, expand_name, parse_endpoints
from mmw.config import Config, build
from tests.conftest import serving

FPS = 3.0


# --- endpoints ---------------------------------------------------------------------------------------------


def _resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, type: int = 0) -> list[tuple[Any, ...]]:
        assert type == socket.SOCK_STREAM
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, type, 6, "", (a, port)) for a in addresses]
    return resolve


def test_urls_come_as_a_list_or_a_comma_separated_string_without_duplicates() -> None:
    assert parse_endpoints(["127.0.0.1:8001", "grpc://127.0.0.2:8001/"]) == ["127.0.0.1:8001", "127.0.0.2:8001"]
    assert parse_endpoints("127.0.0.1:8001, 127.0.0.2:8001,127.0.0.1:8001") == ["127.0.0.1:8001", "127.0.0.2:8001"]
    assert parse_endpoints("localhost:8001") == ["localhost:8001"]
    with pytest.raises(Exception, match="HOST:PORT"):
        parse_endpoints([])


def test_a_dns_name_with_several_addresses_becomes_one_endpoint_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    headless = _resolver("10.0.0.5", "10.0.0.6", "10.0.0.5", "fd00::7")
    assert expand_name("triton-headless.ns.svc:8001", headless) == ["10.0.0.5:8001", "10.0.0.6:8001"]
    assert expand_name("one.example:8001", _resolver("10.0.0.9")) == ["one.example:8001"]
    assert expand_name("v6only.example:8001", _resolver("fd00::1", "fd00::2")) == ["[fd00::1]:8001", "[fd00::2]:8001"]
    assert expand_name("10.1.2.3:8001", headless) == ["10.1.2.3:8001"]  # an address is never resolved

    def unknown(*_: Any, **__: Any) -> Any:
        raise socket.gaierror("Name or service not known")

    assert expand_name("nowhere.invalid:8001", unknown) == ["nowhere.invalid:8001"]  # its health check says so
    monkeypatch.setattr(socket, "getaddrinfo", headless)
    assert parse_endpoints(["triton-headless:8001", "10.0.0.6:8001"], socket.getaddrinfo) == \
        ["10.0.0.5:8001", "10.0.0.6:8001"]


def test_repeated_url_and_client_urls_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    class Fake:
        def __init__(self, url: Any, **kwargs: Any) -> None:
            seen.append(url)

    monkeypatch.setattr("clients.cli.SceneClient", Fake)
    parser = build_parser()
    args = parser.parse_args(["video", "clip.mp4", "--url", "127.0.0.1:9001", "--url", "127.0.0.1:9002"])
    make_client(args, build(Config, {}))
    make_client(parser.parse_args(["video", "clip.mp4"]),
                build(Config, {"client": {"urls": ["127.0.0.3:8001", "127.0.0.4:8001"]}}))
    make_client(parser.parse_args(["video", "clip.mp4"]), build(Config, {}))
    assert seen == [["127.0.0.1:9001", "127.0.0.1:9002"], ["127.0.0.3:8001", "127.0.0.4:8001"], "127.0.0.1:8001"]


class _FakeConnection:
    def __init__(self, url: str, timeout_s: float | None = None) -> None:
        self.url, self.ready = url, True

    def server_ready(self) -> bool:
        return self.ready

    def model_ready(self, model: str | None = None) -> bool:
        return self.ready

    def close(self) -> None:
        pass


def test_least_in_flight_among_the_healthy_then_fewest_sent() -> None:
    urls = ["a:1", "b:1", "c:1"]
    endpoints = Endpoints(_FakeConnection("a:1"), urls, _FakeConnection, lambda: ("m",))  # type: ignore[arg-type]
    try:
        a, b, c = endpoints.all
        assert endpoints.pick() is a
        a.started()
        assert endpoints.pick() is b
        b.started()
        c.started()
        c.started()
        a.finished()  # a: 0 in flight, 1 sent; b: 1; c: 2
        assert endpoints.pick() is a
        b.finished()  # a and b: 0 in flight, 1 sent each: the first
        assert endpoints.pick() is a
        assert endpoints.pick(exclude=a) is b
        endpoints.failed(a)
        assert not a.healthy and a.failures == 1
        assert endpoints.pick() is b
        endpoints.failed(b)
        endpoints.failed(c)
        assert endpoints.pick() is None
        endpoints.check_now()  # every fake answers ready: all back, to have their regions registered again
        assert all(e.healthy and e.revived for e in endpoints.all)
        assert endpoints.counts() == {"a:1": 1, "b:1": 1, "c:1": 2}
    finally:
        endpoints.close()


# --- two real servers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    path = make_sample_video(tmp_path_factory.mktemp("failover") / "sample.mp4", seconds=8)
    return [f.rgb for f in sample_frames(path, FPS)]


def _batches(frames: list[np.ndarray], size: int = 2) -> list[list[np.ndarray]]:
    return [frames[i:i + size] for i in range(0, len(frames), size)]


def _same(a: ImageResult, b: ImageResult) -> bool:
    """The same boxes (to 1e-3), labels and captions."""
    if (a.caption, [d.class_name for d in a.detections], [x.name for x in a.labels]) != \
            (b.caption, [d.class_name for d in b.detections], [x.name for x in b.labels]):
        return False
    boxes_a = np.array([d.box for d in a.detections], dtype=float).reshape(-1, 4)
    boxes_b = np.array([d.box for d in b.detections], dtype=float).reshape(-1, 4)
    return bool(np.allclose(boxes_a, boxes_b, atol=1e-3))


def _kill_group(config: Config) -> None:
    """SIGKILL the server of ``config`` and every process of its group (its python-backend stubs)."""
    from launcher import local_server
    from launcher.records import ServerRecord, read_record
    from launcher.state_dir import server_paths

    record = read_record(server_paths(config).pid_file, ServerRecord)
    assert record is not None
    os.killpg(record.pgid, signal.SIGKILL)
    child = local_server._CHILDREN.pop(record.pid, None)
    if child is not None:
        child.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _group_alive(record.pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(record.pgid), "processes of the killed server's group are still alive"


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                    return True
    return False


def _url(config: Config, protocol: str) -> str:
    return f"127.0.0.1:{config.server.grpc_port if protocol == 'grpc' else config.server.http_port}"


@contextlib.contextmanager
def _two_servers(tmp_path: Path) -> Iterator[tuple[Config, contextlib.ExitStack, Config]]:
    with contextlib.ExitStack() as keep, contextlib.ExitStack() as killable:
        a = keep.enter_context(serving(tmp_path / "a"))
        b = killable.enter_context(serving(tmp_path / "b"))  # the same model_repository, read by both
        yield a, killable, b


@pytest.mark.serving
@pytest.mark.parametrize(("protocol", "transport"), [("grpc", "shm"), ("grpc", "jpeg"), ("http", "raw")])
def test_sigkill_of_one_of_two_servers_mid_video_loses_and_repeats_no_frame(
        engines: dict[str, Path], video_frames: list[np.ndarray], tmp_path: Path, protocol: str,
        transport: str) -> None:
    batches = _batches(video_frames)
    assert len(batches) >= 10
    with _two_servers(tmp_path) as (a, killable, b):
        with SceneClient(_url(a, protocol), protocol, transport=transport,  # type: ignore[arg-type]
                         max_in_flight=4) as single:
            expected = [r for batch in single.infer_frames_many(batches) for r in batch]
        assert len(expected) == len(video_frames)

        urls = [_url(a, protocol), _url(b, protocol)]
        with SceneClient(urls, protocol, transport=transport, max_in_flight=4,  # type: ignore[arg-type]
                         retry_s=60) as client:
            assert client.frame_transport() == transport
            got: list[list[ImageResult]] = []
            for i, batch in enumerate(client.infer_frames_many(batches)):
                got.append(batch)
                if i == 3:  # mid-video: requests are in flight on both
                    assert client.requests_per_endpoint()[urls[1]] > 0
                    _kill_group(b)
            results = [r for batch in got for r in batch]
            assert [len(x) for x in got] == [len(x) for x in batches]
            assert len(results) == len(expected)
            assert all(_same(x, y) for x, y in zip(results, expected, strict=True))
            assert client.failovers > 0
            killable.close()  # stop_server of the dead server: its record and leftovers go

            restarted = {k: getattr(b.server, k) for k in ("http_port", "grpc_port", "metrics_port")}
            with serving(tmp_path / "b", **restarted):  # the same ports: the client's endpoint comes back
                deadline = time.monotonic() + 30
                while not client._endpoints.all[1].healthy and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert client._endpoints.all[1].healthy, "the restarted server was never seen healthy"
                before = client.requests_per_endpoint()[urls[1]]
                again = [r for batch in client.infer_frames_many(batches) for r in batch]
                assert all(_same(x, y) for x, y in zip(again, expected, strict=True))
                assert client.requests_per_endpoint()[urls[1]] > before, "the restarted server took no request"
