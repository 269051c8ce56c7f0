"""TensorRT plans: the no-GPU skip line here; on an NVIDIA GPU (marked ``gpu``) the build, its provenance and
parity with the ONNX networks on real photos within the listed fp16 tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import tensorrt_engines
from export.tensorrt_engines import build_plan_from_onnx, build_plans, no_tensorrt_reason
from mmw.config import Config, build
from mmw.engine_provenance import GpuInfo, check_plan, current_environment, read_provenance
from mmw.onnx_runtime import create_session
from mmw.processing.classification import top_k
from mmw.processing.detection import postprocess_detections
from mmw.processing.images import detector_input, labeller_input
from mmw.processing.nms import box_iou
from mmw.specs import DETECTOR, LABELLER
from tests.conftest import PHOTOS, ROOT, photo

# fp16 tolerance of TensorRT vs ONNX (onnxruntime, fp32), after the shared postprocessing
MIN_IOU = 0.9  # every matched box
SCORE = 0.5  # detections compared: above this score ...
SCORE_MARGIN = 0.05  # ... by this margin (a box at 0.51 may fall under 0.5 in fp16)
# labeller: the top-1 scene label is the same

REASON = no_tensorrt_reason()
SKIP_REASON = f"needs an NVIDIA GPU and the tensorrt package (none on this machine: {REASON})"
gpu_only = pytest.mark.skipif(REASON is not None, reason=SKIP_REASON)


def test_no_gpu_means_one_skip_line(tmp_path: Path) -> None:
    if REASON is None:
        pytest.skip("this machine has an NVIDIA GPU and TensorRT: the plans are built (see the gpu tests)")
    config = build(Config, {"engines": {"gpu_repository": str(tmp_path / "gpu")}})
    lines = build_plans(config, ROOT / "model_repository")
    assert lines == [f"TensorRT plans: skipped ({REASON})"] and "\n" not in lines[0]
    assert not (tmp_path / "gpu").exists()


def test_skip_reason_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((), "nvidia-smi not found"))
    assert no_tensorrt_reason() == "no NVIDIA GPU: nvidia-smi not found"
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((GpuInfo("NVIDIA L4", "8.9"),), ""))
    monkeypatch.setattr(tensorrt_engines, "tensorrt_version", lambda: (None, "the tensorrt package is not installed"))
    assert no_tensorrt_reason() == "no TensorRT: the tensorrt package is not installed; pip install tensorrt"


@pytest.fixture(scope="module")
def plans(engines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plans built from the shipped ONNX with the default settings (fp16), timing cache in tmp."""
    if REASON is not None:
        pytest.skip(SKIP_REASON)
    root = tmp_path_factory.mktemp("plans")
    config = Config()
    out = {}
    for spec in (DETECTOR, LABELLER):
        plan = root / spec.name / "1" / "model.plan"
        outcome = build_plan_from_onnx(spec, engines[spec.name], plan, config.engines, config.serving.max_batch_size,
                                       root / "timing.cache")
        assert outcome.startswith("built in "), outcome
        out[spec.name] = plan
    return out


@pytest.mark.gpu
@gpu_only
def test_plans_carry_provenance_and_rebuild_is_a_no_op(plans: dict[str, Path], engines: dict[str, Path]) -> None:
    env = current_environment()
    config = Config()
    for name, plan in plans.items():
        record = check_plan(plan, env)  # this machine, this TensorRT, the ONNX on disk
        assert record.precision == "fp16" and record.workspace_mb == config.engines.workspace_mb
        assert record.profile == {"images": [list(s) for s in
                                             (DETECTOR if name == "detector" else LABELLER).trt_profile(8)["images"]]}
        assert read_provenance(plan).tensorrt_version == env.tensorrt_version
    assert (plans["detector"].parent.parent.parent / "timing.cache").stat().st_size > 0
    before = plans["labeller"].stat().st_mtime_ns
    again = build_plan_from_onnx(LABELLER, engines["labeller"], plans["labeller"], config.engines, 8,
                                 plans["labeller"].parent.parent.parent / "timing.cache")
    assert again == "up to date" and plans["labeller"].stat().st_mtime_ns == before


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("name", PHOTOS)
def test_detector_plan_matches_onnx(name: str, plans: dict[str, Path], engines: dict[str, Path]) -> None:
    """Same classes and IoU >= 0.9 for every box clearly above the score threshold, both ways."""
    rgb = photo(name)
    x = detector_input(rgb)[None]
    onnx = create_session(engines["detector"]).run(None, {"images": x})
    trt = tensorrt_engines.run_plan(plans["detector"], {"images": x})
    ref = postprocess_detections(onnx[0][0], onnx[1][0], rgb.shape[:2], SCORE, 0.6, 100)
    got = postprocess_detections(trt["box_encodings"][0], trt["class_scores"][0], rgb.shape[:2], SCORE, 0.6, 100)
    for a, b in ((ref, got), (got, ref)):
        for i in np.flatnonzero(a.scores >= SCORE + SCORE_MARGIN):
            same_class = b.class_ids == a.class_ids[i]
            assert same_class.any(), (name, a.class_ids[i])
            assert box_iou(a.boxes[i : i + 1], b.boxes[same_class]).max() >= MIN_IOU


@pytest.mark.gpu
@gpu_only
def test_labeller_plan_top1_equals_onnx(plans: dict[str, Path], engines: dict[str, Path]) -> None:
    x = np.stack([labeller_input(photo(n)) for n in PHOTOS])
    onnx = create_session(engines["labeller"]).run(None, {"images": x})[0]
    trt = tensorrt_engines.run_plan(plans["labeller"], {"images": x})["logits"]
    assert top_k(trt, 1)[0][:, 0].tolist() == top_k(onnx, 1)[0][:, 0].tolist()


class _Recorder:
    """A stand-in for the ``tensorrt`` module that records the builder calls (wiring only: no GPU, no engine)."""

    __version__ = "10.5.0.18"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        rec = self

        class Obj:
            def __init__(self, name: str) -> None:
                self._name = name

            def __getattr__(self, attr: str):
                if attr in ("num_inputs", "platform_has_fast_fp16"):
                    return 1
                def call(*args, **kwargs):
                    rec.calls.append((f"{self._name}.{attr}", args))
                    return {"parse_from_file": True, "build_serialized_network": b"PLAN",
                            "serialize": b"CACHE", "get_input": type("I", (), {"name": "images"})()}.get(
                        attr, Obj(attr))
                return call

        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.Builder = lambda logger: Obj("builder")
        self.OnnxParser = lambda network, logger: Obj("parser")
        self.NetworkDefinitionCreationFlag = type("F", (), {"EXPLICIT_BATCH": 0})
        self.MemoryPoolType = type("M", (), {"WORKSPACE": "WORKSPACE"})
        self.BuilderFlag = type("B", (), {"FP16": "FP16", "INT8": "INT8"})


def test_builder_wiring_with_a_recording_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profile shapes from the spec, fp16, workspace, timing cache loaded and saved, plan + provenance written."""
    import sys

    fake = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    h100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((h100,), ""))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx bytes")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    plan = tmp_path / "repo" / "labeller" / "1" / "model.plan"
    outcome = build_plan_from_onnx(LABELLER, onnx, plan, Config().engines, 8, cache)
    assert outcome.startswith("built in ") and "fp16, TensorRT 10.5.0.18, NVIDIA H100 80GB HBM3" in outcome
    calls = dict((name.split(".")[-1], args) for name, args in fake.calls)
    assert calls["set_shape"] == ("images", (1, 224, 224, 3), (4, 224, 224, 3), (8, 224, 224, 3))
    assert calls["set_flag"] == ("FP16",)
    assert calls["set_memory_pool_limit"] == ("WORKSPACE", 1024 << 20)
    assert calls["create_timing_cache"] == (b"OLD",)
    assert plan.read_bytes() == b"PLAN" and cache.read_bytes() == b"CACHE"
    record = read_provenance(plan)
    assert (record.gpu_name, record.compute_capability, record.tensorrt_version) == (h100.name, "9.0", "10.5.0.18")
    assert record.profile == {"images": [[1, 224, 224, 3], [4, 224, 224, 3], [8, 224, 224, 3]]}
    monkeypatch.setattr(tensorrt_engines, "tensorrt_version", lambda: ("10.5.0.18", ""))
    assert build_plan_from_onnx(LABELLER, onnx, plan, Config().engines, 8, cache) == "up to date"
