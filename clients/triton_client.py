"""``SceneClient``: send encoded images to the ``scene_understanding`` ensemble over gRPC or HTTP.

``infer`` sends one request; ``infer_many`` keeps up to ``max_in_flight`` requests in flight and
yields their results in the order the batches came. gRPC uses the client's ``async_infer`` with
callbacks; HTTP uses worker threads with one connection each (the gevent-based HTTP client must
stay in the thread that made it). Connection failures and server errors become ``InferenceError``;
an unreachable or unavailable server is ``ServerUnavailable``, which ``infer_many`` retries with
exponential backoff for up to ``retry_s`` seconds (resending the failed batches in order), so a
restarted server loses no frame. Errors the server answers (bad input) are never retried.

``CaptionOptions`` (``num_beams``, ``max_new_tokens``, ``dense_top_k``) go with every request as Triton
request parameters and override the served captioner's defaults for that request (a template captioner
ignores them); set them per client (``SceneClient(..., caption=...)``) or per call (``infer(..., caption=...)``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clients.results import ImageResult, parse_outputs
from mmw.contract import CAPTION_PARAMETERS, CLIENT_OPTIONAL_OUTPUTS, CLIENT_REQUIRED_OUTPUTS, ENSEMBLE_NAME, IMAGE
from mmw.errors import ConfigError, InferenceError, InputError, ServerUnavailable

PROTOCOLS = ("grpc", "http")
START_HINT = "Start it with `launcher run`"
# Extra seconds a waiting caller allows beyond the request timeout before giving up on a future.
_GRACE_S = 10.0
# Backoff between retries of an unreachable server: first wait, growth factor, longest wait.
_RETRY_FIRST_S = 0.25
_RETRY_FACTOR = 2.0
_RETRY_MAX_S = 4.0


@dataclass(frozen=True)
class CaptionOptions:
    """Per-request caption settings; None leaves the server's default (``models.caption`` of its config).

    ``num_beams``: 1 greedy, more beam search (1..16); ``max_new_tokens``: caption length limit
    (1..512); ``dense_top_k``: caption at most this many detections per image (0..32, 0: none).
    """

    num_beams: int | None = None
    max_new_tokens: int | None = None
    dense_top_k: int | None = None

    def __post_init__(self) -> None:
        for name, (low, high) in CAPTION_PARAMETERS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name}: expected an integer in {low}..{high}, got {value!r}")
            if not low <= int(value) <= high:
                raise ConfigError(f"{name}: expected an integer in {low}..{high}, got {value}")

    def parameters(self) -> dict[str, int]:
        """The Triton request parameters to send (only the options that are set)."""
        return {name: int(getattr(self, name)) for name in CAPTION_PARAMETERS if getattr(self, name) is not None}

    def merged(self, other: CaptionOptions | None) -> CaptionOptions:
        """These options with ``other``'s set values on top."""
        if other is None:
            return self
        return CaptionOptions(**{name: getattr(other, name) if getattr(other, name) is not None else getattr(self, name)
                                 for name in CAPTION_PARAMETERS})


def normalize_url(url: str) -> str:
    """``http://host:port/`` or ``grpc://host:port`` -> ``host:port`` (what tritonclient wants)."""
    u = url.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if u.lower().startswith(scheme):
            u = u[len(scheme) :]
    u = u.rstrip("/")
    if not u or "/" in u:
        raise ConfigError(f"server url: expected HOST:PORT such as 127.0.0.1:8001, got {url!r}")
    return u


class SceneClient:
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
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight: expected >= 1, got {max_in_flight}")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s: expected > 0, got {timeout_s}")
        if not retry_s >= 0:
            raise ConfigError(f"retry_s: expected >= 0 seconds, got {retry_s}")
        if caption is not None and not isinstance(caption, CaptionOptions):
            raise ConfigError(f"caption: expected CaptionOptions, got {type(caption).__name__}")
        self.url = normalize_url(url)
        self.protocol = protocol
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = float(timeout_s)
        self.max_in_flight = int(max_in_flight)
        self.retry_s = float(retry_s)
        self.caption = caption or CaptionOptions()
        self.retries = 0  # requests resent because the server was unreachable (for tests and benchmarks)
        self._client: Any = self._connect()
        self._old_clients: list[Any] = []  # replaced after a connection failure; closed by close()
        self._workers: _HttpWorkers | None = None
        self._max_batch_size: int | None = None
        self._output_names: tuple[str, ...] | None = None
        self.latencies_s: list[float] = []  # per request, submit to response (for benchmarks)

    # --- connection --------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            if self.protocol == "grpc":
                return grpcclient.InferenceServerClient(self.url)
            return httpclient.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
        except Exception as exc:
            raise InferenceError(f"cannot create a {self.protocol} client for {self.url}: {exc}") from None

    def close(self) -> None:
        """Stop the HTTP workers and close the connection (idempotent)."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
        for old in self._old_clients:
            old.close()
        self._old_clients.clear()

    def __enter__(self) -> SceneClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _live_client(self) -> Any:
        if self._client is None:
            raise InferenceError(f"the client for {self.url} is closed")
        return self._client

    def _control_kwargs(self) -> dict[str, Any]:
        return {"client_timeout": min(self.timeout_s, 10.0)} if self.protocol == "grpc" else {}

    # --- health and metadata -----------------------------------------------------------------------------

    def server_ready(self) -> bool:
        """True when the server answers and is ready; False when it is down or unreachable."""
        try:
            return bool(self._live_client().is_server_ready(**self._control_kwargs()))
        except (InferenceServerException, OSError):
            return False

    def model_ready(self) -> bool:
        """True when the ensemble is loaded and ready; False otherwise (also when unreachable)."""
        try:
            return bool(
                self._live_client().is_model_ready(self.model_name, self.model_version, **self._control_kwargs())
            )
        except (InferenceServerException, OSError):
            return False

    def check_ready(self) -> None:
        """Raise InferenceError saying what is wrong unless the server and the ensemble are ready."""
        try:
            ready = self._live_client().is_server_ready(**self._control_kwargs())
        except Exception as exc:
            raise self._translate(exc) from None
        if not ready:
            raise InferenceError(
                f"the Triton server at {self.url} ({self.protocol}) answers but is not ready "
                "(models may still be loading); wait and retry, or check the server log"
            )
        if not self.model_ready():
            raise InferenceError(
                f"model '{self.model_name}' is not ready on the Triton server at {self.url}: "
                "is it in the model repository, and did it load? (see the server log)"
            )

    def server_metadata(self) -> dict[str, Any]:
        """Server name, version and extensions."""
        return self._call(lambda c: c.get_server_metadata(**self._json_kwargs()))

    def model_metadata(self) -> dict[str, Any]:
        """The ensemble's name, versions, platform, inputs and outputs."""
        return self._call(lambda c: c.get_model_metadata(self.model_name, self.model_version, **self._json_kwargs()))

    def model_config(self) -> dict[str, Any]:
        """The ensemble's configuration as a dict."""
        config = self._call(lambda c: c.get_model_config(self.model_name, self.model_version, **self._json_kwargs()))
        return config.get("config", config) if self.protocol == "grpc" else config

    def max_batch_size(self) -> int:
        """The ensemble's ``max_batch_size`` (0 means no batching), read once from its config."""
        if self._max_batch_size is None:
            self._max_batch_size = int(self.model_config().get("max_batch_size", 0))
        return self._max_batch_size

    def output_names(self) -> tuple[str, ...]:
        """The outputs to request: ``CLIENT_REQUIRED_OUTPUTS``, plus those of ``CLIENT_OPTIONAL_OUTPUTS`` the
        ensemble has (``ERROR``, caption tokens and dense captions; older ensembles lack them).

        Read once from the ensemble's metadata; while the metadata cannot be read, none of them is asked for.
        """
        if self._output_names is None:
            try:
                meta = self.model_metadata()
            except InferenceError:
                return CLIENT_REQUIRED_OUTPUTS
            names = {o.get("name") for o in meta.get("outputs", []) if isinstance(o, dict)}
            self._output_names = CLIENT_REQUIRED_OUTPUTS + tuple(n for n in CLIENT_OPTIONAL_OUTPUTS if n in names)
        return self._output_names

    def describe(self) -> dict[str, Any]:
        """What served a run, for ``results.json``'s ``models`` field; parts the server cannot say are left out."""
        info: dict[str, Any] = {"ensemble": self.model_name, "protocol": self.protocol, "url": self.url}
        try:
            meta = self.model_metadata()
            info["versions"] = list(meta.get("versions", []))
            info["platform"] = meta.get("platform", "")
        except InferenceError:
            pass
        try:
            server = self.server_metadata()
            info["server"] = {"name": server.get("name", ""), "version": server.get("version", "")}
        except InferenceError:
            pass
        try:
            steps = self.model_config().get("ensemble_scheduling", {}).get("step", [])
            info["steps"] = [s.get("model_name", s.get("modelName", "")) for s in steps]
        except InferenceError:
            pass
        return info

    def _json_kwargs(self) -> dict[str, Any]:
        return {"as_json": True, **self._control_kwargs()} if self.protocol == "grpc" else {}

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(self._live_client())
        except InferenceError:
            raise
        except Exception as exc:
            raise self._translate(exc) from None

    # --- inference ---------------------------------------------------------------------------------------

    def _parameters(self, caption: CaptionOptions | None) -> dict[str, int] | None:
        """Request parameters of one request: the client's caption options with ``caption`` on top."""
        if caption is not None and not isinstance(caption, CaptionOptions):
            raise ConfigError(f"caption: expected CaptionOptions, got {type(caption).__name__}")
        return self.caption.merged(caption).parameters() or None

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

    def _reconnect(self) -> None:
        """A fresh gRPC channel (a failed one waits out its own reconnect backoff); HTTP clients reconnect alone.

        The old client stays open until ``close``: requests still in flight on it may yet answer.
        """
        if self.protocol == "grpc":
            self._old_clients.append(self._live_client())
            self._client = self._connect()

    def _submit(self, images: Sequence[bytes], parameters: dict[str, int] | None = None) -> Future[Any]:
        """Start one request; the future holds the raw InferResult or the exception."""
        future: Future[Any] = Future()
        started = time.perf_counter()

        def timed(f: Future[Any]) -> Future[Any]:
            f.add_done_callback(lambda _: self.latencies_s.append(time.perf_counter() - started))
            return f
        client = self._live_client()
        if self.protocol == "grpc":
            inputs, outputs = _request(grpcclient, images, self.output_names())

            def done(result: Any, error: Any) -> None:
                try:
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(result)
                except InvalidStateError:  # cancelled: nobody waits for it any more
                    pass

            try:
                client.async_infer(
                    self.model_name,
                    inputs,
                    done,
                    model_version=self.model_version,
                    outputs=outputs,
                    client_timeout=self.timeout_s,
                    parameters=parameters,
                )
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            return timed(future)
        inputs, outputs = _request(httpclient, images, self.output_names())
        if self._workers is None:
            self._workers = _HttpWorkers(self.url, self.max_in_flight, self.timeout_s)
        return timed(self._workers.submit(
            lambda c: c.infer(self.model_name, inputs, model_version=self.model_version, outputs=outputs,
                              parameters=parameters)
        ))

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

    # --- errors ------------------------------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> InferenceError:
        """Any client or network error -> InferenceError with a message a user can act on."""
        where = f"the Triton server at {self.url} ({self.protocol})"
        if isinstance(exc, InferenceError):
            return exc
        if isinstance(exc, InferenceServerException):
            status = str(exc.status() or "")
            message = exc.message() or str(exc)
            if "UNAVAILABLE" in status or _stopping(message):
                return ServerUnavailable(f"{where} is not reachable: {message}. {START_HINT}.")
            if "DEADLINE_EXCEEDED" in status:
                return InferenceError(f"{where} did not answer within {self.timeout_s:g} s ({message})")
            return InferenceError(f"{where} answered an error for model '{self.model_name}': {message}")
        if isinstance(exc, TimeoutError) or type(exc).__name__ == "Timeout":
            return InferenceError(f"{where} did not answer within {self.timeout_s:g} s")
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            return ServerUnavailable(f"{where} is not reachable: {reason}. {START_HINT}.")
        return InferenceError(f"request to {where} failed: {type(exc).__name__}: {exc}")


def _stopping(message: str) -> bool:
    """True for the answers of a server that is shutting down or restarting (its models unloading)."""
    lowered = message.lower()
    return any(m in lowered for m in ("server is stopping", "socket closed", "connection reset",
                                      "failed to connect", "connection refused", "has no available versions",
                                      "is not ready"))


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


class _HttpWorkers:
    """Threads that each own one HTTP client and run queued requests (gevent clients are per thread)."""

    def __init__(self, url: str, count: int, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[Any], Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"scene-http-{i}", daemon=True) for i in range(count)]
        for t in self._threads:
            t.start()

    def submit(self, job: Callable[[Any], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, job))
        return future

    def _run(self) -> None:
        client = None
        try:
            while (item := self._jobs.get()) is not None:
                future, job = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if client is None:
                        client = httpclient.InferenceServerClient(
                            self._url, connection_timeout=self._timeout_s, network_timeout=self._timeout_s
                        )
                    future.set_result(job(client))
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)  # a refused connection is retried by the next request
        finally:
            if client is not None:
                client.close()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=5.0)
