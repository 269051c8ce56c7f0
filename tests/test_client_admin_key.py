"""The clients send the admin key (``MMW_TRITON_ADMIN_KEY``) on Triton's restricted APIs; a real server with
restricted APIs refuses shared memory without it, and serves inference either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clients.transport import SceneClient, ServerConnection, SharedMemoryError
from mmw.contract import ADMIN_KEY_ENV, GRPC_HEADER_PREFIX, RESTRICTED_HEADER
from tests.conftest import photo, serving

KEY = "test-admin-key-1234567890"


def test_the_header_is_named_per_protocol_and_sent_only_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_KEY_ENV, f" {KEY}\n")
    grpc = ServerConnection("127.0.0.1:1", "grpc")
    http = ServerConnection("127.0.0.1:2", "http")
    try:
        assert grpc.admin_headers() == {GRPC_HEADER_PREFIX + RESTRICTED_HEADER: KEY}
        assert grpc.admin_headers() == {"triton-grpc-protocol-mmw-admin-key": KEY}
        assert http.admin_headers() == {"mmw-admin-key": KEY}
        assert ServerConnection("127.0.0.1:1", "grpc", admin_key="").admin_headers() == {}
    finally:
        grpc.close()
        http.close()
    monkeypatch.delenv(ADMIN_KEY_ENV)
    assert ServerConnection("127.0.0.1:1", "http").admin_headers() == {}


@pytest.mark.serving
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_restricted_shared_memory_needs_the_key_and_inference_does_not(
        engines: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    frame = np.ascontiguousarray(photo("chelsea")[:240, :320])
    with serving(tmp_path / "state", restrict_apis="always") as config:
        port = config.server.grpc_port if protocol == "grpc" else config.server.http_port
        url = f"127.0.0.1:{port}"
        monkeypatch.delenv(ADMIN_KEY_ENV)
        with SceneClient(url, protocol, transport="shm") as client:  # type: ignore[arg-type]
            with pytest.raises(SharedMemoryError):
                client.frame_transport()
        with SceneClient(url, protocol, transport="auto") as client:  # type: ignore[arg-type]
            assert client.frame_transport() == "jpeg"  # auto falls back, and says why
            assert any("shared memory does not work" in n for n in client.transport_notes)
            assert len(client.infer_frames([frame])) == 1
        monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
        with SceneClient(url, protocol, transport="shm") as client:  # type: ignore[arg-type]
            assert client.frame_transport() == "shm"
            assert len(client.infer_frames([frame])) == 1
            assert client.served_models()  # the repository index is restricted too
