"""PyTorch -> ONNX, validated against the source model with the spec's tolerance.

Each export writes ``model.onnx`` and, beside it, ``model.onnx.json``: what it was built from
(a fingerprint of the weights, the spec and the export code) and what validation measured.
An export whose fingerprint is unchanged is skipped, so ``make engines`` twice does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmw.engine_provenance import sha256_file
from mmw.errors import ExportError, ExportValidationError
from mmw.onnx_runtime import create_session
from mmw.specs import NetworkSpec

_CODE_FILES = ("export/onnx_export.py", "export/ssd_mobilenet_v2.py", "export/efficientnet_lite.py",
               "export/tf_graphdef.py", "mmw/specs.py")


@dataclass(frozen=True)
class ValidationReport:
    """Worst differences between ONNX (onnxruntime) and PyTorch over the validation batches."""

    max_abs_diff: dict[str, float]
    batches: tuple[int, ...]
    atol: float
    rtol: float


def fingerprint(spec: NetworkSpec, weights: Path, root: Path) -> str:
    """What an export depends on: the weights, the spec, the export code and the torch version."""
    h = hashlib.sha256()
    h.update(sha256_file(weights).encode())
    h.update(repr(spec).encode())
    h.update(torch.__version__.encode())
    for rel in _CODE_FILES:
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def export_to_onnx(module: torch.nn.Module, spec: NetworkSpec, example: torch.Tensor, path: Path) -> None:
    """torch.onnx.export with the names and dynamic axes the spec declares."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(tmp), input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs], dynamic_axes=spec.dynamic_axes(),
            opset_version=spec.opset, dynamo=False, do_constant_folding=True,
        )
    tmp.replace(path)


def validate_onnx(module: torch.nn.Module, spec: NetworkSpec, path: Path,
                  make_input: Callable[[int], torch.Tensor], batches: tuple[int, ...] = (1, 3)) -> ValidationReport:
    """Run ONNX and PyTorch on the same inputs; raise when any output differs beyond atol + rtol*|ref|."""
    session = create_session(path, threads=2)
    worst = {t.name: 0.0 for t in spec.outputs}
    for batch in batches:
        x = make_input(batch)
        with torch.no_grad():
            ref = module(x)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = session.run([t.name for t in spec.outputs], {spec.inputs[0].name: x.numpy()})
        for t, r, g in zip(spec.outputs, ref, got, strict=False):
            r = r.numpy()
            expected_shape = (batch, *t.dims)
            if g.shape != expected_shape:
                raise ExportValidationError(f"{spec.name}.{t.name}: expected shape {expected_shape}, got {g.shape}")
            diff = np.abs(g - r)
            worst[t.name] = max(worst[t.name], float(diff.max()))
            bad = diff > spec.atol + spec.rtol * np.abs(r)
            if bad.any():
                raise ExportValidationError(
                    f"{spec.name}.{t.name}: ONNX differs from PyTorch at {int(bad.sum())} values (batch {batch}); "
                    f"max |diff| {diff.max():.3g}, allowed atol {spec.atol} + rtol {spec.rtol} * |ref|"
                )
    return ValidationReport(worst, batches, spec.atol, spec.rtol)


def read_stamp(path: Path) -> dict:
    stamp = path.with_suffix(".onnx.json")
    try:
        return json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_network(spec: NetworkSpec, load: Callable[[], torch.nn.Module], weights: Path,
                  make_input: Callable[[int], torch.Tensor], path: Path, root: Path, force: bool = False) -> str:
    """Export and validate one network unless its stamp says it is up to date. Returns what happened."""
    if not weights.is_file():
        raise ExportError(f"{spec.name}: weights file {weights} not found")
    fp = fingerprint(spec, weights, root)
    if not force and path.is_file() and read_stamp(path).get("fingerprint") == fp:
        return "up to date"
    module = load()
    export_to_onnx(module, spec, make_input(2), path)
    report = validate_onnx(module, spec, path, make_input)
    stamp = {
        "network": spec.name, "source": spec.source, "weights": str(weights.name),
        "weights_sha256": sha256_file(weights), "fingerprint": fp, "torch": torch.__version__,
        "opset": spec.opset, "onnx_sha256": sha256_file(path), "validation": dataclasses.asdict(report),
    }
    path.with_suffix(".onnx.json").write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    worst = ", ".join(f"{k} {v:.2g}" for k, v in report.max_abs_diff.items())
    return f"exported and validated (max |ONNX - PyTorch|: {worst}; atol {spec.atol})"
