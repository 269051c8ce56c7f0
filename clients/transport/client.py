"""``SceneClient``: send images or frames to the ensembles over gRPC or HTTP, several requests in flight.

``infer`` sends one request of encoded images; ``infer_many`` keeps up to ``max_in_flight`` requests in
flight and yields their results in the order the batches came. ``infer_frames_many`` does the same for
frames, which travel as the client's ``transport`` says (``client.transport`` of the config):

- ``jpeg``: encoded (``jpeg_quality``) as the ``scene_understanding`` ensemble's IMAGE input;
- ``raw``: uint8 RGB as the ``scene_understanding_raw`` ensemble's FRAME input, inside the request;
- ``shm``: the same FRAME bytes written into a system shared-memory region registered with the server
  (``clients.transport.shared_memory``: one region per request in flight, removed by ``close``);
- ``auto``: shm when the server is on loopback and a region registers, jpeg otherwise (when shm was
  tried and failed, a note says why: ``transport_notes``).

The raw ensemble takes one frame size per request, so a batch of mixed sizes goes as one request per size;
results come back in the batch's order either way. ``frame_payload`` is what a frame travels as (its JPEG
under jpeg): the pipeline calls it in its prefetch thread so that encoding overlaps the requests.

The requests go out through ``RequestSender`` (``clients.transport.sending``: gRPC ``async_infer``, or HTTP
worker threads). Failures become ``InferenceError`` (``clients.transport.errors``); an
unreachable or unavailable server is ``ServerUnavailable``, which the ``*_many`` calls retry with
exponential backoff for up to ``retry_s`` seconds (resending the failed requests in order, registering
their regions again), so a restarted server loses no frame. Errors the server answers (an unknown model, a
bad input, a region gone or too small: ``SharedMemoryError``) fail at once and are never retried.

``CaptionOptions`` (``num_beams``, ``max_new_tokens``, ``dense_top_k``) go with every request as Triton
request parameters and override the served captioner's defaults for that request (a template captioner
ignores them); set them per client (``SceneClient(..., caption=...)``) or per call (``infer(..., caption=...)``).
Health checks and the server's typed facts come from ``ServerConnection`` (``clients.transport.connection``).

``url`` may name several servers: a list, a comma-separated string, or a DNS name with several addresses
(``clients.transport.endpoints``). Requests then go to the healthy endpoint with the fewest in flight, a
request whose server is unreachable is resent on another, and results keep their order; metadata comes
from the first endpoint ready at start. Under shm each endpoint has its own regions (auto picks shm only
when every endpoint is on loopback). ``requests_per_endpoint()`` and ``failovers`` say what happened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from clients.results import ImageResult
from clients.transport.frames import Payload, check_frame, image_request, split_batch, whole_batch
from clients.transport.options import (
    CaptionOptions,
    ClientSettings,
    check_caption,
    check_transport,
    is_loopback,
)
from clients.transport.sending import GRACE_S, RequestSender
from clients.transport.shared_memory import RegionPool, SharedMemoryError
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.errors import InferenceError
from mmw.processing.images import encode_jpeg

Transport = Literal["auto", "jpeg", "raw", "shm"]


class SceneClient(RequestSender):
    """Client of the ``scene_understanding`` ensembles; use as a context manager or call ``close``.

    Not meant to be shared between threads (``frame_payload`` excepted).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        protocol: Literal["grpc", "http"] = "grpc",
        model_name: str = ENSEMBLE_NAME,
        timeout_s: float = 60.0,
        max_in_flight: int = 2,
        model_version: str = "",
        retry_s: float = 0.0,
        caption: CaptionOptions | None = None,
        transport: Transport = "auto",
        jpeg_quality: int = 90,
        raw_model_name: str = RAW_ENSEMBLE_NAME,
    ) -> None:
        caption = check_caption(caption)
        self._resolved: str | None = None
        self.transport = check_transport(transport)  # as asked; frame_transport() says what it became
        super().__init__(url, protocol, model_name, timeout_s, model_version, max_in_flight, retry_s, jpeg_quality,
                         raw_model_name)
        self.caption = caption or CaptionOptions()
        self.transport_notes: list[str] = []  # one line each: an auto fallback, stale regions removed
        self._max_batch_size: int | None = None
        self._resolve_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> SceneClient:
        """A client opened with ``settings`` (one url, or several to spread over and fail over between)."""
        return cls(**settings.client_kwargs())  # type: ignore[arg-type]

    def __enter__(self) -> SceneClient:
        return self

    def max_batch_size(self) -> int:
        """The ensemble's ``max_batch_size`` (0 means no batching), read once from its config."""
        if self._max_batch_size is None:
            self._max_batch_size = self.model_config().max_batch_size
        return self._max_batch_size

    # --- how frames travel -------------------------------------------------------------------------------

    def frame_transport(self) -> str:
        """``jpeg``, ``raw`` or ``shm``: ``transport`` resolved (once) against the server.

        Raises InferenceError when raw or shm was asked for and the raw ensemble is not ready, and
        SharedMemoryError when shm was asked for and a region cannot be made or registered.
        """
        with self._resolve_lock:
            if self._resolved is None:
                self._resolved = self._resolve()
            return self._resolved

    def _resolve(self) -> str:
        wanted = self.transport
        if wanted == "jpeg" or (wanted == "auto" and not all(is_loopback(u) for u in self.urls)):
            return "jpeg"
        if not self.model_ready(self.raw_model_name):
            problem = f"model '{self.raw_model_name}' is not ready on {self.where}"
            if wanted != "auto":
                raise InferenceError(f"transport {wanted}: {problem}; is it in the model repository, and did it "
                                     "load? (see the server log), or use transport jpeg")
            self.transport_notes.append(f"transport auto: {problem}; frames travel as JPEG")
            return "jpeg"
        if wanted == "raw":
            return "raw"
        pool = RegionPool(self.max_in_flight, self, wait_s=self.timeout_s + GRACE_S)
        try:
            pool.open()
        except InferenceError as exc:
            pool.close()
            if wanted == "shm":
                raise SharedMemoryError(f"transport shm: {exc}; shared memory needs the server on this host with "
                                        "the same /dev/shm (else use transport raw or jpeg)") from None
            self.transport_notes.append(f"transport auto: shared memory does not work here ({exc}); frames "
                                        "travel as JPEG")
            return "jpeg"  # raw inside the requests measured no faster than JPEG on one host (transport_benchmark)
        if pool.removed_stale:
            self.transport_notes.append(f"removed {len(pool.removed_stale)} stale shared-memory region(s) of "
                                        f"clients that ended without cleaning up: {', '.join(pool.removed_stale)}")
        self._pool = pool
        return "shm"

    def _health_models(self) -> tuple[str, ...]:
        """The ensemble the frames go to (the raw one under raw and shm), once the transport is settled."""
        resolved = getattr(self, "_resolved", None)
        return (self.model_name,) if resolved in (None, "jpeg") else (self.raw_model_name,)

    def frame_payload(self, rgb: np.ndarray, encoded: bytes | None = None) -> Payload:
        """What ``infer_frames_many`` sends for this uint8 RGB frame: under jpeg its JPEG (``encoded`` when
        given, e.g. an image file's own bytes), else the frame. Safe to call from another thread."""
        if self.frame_transport() == "jpeg":
            return bytes(encoded) if encoded is not None else encode_jpeg(rgb, self.jpeg_quality)
        return check_frame(rgb)

    def describe(self, model: str | None = None) -> dict[str, Any]:
        """``ServerConnection.describe`` of the ensemble frames go to, with the frame ``transport``."""
        transport = self.frame_transport()
        info = super().describe(model or (self.raw_model_name if transport != "jpeg" else self.model_name))
        return {**info, "transport": transport}

    # --- inference ---------------------------------------------------------------------------------------

    def _parameters(self, caption: CaptionOptions | None) -> dict[str, int] | None:
        """Request parameters of one request: the client's caption options with ``caption`` on top."""
        return self.caption.merged(check_caption(caption)).parameters() or None

    def infer(self, images: Sequence[bytes], caption: CaptionOptions | None = None) -> list[ImageResult]:
        """Send one request with a batch of encoded images (JPEG/PNG bytes); one result per image.

        ``caption`` overrides the client's caption options for this request.
        """
        if len(self.urls) > 1:  # spread and failed over like the *_many calls
            return next(iter(self.infer_many([images], caption)))
        module = grpcclient if self.protocol == "grpc" else httpclient
        names = self.output_names()
        inputs, outputs = image_request(module, images, names)
        kwargs: dict[str, Any] = {"model_version": self.model_version, "outputs": outputs,
                                  "parameters": self._parameters(caption)}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        raw = self._call(lambda c: c.infer(self.model_name, inputs, **kwargs))
        return self._parse(raw, len(images), names)

    def infer_frames(self, frames: Sequence[Payload], caption: CaptionOptions | None = None) -> list[ImageResult]:
        """``infer_frames_many`` of one batch."""
        return next(iter(self.infer_frames_many([frames], caption)))

    def infer_many(self, batches: Iterable[Sequence[bytes]],
                   caption: CaptionOptions | None = None) -> Iterator[list[ImageResult]]:
        """Send each batch of encoded images as one request, up to ``max_in_flight`` at a time; yield results in
        batch order.

        ``caption`` overrides the client's caption options for these requests.

        If ``batches`` raises (say a video stops decoding), the requests already sent are still
        yielded before the error is raised again. A failed request raises InferenceError in its turn;
        one that failed because the server is unreachable is resent (see ``_wait_retrying``).
        """
        return self._many(batches, self._parameters(caption), whole_batch)

    def infer_frames_many(self, batches: Iterable[Sequence[Payload]],
                          caption: CaptionOptions | None = None) -> Iterator[list[ImageResult]]:
        """``infer_many`` for batches of frames (uint8 RGB [H, W, 3], or ``frame_payload``'s), sent as the
        transport says (see the module doc); a batch of several frame sizes goes as one request per size."""
        self.frame_transport()
        return self._many(batches, self._parameters(caption), split_batch)
