"""BatchedStep inside a real tritonserver: a failed merged batch reruns request by request and says why, once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from launcher.local_server import start_server, stop_server
from mmw.config import Config, build
from mmw.contract import TensorSpec
from mmw.repository import render_config, render_model_py
from mmw.specs import TritonModelSpec
from tests.conftest import free_ports

MODEL = "merge_fails"
WARNING = "a merged batch of"


@pytest.fixture(scope="module")
def merging_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("merging")
    spec = TritonModelSpec(name=MODEL, backend="python", inputs=(TensorSpec("X", "int32", (1,)),),
                           outputs=(TensorSpec("Y", "int32", (1,)),), max_batch_size=8,
                           max_queue_delay_us=300_000,  # hold requests so that concurrent ones merge
                           python_class="tests.triton_models.merging:FailsWhenMerged")
    (root / "repo" / MODEL / "1").mkdir(parents=True)
    (root / "repo" / MODEL / "config.pbtxt").write_text(render_config(spec))
    (root / "repo" / MODEL / "1" / "model.py").write_text(render_model_py(spec))
    http, grpc, metrics = free_ports(3)
    config = build(Config, {"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                                       "state_dir": str(root / "state"), "model_repository": str(root / "repo")}})
    start_server(config, [MODEL], timeout_s=120)
    try:
        yield config
    finally:
        stop_server(config)


def _infer(config: Config, x: int) -> int:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{config.server.grpc_port}")
    data = grpcclient.InferInput("X", [1, 1], "INT32")
    data.set_data_from_numpy(np.array([[x]], np.int32))
    return int(client.infer(MODEL, [data]).as_numpy("Y")[0, 0])


def _warnings(config: Config) -> list[str]:
    logs = list(Path(config.server.state_dir).rglob("*.log"))
    return [line for log in logs for line in log.read_text(errors="replace").splitlines() if WARNING in line]


@pytest.mark.serving
def test_merged_batch_failure_reruns_each_request_and_logs_the_cause_once(merging_server: Config) -> None:
    assert _infer(merging_server, 1) == 2 and _warnings(merging_server) == []  # a lone request: no merge
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda x: _infer(merging_server, x), range(10, 14))) == [11, 12, 13, 14]
    deadline = time.monotonic() + 10
    while not _warnings(merging_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = _warnings(merging_server)
    assert lines, "the merged batch's failure must be logged"
    assert all("merge_fails: a merged batch of" in line and "rejected); running them one at a time" in line
               for line in lines)
    assert len(lines) <= 3  # once per merged batch, never once per request
