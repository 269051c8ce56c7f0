"""A short load soak against the session's real tritonserver: 8 concurrent gRPC clients x 25 requests, no errors."""

from __future__ import annotations

import pytest

from benchmarks.soak import small_jpeg, soak
from launcher.local_server import server_paths
from launcher.records import ServerRecord, read_record
from mmw.config import Config

pytestmark = pytest.mark.serving

CLIENTS, PER_CLIENT = 8, 25


def test_soak_eight_clients(triton: Config) -> None:
    record = read_record(server_paths(triton).pid_file, ServerRecord)
    assert record is not None
    result = soak(triton.server.grpc_port, record.pid, small_jpeg(), clients=CLIENTS, requests=CLIENTS * PER_CLIENT,
                  warmup=PER_CLIENT, max_seconds=240)
    assert result.error_messages == [] and result.errors == 0
    assert result.sent == CLIENTS * PER_CLIENT and not result.timed_out
    assert result.p50_ms > 0 and result.p99_ms >= result.p50_ms
    # RSS is not flat over 200 requests, and a 10% bound cannot be asserted honestly here: the server grows its
    # onnxruntime arenas in steps (a memory pattern per dynamic batch size the batcher happens to form), measured
    # +12% to +20% over such short runs, sometimes in the first third, sometimes in the second half. Flatness is
    # what `python -m benchmarks.soak` checks (1000 warm-up requests, then 10,000: end / after warm-up 1.06).
    # This test guards against runaway growth only.
    assert result.rss_warm_mb > 100
    assert result.rss_ratio < 1.5, (result.rss_warm_mb, result.rss_mid_mb, result.rss_end_mb)
