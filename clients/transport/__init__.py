"""Transport: the only part of the clients that talks to Triton (and the only one importing ``tritonclient``).

``client`` (``SceneClient``: images or frames, and how frames travel), ``sending`` (requests in flight,
in order, retried), ``frames`` (the IMAGE and FRAME inputs), ``shared_memory`` (system shared-memory
regions for raw frames, and their cleanup), ``connection`` (``ServerConnection``: health and the server's
typed facts), ``info`` (those facts' types), ``endpoints`` (several servers: which
endpoints, which one gets the next request, their health), ``errors`` (tritonclient and socket errors ->
``InferenceError``/``ServerUnavailable``), ``options`` (``CaptionOptions``, ``normalize_url``, the
transports), ``http_workers`` (threads for the HTTP client), ``perf_analyzer`` (Triton's own benchmark tool).
"""

from clients.transport.client import SceneClient
from clients.transport.connection import ServerConnection
from clients.transport.endpoints import parse_endpoints
from clients.transport.info import CaptionerInfo, EnsembleStep, ModelConfig, ModelMetadata, ServerInfo
from clients.transport.options import PROTOCOLS, TRANSPORTS, CaptionOptions, ClientSettings, normalize_url
from clients.transport.shared_memory import SharedMemoryError

__all__ = ["PROTOCOLS", "TRANSPORTS", "CaptionOptions", "CaptionerInfo", "ClientSettings", "EnsembleStep",
           "ModelConfig", "ModelMetadata", "SceneClient", "ServerConnection", "ServerInfo", "SharedMemoryError",
           "normalize_url", "parse_endpoints"]
