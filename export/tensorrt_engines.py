"""ONNX -> TensorRT plans for the GPU repository, built, run and compared through Polygraphy (``polygraphy``).

``build_plan_from_onnx`` is a few named steps around one lazily composed Polygraphy chain
(``export/trt/loaders.py``): the up-to-date check against the plan's provenance record, the chain built from
the network spec (``NetworkSpec.trt_profile``: min 1, opt max/2, max ``serving.max_batch_size``; fp16 by
default, fp32, or int8 calibrated over real photos run through the shared preprocessing; the workspace
limit; a timing cache loaded before and merged after every build) and checked against the ONNX's inputs,
the build itself, then ``model.plan`` with its record ``model.plan.json`` (``mmw/engine_provenance.py``).
A plan whose record matches this machine, the flags and the ONNX is left alone, so ``make engines`` twice
builds nothing. ``run_plan`` runs a plan in Polygraphy's ``TrtRunner``; ``compare_plan_with_onnx`` checks it
against its ONNX with Polygraphy's ``Comparator``.

``tensorrt`` is optional and imported by Polygraphy on first use: on a machine with no NVIDIA GPU or no
TensorRT, ``build_plans`` returns one "skipped" line instead of failing.
"""

from __future__ import annotations

import datetime
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import polygraphy
from polygraphy.backend.trt import TrtRunner

from export.trt.loaders import engine_from_plan, plan_build_from_spec, profile_from_spec, profile_record
from export.trt.parity import OutputParity, compare_plan_with_onnx
from export.trt.polygraphy_errors import polygraphy_calls
from mmw.config import PROJECT_ROOT, Config, EnginesConfig
from mmw.engine_provenance import (
    PLAN_FILE,
    PlanProvenance,
    query_gpus,
    read_provenance,
    sha256_file,
    tensorrt_version,
    write_provenance,
)
from mmw.errors import EngineError
from mmw.specs import NETWORKS, NetworkSpec

__all__ = ["OutputParity", "build_plan_from_onnx", "build_plans", "compare_plan_with_onnx", "no_tensorrt_reason",
           "plan_is_current", "record_plan", "run_plan"]


def no_tensorrt_reason() -> str | None:
    """Why plans cannot be built here ("no NVIDIA GPU: ...", "no TensorRT: ..."), or None when they can."""
    gpus, gpu_reason = query_gpus()
    if not gpus:
        return f"no NVIDIA GPU: {gpu_reason}"
    version, trt_reason = tensorrt_version()
    if version is None:
        return f"no TensorRT: {trt_reason}; pip install tensorrt"
    return None


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _gpu() -> tuple[str, str]:
    gpus, reason = query_gpus()
    if not gpus:
        raise EngineError(f"no NVIDIA GPU to build TensorRT plans on ({reason})")
    return gpus[0].name, gpus[0].compute_capability


def plan_is_current(plan: Path, onnx: Path, settings: EnginesConfig, profile: dict[str, list[list[int]]]) -> bool:
    """The plan exists and its record matches the ONNX, the flags, this TensorRT, this Polygraphy and this GPU."""
    if not plan.is_file():
        return False
    try:
        rec = read_provenance(plan)
    except EngineError:
        return False
    gpu_name, cc = _gpu()
    return (rec.onnx_sha256 == sha256_file(onnx) and rec.plan_sha256 == sha256_file(plan)
            and rec.precision == settings.precision and rec.workspace_mb == settings.workspace_mb
            and rec.profile == profile and rec.tensorrt_version == tensorrt_version()[0]
            and rec.polygraphy_version == polygraphy.__version__
            and (rec.gpu_name, rec.compute_capability) == (gpu_name, cc))


def record_plan(spec: NetworkSpec, onnx: Path, plan: Path, settings: EnginesConfig,
                profile: dict[str, list[list[int]]], build_s: float) -> PlanProvenance:
    """Write ``model.plan.json`` for the plan just built here (this GPU, this TensorRT and Polygraphy)."""
    gpu_name, cc = _gpu()
    record = PlanProvenance(
        network=spec.name, tensorrt_version=tensorrt_version()[0] or "", gpu_name=gpu_name, compute_capability=cc,
        precision=settings.precision, profile=profile, workspace_mb=settings.workspace_mb,
        onnx=_shown(onnx), onnx_sha256=sha256_file(onnx), plan_sha256=sha256_file(plan),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        build_s=round(build_s, 1), polygraphy_version=polygraphy.__version__,
    )
    write_provenance(plan, record)
    return record


def build_plan_from_onnx(spec: NetworkSpec, onnx: Path, plan: Path, settings: EnginesConfig, max_batch_size: int,
                         timing_cache: Path, calibration: Iterable[Mapping[str, np.ndarray]] | None = None,
                         force: bool = False) -> str:
    """Build ``plan`` from ``onnx`` with the spec's profile and ``settings``; returns what happened (one line).

    ``calibration`` (int8 only): re-iterable feed dicts ``{input: batch}`` of the profile's opt shapes; default:
    the sample photos (or ``engines.calibration_images``) through the shared preprocessing.
    """
    if not onnx.is_file():
        raise EngineError(f"{spec.name}: ONNX {_shown(onnx)} not found; `make engines` exports it first")
    profile = profile_record(profile_from_spec(spec, max_batch_size))
    if not force and plan_is_current(plan, onnx, settings, profile):
        return "up to date"
    gpu_name = _gpu()[0]
    tmp = plan.with_name(plan.name + ".tmp")
    build = plan_build_from_spec(spec, onnx, tmp, settings, max_batch_size, timing_cache, calibration)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)  # Polygraphy locks the cache with a file beside it
    t0 = time.monotonic()
    try:
        with polygraphy_calls(f"{spec.name}: TensorRT could not build a plan from {_shown(onnx)}",
                              hint="see the TensorRT messages above; a larger engines.workspace_mb may help"):
            build()
        tmp.replace(plan)
    finally:
        tmp.unlink(missing_ok=True)
    build_s = time.monotonic() - t0
    record = record_plan(spec, onnx, plan, settings, profile, build_s)
    return f"built in {build_s:.0f} s ({settings.precision}, TensorRT {record.tensorrt_version}, {gpu_name})"


def build_plans(config: Config, onnx_repository: Path, force: bool = False) -> list[str]:
    """The GPU repository (``engines.gpu_repository``) with its plans, or one "skipped" line without a GPU."""
    from mmw.repository import write_repository

    engines = config.engines
    reason = no_tensorrt_reason()
    if reason is not None:
        return [f"TensorRT plans: skipped ({reason})"]
    root = config.path(engines.gpu_repository)
    changed = write_repository(config, root, "gpu", engines.gpu_backend)
    lines = [f"GPU repository {_shown(root)}: {len(changed)} files rewritten" if changed
             else f"GPU repository {_shown(root)}: configs up to date"]
    for spec in NETWORKS.values():
        onnx = onnx_repository / spec.name / "1" / "model.onnx"
        if engines.gpu_backend == "onnxruntime":
            target = root / spec.name / "1" / "model.onnx"
            if not target.is_file() or sha256_file(target) != sha256_file(onnx):
                shutil.copyfile(onnx, target)
            lines.append(f"{spec.name}: {_shown(target)}: ONNX for onnxruntime on the GPU (no plan needed)")
            continue
        plan = root / spec.name / "1" / PLAN_FILE
        outcome = build_plan_from_onnx(spec, onnx, plan, engines, config.serving.max_batch_size,
                                       config.path(engines.timing_cache), force=force)
        lines.append(f"{spec.name}: {_shown(plan)}: {outcome}")
    return lines


def run_plan(plan: Path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a plan once on ``inputs`` (numpy, batch first) in Polygraphy's ``TrtRunner``; every output as numpy."""
    if not plan.is_file():
        raise EngineError(f"{_shown(plan)}: no such plan; build it with `make engines` on a machine with an NVIDIA GPU")
    with polygraphy_calls(f"{_shown(plan)}: TensorRT cannot run it",
                          hint="inputs must match the plan's names, dtypes and profile; a plan only loads on the "
                               "TensorRT and GPU it was built with"):
        with TrtRunner(engine_from_plan(plan)) as runner:
            outputs = runner.infer(feed_dict=dict(inputs))
            return {name: np.array(array, copy=True) for name, array in outputs.items()}  # the runner reuses buffers
