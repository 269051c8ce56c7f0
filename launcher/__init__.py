"""Start, stop and inspect Triton (``launcher run|stop|status|logs``): a local process or a container.

``launcher.backend`` declares the interface every backend has, ``launcher.registry`` keys the backends
by ``server.mode``, ``launcher.replicas`` lays out and coordinates ``--replicas N``, ``launcher.report`` prints
their results, ``launcher.server_args`` describes tritonserver's arguments (``launcher.admin_key``: which APIs are
restricted, with which key), ``launcher.processes`` finds what a crashed server left, ``launcher.devcontainer``
holds the dev container (``launcher shell`` / ``tao_ws``, ``launcher doctor``).
"""

from launcher.backend import ServerBackend, ServerStatus, StartOptions, StopResult
from launcher.http_probe import ModelState
from launcher.local_server import follow_log, read_log, server_status, start_server, stop_server
from launcher.records import BaseRecord, ContainerRecord, ServerRecord
from launcher.registry import BACKENDS, active_backend, backend_for
from launcher.state_dir import ServerPaths, server_paths
from launcher.triton_binary import PYTHONPATH_ENV, TritonInstall, find_triton, prepare_backend_dir

__all__ = [
    "BACKENDS",
    "PYTHONPATH_ENV",
    "BaseRecord",
    "ContainerRecord",
    "ModelState",
    "ServerBackend",
    "ServerPaths",
    "ServerRecord",
    "ServerStatus",
    "StartOptions",
    "StopResult",
    "TritonInstall",
    "active_backend",
    "backend_for",
    "find_triton",
    "follow_log",
    "prepare_backend_dir",
    "read_log",
    "server_paths",
    "server_status",
    "start_server",
    "stop_server",
]
