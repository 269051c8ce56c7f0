"""Provenance of TensorRT plans: what each ``model.plan`` was built for, checked before Triton serves it.

A plan only runs on the TensorRT version and GPU architecture it was built with, and it stands for one
exact ONNX file. Next to every plan ``make engines`` writes ``model.plan.json`` (TensorRT version, GPU name
and compute capability, build flags, the sha256 of the plan and of its source ONNX, the Polygraphy version
that configured the build). ``launcher run`` calls :func:`check_repository_plans` before it starts Triton,
which would otherwise fail to deserialize a foreign plan or crash on it. Pure Python: the environment comes
from ``tensorrt`` (when installed) and ``nvidia-smi``, and is injectable for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmw.config import PROJECT_ROOT
from mmw.errors import EngineError, ModelSpecError

PLAN_FILE = "model.plan"
REBUILD = "rebuild the plans on this machine with `make engines`"
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` names it."""

    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class EngineEnvironment:
    """What a plan must match here: the TensorRT version and every GPU Triton may place it on."""

    tensorrt_version: str | None
    gpus: tuple[GpuInfo, ...]
    tensorrt_missing: str = ""  # why tensorrt_version is None
    gpus_missing: str = ""  # why no GPU is listed


@dataclass(frozen=True)
class PlanProvenance:
    """The ``model.plan.json`` record written next to a plan."""

    network: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: dict[str, list[list[int]]]  # input -> [min, opt, max] shapes
    workspace_mb: int
    onnx: str  # the source ONNX, relative to the project root when inside it
    onnx_sha256: str
    plan_sha256: str
    built_at: str  # ISO 8601, UTC
    build_s: float
    polygraphy_version: str = ""  # the builder's config defaults come from it; "" in records from before Polygraphy

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance_path(plan: Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    return plan.with_name(plan.name + ".json")


def write_provenance(plan: Path, record: PlanProvenance) -> Path:
    path = provenance_path(plan)
    path.write_text(record.to_json(), encoding="utf-8")
    return path


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def read_provenance(plan: Path, root: Path = PROJECT_ROOT) -> PlanProvenance:
    """The plan's record; EngineError when it is missing or malformed (an unknown plan is not served)."""
    path = provenance_path(plan)
    if not path.is_file():
        raise EngineError(f"{_shown(plan, root)}: no provenance record {path.name} beside it, so which GPU, "
                          "TensorRT and ONNX it was built for is unknown (Triton would crash or refuse a foreign "
                          f"plan); {REBUILD}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PlanProvenance(**data)
    except (ValueError, TypeError) as exc:
        raise EngineError(f"{_shown(path, root)}: not a valid provenance record ({exc}); {REBUILD}") from None


def query_gpus(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
               ) -> tuple[tuple[GpuInfo, ...], str]:
    """GPUs from ``nvidia-smi --query-gpu=name,compute_cap``, and why there are none when there are none."""
    try:
        out = run(list(NVIDIA_SMI), capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return (), "nvidia-smi not found"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (), f"nvidia-smi failed: {exc}"
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        return (), f"nvidia-smi exited {out.returncode}" + (f": {detail[0]}" if detail else "")
    gpus = []
    for line in out.stdout.strip().splitlines():
        name, _, cc = line.rpartition(",")
        if name.strip():
            gpus.append(GpuInfo(name.strip(), cc.strip()))
    return tuple(gpus), "" if gpus else "nvidia-smi lists no GPU"


def tensorrt_version() -> tuple[str | None, str]:
    """The installed TensorRT's version, and why there is none when there is none."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError as exc:
        return None, f"the tensorrt package is not installed ({exc})"
    except Exception as exc:  # a broken install (missing CUDA libraries) raises OSError and others
        return None, f"the tensorrt package does not import ({type(exc).__name__}: {exc})"
    return str(tensorrt.__version__), ""


def current_environment() -> EngineEnvironment:
    """This machine's TensorRT and GPUs."""
    version, trt_reason = tensorrt_version()
    gpus, gpu_reason = query_gpus()
    return EngineEnvironment(version, gpus, trt_reason, gpu_reason)


def _describe(gpus: tuple[GpuInfo, ...]) -> str:
    return ", ".join(f"{g.name} (compute capability {g.compute_capability})" for g in gpus)


def check_plan(plan: Path, env: EngineEnvironment, root: Path = PROJECT_ROOT) -> PlanProvenance:
    """Raise EngineError saying what differs when ``plan`` was not built for ``env`` from the ONNX on disk."""
    shown = _shown(plan, root)
    rec = read_provenance(plan, root)
    if sha256_file(plan) != rec.plan_sha256:
        raise EngineError(f"{shown}: the plan is not the one its provenance record describes (sha256 differs: "
                          f"replaced or copied without its {provenance_path(plan).name}); {REBUILD}")
    if env.tensorrt_version is None:
        raise EngineError(f"{shown}: built with TensorRT {rec.tensorrt_version}, this machine has no TensorRT "
                          f"({env.tensorrt_missing}); install tensorrt=={rec.tensorrt_version} or {REBUILD}")
    if env.tensorrt_version != rec.tensorrt_version:
        raise EngineError(f"{shown}: built with TensorRT {rec.tensorrt_version}, this machine has TensorRT "
                          f"{env.tensorrt_version} (plans only load on the TensorRT that built them); {REBUILD}")
    built_for = f"{rec.gpu_name} (compute capability {rec.compute_capability})"
    if not env.gpus:
        raise EngineError(f"{shown}: built for GPU {built_for}, this machine has no NVIDIA GPU "
                          f"({env.gpus_missing}); serve the CPU repository here (server.model_repository)")
    if any(g.compute_capability != rec.compute_capability for g in env.gpus):
        raise EngineError(f"{shown}: built for compute capability {rec.compute_capability} ({rec.gpu_name}), this "
                          f"machine has {_describe(env.gpus)}; {REBUILD}")
    if any(g.name != rec.gpu_name for g in env.gpus):
        raise EngineError(f"{shown}: built for GPU {built_for}, this machine has {_describe(env.gpus)} (tactics are "
                          f"timed per GPU model); {REBUILD}")
    onnx = Path(rec.onnx) if Path(rec.onnx).is_absolute() else root / rec.onnx
    if not onnx.is_file():
        raise EngineError(f"{shown}: built from {rec.onnx}, which is missing, so the plan cannot be matched to its "
                          f"network; run `make engines` (exports the ONNX, then rebuilds the plan)")
    onnx_sha = sha256_file(onnx)
    if onnx_sha != rec.onnx_sha256:
        raise EngineError(f"{shown}: built from {rec.onnx} with sha256 {rec.onnx_sha256[:12]}..., that file now has "
                          f"sha256 {onnx_sha[:12]}... (the network was re-exported); {REBUILD}")
    return rec


def plan_files(repository: Path) -> list[Path]:
    """The plan of every version of every ``tensorrt_plan`` model in ``repository`` (EngineError if one lacks it)."""
    from mmw.repository import parse_config

    plans = []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        try:
            cfg = parse_config(config_path.read_text(encoding="utf-8"))
        except (OSError, ModelSpecError):
            continue  # not ours to judge: Triton reports a bad config itself
        if cfg.platform != "tensorrt_plan" and cfg.backend != "tensorrt":
            continue
        model_dir = config_path.parent
        name = cfg.default_model_filename or PLAN_FILE
        versions = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
        found = [v / name for v in versions if (v / name).is_file()]
        if not found:
            raise EngineError(f"{model_dir.name}: a tensorrt_plan model without a plan ({model_dir}/<version>/{name}); "
                              "build it with `make engines` on a machine with an NVIDIA GPU")
        plans += found
    return plans


def check_repository_plans(repository: Path, environment: Callable[[], EngineEnvironment] | None = None,
                           root: Path = PROJECT_ROOT) -> list[PlanProvenance]:
    """Check every plan the repository serves against this machine; no-op (and no probing) without plans."""
    plans = plan_files(repository)
    if not plans:
        return []
    env = (environment or current_environment)()
    return [check_plan(plan, env, root) for plan in plans]
