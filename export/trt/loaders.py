"""ONNX -> TensorRT plan as a chain of Polygraphy loaders, composed lazily from a ``NetworkSpec`` and the settings.

    SaveBytes(path) <- EngineBytesFromNetwork(save_timing_cache) <- NetworkFromOnnxPath(onnx)
                                             ^
                       BuilderConfigFromSettings: CreateConfig(precision flags, [Profile from
                       NetworkSpec.trt_profile], load_timing_cache) + workspace pool + int8 Calibrator

Constructing the chain (:func:`plan_build_from_spec`) only stores arguments, after checking them against
the ONNX's declared inputs (names, dtypes, ranks, fixed dims: read from the file, no TensorRT, no GPU) and
the known precisions. Calling it parses the ONNX, builds and saves the plan, and merges the timing cache.
A plan is run through ``TrtRunner`` over :func:`engine_from_plan`. ``tensorrt`` is imported by Polygraphy on
first use, i.e. when a loader is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseLoader
from polygraphy.backend.common import BytesFromPath, SaveBytes
from polygraphy.backend.onnx import onnx_from_path
from polygraphy.backend.onnx import util as onnx_util
from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, EngineFromBytes, NetworkFromOnnxPath, Profile
from polygraphy.mod.trt_importer import lazy_import_trt

from export.trt.calibration import CalibrationBatches, CalibratorFromBatches
from export.trt.polygraphy_errors import polygraphy_calls
from mmw.config import EnginesConfig
from mmw.errors import EngineError
from mmw.specs import NetworkSpec

trt = lazy_import_trt()  # Polygraphy's lazy module: imported on first attribute access, PolygraphyException if absent

#: engines.precision -> Polygraphy ``CreateConfig`` flags (int8 keeps fp16 for the layers it cannot quantize).
PRECISIONS: dict[str, dict[str, bool]] = {"fp32": {}, "fp16": {"fp16": True}, "int8": {"fp16": True, "int8": True}}


def precision_flags(precision: str) -> dict[str, bool]:
    """``CreateConfig`` keyword flags for ``precision``; EngineError for a precision Polygraphy is not given here."""
    if precision not in PRECISIONS:
        raise EngineError(f"engines.precision: expected one of {', '.join(sorted(PRECISIONS))}, got {precision!r}")
    return dict(PRECISIONS[precision])


def profile_from_spec(spec: NetworkSpec, max_batch_size: int) -> Profile:
    """The optimisation profile ``NetworkSpec.trt_profile`` declares: every input's (min, opt, max) shapes."""
    variable = [t.name for t in spec.inputs if -1 in t.dims]
    if variable:
        raise EngineError(f"{spec.name}: inputs {variable} have variable dims besides the batch ({spec.inputs}); they "
                          "need profile shapes of their own, only the batch axis is profiled here")
    profile = Profile()
    for name, (lo, opt, hi) in spec.trt_profile(max_batch_size).items():
        profile.add(name, lo, opt, hi)
    return profile


def profile_record(profile: Profile) -> dict[str, list[list[int]]]:
    """The profile as ``model.plan.json`` records it: input -> [min, opt, max] shapes."""
    return {name: [list(shape) for shape in shapes] for name, shapes in profile.items()}


def check_onnx_inputs(spec: NetworkSpec, onnx: Path, profile: Profile) -> None:
    """The ONNX's inputs are the spec's (names, dtypes) and fit the profile (rank, fixed dims, min <= opt <= max)."""
    with polygraphy_calls(f"{spec.name}: cannot read the inputs of {onnx}"):
        inputs = onnx_util.get_input_metadata(onnx_from_path(str(onnx), ignore_external_data=True).graph)
    declared = {t.name: t for t in spec.inputs}
    if sorted(inputs) != sorted(declared) or sorted(profile) != sorted(declared):
        raise EngineError(f"{spec.name}: ONNX {onnx} has inputs {sorted(inputs)}, the spec declares "
                          f"{sorted(declared)} and the profile shapes {sorted(profile)}; re-export with `make engines`")
    for name, meta in inputs.items():
        if str(meta.dtype) != declared[name].dtype:
            raise EngineError(f"{spec.name}: ONNX input {name!r} is {meta.dtype}, the spec declares "
                              f"{declared[name].dtype}")
        dims = list(meta.shape)
        shapes = [tuple(s) for s in profile[name]]
        for shape in shapes:
            if len(shape) != len(dims):
                raise EngineError(f"{spec.name}: profile shape {list(shape)} for {name!r} has rank {len(shape)}, the "
                                  f"ONNX input {dims} has rank {len(dims)}")
            fixed = [(axis, d) for axis, (s, d) in enumerate(zip(shape, dims, strict=True))
                     if isinstance(d, int) and d >= 0 and s != d]
            if fixed:
                raise EngineError(f"{spec.name}: profile shape {list(shape)} for {name!r} does not fit the ONNX input "
                                  f"{dims} (axis {fixed[0][0]} is fixed at {fixed[0][1]})")
        if not all(lo <= opt <= hi for lo, opt, hi in zip(*shapes, strict=True)) or min(shapes[0]) < 1:
            raise EngineError(f"{spec.name}: profile for {name!r}: expected 1 <= min <= opt <= max on every axis, got "
                              f"min {list(shapes[0])}, opt {list(shapes[1])}, max {list(shapes[2])}")


class BuilderConfigFromSettings(BaseLoader):
    """(builder, network) -> ``trt.IBuilderConfig``: Polygraphy's ``CreateConfig`` plus the settings typed by TensorRT.

    ``create_config`` holds the precision flags, the profile and the timing cache to load. The workspace pool
    limit (a ``trt.MemoryPoolType`` key) and the int8 calibrator (a ``trt.IInt8EntropyCalibrator2``) are filled in
    on the call, when ``tensorrt`` is imported, so the chain is constructed and inspected without TensorRT.
    """

    def __init__(self, profile: Profile, precision: str, workspace_bytes: int, timing_cache: Path,
                 calibrator: CalibratorFromBatches | None = None) -> None:
        flags = precision_flags(precision)
        if flags.get("int8", False) != (calibrator is not None):
            raise EngineError(f"engines.precision {precision}: a calibrator is needed for int8 and only for int8, got "
                              f"{'one' if calibrator is not None else 'none'}")
        if workspace_bytes < 1 << 20:
            raise EngineError(f"engines.workspace_mb: expected at least 1 MiB of builder workspace, got "
                              f"{workspace_bytes} bytes")
        self.precision = precision
        self.workspace_bytes = workspace_bytes
        self.calibrator = calibrator
        with polygraphy_calls(f"engines.precision {precision}: Polygraphy's CreateConfig refused the settings"):
            self.create_config = CreateConfig(profiles=[profile], load_timing_cache=str(timing_cache), **flags)

    def call_impl(self, builder, network):  # -> trt.IBuilderConfig
        config = self.create_config
        config.memory_pool_limits = {trt.MemoryPoolType.WORKSPACE: self.workspace_bytes}
        if self.calibrator is not None and config.calibrator is None:
            config.calibrator = self.calibrator()
        return config(builder, network)


@dataclass(frozen=True)
class PlanBuild:
    """The composed chain for one plan. Calling it parses, builds, saves ``path`` and returns the plan's bytes."""

    network: NetworkFromOnnxPath
    config: BuilderConfigFromSettings
    engine_bytes: EngineBytesFromNetwork
    save: SaveBytes
    path: Path
    profile: Profile

    def __call__(self):  # -> trt.IHostMemory
        return self.save()


def calibration_cache_path(spec: NetworkSpec, plan: Path) -> Path:
    """Where the int8 scale table of ``spec`` is kept: beside its plan."""
    return plan.with_name(f"{spec.name}.int8-calibration.cache")


def plan_build_from_spec(spec: NetworkSpec, onnx: Path, path: Path, settings: EnginesConfig, max_batch_size: int,
                         timing_cache: Path, calibration: Iterable[Mapping[str, np.ndarray]] | None = None,
                         ) -> PlanBuild:
    """The chain ``onnx`` -> plan at ``path`` with the spec's profile and ``settings`` (checked, not yet run).

    ``calibration`` (int8 only): re-iterable feed dicts of the profile's opt shapes; default: the sample photos
    (or ``engines.calibration_images``) through the shared preprocessing.
    """
    flags = precision_flags(settings.precision)
    profile = profile_from_spec(spec, max_batch_size)
    check_onnx_inputs(spec, onnx, profile)
    calibrator = None
    if flags.get("int8"):
        opt_batch = profile[spec.inputs[0].name].opt[0]
        batches = calibration if calibration is not None else CalibrationBatches(spec, opt_batch,
                                                                                  settings.calibration_images)
        calibrator = CalibratorFromBatches(batches, calibration_cache_path(spec, path))
    config = BuilderConfigFromSettings(profile, settings.precision, settings.workspace_mb << 20, timing_cache,
                                       calibrator)
    network = NetworkFromOnnxPath(str(onnx))
    engine_bytes = EngineBytesFromNetwork(network, config=config, save_timing_cache=str(timing_cache))
    return PlanBuild(network, config, engine_bytes, SaveBytes(engine_bytes, str(path)), path, profile)


def engine_from_plan(plan: Path) -> EngineFromBytes:
    """plan file -> ``trt.ICudaEngine`` (lazy: the file is read and deserialized when it is called)."""
    return EngineFromBytes(BytesFromPath(str(plan)))
