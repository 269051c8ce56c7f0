"""The CPU runtimes (mmw/network_runtimes.py) and the fidelity gate of a precision (export/precision_gate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmw.errors import ExportError
from mmw.network_runtimes import (
    GATE_FILE,
    OnnxRuntimeRunner,
    PrecisionChoice,
    cpu_capabilities,
    ir_path,
    open_network,
    resolve_precision,
    served_precision,
)

NO_BF16 = frozenset({"FP32", "INT8"})
WITH_BF16 = frozenset({"FP32", "INT8", "BF16"})


@pytest.mark.parametrize(("requested", "caps", "precision", "note"), [
    ("auto", WITH_BF16, "bf16", ""),
    ("auto", NO_BF16, "f32", ""),
    ("bf16", WITH_BF16, "bf16", ""),
    ("bf16", NO_BF16, "f32", "bf16 asked for, but this CPU has neither AVX512_BF16 nor AMX: serving f32"),
    ("f32", WITH_BF16, "f32", ""),
    ("int8", NO_BF16, "int8", ""),
])
def test_resolve_precision(requested: str, caps: frozenset[str], precision: str, note: str) -> None:
    assert resolve_precision(requested, caps) == PrecisionChoice(precision, note)


def test_an_unknown_precision_names_the_allowed_ones() -> None:
    with pytest.raises(ExportError, match=r"serving.cpu_precision: expected one of auto, f32, bf16, int8, got 'fp8'"):
        resolve_precision("fp8", NO_BF16)


def _gate(folder: Path, **precisions: bool) -> Path:
    record = {p: {"passed": ok, "detail": f"{p} detail"} for p, ok in precisions.items()}
    (folder / GATE_FILE).write_text(json.dumps({"precisions": record}), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("requested", "caps", "gates", "quantizable", "precision", "note"), [
    ("auto", WITH_BF16, {"bf16": True}, True, "bf16", ""),
    ("auto", WITH_BF16, {"bf16": False}, True, "f32", "bf16 failed the fidelity gate (bf16 detail): serving f32"),
    ("auto", WITH_BF16, {}, True, "f32", "bf16 has not passed the fidelity gate of `make engines`"),
    ("bf16", NO_BF16, {"bf16": True}, True, "f32", "bf16 asked for, but this CPU has neither"),
    ("int8", NO_BF16, {"int8": True}, True, "int8", ""),
    ("int8", NO_BF16, {"int8": False}, True, "f32", "int8 failed the fidelity gate (int8 detail): serving f32"),
    ("int8", WITH_BF16, {"bf16": True}, False, "bf16", "int8 asked for, but these networks are not quantized"),
    ("f32", WITH_BF16, {"bf16": True}, True, "f32", ""),
])
def test_the_served_precision_follows_the_cpu_and_the_gate(tmp_path: Path, requested: str, caps: frozenset[str],
                                                         gates: dict[str, bool], quantizable: bool, precision: str,
                                                         note: str) -> None:
    choice = served_precision(_gate(tmp_path, **gates), requested, caps, quantizable)
    assert choice.precision == precision
    assert choice.note.startswith(note) and bool(choice.note) == bool(note)


def test_an_unknown_runtime_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"serving.cpu_runtime: expected one of openvino, onnxruntime, got .tvm."):
        open_network(tmp_path / "model.onnx", "tvm")


def test_a_missing_model_says_run_make_engines(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"model.onnx: not found; run `make engines`"):
        open_network(tmp_path / "model.onnx", "openvino", "f32")


# --- on the real networks ----------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("network", ["detector", "labeller"])
def test_openvino_f32_matches_onnxruntime_and_comes_from_the_saved_ir(engines: dict[str, Path], network: str) -> None:
    onnx = engines[network]
    assert ir_path(onnx).is_file() and ir_path(onnx).with_suffix(".bin").is_file()  # make engines saved the IR
    shape = (300, 300, 3) if network == "detector" else (224, 224, 3)
    x = np.random.default_rng(0).uniform(0, 255, (3, *shape)).astype(np.float32)
    reference = OnnxRuntimeRunner(onnx, threads=1).run(None, {"images": x})
    runner, note = open_network(onnx, "openvino", threads=1, choice=PrecisionChoice("f32"))
    assert (note, runner.description) == ("", "openvino f32, 1 thread")
    for ours, theirs in zip(runner.run(None, {"images": x}), reference, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=1e-3)


@pytest.mark.integration
def test_openvino_is_deterministic_across_batch_sizes(engines: dict[str, Path]) -> None:
    """What the served step computes for a merged batch equals what it computes for each request alone."""
    runner, _ = open_network(engines["labeller"], "openvino", threads=1, choice=PrecisionChoice("f32"))
    x = np.random.default_rng(1).uniform(0, 255, (4, 224, 224, 3)).astype(np.float32)
    (whole,) = runner.run(None, {"images": x})
    (first,) = runner.run(None, {"images": x[:1]})
    np.testing.assert_allclose(first[0], whole[0], atol=1e-5)


class _ShiftedDetector:
    """A candidate whose boxes are off by a tenth of the anchor size: a gate must refuse it."""

    def __init__(self, runner) -> None:
        self.runner, self.description = runner, "shifted"

    def run(self, names, feeds):
        boxes, scores = self.runner.run(names, feeds)
        return [boxes + np.float32(1.0), scores]


@pytest.mark.integration
def test_the_gate_passes_openvino_f32_and_refuses_a_real_difference_on_real_photos(engines: dict[str, Path]) -> None:
    from export.fidelity import PHOTOS, fidelity_frames
    from export.precision_gate import detector_gate, labeller_gate

    frames = fidelity_frames(PHOTOS[:3], ((640, 480), (1920, 1080)), ())
    reference = OnnxRuntimeRunner(engines["detector"], threads=2)
    candidate, _ = open_network(engines["detector"], "openvino", threads=2, choice=PrecisionChoice("f32"))
    passed = detector_gate(reference, candidate, frames, "f32")
    assert passed.passed and passed.total >= 10 and passed.matched == passed.total, passed.detail
    assert passed.reference_ms > 0 and passed.candidate_ms > 0
    refused = detector_gate(reference, _ShiftedDetector(candidate), frames, "f32")
    assert not refused.passed and refused.matched < refused.total * 0.9, refused.detail
    assert refused.record()["passed"] is False and "boxes match onnxruntime fp32, need >= 99%" in refused.detail

    lab_ref = OnnxRuntimeRunner(engines["labeller"], threads=2)
    lab, _ = open_network(engines["labeller"], "openvino", threads=2, choice=PrecisionChoice("f32"))
    labels = labeller_gate(lab_ref, lab, frames, "f32")
    assert labels.passed and labels.matched == labels.total == len(frames)


@pytest.mark.integration
def test_make_engines_recorded_the_gate_of_what_it_serves(engines: dict[str, Path]) -> None:
    for network in ("detector", "labeller"):
        record = json.loads((engines[network].parent / GATE_FILE).read_text(encoding="utf-8"))
        assert record["precisions"]["f32"]["passed"] is True
        wanted = resolve_precision("auto", cpu_capabilities()).precision
        assert wanted in record["precisions"]  # the precision `auto` serves here was gated


@pytest.mark.integration
@pytest.mark.parametrize("arch", ["blip", "git"])
def test_the_captioner_gate_tokens_equal_on_the_tiny_checkpoints(exported_captioners: dict[str, Path],
                                                                arch: str) -> None:
    from export.fidelity import PHOTOS
    from export.precision_gate import captioner_gate
    from mmw.captioner import OnnxCaptioner
    from tests.conftest import photo

    folder = exported_captioners[arch]
    reference = OnnxCaptioner(folder, threads=2)
    precision = resolve_precision("auto", cpu_capabilities()).precision
    candidate = OnnxCaptioner(folder, threads=2, runtime="openvino", choice=PrecisionChoice(precision))
    assert candidate.encoder.description.startswith(f"openvino {precision}")
    result = captioner_gate(reference, candidate, [photo(name) for name in PHOTOS], precision, num_beams=2,
                            max_new_tokens=8)
    assert result.passed and result.matched == result.total == len(PHOTOS), result.detail
