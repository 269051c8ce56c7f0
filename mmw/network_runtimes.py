"""The networks' CPU runtimes behind one small interface: onnxruntime (the fp32 reference) and OpenVINO.

``open_network(onnx_path, runtime, precision, threads)`` gives a :class:`NetworkRunner` (``run(names, feeds)``
as onnxruntime has it) and a one-line note when the precision asked for is not the one served. The Triton
python models, the in-process pipeline, the captioner, the benchmarks and the tests all open their networks
here, so what is served is what is measured.

OpenVINO reads the IR that ``make engines`` saved beside each ONNX file (``model.xml``; ``model.int8.xml``
after NNCF quantization) and keeps compiled blobs in OpenVINO's model cache (``openvino_cache/`` beside
them), so a second start does not recompile. A precision other than f32 is served only where
``make engines`` recorded that it passed the fidelity gate (``openvino_gate.json``); otherwise f32 is
served and the note says why.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mmw.errors import ExportError

RUNTIMES = ("openvino", "onnxruntime")
PRECISIONS = ("auto", "f32", "bf16", "int8")
GATE_FILE = "openvino_gate.json"  # what `make engines` measured per precision, beside the networks
CACHE_DIR = "openvino_cache"      # OpenVINO's compiled-model cache, beside the networks
_BF16_CAPABILITY = "BF16"         # OpenVINO's CPU OPTIMIZATION_CAPABILITIES entry (AVX512_BF16 or AMX)


class NetworkRunner(Protocol):
    """One network ready to run: ``run(None or output names, {input name: array})`` -> the outputs in order."""

    description: str  # what runs it, e.g. "openvino bf16, 1 thread"
    loaded_from_cache: bool  # the compiled model came from OpenVINO's model cache (never for onnxruntime)
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


def ir_path(onnx_path: str | Path, precision: str = "f32") -> Path:
    """Where ``make engines`` saves a network's OpenVINO IR: ``model.xml`` (f32 weights), ``model.int8.xml``."""
    p = Path(onnx_path)
    return p.with_suffix(".int8.xml" if precision == "int8" else ".xml")


# --- onnxruntime -------------------------------------------------------------------------------------------

class OnnxRuntimeRunner:
    """An ONNX file on onnxruntime's CPU provider (fp32): the reference every other runtime is gated against."""

    def __init__(self, onnx_path: str | Path, threads: int = 1) -> None:
        from mmw.onnx_runtime import create_session

        self.session = create_session(onnx_path, threads)
        self.description = f"onnxruntime fp32, {threads} thread{'s' if threads > 1 else ''}"
        self.loaded_from_cache = False
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(output_names) if output_names else None, dict(feeds))


# --- OpenVINO ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def openvino_core():
    """One OpenVINO Core per process."""
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("serving.cpu_runtime is openvino but the openvino package is not installed: run "
                          "`make install` (or set serving.cpu_runtime: onnxruntime)") from None
    return ov.Core()


def cpu_capabilities() -> frozenset[str]:
    """OpenVINO's CPU optimisation capabilities here (``FP32``, ``INT8``, and ``BF16`` with AVX512_BF16 or AMX)."""
    return frozenset(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def compile_options(precision: str, threads: int, cache_dir: Path | None) -> dict[str, object]:
    """OpenVINO CPU properties for one serving instance: ``threads`` threads in one latency stream, unpinned.

    int8 models run their quantized layers in int8 and the rest in f32.

    Pinning is off because Triton runs several single-threaded instances as processes of their own; pinned,
    each would take the same first core.
    """
    options: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }
    if cache_dir is not None:
        options["CACHE_DIR"] = str(cache_dir)
    return options


class OpenVinoRunner:
    """An OpenVINO IR (or ONNX file) compiled for the CPU at one precision, with one infer request."""

    def __init__(self, model_path: str | Path, precision: str = "f32", threads: int = 1,
                 cache_dir: Path | None = None) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ExportError(f"OpenVINO model {path}: not found; run `make engines`")
        core = openvino_core()
        self.compiled = core.compile_model(str(path), "CPU", compile_options(precision, threads, cache_dir))
        self.request = self.compiled.create_infer_request()
        self.input_names = tuple(p.get_any_name() for p in self.compiled.inputs)
        self.output_names = tuple(p.get_any_name() for p in self.compiled.outputs)
        self.precision = precision
        self.description = f"openvino {precision}, {threads} thread{'s' if threads > 1 else ''}"
        #: True when OpenVINO took the compiled model from its cache (``make engines`` compiled it already).
        self.loaded_from_cache = bool(cache_dir) and bool(self.compiled.get_property("LOADED_FROM_CACHE"))

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.request.infer({name: np.ascontiguousarray(array) for name, array in feeds.items()})
        return [self.request.get_tensor(name).data.copy() for name in (output_names or self.output_names)]


# --- which precision is served -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionChoice:
    """The precision served for a request, and why it differs from it (``note`` is "" when it does not)."""

    precision: str
    note: str = ""


def resolve_precision(requested: str, capabilities: frozenset[str]) -> PrecisionChoice:
    """``auto`` -> bf16 where the CPU has it, else f32; bf16 on a CPU without it -> f32, with the reason."""
    if requested not in PRECISIONS:
        raise ExportError(f"serving.cpu_precision: expected one of {', '.join(PRECISIONS)}, got {requested!r}")
    has_bf16 = _BF16_CAPABILITY in capabilities
    if requested == "auto":
        return PrecisionChoice("bf16" if has_bf16 else "f32")
    if requested == "bf16" and not has_bf16:
        return PrecisionChoice("f32", "bf16 asked for, but this CPU has neither AVX512_BF16 nor AMX: serving f32")
    return PrecisionChoice(requested)


def read_gate_record(folder: Path) -> dict:
    """The whole ``openvino_gate.json`` of a folder's networks, as ``make engines`` wrote it ({} if none)."""
    try:
        return json.loads((folder / GATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def read_gate(folder: Path) -> dict[str, dict]:
    """The gate of a folder's networks: precision -> {"passed": bool, "detail": str, ...} ({} if none)."""
    return read_gate_record(folder).get("precisions", {})


def served_precision(folder: Path, requested: str, capabilities: frozenset[str] | None = None,
                     quantizable: bool = True) -> PrecisionChoice:
    """The precision to serve the networks of ``folder``: resolved for this CPU, then checked against the gate.

    ``quantizable`` is False for networks that ``make engines`` does not quantize (the captioner's): int8
    then means the CPU's best float precision.
    """
    caps = cpu_capabilities() if capabilities is None else capabilities
    asked = requested
    if requested == "int8" and not quantizable:
        requested = "auto"
    choice = resolve_precision(requested, caps)
    note = choice.note or (f"int8 asked for, but these networks are not quantized: serving {choice.precision}"
                           if asked != requested else "")
    if choice.precision == "f32":
        return PrecisionChoice("f32", note)
    record = read_gate(folder).get(choice.precision)
    if record is None:
        return PrecisionChoice("f32", f"{choice.precision} has not passed the fidelity gate of `make engines` "
                                      f"(no record in {folder / GATE_FILE}): serving f32")
    if not record.get("passed"):
        return PrecisionChoice("f32", f"{choice.precision} failed the fidelity gate ({record.get('detail', '')}): "
                                      "serving f32")
    return PrecisionChoice(choice.precision, note)


def _cache_dir(folder: Path) -> Path | None:
    """OpenVINO's model cache beside the networks, when that folder is writable (a baked image may not be)."""
    cache = Path(os.environ.get("MMW_OPENVINO_CACHE", "") or folder / CACHE_DIR)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return cache if os.access(cache, os.W_OK) else None


def open_network(onnx_path: str | Path, runtime: str = "openvino", precision: str = "auto", threads: int = 1,
                 quantizable: bool = True, choice: PrecisionChoice | None = None) -> tuple[NetworkRunner, str]:
    """A runner of the network exported to ``onnx_path``, and a one-line note ("" when served as asked).

    With OpenVINO the precision is ``choice`` when given (one choice for several networks of a folder),
    else :func:`served_precision` for that folder. The IR saved by ``make engines`` is preferred; without it
    the ONNX file is read directly.
    """
    onnx_path = Path(onnx_path)
    if runtime not in RUNTIMES:
        raise ExportError(f"serving.cpu_runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnxruntime":
        return OnnxRuntimeRunner(onnx_path, threads), ""
    choice = choice or served_precision(onnx_path.parent, precision, quantizable=quantizable)
    model = ir_path(onnx_path, choice.precision)
    if not model.is_file():
        if choice.precision == "int8":
            choice = PrecisionChoice("f32", f"no int8 model at {model}: run `make engines`; serving f32")
        model = ir_path(onnx_path) if ir_path(onnx_path).is_file() else onnx_path
    return OpenVinoRunner(model, choice.precision, threads, _cache_dir(onnx_path.parent)), choice.note
