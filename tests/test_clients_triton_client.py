"""clients.transport (SceneClient) without a Triton server: fake tritonclient classes and a closed port."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clients.transport import SceneClient, normalize_url
from mmw.errors import ConfigError, InferenceError, InputError, ServerUnavailable


class _FakeResult:
    """Looks like an InferResult: captions say which request and image they answer."""

    def __init__(self, request: int, n: int) -> None:
        self._out = {
            "BOXES": np.tile(np.array([[[1, 2, 3, 4]]], np.float32), (n, 1, 1)),
            "SCORES": np.full((n, 1), 0.5, np.float32),
            "CLASS_IDS": np.full((n, 1), 17, np.int32),
            "CLASS_NAMES": np.full((n, 1), b"cat", dtype=object),
            "NUM_DETECTIONS": np.ones((n, 1), np.int32),
            "LABELS": np.full((n, 1), b"tabby", dtype=object),
            "LABEL_SCORES": np.full((n, 1), 0.7, np.float32),
            "CAPTION": np.array([[f"req{request}-img{i}".encode()] for i in range(n)], dtype=object),
            "CAPTION_SOURCE": np.full((n, 1), b"template", dtype=object),
        }

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self._out.get(name)


class _Backend:
    """Shared state of the fake clients: request order, concurrency and a failing request."""

    def __init__(self, fail_request: int | None = None) -> None:
        self.lock = threading.Lock()
        self.submitted = 0
        self.in_flight = 0
        self.max_seen = 0
        self.fail_request = fail_request

    def run(self, n: int) -> _FakeResult:
        with self.lock:
            request = self.submitted
            self.submitted += 1
            self.in_flight += 1
            self.max_seen = max(self.max_seen, self.in_flight)
        time.sleep(random.uniform(0.0, 0.02))  # finish out of order
        with self.lock:
            self.in_flight -= 1
        if request == self.fail_request:
            raise InferenceServerException("model exploded", status="StatusCode.INTERNAL")
        return _FakeResult(request, n)


def _batch_size(inputs: list[Any]) -> int:
    return int(inputs[0].shape()[0])


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> _Backend:
    state = _Backend()

    class FakeGrpc:
        def __init__(self, url: str, **kwargs: Any) -> None:
            self.closed = False

        def async_infer(self, model_name: str, inputs: list[Any], callback: Any, **kwargs: Any) -> None:
            n = _batch_size(inputs)

            def work() -> None:
                try:
                    callback(result=state.run(n), error=None)
                except InferenceServerException as exc:
                    callback(result=None, error=exc)

            threading.Thread(target=work, daemon=True).start()

        def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> _FakeResult:
            return state.run(_batch_size(inputs))

        def close(self) -> None:
            self.closed = True

    class FakeHttp(FakeGrpc):
        def async_infer(self, *args: Any, **kwargs: Any) -> None:  # the client must not use it
            raise AssertionError("HTTP requests go through worker threads")

    monkeypatch.setattr(grpcclient, "InferenceServerClient", FakeGrpc)
    monkeypatch.setattr(httpclient, "InferenceServerClient", FakeHttp)
    return state


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_infer_many_keeps_order_and_in_flight_limit(backend: _Backend, protocol: str, max_in_flight: int) -> None:
    sizes = [2, 1, 3, 2, 1, 4, 1, 2, 3, 1, 2, 2]
    batches = [[b"jpeg"] * n for n in sizes]
    with SceneClient("127.0.0.1:1", protocol, max_in_flight=max_in_flight) as client:  # type: ignore[arg-type]
        out = list(client.infer_many(batches))
    assert [len(r) for r in out] == sizes
    assert [[x.caption for x in r] for r in out] == [[f"req{k}-img{i}" for i in range(n)] for k, n in enumerate(sizes)]
    assert backend.max_seen <= max_in_flight
    assert out[0][0].detections[0].class_name == "cat"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_many_drains_sent_requests_when_the_source_fails(backend: _Backend, protocol: str) -> None:
    def batches() -> Iterator[list[bytes]]:
        yield [b"a"]
        yield [b"b", b"c"]
        raise InputError("video broke at t=1.0 s")

    got: list[int] = []
    with SceneClient("127.0.0.1:1", protocol, max_in_flight=4) as client:  # type: ignore[arg-type]
        with pytest.raises(InputError, match="video broke"):
            for results in client.infer_many(batches()):
                got.append(len(results))
    assert got == [1, 2]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_error_is_raised_in_turn(backend: _Backend, protocol: str) -> None:
    backend.fail_request = 2
    got = []
    with SceneClient("127.0.0.1:1", protocol, max_in_flight=2) as client:  # type: ignore[arg-type]
        with pytest.raises(InferenceError, match="answered an error for model 'scene_understanding': model exploded"):
            for results in client.infer_many([[b"x"]] * 5):
                got.append(results[0].caption)
    assert got == ["req0-img0", "req1-img0"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_one_request(backend: _Backend, protocol: str) -> None:
    with SceneClient("127.0.0.1:1", protocol) as client:  # type: ignore[arg-type]
        results = client.infer([b"a", b"b"])
    assert [r.caption for r in results] == ["req0-img0", "req0-img1"]


@pytest.mark.parametrize("bad", [[], [b""], [b"ok", "text"], b"raw bytes"])
def test_infer_rejects_bad_images(backend: _Backend, bad: Any) -> None:
    with SceneClient("127.0.0.1:1") as client, pytest.raises(InputError):
        client.infer(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unreachable_server(protocol: str) -> None:
    url = f"127.0.0.1:{_closed_port()}"
    with SceneClient(url, protocol, timeout_s=5) as client:  # type: ignore[arg-type]
        assert client.server_ready() is False
        assert client.model_ready() is False
        for call in (client.check_ready, lambda: client.infer([b"x"]), lambda: list(client.infer_many([[b"x"]]))):
            with pytest.raises(InferenceError, match=rf"server at {url} \({protocol}\) is not reachable.*launcher run"):
                call()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unreachable_server_is_retried_for_retry_s_then_given_up(protocol: str) -> None:
    url = f"127.0.0.1:{_closed_port()}"
    with SceneClient(url, protocol, timeout_s=5, retry_s=1.0) as client:  # type: ignore[arg-type]
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"not reachable.*launcher run.*gave up after retrying for 1 s"):
            list(client.infer_many([[b"x"]]))
        assert 1.0 <= time.monotonic() - t0 < 8.0
        assert client.retries >= 2


class _Flaky:
    """Fake tritonclient clients whose first ``failures`` requests fail with ``error``; later ones answer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: BaseException, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0
        self.ready = True  # what is_server_ready answers
        flaky = self

        class Fake:
            def __init__(self, url: str, **kwargs: Any) -> None:
                pass

            def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> _FakeResult:
                flaky.calls += 1
                if flaky.calls <= flaky.failures:
                    raise flaky.error
                return _FakeResult(flaky.calls, _batch_size(inputs))

            def async_infer(self, model_name: str, inputs: list[Any], callback: Any, **kwargs: Any) -> None:
                try:
                    callback(result=self.infer(model_name, inputs), error=None)
                except BaseException as exc:
                    callback(result=None, error=exc)

            def is_server_ready(self, **kwargs: Any) -> bool:
                return flaky.ready

            def get_model_repository_index(self, **kwargs: Any) -> list[dict[str, str]]:
                return [{"name": "scene_understanding", "state": "READY"}, {"name": "caption", "state": "READY"}]

            def close(self) -> None:
                pass

        monkeypatch.setattr(grpcclient, "InferenceServerClient", Fake)
        monkeypatch.setattr(httpclient, "InferenceServerClient", Fake)


#: Text the server's answer may hold that says nothing about whether to retry: the old client matched it.
_MISLEADING = "Request for unknown model: 'server is stopping: connection refused, is not ready' is not found"


@pytest.mark.parametrize(
    ("protocol", "status", "message", "retried"),
    [
        ("grpc", "StatusCode.UNAVAILABLE", "failed to connect to all addresses", True),
        ("grpc", "StatusCode.UNAVAILABLE", "Stream removed", True),
        ("grpc", "StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", True),
        ("http", "503", "Request for unknown model: 'scene_understanding' has no available versions", True),
        ("http", "502", "Bad Gateway", True),
        ("grpc", "StatusCode.NOT_FOUND", _MISLEADING, False),
        ("http", "404", _MISLEADING, False),
        ("grpc", "StatusCode.INVALID_ARGUMENT", "unexpected inference input 'PIXELS' (connection reset)", False),
        ("http", "400", "unexpected inference input 'PIXELS' for model 'scene_understanding'", False),
        ("grpc", "StatusCode.INTERNAL", "socket closed", False),
        ("http", "500", "Failed to connect", False),
    ],
)
def test_retry_follows_the_status_not_the_text(monkeypatch: pytest.MonkeyPatch, protocol: str, status: str,
                                               message: str, retried: bool) -> None:
    flaky = _Flaky(monkeypatch, InferenceServerException(message, status=status), failures=2)
    with SceneClient("127.0.0.1:1", protocol, retry_s=30) as client:  # type: ignore[arg-type]
        t0 = time.monotonic()
        if retried:
            (results,) = client.infer_many([[b"x"]])
            assert client.retries == 2 and results[0].caption == "req3-img0"
        else:
            with pytest.raises(InferenceError) as caught:
                list(client.infer_many([[b"x"]]))
            assert not isinstance(caught.value, ServerUnavailable)
            assert client.retries == 0 and flaky.calls == 1
            text = str(caught.value)
            assert "\n" not in text and "answered an error for model 'scene_understanding'" in text
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    ("error", "retried"),
    [(ConnectionRefusedError(111, "Connection refused"), True), (ConnectionResetError(104, "Connection reset"), True),
     (TimeoutError(), True), (ValueError("bad"), False)],
)
def test_socket_errors_and_timeouts_are_retried(monkeypatch: pytest.MonkeyPatch, error: BaseException,
                                                retried: bool) -> None:
    _Flaky(monkeypatch, error, failures=1)
    with SceneClient("127.0.0.1:1", "http", retry_s=30) as client:
        if retried:
            assert len(next(iter(client.infer_many([[b"x"]])))) == 1 and client.retries == 1
        else:
            with pytest.raises(InferenceError, match=r"request to the Triton server .* failed: ValueError: bad"):
                list(client.infer_many([[b"x"]]))
            assert client.retries == 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unknown_model_from_a_server_that_is_not_ready_is_retried(monkeypatch: pytest.MonkeyPatch,
                                                                  protocol: str) -> None:
    """A stopping server unloads the ensemble before it closes its ports: NOT_FOUND while it says it is not ready."""
    status = "StatusCode.NOT_FOUND" if protocol == "grpc" else "404"
    flaky = _Flaky(monkeypatch, InferenceServerException("Request for unknown model: 'scene_understanding' has no "
                                                         "available versions", status=status), failures=2)
    flaky.ready = False
    with SceneClient("127.0.0.1:1", protocol, retry_s=30) as client:  # type: ignore[arg-type]
        assert len(next(iter(client.infer_many([[b"x"]])))) == 1
        assert client.retries == 2
    flaky = _Flaky(monkeypatch, flaky.error, failures=5)
    flaky.ready = False
    with SceneClient("127.0.0.1:1", protocol, retry_s=0.5) as client:  # type: ignore[arg-type]
        with pytest.raises(ServerUnavailable, match=r"is not reachable: .* \(it is not ready: stopping, or starting\)"
                                                    r".*launcher run.*gave up after retrying for 0.5 s"):
            list(client.infer_many([[b"x"]]))


def test_unknown_model_lists_the_models_served(monkeypatch: pytest.MonkeyPatch) -> None:
    _Flaky(monkeypatch, InferenceServerException(_MISLEADING, status="StatusCode.NOT_FOUND"), failures=1)
    with SceneClient("127.0.0.1:1", model_name="scene_understandin", retry_s=30) as client:
        with pytest.raises(InferenceError, match=r"for model 'scene_understandin': .* is not found "
                                                 r"\(models served: caption, scene_understanding\)$"):
            client.infer([b"x"])


def test_retry_s_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="retry_s: expected >= 0 seconds, got -1"):
        SceneClient("127.0.0.1:1", retry_s=-1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:8001", "127.0.0.1:8001"),
        ("http://localhost:8000/", "localhost:8000"),
        ("grpc://host:1", "host:1"),
        (" h:2 ", "h:2"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    "kwargs",
    [{"protocol": "ftp"}, {"max_in_flight": 0}, {"timeout_s": 0}, {"url": "http://h:1/v2/models"}, {"url": ""}],
)
def test_bad_settings(kwargs: dict[str, Any]) -> None:
    args = {"url": "127.0.0.1:8001"} | kwargs
    with pytest.raises(ConfigError):
        SceneClient(**args)


_CAPTION_PARAMS = {"caption_source": {"string_value": "tiny-blip"}, "num_beams": {"string_value": "1"},
                   "dense_top_k": {"string_value": "3"}, "threads": {"string_value": "2"}}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"name": "scene_understanding", "platform": "ensemble", "max_batch_size": 8,
                      "ensemble_scheduling": {"step": [
                          {"model_name": "preprocess", "output_map": {"ERROR": "ERROR"}},
                          {"model_name": "caption", "output_map": {"CAPTION_SOURCE": "CAPTION_SOURCE"}}]},
                      "parameters": _CAPTION_PARAMS}, id="http"),
        pytest.param({"config": {"name": "scene_understanding", "platform": "ensemble", "max_batch_size": 8,
                                 "ensemble_scheduling": {"step": [
                                     {"model_name": "preprocess", "output_map": {"ERROR": "ERROR"}},
                                     {"model_name": "caption", "output_map": {"CAPTION_SOURCE": "CAPTION_SOURCE"}}]},
                                 "parameters": _CAPTION_PARAMS}}, id="grpc"),
        pytest.param({"config": {"name": "scene_understanding", "platform": "ensemble", "maxBatchSize": 8,
                                 "ensembleScheduling": {"step": [
                                     {"modelName": "preprocess", "outputMap": {"ERROR": "ERROR"}},
                                     {"modelName": "caption", "outputMap": {"CAPTION_SOURCE": "CAPTION_SOURCE"}}]},
                                 "parameters": {k: {"stringValue": v["string_value"]}
                                                for k, v in _CAPTION_PARAMS.items()}}}, id="grpc camelCase"),
    ],
)
def test_model_config_reads_every_protocol_spelling(answer: dict[str, Any]) -> None:
    from clients.transport import CaptionerInfo, ModelConfig

    config = ModelConfig.from_json(answer)
    assert (config.name, config.platform, config.max_batch_size) == ("scene_understanding", "ensemble", 8)
    assert [s.model for s in config.steps] == ["preprocess", "caption"]
    step = config.step_writing("CAPTION_SOURCE")
    assert step is not None and step.model == "caption"
    captioner = CaptionerInfo.from_config(config, ready=True)
    assert captioner.source == "tiny-blip" and captioner.neural
    assert captioner.settings == (("num_beams", "1"), ("dense_top_k", "3"))  # in CAPTIONER_SETTINGS order
