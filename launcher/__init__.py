"""Start, stop and inspect the local Triton Inference Server (``launcher run|stop|status|logs``)."""

from launcher.http_probe import ModelState
from launcher.local_server import (
    ServerPaths,
    ServerStatus,
    StopResult,
    follow_log,
    read_log,
    server_paths,
    server_status,
    start_server,
    stop_server,
)
from launcher.pidfile import ServerRecord
from launcher.triton_binary import PYTHONPATH_ENV, TritonInstall, find_triton, prepare_backend_dir

__all__ = [
    "PYTHONPATH_ENV",
    "ModelState",
    "ServerPaths",
    "ServerRecord",
    "ServerStatus",
    "StopResult",
    "TritonInstall",
    "find_triton",
    "follow_log",
    "prepare_backend_dir",
    "read_log",
    "server_paths",
    "server_status",
    "start_server",
    "stop_server",
]
