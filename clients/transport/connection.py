"""``ServerConnection``: one connection to a Triton server, its health and the typed facts it serves.

``SceneClient`` (``clients.transport.client``) builds its requests on it. The facts come back typed
(``clients.transport.info``): ``server_info``, ``model_metadata``, ``model_config``, ``served_models``
and ``captioner``; failures are ``InferenceError`` (``clients.transport.errors``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clients.transport.errors import one_line, translate
from clients.transport.info import (
    CAPTION_STEP_OUTPUT,
    CaptionerInfo,
    ModelConfig,
    ModelMetadata,
    ServerInfo,
    ready_models,
    repository_models,
    shm_regions,
)
from clients.transport.options import PROTOCOLS, normalize_url
from clients.transport.shared_memory import SharedMemoryError
from mmw.contract import ADMIN_KEY_ENV, ENSEMBLE_NAME, GRPC_HEADER_PREFIX, RESTRICTED_HEADER
from mmw.errors import ConfigError, InferenceError, ServerUnavailable

#: The longest a health or metadata call waits (gRPC), whatever the request timeout.
CONTROL_TIMEOUT_S = 10.0


class ServerConnection:
    """A gRPC or HTTP connection to the Triton server at ``url`` for ``model_name``; close it when done.

    ``admin_key`` (default: the ``MMW_TRITON_ADMIN_KEY`` environment variable) goes as the
    ``mmw-admin-key`` header (gRPC: ``triton-grpc-protocol-mmw-admin-key``) on the calls of Triton's
    restricted APIs: the shared-memory regions and the repository index.
    """

    def __init__(self, url: str, protocol: Literal["grpc", "http"] = "grpc", model_name: str = ENSEMBLE_NAME,
                 timeout_s: float = 60.0, model_version: str = "", admin_key: str | None = None) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s: expected > 0, got {timeout_s}")
        self.url = normalize_url(url)
        self.protocol = protocol
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = float(timeout_s)
        self.admin_key = (os.environ.get(ADMIN_KEY_ENV, "") if admin_key is None else admin_key).strip()
        self._client: Any = self._connect()
        self._old_clients: list[Any] = []  # replaced by _reconnect; closed by close()

    @property
    def where(self) -> str:
        """``the Triton server at HOST:PORT (protocol)``, as messages name it."""
        return f"the Triton server at {self.url} ({self.protocol})"

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

    def _reconnect(self) -> None:
        """A fresh gRPC channel (a failed one waits out its own reconnect backoff); HTTP clients reconnect alone.

        The old client stays open until ``close``: requests still in flight on it may yet answer.
        """
        if self.protocol == "grpc":
            self._old_clients.append(self._live_client())
            self._client = self._connect()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
        for old in self._old_clients:
            old.close()
        self._old_clients.clear()

    def __enter__(self) -> ServerConnection:
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
        return {"client_timeout": min(self.timeout_s, CONTROL_TIMEOUT_S)} if self.protocol == "grpc" else {}

    def _json_kwargs(self) -> dict[str, Any]:
        return {"as_json": True, **self._control_kwargs()} if self.protocol == "grpc" else {}

    def admin_headers(self) -> dict[str, str]:
        """The admin key's header for a restricted API call; {} when no key is configured."""
        if not self.admin_key:
            return {}
        name = GRPC_HEADER_PREFIX + RESTRICTED_HEADER if self.protocol == "grpc" else RESTRICTED_HEADER
        return {name: self.admin_key}

    def _admin_kwargs(self, json: bool = False) -> dict[str, Any]:
        """``_control_kwargs`` (``_json_kwargs`` with ``json``) plus the admin header, when there is a key."""
        kwargs = self._json_kwargs() if json else self._control_kwargs()
        headers = self.admin_headers()
        return {**kwargs, "headers": headers} if headers else kwargs

    def _call(self, fn: Callable[[Any], Any], model: str | None = None) -> Any:
        try:
            return fn(self._live_client())
        except InferenceError:
            raise
        except Exception as exc:
            raise self._translate(exc, model) from None

    def _translate(self, exc: BaseException, model: str | None = None) -> InferenceError:
        """``clients.transport.errors.translate``, asking the server whether it is ready and what it serves."""
        return translate(exc, self.where, model or self.model_name, self.timeout_s, ready=self._ready_now,
                         served=self._served_now)

    def _ready_now(self) -> bool:
        """Whether the server says it is ready now; False when it cannot say (down, or this client closed)."""
        try:
            return bool(self._live_client().is_server_ready(**self._control_kwargs()))
        except Exception:
            return False

    def _served_now(self) -> tuple[str, ...]:
        """The models the server has ready; () when it cannot say (never translated: no loop of errors)."""
        try:
            index = self._live_client().get_model_repository_index(**self._admin_kwargs(json=True))
        except Exception:
            return ()
        return ready_models(repository_models(index))

    def _model(self, model: str | None) -> tuple[str, str]:
        """(name, version) of ``model``, default this connection's model and version."""
        return (self.model_name, self.model_version) if model is None else (model, "")

    # --- health ------------------------------------------------------------------------------------------

    def server_ready(self) -> bool:
        """True when the server answers and is ready; False when it is down or unreachable."""
        try:
            return bool(self._live_client().is_server_ready(**self._control_kwargs()))
        except (InferenceServerException, OSError):
            return False

    def model_ready(self, model: str | None = None) -> bool:
        """True when ``model`` (default: this connection's) is loaded and ready; False otherwise or unreachable."""
        name, version = self._model(model)
        try:
            return bool(self._live_client().is_model_ready(name, version, **self._control_kwargs()))
        except (InferenceServerException, OSError):
            return False

    def check_ready(self) -> None:
        """Raise InferenceError saying what is wrong unless the server and the model are ready."""
        try:
            ready = self._live_client().is_server_ready(**self._control_kwargs())
        except Exception as exc:
            raise self._translate(exc) from None
        if not ready:
            raise InferenceError(f"{self.where} answers but is not ready (models may still be loading); "
                                 "wait and retry, or check the server log")
        if not self.model_ready():
            raise InferenceError(
                f"model '{self.model_name}' is not ready on the Triton server at {self.url}: "
                "is it in the model repository, and did it load? (see the server log)"
            )

    # --- server facts ------------------------------------------------------------------------------------

    def server_info(self) -> ServerInfo:
        """The server's name, version and extensions."""
        return ServerInfo.from_json(self._call(lambda c: c.get_server_metadata(**self._json_kwargs())))

    def model_metadata(self, model: str | None = None) -> ModelMetadata:
        """``model``'s (default: this connection's) name, versions, platform, inputs and outputs."""
        name, version = self._model(model)
        return ModelMetadata.from_json(
            self._call(lambda c: c.get_model_metadata(name, version, **self._json_kwargs()), name))

    def model_config(self, model: str | None = None) -> ModelConfig:
        """``model``'s (default: this connection's) configuration."""
        name, version = self._model(model)
        return ModelConfig.from_json(
            self._call(lambda c: c.get_model_config(name, version, **self._json_kwargs()), name))

    def served_models(self) -> tuple[str, ...]:
        """The names of the models the server has ready, sorted."""
        index = self._call(lambda c: c.get_model_repository_index(**self._admin_kwargs(json=True)))
        return ready_models(repository_models(index))

    def captioner(self) -> CaptionerInfo | None:
        """The ensemble's caption step (the one writing CAPTION_SOURCE); None when the ensemble has none.

        Raises InferenceError when the ensemble's config cannot be read; a caption model whose own config
        cannot be read has an empty ``source``.
        """
        step = self.model_config().step_writing(CAPTION_STEP_OUTPUT)
        if step is None:
            return None
        ready = self.model_ready(step.model)
        try:
            return CaptionerInfo.from_config(self.model_config(step.model), ready)
        except InferenceError:
            return CaptionerInfo(step.model, ready)

    def describe(self, model: str | None = None) -> dict[str, Any]:
        """What served a run, for ``results.json``'s ``models`` field; parts the server cannot say are left out.

        ``model``: the ensemble the frames went to (default: this connection's).
        """
        model = model or self.model_name
        info: dict[str, Any] = {"ensemble": model, "protocol": self.protocol, "url": self.url}
        try:
            meta = self.model_metadata(model)
            info["versions"] = list(meta.versions)
            info["platform"] = meta.platform
        except InferenceError:
            pass
        try:
            server = self.server_info()
            info["server"] = {"name": server.name, "version": server.version}
        except InferenceError:
            pass
        try:
            info["steps"] = [s.model for s in self.model_config(model).steps]
        except InferenceError:
            pass
        return info

    # --- system shared memory (clients.transport.shared_memory's RegionServer) ---------------------------

    def _region_call(self, fn: Callable[[Any], Any], what: str) -> Any:
        """``fn(client)``; an unreachable server is ServerUnavailable, any other failure SharedMemoryError."""
        try:
            return fn(self._live_client())
        except Exception as exc:
            error = translate(exc, self.where, self.model_name, self.timeout_s)
            if isinstance(error, ServerUnavailable):
                raise error from None
            message = one_line(exc.message() if isinstance(exc, InferenceServerException) else str(exc))
            raise SharedMemoryError(f"{what}: {self.where} answered: {message or type(exc).__name__}") from None

    def register_region(self, name: str, key: str, byte_size: int) -> None:
        """Register the system shared-memory region ``name`` (POSIX key ``key``, ``byte_size`` bytes)."""
        self._region_call(lambda c: c.register_system_shared_memory(name, key, byte_size, **self._admin_kwargs()),
                          f"registering shared-memory region {name} ({byte_size} bytes)")

    def unregister_region(self, name: str) -> None:
        """Unregister the system shared-memory region ``name`` (nothing happens when it is not registered)."""
        self._region_call(lambda c: c.unregister_system_shared_memory(name, **self._admin_kwargs()),
                          f"unregistering shared-memory region {name}")

    def registered_regions(self) -> dict[str, str]:
        """The server's system shared-memory regions: name -> key."""
        status = self._region_call(lambda c: c.get_system_shared_memory_status(**self._admin_kwargs(json=True)),
                                   "reading the shared-memory status")
        return shm_regions(status)
