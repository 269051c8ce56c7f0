"""Transport: the only part of the clients that talks to Triton (and the only one importing ``tritonclient``).

``client`` (``SceneClient``: requests, in flight and retried), ``connection`` (``ServerConnection``: health
and the server's typed facts), ``info`` (those facts' types), ``errors`` (tritonclient and socket errors ->
``InferenceError``/``ServerUnavailable``), ``options`` (``CaptionOptions``, ``normalize_url``),
``http_workers`` (threads for the HTTP client), ``perf_analyzer`` (Triton's own benchmark tool).
"""

from clients.transport.client import SceneClient
from clients.transport.connection import ServerConnection
from clients.transport.info import CaptionerInfo, EnsembleStep, ModelConfig, ModelMetadata, ServerInfo
from clients.transport.options import PROTOCOLS, CaptionOptions, normalize_url

__all__ = ["PROTOCOLS", "CaptionOptions", "CaptionerInfo", "EnsembleStep", "ModelConfig", "ModelMetadata",
           "SceneClient", "ServerConnection", "ServerInfo", "normalize_url"]
