"""A TensorRT plan against its ONNX, through Polygraphy's ``Comparator``: same inputs, every output within tolerance.

The plan runs in ``TrtRunner``, the ONNX in Polygraphy's onnxruntime runner, on the same feed dicts; each
output is checked element-wise with ``SimpleCompareFunc`` (an element fails when it exceeds both ``atol``
and ``rtol`` relative to the ONNX output). The tolerances are the spec's (``NetworkSpec.atol/rtol``, the
ONNX export's own) unless the caller passes others: a caller's value wins. As in the ONNX validator, the
output names are checked against the spec first, then every output is compared and one
``ExportValidationError`` lists each that failed with its largest differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.backend.trt import TrtRunner
from polygraphy.comparator import Comparator, SimpleCompareFunc

from export.trt.loaders import engine_from_plan
from export.trt.polygraphy_errors import polygraphy_calls
from mmw.errors import ExportValidationError
from mmw.specs import NetworkSpec


@dataclass(frozen=True)
class OutputParity:
    """One output over all feeds: the largest differences seen and whether every element was within tolerance."""

    name: str
    max_absdiff: float
    max_reldiff: float
    atol: float
    rtol: float
    passed: bool
    shapes_match: bool = True

    def __str__(self) -> str:
        if not self.shapes_match:
            return f"{self.name}: shapes differ"
        return (f"{self.name}: max abs diff {self.max_absdiff:.3g} (atol {self.atol:g}), max rel diff "
                f"{self.max_reldiff:.3g} (rtol {self.rtol:g})")


def _output_parity(name: str, compared: list, atol: float, rtol: float) -> OutputParity:
    """Fold one output's per-feed results (``OutputCompareResult``, or a bare False when the shapes differ)."""
    stats = [c for c in compared if hasattr(c, "max_absdiff")]
    if len(stats) < len(compared):
        return OutputParity(name, float("nan"), float("nan"), atol, rtol, passed=False, shapes_match=False)
    return OutputParity(name, max(c.max_absdiff for c in stats), max(c.max_reldiff for c in stats), atol, rtol,
                        passed=all(bool(c) for c in stats))


def compare_runners(spec: NetworkSpec, runner: BaseRunner, reference: BaseRunner,
                    feeds: Iterable[Mapping[str, np.ndarray]], atol: float | None = None,
                    rtol: float | None = None) -> list[OutputParity]:
    """``runner`` vs ``reference`` on ``feeds``; ExportValidationError listing every output out of tolerance."""
    atol = spec.atol if atol is None else atol
    rtol = spec.rtol if rtol is None else rtol
    feeds = [dict(feed) for feed in feeds]
    if not feeds:
        raise ExportValidationError(f"{spec.name}: parity needs at least one feed dict, got none")
    with polygraphy_calls(f"{spec.name}: running {runner.name} and {reference.name} failed"):
        results = Comparator.run([runner, reference], data_loader=feeds)
        expected = [t.name for t in spec.outputs]
        for name, iterations in results.items():
            got = list(iterations[0].keys())
            if sorted(got) != sorted(expected):
                raise ExportValidationError(f"{spec.name}: {name} gives outputs {sorted(got)}, the spec declares "
                                            f"{sorted(expected)}")
        accuracy = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=rtol))
    per_output: dict[str, list] = {name: [] for name in expected}
    for result in accuracy:
        for iterations in result.values():
            for outputs in iterations:
                for name, compared in outputs.items():
                    per_output[name].append(compared)
    report = [_output_parity(name, compared, atol, rtol) for name, compared in per_output.items()]
    failed = [r for r in report if not r.passed]
    if failed:
        raise ExportValidationError(f"{spec.name}: {runner.name} differs from {reference.name} beyond the tolerance "
                                    f"on {len(feeds)} feed(s): " + "; ".join(str(r) for r in failed))
    return report


def compare_plan_with_onnx(spec: NetworkSpec, plan: Path, onnx: Path, feeds: Iterable[Mapping[str, np.ndarray]],
                           atol: float | None = None, rtol: float | None = None) -> list[OutputParity]:
    """The plan (TensorRT) against its ONNX (onnxruntime, CPU) on ``feeds`` within the spec's (or given) tolerance."""
    return compare_runners(spec, TrtRunner(engine_from_plan(plan), name=f"{spec.name}-tensorrt"),
                           OnnxrtRunner(SessionFromOnnx(str(onnx)), name=f"{spec.name}-onnxruntime"),
                           feeds, atol, rtol)
