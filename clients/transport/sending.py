"""``RequestSender``: requests in flight, answered in order, resent while the server cannot be reached.

The base of ``SceneClient`` (``clients.transport.client``). ``_many`` cuts each batch into parts (one
request each), keeps up to ``max_in_flight`` requests in flight and yields every batch's results in its
order. A part of encoded images goes as IMAGE to ``model_name``; a part of frames goes as the client's
``frame_transport()`` says: encoded (jpeg), as FRAME inside the request (raw), or as FRAME in a
shared-memory region of ``_pool`` (shm; one slot per request in flight, written again only once the server
has answered the request before). gRPC uses the client's ``async_infer`` with callbacks; HTTP uses worker
threads with one connection each (``clients.transport.http_workers``). A request that fails because the
server is unreachable is resent with exponential backoff for up to ``retry_s`` seconds (its region
registered again: a restarted server has forgotten it); any other failure is raised in its turn.

With several endpoints (``clients.transport.endpoints``) each request goes to the healthy one with the
fewest in flight; one that fails because its server is unreachable marks that endpoint down and is resent
at once on another healthy endpoint (up to once per endpoint before the backoff above starts). Results
are still yielded in the batches' order, each request's once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clients.results import ImageResult
from clients.transport.connection import CONTROL_TIMEOUT_S, ServerConnection
from clients.transport.decoding import parse_outputs
from clients.transport.endpoints import Endpoint, Endpoints, parse_endpoints, ready_first
from clients.transport.frames import Part, Payload, frame_request, image_request, shm_frame_request
from clients.transport.http_workers import HttpWorkers
from clients.transport.shared_memory import RegionPool, ShmRegion, translate_region_error
from mmw.contract import CLIENT_OPTIONAL_OUTPUTS, CLIENT_REQUIRED_OUTPUTS, RAW_ENSEMBLE_NAME
from mmw.errors import ConfigError, InferenceError, ServerUnavailable
from mmw.processing.images import encode_jpeg

#: Extra seconds a waiting caller allows beyond the request timeout before giving up on a future.
GRACE_S = 10.0
# Backoff between retries of an unreachable server: first wait, growth factor, longest wait.
_RETRY_FIRST_S = 0.25
_RETRY_FACTOR = 2.0
_RETRY_MAX_S = 4.0
#: When a run stops early (Ctrl-C, an error), how long the requests still in flight may take to be answered
#: before they are cancelled: tritonserver 2.51 can crash on a cancelled gRPC request (server#7368, fixed in
#: 24.12 by server#7840), so the client lets them finish instead of cancelling them.
DRAIN_S = 5.0


@dataclass
class _Batch:
    """Results of one batch, filled in as its requests answer."""

    results: list[ImageResult | None]
    parts_left: int


@dataclass
class _Sent:
    """One request in flight: its part of a batch, the shared-memory slot it holds (shm only) and its future."""

    part: Part
    batch: _Batch
    future: Future[Any] = field(default_factory=Future)
    slot: int | None = None
    region: ShmRegion | None = None
    endpoint: Endpoint | None = None


class RequestSender(ServerConnection):
    """Requests in flight to the ensembles (see the module doc); ``SceneClient`` says what they carry."""

    def __init__(self, url: str | Sequence[str], protocol: Literal["grpc", "http"], model_name: str, timeout_s: float,
                 model_version: str, max_in_flight: int, retry_s: float, jpeg_quality: int = 90,
                 raw_model_name: str = RAW_ENSEMBLE_NAME) -> None:
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight: expected >= 1, got {max_in_flight}")
        if not retry_s >= 0:
            raise ConfigError(f"retry_s: expected >= 0 seconds, got {retry_s}")
        if not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: expected 1..100, got {jpeg_quality}")
        urls = parse_endpoints(url)
        if len(urls) > 1:
            probe_s = min(timeout_s, CONTROL_TIMEOUT_S)
            urls = ready_first(urls, lambda u: ServerConnection(u, protocol, model_name, probe_s, model_version))
        super().__init__(urls[0], protocol, model_name, timeout_s, model_version)
        self.urls = urls  # every endpoint, HOST:PORT (url is the first: metadata and health of one server)
        self.max_in_flight = int(max_in_flight)
        self.retry_s = float(retry_s)
        self.jpeg_quality = int(jpeg_quality)
        self.raw_model_name = raw_model_name
        self.retries = 0  # requests resent because the server was unreachable (for tests and benchmarks)
        self.failovers = 0  # of those, resent at once on another endpoint
        self.latencies_s: list[float] = []  # per request, submit to response (for benchmarks)
        self._output_names: tuple[str, ...] | None = None
        self._endpoints = Endpoints(self, urls, self._connect_to, self._health_models)

    def _connect_to(self, url: str, timeout_s: float | None = None) -> ServerConnection:
        """A connection to ``url`` like this one's (health checks pass ``CONTROL_TIMEOUT_S``)."""
        return ServerConnection(url, self.protocol, self.model_name, timeout_s or self.timeout_s, self.model_version)

    def _health_models(self) -> tuple[str, ...]:
        """The models an endpoint must have ready to take requests."""
        return (self.model_name,)

    @property
    def _pool(self) -> RegionPool | None:
        """The first endpoint's regions (frames through shared memory; set by SceneClient)."""
        return self._endpoints.first.pool

    @_pool.setter
    def _pool(self, pool: RegionPool | None) -> None:
        self._endpoints.first.pool = pool

    def requests_per_endpoint(self) -> dict[str, int]:
        """Requests sent to each endpoint (HOST:PORT), resends included."""
        return self._endpoints.counts()

    def frame_transport(self) -> str:
        """How frames travel: ``jpeg``, ``raw`` or ``shm`` (``SceneClient`` resolves its ``transport``)."""
        return "jpeg"

    def close(self) -> None:
        """Remove the shared-memory regions, stop the HTTP workers and close the connection (idempotent)."""
        try:
            self._endpoints.close()
        finally:
            super().close()

    def output_names(self) -> tuple[str, ...]:
        """The outputs to request: ``CLIENT_REQUIRED_OUTPUTS``, plus those of ``CLIENT_OPTIONAL_OUTPUTS`` the
        ensemble has (``ERROR``, caption tokens and dense captions; older ensembles lack them).

        Read once from the ensemble's metadata; while the metadata cannot be read, none of them is asked for.
        """
        if self._output_names is None:
            try:
                names = set(self.model_metadata().outputs)
            except InferenceError:
                return CLIENT_REQUIRED_OUTPUTS
            self._output_names = CLIENT_REQUIRED_OUTPUTS + tuple(n for n in CLIENT_OPTIONAL_OUTPUTS if n in names)
        return self._output_names

    def _many(self, batches: Iterable[Sequence[Payload]], parameters: dict[str, int] | None,
              split: Callable[[Sequence[Payload]], list[Part]]) -> Iterator[list[ImageResult]]:
        """Results of each batch, in order; ``split`` cuts a batch into its requests (see the module doc)."""
        pending: deque[_Sent] = deque()
        queued: deque[tuple[Part, _Batch]] = deque()  # parts of a batch not sent yet (no room in flight)
        source = iter(batches)
        source_error: BaseException | None = None
        exhausted = False
        try:
            while True:
                while len(pending) < self.max_in_flight and (queued or not exhausted):
                    if not queued:
                        try:
                            batch = next(source)
                            parts = split(batch)
                        except StopIteration:
                            exhausted = True
                            break
                        except Exception as exc:
                            source_error, exhausted = exc, True
                            break
                        into = _Batch([None] * len(batch), len(parts))
                        queued.extend((part, into) for part in parts)
                    part, into = queued.popleft()
                    pending.append(self._send(_Sent(part, into), parameters))
                if not pending:
                    break
                sent = pending.popleft()
                raw = self._wait_retrying(sent, parameters)
                for position, result in zip(sent.part.positions, self._parse(raw, len(sent.part.items)), strict=True):
                    sent.batch.results[position] = result
                sent.batch.parts_left -= 1
                if sent.batch.parts_left == 0:
                    yield [r for r in sent.batch.results if r is not None]
        finally:
            _drain(pending)  # the caller stopped early or a request failed
        if source_error is not None:
            raise source_error

    def _wait_retrying(self, sent: _Sent, parameters: dict[str, int] | None = None) -> Any:
        """The raw result of ``sent``; while the server is unreachable, resend it with backoff.

        Gives up with ServerUnavailable after ``retry_s`` seconds of failures (at once when it is 0).
        """
        deadline: float | None = None
        delay = _RETRY_FIRST_S
        switches = 0  # resent at once on another endpoint since the last backoff
        while True:
            try:
                return self._wait(sent)
            except ServerUnavailable as exc:
                failed = sent.endpoint or self._endpoints.first
                self._endpoints.failed(failed)
                other = self._endpoints.pick(exclude=failed) if switches < len(self._endpoints) else None
                if other is not None:
                    switches += 1
                    self.retries += 1
                    self.failovers += 1
                    self._resend(sent, parameters, other)
                    continue
                if self.retry_s <= 0:
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_s
                if now >= deadline:
                    raise ServerUnavailable(f"{exc} (gave up after retrying for {self.retry_s:g} s)") from None
                time.sleep(min(delay, deadline - now))
                delay = min(delay * _RETRY_FACTOR, _RETRY_MAX_S)
                switches = 0
                failed.connection._reconnect()
                self.retries += 1
                if len(self._endpoints) == 1:
                    sent.future = Future()
                    try:
                        if sent.slot is not None and failed.pool is not None:
                            failed.pool.reregister(sent.slot)  # a restarted server has forgotten the region
                    except ServerUnavailable as down:
                        sent.future.set_exception(down)
                        continue
                    self._send(sent, parameters, failed)
                else:
                    self._endpoints.check_now()
                    self._resend(sent, parameters, self._endpoints.pick() or failed)

    def _resend(self, sent: _Sent, parameters: dict[str, int] | None, endpoint: Endpoint) -> None:
        """Send ``sent`` again, on ``endpoint`` (its old slot was released when its request failed)."""
        sent.future = Future()
        if endpoint is not sent.endpoint:
            sent.slot, sent.region = None, None  # regions are per server: take one of the new endpoint's
        elif endpoint.pool is not None and sent.slot is not None:
            endpoint.revived = True  # the same server, maybe restarted: register its regions again
        self._send(sent, parameters, endpoint)

    def _send(self, sent: _Sent, parameters: dict[str, int] | None, endpoint: Endpoint | None = None) -> _Sent:
        """Start ``sent``'s request on ``endpoint`` (default: ``Endpoints.pick``'s): IMAGE for encoded images,
        FRAME (in the request or a region) for frames."""
        endpoint = sent.endpoint = endpoint or self._endpoints.pick() or self._endpoints.first
        try:
            self._start(sent, parameters, endpoint)
        except ServerUnavailable as down:  # registering its region found the server gone: failed like a request
            if not sent.future.done():
                sent.future.set_exception(down)
        return sent

    def _start(self, sent: _Sent, parameters: dict[str, int] | None, endpoint: Endpoint) -> None:
        if endpoint.revived:
            self._revive(endpoint)
        part, names = sent.part, self.output_names()
        if not part.raw:
            self._submit(sent, self.model_name, lambda m: image_request(m, part.items, names), parameters)  # type: ignore[arg-type]
        elif self.frame_transport() == "jpeg":
            encoded = Part(tuple(encode_jpeg(f, self.jpeg_quality) for f in part.items), part.positions)  # type: ignore[arg-type]
            self._submit(sent, self.model_name, lambda m: image_request(m, encoded.items, names), parameters)  # type: ignore[arg-type]
        elif self._pool is None:
            self._submit(sent, self.raw_model_name, lambda m: frame_request(m, part.items, names), parameters)  # type: ignore[arg-type]
        else:
            if endpoint.pool is None:  # regions are per server: this endpoint's own, registered there
                endpoint.pool = RegionPool(self.max_in_flight, endpoint.connection, self._pool.wait_s)
            pool = endpoint.pool
            if sent.slot is None:
                sent.slot, endpoint.next_slot = endpoint.next_slot, (endpoint.next_slot + 1) % self.max_in_flight
            slot = sent.slot
            sent.region = region = pool.acquire(slot, part.nbytes)
            try:
                size = region.write(part.items)  # type: ignore[arg-type]
            except BaseException:
                pool.release(slot)
                raise
            self._submit(sent, self.raw_model_name,
                         lambda m: shm_frame_request(m, region.name, part.shape, size, names), parameters,
                         lambda: pool.release(slot))

    def _revive(self, endpoint: Endpoint) -> None:
        """``endpoint`` is back: a fresh connection, and its regions registered again (it may have restarted)."""
        endpoint.revived = False
        endpoint.connection._reconnect()
        if endpoint.pool is not None:
            for slot in range(self.max_in_flight):
                try:
                    endpoint.pool.reregister(slot)
                except InferenceError:  # down again: the request fails and is resent elsewhere
                    self._endpoints.failed(endpoint)
                    return

    def _submit(self, sent: _Sent, model: str, build: Callable[[Any], tuple[list[Any], list[Any]]],
                parameters: dict[str, int] | None, finished: Callable[[], None] | None = None) -> None:
        """Start one request; ``sent.future`` gets the raw InferResult or the exception. ``finished`` runs once
        the server is done with the request (before the future is set), or at once if it never started."""
        started = time.perf_counter()
        future = sent.future
        done_once = _Once(finished)
        endpoint = sent.endpoint or self._endpoints.first
        try:
            client = endpoint.connection._live_client()
            inputs, outputs = build(httpclient if self.protocol == "http" else grpcclient)
        except BaseException:
            done_once()
            raise
        endpoint.started()
        future.add_done_callback(lambda _: endpoint.finished())
        future.add_done_callback(lambda _: self.latencies_s.append(time.perf_counter() - started))
        try:
            if self.protocol == "http":
                if endpoint.workers is None:
                    endpoint.workers = HttpWorkers(endpoint.url, self.max_in_flight, self.timeout_s)

                def job(c: Any) -> Any:
                    try:
                        return c.infer(model, inputs, model_version=self.model_version, outputs=outputs,
                                       parameters=parameters)
                    finally:
                        done_once()

                endpoint.workers.submit(job, future)
                future.add_done_callback(lambda _: done_once())  # also when the job never ran (cancelled, no client)
            else:

                def done(result: Any, error: Any) -> None:
                    done_once()
                    try:
                        if error is not None:
                            future.set_exception(error)
                        else:
                            future.set_result(result)
                    except InvalidStateError:  # cancelled: nobody waits for it any more
                        pass

                client.async_infer(model, inputs, done, model_version=self.model_version, outputs=outputs,
                                   client_timeout=self.timeout_s, parameters=parameters)
        except Exception as exc:
            done_once()
            if not future.done():
                future.set_exception(exc)

    def _wait(self, sent: _Sent) -> Any:
        future = sent.future
        try:
            return future.result(timeout=self.timeout_s + GRACE_S)
        except Exception as exc:
            if isinstance(exc, FutureTimeout) and not future.done():  # our own wait ran out, not the request's
                exc = TimeoutError()
            if isinstance(exc, InferenceServerException) and sent.region is not None:
                region_error = translate_region_error(exc.message() or str(exc), [sent.region], sent.part.nbytes)
                if region_error is not None:
                    raise region_error from None
            raise self._translate(exc) from None

    def _parse(self, raw: Any, n: int, names: Sequence[str] | None = None) -> list[ImageResult]:
        names = self.output_names() if names is None else names
        results = parse_outputs({name: raw.as_numpy(name) for name in names})
        if len(results) != n:
            raise InferenceError(f"server response: expected {n} results (one per image), got {len(results)}")
        return results


class _Once:
    """Calls ``fn`` the first time it is called (from whichever thread), never again."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self._fn, self._lock = fn, threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _drain(pending: Iterable[_Sent], wait_s: float = DRAIN_S) -> None:
    """Let requests in flight be answered (their results are dropped) for up to ``wait_s``, then cancel the rest."""
    deadline = time.monotonic() + wait_s
    for sent in pending:
        try:
            sent.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:  # an error, a timeout, or a second Ctrl-C: nobody waits for this result any more
            sent.future.cancel()
