"""The CPU repository's networks on OpenVINO in the real Triton: served equals in-process, and precision fallback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from launcher.local_server import read_log
from mmw.config import Config
from mmw.contract import RAW_ENSEMBLE_NAME
from mmw.network_runtimes import cpu_capabilities, read_gate, served_precision
from mmw.onnx_runtime import InProcessPipeline
from mmw.specs import serving_plan
from tests.conftest import ROOT, photo, serving

pytestmark = pytest.mark.serving
OUTPUTS = ("BOXES", "SCORES", "CLASS_IDS", "NUM_DETECTIONS", "LABEL_IDS", "LABEL_SCORES")


def _frames() -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(photo(name), (640, 480)) for name in ("astronaut", "chelsea", "coffee")])


def _served(config: Config, frames: np.ndarray) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{config.server.grpc_port}")
    tensor = grpcclient.InferInput("FRAME", list(frames.shape), "UINT8")
    tensor.set_data_from_numpy(frames)
    result = client.infer(RAW_ENSEMBLE_NAME, [tensor], outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS])
    client.close()
    return {name: result.as_numpy(name) for name in OUTPUTS}


def _in_process(config: Config, engines: dict[str, Path]) -> InProcessPipeline:
    plan = serving_plan(config.serving)
    assert plan["detector"].threads == plan["labeller"].threads  # one thread count for both, as served
    return InProcessPipeline.served(config.models, engines["detector"], engines["labeller"],
                                    threads=plan["detector"].threads, runtime=config.serving.cpu_runtime,
                                    precision=config.serving.cpu_precision)


def _assert_equal(served: dict[str, np.ndarray], local: dict[str, np.ndarray]) -> None:
    for name in OUTPUTS:
        np.testing.assert_array_equal(served[name], local[name], err_msg=name)


def test_openvino_served_equals_openvino_in_process_exactly(triton: Config, engines: dict[str, Path]) -> None:
    assert triton.serving.cpu_runtime == "openvino"
    frames = _frames()
    local = _in_process(triton, engines)
    assert local.detector.description.startswith("openvino")
    _assert_equal(_served(triton, frames), local.frames(frames))
    lines = "\n".join(read_log(triton, lines=400))
    # The served step said what it runs; `make engines` compiled it already, so it came from the cache.
    assert f"detector: {local.detector.description}, from OpenVINO's model cache" in lines


def test_bf16_asked_for_is_served_only_where_the_cpu_and_the_gate_allow_it(engines: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """serving.cpu_precision: bf16 through config. Without AVX512_BF16/AMX (or without a passed gate) the
    networks fall back to f32, say so in one line of the server log, and give f32's results exactly."""
    folder = engines["detector"].parent
    expected = served_precision(folder, "bf16")
    repo = tmp_path / "model_repository"  # a copy: its configs are rewritten for bf16
    shutil.copytree(ROOT / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__", "openvino_cache"))
    with serving(tmp_path / "state", scheduling={"cpu_precision": "bf16"}, model_repository=str(repo)) as config:
        lines = read_log(config, lines=400)
        said = [line for line in lines if "detector: openvino" in line]
        assert len(said) >= 1, lines[-20:]
        if "BF16" not in cpu_capabilities():
            assert expected.precision == "f32"
            threads = serving_plan(config.serving)["detector"].threads
            assert f"detector: openvino f32, {threads} thread{'s' if threads > 1 else ''}" in said[0]
            assert "(bf16 asked for, but this CPU has neither AVX512_BF16 nor AMX: serving f32)" in said[0]
        else:
            gated = read_gate(folder).get("bf16", {}).get("passed", False)
            assert expected.precision == ("bf16" if gated else "f32")
            assert f"detector: openvino {expected.precision}" in said[0]
        frames = _frames()
        _assert_equal(_served(config, frames), _in_process(config, engines).frames(frames))
