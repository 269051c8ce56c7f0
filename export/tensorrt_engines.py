"""ONNX -> TensorRT plans for the GPU repository, with the TensorRT Python API (``tensorrt`` on PyPI).

``build_plan_from_onnx`` parses one network's ONNX (explicit batch), adds the optimisation profile the
network spec declares (``NetworkSpec.trt_profile``: min 1, opt max/2, max ``serving.max_batch_size``),
builds in fp16 by default (fp32, or int8 calibrated with an entropy calibrator over real photos run
through the shared preprocessing), reuses a timing cache across builds and writes ``model.plan`` with
its provenance record ``model.plan.json`` (``mmw/engine_provenance.py``). A plan whose record matches
this machine, the flags and the ONNX is left alone, so ``make engines`` twice builds nothing.

``tensorrt`` is optional and imported lazily: on a machine with no NVIDIA GPU or no TensorRT,
``build_plans`` returns one "skipped" line instead of failing.
"""

from __future__ import annotations

import datetime
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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

CALIBRATION_BATCH = 4
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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


def _profile(spec: NetworkSpec, max_batch_size: int) -> dict[str, list[list[int]]]:
    if any(-1 in t.dims for t in spec.inputs):
        raise EngineError(f"{spec.name}: inputs with variable dims other than the batch ({spec.inputs}) need their "
                          "own profile shapes; only the batch axis is profiled here")
    return {name: [list(s) for s in shapes] for name, shapes in spec.trt_profile(max_batch_size).items()}


def calibration_batches(spec: NetworkSpec, images: str = "", batch: int = CALIBRATION_BATCH) -> list[np.ndarray]:
    """Network inputs for int8 calibration: photos (a folder, or scikit-image's) through the shared preprocessing."""
    from mmw.processing.images import decode_image, detector_input, labeller_input

    prepare = {"detector": detector_input, "labeller": labeller_input}.get(spec.name)
    if prepare is None:
        raise EngineError(f"{spec.name}: no preprocessing known for int8 calibration; use engines.precision fp16")
    if images:
        folder = Path(images)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise EngineError(f"engines.calibration_images: expected a folder of JPEG/PNG images, got {images!r}")
        rgbs = [decode_image(p.read_bytes()) for p in files]
    else:
        try:
            import skimage.data
        except ImportError:
            raise EngineError("int8 calibration: engines.calibration_images is empty and scikit-image (its sample "
                              "photos) is not installed; pip install scikit-image or set a folder") from None
        rgbs = [getattr(skimage.data, n)()[..., :3] for n in ("astronaut", "chelsea", "coffee", "rocket")]
        rgbs.append(skimage.data.stereo_motorcycle()[0])
    arrays = np.stack([prepare(rgb) for rgb in rgbs])
    return [arrays[i : i + batch] for i in range(0, len(arrays), batch)]


def _entropy_calibrator(trt: Any, input_name: str, batches: Sequence[np.ndarray], cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 that feeds ``batches`` from CUDA memory (torch) and keeps its table in ``cache``."""
    import torch

    if not torch.cuda.is_available():
        raise EngineError("int8 calibration needs CUDA tensors; this torch has no CUDA (install a CUDA build of torch)")

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.pending = list(batches)
            self.device: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return int(max(b.shape[0] for b in batches))

        def get_batch(self, names: list[str]) -> list[int] | None:
            if not self.pending:
                return None
            self.device = torch.from_numpy(np.ascontiguousarray(self.pending.pop(0))).cuda()
            return [int(self.device.data_ptr())] if names == [input_name] else None

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(data))

    return Calibrator()


def _gpu() -> tuple[str, str]:
    gpus, reason = query_gpus()
    if not gpus:
        raise EngineError(f"no NVIDIA GPU to build TensorRT plans on ({reason})")
    return gpus[0].name, gpus[0].compute_capability


def plan_is_current(plan: Path, onnx: Path, settings: EnginesConfig, profile: dict[str, list[list[int]]]) -> bool:
    """The plan exists and its record matches the ONNX, the flags, this TensorRT and this GPU."""
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
            and (rec.gpu_name, rec.compute_capability) == (gpu_name, cc))


def build_plan_from_onnx(spec: NetworkSpec, onnx: Path, plan: Path, settings: EnginesConfig, max_batch_size: int,
                         timing_cache: Path, calibration: Callable[[], list[np.ndarray]] | None = None,
                         force: bool = False) -> str:
    """Build ``plan`` from ``onnx`` with the spec's profile and ``settings``; returns what happened (one line)."""
    import tensorrt as trt  # type: ignore[import-not-found]

    if not onnx.is_file():
        raise EngineError(f"{spec.name}: ONNX {_shown(onnx)} not found; `make engines` exports it first")
    profile_shapes = _profile(spec, max_batch_size)
    if not force and plan_is_current(plan, onnx, settings, profile_shapes):
        return "up to date"
    gpu_name, cc = _gpu()
    t0 = time.monotonic()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    flags = 1 << int(explicit) if explicit is not None and int(trt.__version__.split(".")[0]) < 10 else 0
    network = builder.create_network(flags)  # TensorRT 10: explicit batch is the only mode (flag deprecated)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{spec.name}: TensorRT cannot parse {_shown(onnx)}: {errors or 'no reason given'}")
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(names) != sorted(profile_shapes):
        raise EngineError(f"{spec.name}: ONNX inputs {names} differ from the spec's {sorted(profile_shapes)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes.items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)
    if settings.precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            raise EngineError(f"{spec.name}: engines.precision {settings.precision} but this GPU ({gpu_name}) has no "
                              "fast fp16; use fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _entropy_calibrator(
            trt, names[0], (calibration or (lambda: calibration_batches(spec, settings.calibration_images)))(),
            plan.with_name(f"{spec.name}.int8-calibration.cache"))
        config.set_calibration_profile(profile)

    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{spec.name}: TensorRT could not build a plan from {_shown(onnx)} (see the TensorRT "
                          "messages above; a larger engines.workspace_mb may help)")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))

    plan.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.with_name(plan.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(plan)
    build_s = time.monotonic() - t0
    write_provenance(plan, PlanProvenance(
        network=spec.name, tensorrt_version=str(trt.__version__), gpu_name=gpu_name, compute_capability=cc,
        precision=settings.precision, profile=profile_shapes, workspace_mb=settings.workspace_mb,
        onnx=_shown(onnx), onnx_sha256=sha256_file(onnx), plan_sha256=sha256_file(plan),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        build_s=round(build_s, 1),
    ))
    return f"built in {build_s:.0f} s ({settings.precision}, TensorRT {trt.__version__}, {gpu_name})"


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


def run_plan(plan: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a plan once on ``inputs`` (numpy, batch first) and return every output as numpy (tests, benchmarks)."""
    import tensorrt as trt  # type: ignore[import-not-found]
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        raise EngineError(f"{_shown(plan)}: TensorRT cannot deserialize it (built for another TensorRT or GPU?)")
    context = engine.create_execution_context()
    keep: dict[str, torch.Tensor] = {}
    for name, array in inputs.items():
        keep[name] = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        context.set_input_shape(name, tuple(array.shape))
        context.set_tensor_address(name, keep[name].data_ptr())
    outputs = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
            continue
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        outputs[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, outputs[name].data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise EngineError(f"{_shown(plan)}: execution failed")
    stream.synchronize()
    return {name: t.cpu().numpy() for name, t in outputs.items()}
