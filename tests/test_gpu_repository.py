"""The GPU repository variant and model warmup, generated to folders and parsed back; the engines settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmw.config import Config, build
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.errors import ConfigError
from mmw.repository import parse_config, write_repository
from mmw.specs import NETWORKS, REFERENCE_CORES
from tests.conftest import ROOT

KIND_GPU = 1


def _parsed(root: Path) -> dict:
    return {p.parent.name: parse_config(p.read_text()) for p in sorted(root.glob("*/config.pbtxt"))}


@pytest.mark.parametrize(
    ("engines", "platform", "accelerator"),
    [
        ({"gpu_backend": "tensorrt"}, "tensorrt_plan", None),
        ({"gpu_backend": "onnxruntime"}, "onnxruntime_onnx", {"precision_mode": "FP16",
                                                              "max_workspace_size_bytes": str(1024 << 20)}),
        ({"gpu_backend": "onnxruntime", "precision": "fp32", "workspace_mb": 512}, "onnxruntime_onnx",
         {"precision_mode": "FP32", "max_workspace_size_bytes": str(512 << 20)}),
        ({"gpu_backend": "onnxruntime", "onnxruntime_accelerator": "cuda"}, "onnxruntime_onnx", None),
    ],
    ids=["tensorrt", "onnxruntime-trt-fp16", "onnxruntime-trt-fp32", "onnxruntime-cuda"],
)
def test_both_variants_written_and_parsed_back(tmp_path: Path, engines: dict, platform: str,
                                               accelerator: dict | None) -> None:
    """Same ensembles (names, inputs, outputs, steps) in both; networks native on KIND_GPU; pre/post python."""
    config = build(Config, {"engines": {**engines, "gpu_repository": str(tmp_path / "gpu")}})
    write_repository(config, tmp_path / "cpu", "cpu", cores=REFERENCE_CORES)
    write_repository(config, tmp_path / "gpu", cores=REFERENCE_CORES)  # variant and backend from the config
    cpu, gpu = _parsed(tmp_path / "cpu"), _parsed(tmp_path / "gpu")
    assert set(cpu) == set(gpu)
    for name in (ENSEMBLE_NAME, RAW_ENSEMBLE_NAME):
        assert gpu[name] == cpu[name]  # clients never change
        assert [t.name for t in gpu[name].output] == [t.name for t in cpu[name].output]
    for name in NETWORKS:
        net = gpu[name]
        assert net.platform == platform and not net.backend
        assert [g.kind for g in net.instance_group] == [KIND_GPU]
        assert list(net.input) == list(cpu[name].input) and list(net.output) == list(cpu[name].output)
        assert not net.parameters  # onnx_file / onnx_threads belong to the CPU python model
        assert [(w.name, w.batch_size) for w in net.model_warmup] == [("zeros_batch_1", 1), ("zeros_batch_8", 8)]
        accelerators = net.optimization.execution_accelerators.gpu_execution_accelerator
        if accelerator is None:
            assert len(accelerators) == 0
        else:
            assert [a.name for a in accelerators] == ["tensorrt"] and dict(accelerators[0].parameters) == accelerator
    for name, model in gpu.items():
        if name in NETWORKS or model.platform == "ensemble":
            continue
        assert model.backend == "python" and model.instance_group[0].kind != KIND_GPU
        assert (tmp_path / "gpu" / name / "1" / "model.py").read_bytes() == (
            ROOT / "model_repository" / name / "1" / "model.py").read_bytes()
    assert not (tmp_path / "gpu" / "detector" / "1" / "model.py").exists()
    assert write_repository(config, tmp_path / "gpu", cores=REFERENCE_CORES) == []  # idempotent


def test_warmup_samples_match_the_network_inputs(tmp_path: Path) -> None:
    write_repository(Config(), tmp_path, "cpu", cores=REFERENCE_CORES)
    parsed = _parsed(tmp_path)
    for name, spec in NETWORKS.items():
        for sample in parsed[name].model_warmup:
            assert set(sample.inputs) == {t.name for t in spec.inputs}
            for t in spec.inputs:
                value = sample.inputs[t.name]
                assert list(value.dims) == list(t.dims) and value.zero_data
                assert parsed[name].input[0].data_type == value.data_type
    # python models with BYTES / variable-size inputs get no warmup (a zero JPEG would not decode)
    assert all(not m.model_warmup for n, m in parsed.items() if n not in NETWORKS)
    off = build(Config, {"serving": {"warmup": False, "max_batch_size": 1}})
    write_repository(off, tmp_path / "off", "cpu", cores=REFERENCE_CORES)
    assert all(not m.model_warmup for m in _parsed(tmp_path / "off").values())
    one = build(Config, {"serving": {"max_batch_size": 1}})
    write_repository(one, tmp_path / "one", "gpu", "tensorrt", cores=REFERENCE_CORES)
    assert [w.batch_size for w in _parsed(tmp_path / "one")["detector"].model_warmup] == [1]


def test_committed_repository_has_warmup() -> None:
    detector = parse_config((ROOT / "model_repository" / "detector" / "config.pbtxt").read_text())
    assert [w.batch_size for w in detector.model_warmup] == [1, 8]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"engines": {"precision": "fp8"}}, "engines.precision: expected one of 'fp16', 'fp32', 'int8', got 'fp8'"),
        ({"engines": {"gpu_backend": "torch"}},
         "engines.gpu_backend: expected one of 'tensorrt', 'onnxruntime', got 'torch'"),
        ({"engines": {"workspace_mb": 0}}, r"engines.workspace_mb: expected 16..1048576 MiB, got 0"),
        ({"engines": {"workspace_mb": "1G"}}, "engines.workspace_mb: expected an integer, got str"),
        ({"engines": {"timing_cache": ""}}, "engines.timing_cache: expected a file path"),
        ({"engines": {"onnxruntime_accelerator": "rocm"}},
         "engines.onnxruntime_accelerator: expected one of 'tensorrt', 'cuda', got 'rocm'"),
        ({"engines": {"plans": "x"}}, "engines.plans: unknown setting; allowed keys under engines: "),
        ({"serving": {"warmup": "yes"}}, "serving.warmup: expected true or false, got str"),
    ],
)
def test_bad_engine_settings_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(Config, data)
