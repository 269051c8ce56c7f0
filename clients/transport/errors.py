"""The one place where tritonclient's, gRPC's and the sockets' exceptions become the project's.

Whether a failed request is worth resending is decided by the exception's kind and status, never by its
text. ``ServerUnavailable`` (retried by ``SceneClient.infer_many`` for up to ``retry_s``) is a server that
cannot be reached or says it cannot serve now:

- a refused, reset or closed connection (``OSError``);
- no answer in time (``TimeoutError``, gevent's ``Timeout`` of the HTTP client, gRPC ``DEADLINE_EXCEEDED``);
- gRPC ``UNAVAILABLE`` (no connection, or a model unloading while the server stops);
- HTTP 503, and 502/504 from a proxy in front of the server;
- an unknown model (gRPC ``NOT_FOUND``, HTTP 404) answered by a server that says it is not ready: a
  stopping server unloads its models before it closes its ports.

Every other answer is an ``InferenceError`` that fails at once: an unknown model or version from a ready
server (its message lists the models served), a wrong input (``INVALID_ARGUMENT``, 400), a failing model
(``INTERNAL``, 500).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from gevent import Timeout as GeventTimeout  # tritonclient.http runs on gevent: its network timeout
from tritonclient.utils import InferenceServerException

from mmw.errors import InferenceError, ServerUnavailable

START_HINT = "Start it with `launcher run`"

_GRPC_UNAVAILABLE = str(grpc.StatusCode.UNAVAILABLE)
_GRPC_TIMEOUT = str(grpc.StatusCode.DEADLINE_EXCEEDED)
_GRPC_NOT_FOUND = str(grpc.StatusCode.NOT_FOUND)
_HTTP_UNAVAILABLE = frozenset({502, 503, 504})
_HTTP_NOT_FOUND = 404


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())


def _http_status(status: str) -> int | None:
    return int(status) if status.isdigit() else None


def _status(exc: InferenceServerException) -> str:
    return str(exc.status() or "")


def translate(exc: BaseException, where: str, model: str, timeout_s: float,
              ready: Callable[[], bool] | None = None,
              served: Callable[[], tuple[str, ...]] | None = None) -> InferenceError:
    """Any client or network error -> ``ServerUnavailable`` (worth retrying) or ``InferenceError``, on one line.

    ``where`` names the server (``the Triton server at HOST:PORT (grpc)``), ``model`` the model asked for.
    For an unknown model only, ``ready()`` says whether the server is ready now and ``served()`` names the
    models it serves (both asked of the server; not asked when None).
    """
    if isinstance(exc, InferenceError):
        return exc
    if isinstance(exc, InferenceServerException):
        status = _status(exc)
        message = one_line(exc.message() or str(exc)) or "no message"
        http = _http_status(status)
        if status == _GRPC_UNAVAILABLE:
            return ServerUnavailable(f"{where} is not reachable: {message}. {START_HINT}.")
        if http in _HTTP_UNAVAILABLE:
            return ServerUnavailable(f"{where} is not available (HTTP {http}): {message}. {START_HINT}.")
        if status == _GRPC_TIMEOUT:
            return ServerUnavailable(f"{where} did not answer within {timeout_s:g} s ({message})")
        if status == _GRPC_NOT_FOUND or http == _HTTP_NOT_FOUND:
            if ready is not None and not ready():
                return ServerUnavailable(f"{where} is not reachable: {message} (it is not ready: stopping, or "
                                         f"starting). {START_HINT}.")
            names = served() if served is not None else ()
            listed = f" (models served: {', '.join(names)})" if names else ""
            return InferenceError(f"{where} answered an error for model '{model}': {message}{listed}")
        return InferenceError(f"{where} answered an error for model '{model}': {message}")
    if isinstance(exc, (TimeoutError, GeventTimeout)):  # before OSError: TimeoutError is one
        return ServerUnavailable(f"{where} did not answer within {timeout_s:g} s")
    if isinstance(exc, OSError):
        reason = one_line(exc.strerror or str(exc)) or type(exc).__name__
        return ServerUnavailable(f"{where} is not reachable: {reason}. {START_HINT}.")
    return InferenceError(one_line(f"request to {where} failed: {type(exc).__name__}: {exc}"))
