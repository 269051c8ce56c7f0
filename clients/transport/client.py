"""``SceneClient``: send encoded images to the ``scene_understanding`` ensemble over gRPC or HTTP.

``infer`` sends one request; ``infer_many`` keeps up to ``max_in_flight`` requests in flight and
yields their results in the order the batches came. gRPC uses the client's ``async_infer`` with
callbacks; HTTP uses worker threads with one connection each (``clients.transport.http_workers``).
Failures become ``InferenceError`` (``clients.transport.errors``); an unreachable or unavailable server
is ``ServerUnavailable``, which ``infer_many`` retries with exponential backoff for up to ``retry_s``
seconds (resending the failed batches in order), so a restarted server loses no frame. Errors the
server answers (an unknown model, a bad input) fail at once and are never retried.

``CaptionOptions`` (``num_beams``, ``max_new_tokens``, ``dense_top_k``) go with every request as Triton
request parameters and override the served captioner's defaults for that request (a template captioner
ignores them); set them per client (``SceneClient(..., caption=...)``) or per call (``infer(..., caption=...)``).
Health checks and the server's typed facts come from ``ServerConnection`` (``clients.transport.connection``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from clients.results import ImageResult
from clients.transport.connection import ServerConnection
from clients.transport.decoding import parse_outputs
from clients.transport.http_workers import HttpWorkers
from clients.transport.options import CaptionOptions, check_caption
from mmw.contract import CLIENT_OPTIONAL_OUTPUTS, CLIENT_REQUIRED_OUTPUTS, ENSEMBLE_NAME, IMAGE
from mmw.errors import ConfigError, InferenceError, InputError, ServerUnavailable

# Extra seconds a waiting caller allows beyond the request timeout before giving up on a future.
_GRACE_S = 10.0
# Backoff between retries of an unreachable server: first wait, growth factor, longest wait.
_RETRY_FIRST_S = 0.25
_RETRY_FACTOR = 2.0
_RETRY_MAX_S = 4.0


class SceneClient(ServerConnection):
    """Client of the ``scene_understanding`` ensemble; use as a context manager or call ``close``.

    Not meant to be shared between threads.
    """

    def __init__(
        self,
        url: str,
        protocol: Literal["grpc", "http"] = "grpc",
        model_name: str = ENSEMBLE_NAME,
        timeout_s: float = 60.0,
        max_in_flight: int = 2,
        model_version: str = "",
        retry_s: float = 0.0,
        caption: CaptionOptions | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight: expected >= 1, got {max_in_flight}")
        if not retry_s >= 0:
            raise ConfigError(f"retry_s: expected >= 0 seconds, got {retry_s}")
        caption = check_caption(caption)
        super().__init__(url, protocol, model_name, timeout_s, model_version)
        self.max_in_flight = int(max_in_flight)
        self.retry_s = float(retry_s)
        self.caption = caption or CaptionOptions()
        self.retries = 0  # requests resent because the server was unreachable (for tests and benchmarks)
        self._workers: HttpWorkers | None = None
        self._max_batch_size: int | None = None
        self._output_names: tuple[str, ...] | None = None
        self.latencies_s: list[float] = []  # per request, submit to response (for benchmarks)

    def close(self) -> None:
        """Stop the HTTP workers and close the connection (idempotent)."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        super().close()

    def __enter__(self) -> SceneClient:
        return self

    def max_batch_size(self) -> int:
        """The ensemble's ``max_batch_size`` (0 means no batching), read once from its config."""
        if self._max_batch_size is None:
            self._max_batch_size = self.model_config().max_batch_size
        return self._max_batch_size

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

    # --- inference ---------------------------------------------------------------------------------------

    def _parameters(self, caption: CaptionOptions | None) -> dict[str, int] | None:
        """Request parameters of one request: the client's caption options with ``caption`` on top."""
        return self.caption.merged(check_caption(caption)).parameters() or None

    def infer(self, images: Sequence[bytes], caption: CaptionOptions | None = None) -> list[ImageResult]:
        """Send one request with a batch of encoded images (JPEG/PNG bytes); one result per image.

        ``caption`` overrides the client's caption options for this request.
        """
        module = grpcclient if self.protocol == "grpc" else httpclient
        names = self.output_names()
        inputs, outputs = _request(module, images, names)
        kwargs: dict[str, Any] = {"model_version": self.model_version, "outputs": outputs,
                                  "parameters": self._parameters(caption)}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        raw = self._call(lambda c: c.infer(self.model_name, inputs, **kwargs))
        return self._parse(raw, len(images), names)

    def infer_many(self, batches: Iterable[Sequence[bytes]],
                   caption: CaptionOptions | None = None) -> Iterator[list[ImageResult]]:
        """Send each batch as one request, up to ``max_in_flight`` at a time; yield results in batch order.

        ``caption`` overrides the client's caption options for these requests.

        If ``batches`` raises (say a video stops decoding), the requests already sent are still
        yielded before the error is raised again. A failed request raises InferenceError in its turn;
        one that failed because the server is unreachable is resent (see ``_wait_retrying``).
        """
        parameters = self._parameters(caption)
        pending: deque[tuple[Future[Any], Sequence[bytes]]] = deque()
        source = iter(batches)
        source_error: BaseException | None = None
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.max_in_flight:
                    try:
                        batch = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    except Exception as exc:
                        source_error, exhausted = exc, True
                        break
                    pending.append((self._submit(batch, parameters), batch))
                if not pending:
                    break
                future, batch = pending.popleft()
                raw = self._wait_retrying(future, batch, parameters)
                yield self._parse(raw, len(batch), self.output_names())
        finally:
            for future, _ in pending:  # the caller stopped early or a request failed
                future.cancel()
        if source_error is not None:
            raise source_error

    def _wait_retrying(self, future: Future[Any], batch: Sequence[bytes],
                       parameters: dict[str, int] | None = None) -> Any:
        """The raw result of ``future``; while the server is unreachable, resend ``batch`` with backoff.

        Gives up with ServerUnavailable after ``retry_s`` seconds of failures (at once when it is 0).
        """
        deadline: float | None = None
        delay = _RETRY_FIRST_S
        while True:
            try:
                return self._wait(future)
            except ServerUnavailable as exc:
                if self.retry_s <= 0:
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_s
                if now >= deadline:
                    raise ServerUnavailable(f"{exc} (gave up after retrying for {self.retry_s:g} s)") from None
                time.sleep(min(delay, deadline - now))
                delay = min(delay * _RETRY_FACTOR, _RETRY_MAX_S)
                self._reconnect()
                self.retries += 1
                future = self._submit(batch, parameters)

    def _submit(self, images: Sequence[bytes], parameters: dict[str, int] | None = None) -> Future[Any]:
        """Start one request; the future holds the raw InferResult or the exception."""
        started = time.perf_counter()
        client = self._live_client()
        if self.protocol == "http":
            inputs, outputs = _request(httpclient, images, self.output_names())
            if self._workers is None:
                self._workers = HttpWorkers(self.url, self.max_in_flight, self.timeout_s)
            future = self._workers.submit(lambda c: c.infer(self.model_name, inputs, model_version=self.model_version,
                                                            outputs=outputs, parameters=parameters))
        else:
            inputs, outputs = _request(grpcclient, images, self.output_names())
            future = Future()

            def done(result: Any, error: Any) -> None:
                try:
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(result)
                except InvalidStateError:  # cancelled: nobody waits for it any more
                    pass

            try:
                client.async_infer(self.model_name, inputs, done, model_version=self.model_version,
                                   outputs=outputs, client_timeout=self.timeout_s, parameters=parameters)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
        future.add_done_callback(lambda _: self.latencies_s.append(time.perf_counter() - started))
        return future

    def _wait(self, future: Future[Any]) -> Any:
        try:
            return future.result(timeout=self.timeout_s + _GRACE_S)
        except Exception as exc:
            if isinstance(exc, FutureTimeout) and not future.done():  # our own wait ran out, not the request's
                exc = TimeoutError()
            raise self._translate(exc) from None

    def _parse(self, raw: Any, n: int, names: Sequence[str] = CLIENT_REQUIRED_OUTPUTS) -> list[ImageResult]:
        results = parse_outputs({name: raw.as_numpy(name) for name in names})
        if len(results) != n:
            raise InferenceError(f"server response: expected {n} results (one per image), got {len(results)}")
        return results


def _request(module: Any, images: Sequence[bytes],
             output_names: Sequence[str] = CLIENT_REQUIRED_OUTPUTS) -> tuple[list[Any], list[Any]]:
    """The IMAGE input ([N, 1] BYTES) and the requested outputs for one batch."""
    if isinstance(images, (bytes, bytearray)) or len(images) == 0:
        raise InputError(f"images: expected a non-empty list of encoded images (bytes), got {type(images).__name__}")
    batch = np.empty((len(images), 1), dtype=object)
    for i, data in enumerate(images):
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise InputError(f"images[{i}]: expected non-empty JPEG or PNG bytes, got {type(data).__name__}")
        batch[i, 0] = bytes(data)
    tensor = module.InferInput(IMAGE.name, list(batch.shape), IMAGE.wire_type)
    tensor.set_data_from_numpy(batch)
    outputs = [module.InferRequestedOutput(name) for name in output_names]
    return [tensor], outputs
