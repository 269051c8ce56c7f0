"""Triton model repository: ``config.pbtxt`` and ``model.py`` files generated from the specs, never edited by hand.

Configs are built as ``model_config_pb2.ModelConfig`` messages (Triton's own schema) and written
with protobuf's text format, so what Triton parses is exactly what the spec says. A python model's
``model.py`` is rendered from one template: it makes the project importable in the backend stub
and imports the model's class from :mod:`mmw.triton_models`.

Three variants come from the same specs (``VARIANTS``): ``cpu`` (``server.model_repository``, what runs
here), ``gpu`` (``engines.gpu_repository``) and ``openvino`` (``engines.openvino_repository``). The
other two get their model files from the CPU repository, where ``make engines`` exports them: the
captioner's files for both, and for ``openvino`` each network's OpenVINO IR as ``1/model.xml`` + ``model.bin``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from mmw.config import PROJECT_ROOT, Config
from mmw.errors import ModelSpecError
from mmw.network_runtimes import ir_path, read_gate
from mmw.specs import NETWORKS, VARIANTS, TensorSpec, TritonModelSpec, openvino_serving, repository_specs

HEADER = "# Generated from mmw/specs.py and config/config.yaml by `python -m export repository`. Do not edit.\n"
CPU_REPOSITORY = PROJECT_ROOT / "model_repository"  # where `make engines` exports the captioner for both variants
MODEL_PY = "model.py"
OPENVINO_MODEL = "model.xml"  # the openvino backend's default model file; the weights are the .bin beside it
# The stub's embedded interpreter ignores PYTHONPATH, so the launcher passes the project and its venv in
# MMW_PYTHONPATH (launcher/triton_binary.py); a release image has them installed and leaves it empty.
_MODEL_PY_TEMPLATE = '''"""Triton python model ``{name}``: ``{module}.{cls}``."""
# Generated from mmw/specs.py by `python -m export repository`. Do not edit.

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from {module} import {cls} as TritonPythonModel  # noqa: E402, F401
'''
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "ensemble": "ensemble"}


def _tensor(message, spec: TensorSpec) -> None:
    message.name = spec.name
    message.data_type = mc.DataType.Value(spec.triton_type)
    message.dims.extend(spec.dims)


def to_model_config(spec: TritonModelSpec) -> mc.ModelConfig:
    """The ModelConfig message a spec stands for."""
    cfg = mc.ModelConfig(name=spec.name, max_batch_size=spec.max_batch_size)
    if spec.backend in ("python", "openvino"):
        cfg.backend = spec.backend
    else:
        cfg.platform = _PLATFORMS[spec.backend]
    for t in spec.inputs:
        _tensor(cfg.input.add(), t)
    for t in spec.outputs:
        _tensor(cfg.output.add(), t)
    if spec.backend == "ensemble":
        for step in spec.steps:
            s = cfg.ensemble_scheduling.step.add(model_name=step.model_name, model_version=-1)
            s.input_map.update(dict(step.input_map))
            s.output_map.update(dict(step.output_map))
    else:
        cfg.instance_group.add(count=spec.instances, kind=mc.ModelInstanceGroup.Kind.Value(spec.kind))
        if spec.dynamic_batching:
            cfg.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    for key, value in spec.parameters:
        cfg.parameters[key].string_value = value
    for sample in spec.warmup:
        warmup = cfg.model_warmup.add(name=sample.name, batch_size=sample.batch_size)
        for t in sample.inputs:
            data = warmup.inputs[t.name]
            data.data_type = mc.DataType.Value(t.triton_type)
            data.dims.extend(t.dims)
            if sample.data == "zero":
                data.zero_data = True
            else:
                data.random_data = True
    if spec.gpu_accelerator:
        accelerator = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name=spec.gpu_accelerator)
        accelerator.parameters.update(dict(spec.accelerator_parameters))
    return cfg


def render_config(spec: TritonModelSpec) -> str:
    """config.pbtxt text for one model."""
    body = text_format.MessageToString(to_model_config(spec))
    comment = f"# {spec.description}\n" if spec.description else ""
    return HEADER + comment + body


def render_model_py(spec: TritonModelSpec) -> str:
    """The ``model.py`` of a python model."""
    module, cls = spec.python_class.split(":")
    return _MODEL_PY_TEMPLATE.format(name=spec.name, module=module, cls=cls)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text back into a ModelConfig (comments ignored)."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ModelSpecError(f"config.pbtxt does not parse as a Triton ModelConfig: {exc}") from None


def repository_target(config: Config, root: Path | None = None, variant: str | None = None) -> tuple[Path, str]:
    """The folder and variant a write goes to.

    Without ``root``: the variant's own folder (``cpu``: ``server.model_repository``, ``gpu``:
    ``engines.gpu_repository``, ``openvino``: ``engines.openvino_repository``), ``server.model_repository``
    when no variant is given either. Without ``variant``: the variant whose folder ``root`` is, else ``cpu``.
    """
    if variant is not None and variant not in VARIANTS:
        raise ModelSpecError(f"repository variant: expected one of {VARIANTS}, got {variant!r}")
    roots = {"gpu": config.engines.gpu_repository, "openvino": config.engines.openvino_repository}
    if root is None:
        root = config.path(roots.get(variant or "cpu", config.server.model_repository))
    if variant is None:
        variant = next((v for v, folder in roots.items() if root.resolve() == config.path(folder).resolve()), "cpu")
    return root, variant


def openvino_gates(source: Path | None = None) -> dict[str, dict[str, dict]]:
    """Each network's fidelity-gate record (``openvino_gate.json`` beside its ONNX in the CPU repository)."""
    source = source if source is not None else CPU_REPOSITORY
    return {name: read_gate(source / name / "1") for name in NETWORKS}


def write_repository(config: Config, root: Path | None = None, variant: str | None = None,
                     gpu_backend: str | None = None, cores: int | None = None,
                     source: Path | None = None) -> list[Path]:
    """Write every model's config.pbtxt (and a python model's model.py) under ``root`` for ``cores`` (default:
    this host); return the changed files.

    ``root`` and ``variant`` default as :func:`repository_target` says; ``gpu_backend`` to
    ``engines.gpu_backend``. The gpu and openvino variants also get the exported captioner's files from
    ``source``, the CPU repository (default ``model_repository/``); the openvino variant gets each network's
    IR from there too (the one :func:`mmw.specs.openvino_serving` picks, as ``1/model.xml`` + ``model.bin``).
    Plans, ONNX and IR come from ``make engines``: a missing IR leaves its model without one
    (:func:`missing_openvino_models` says what to build), so a stale IR is never served.
    """
    root, variant = repository_target(config, root, variant)
    source = source if source is not None else CPU_REPOSITORY
    gpu_backend = gpu_backend or config.engines.gpu_backend
    gates = openvino_gates(source) if variant == "openvino" else None
    changed = []
    for spec in repository_specs(config, variant, gpu_backend, cores, gates):
        path = root / spec.name / "config.pbtxt"
        if _write_if_changed(path, render_config(spec)):
            changed.append(path)
        (root / spec.name / "1").mkdir(exist_ok=True)
        if spec.backend == "python":
            if _write_if_changed(root / spec.name / "1" / MODEL_PY, render_model_py(spec)):
                changed.append(root / spec.name / "1" / MODEL_PY)
            if variant != "cpu":
                changed += _copy_model_files(source / spec.name / "1", root / spec.name / "1")
        elif spec.backend == "openvino" and gates is not None:
            ir = openvino_serving(config.serving.cpu_precision, gates[spec.name]).ir
            changed += _copy_openvino_ir(ir_path(source / spec.name / "1" / "model.onnx", ir), root / spec.name / "1")
    check_caption_model(config, root)
    return changed


def _copy_openvino_ir(xml: Path, target: Path) -> list[Path]:
    """Copy an IR pair (``xml`` and the .bin beside it) to ``target/model.xml|.bin`` where size or mtime differ.

    Without the pair the target's IR is removed: Triton then reports the file missing instead of serving an IR
    that is no longer the one picked.
    """
    pairs = [(xml, target / OPENVINO_MODEL), (xml.with_suffix(".bin"), (target / OPENVINO_MODEL).with_suffix(".bin"))]
    if target.resolve() == xml.parent.resolve():
        return []
    if not all(src.is_file() for src, _ in pairs):
        removed = [dest for _, dest in pairs if dest.is_file()]
        for dest in removed:
            dest.unlink()
        return removed
    copied = []
    for src, dest in pairs:
        st = src.stat()
        if not dest.is_file() or dest.stat().st_size != st.st_size or dest.stat().st_mtime_ns != st.st_mtime_ns:
            shutil.copy2(src, dest)
            copied.append(dest)
    return copied


def missing_openvino_models(root: Path, source: Path | None = None) -> list[str]:
    """One line per openvino model of ``root`` whose IR is missing, saying what ``make engines`` must produce."""
    source = source if source is not None else CPU_REPOSITORY
    lines = []
    for path in sorted(root.glob("*/config.pbtxt")):
        cfg = parse_config(path.read_text(encoding="utf-8"))
        if cfg.backend != "openvino":
            continue
        xml = path.parent / "1" / (cfg.default_model_filename or OPENVINO_MODEL)
        missing = [p.name for p in (xml, xml.with_suffix(".bin")) if not p.is_file()]
        if missing:
            lines.append(f"{path.parent.name}: {' and '.join(missing)} missing in {xml.parent}: `make engines` saves "
                         f"the network's OpenVINO IR as {source / path.parent.name / '1' / 'model.xml'} + model.bin "
                         "(model.int8.xml + .bin for serving.cpu_precision: int8), then rerun "
                         "`make repository-openvino`")
    return lines


def check_openvino_models(root: Path, source: Path | None = None) -> None:
    """Raise ModelSpecError when an openvino model of ``root`` has no IR (before Triton would fail to load it)."""
    if lines := missing_openvino_models(root, source):
        raise ModelSpecError("; ".join(lines))


def _copy_model_files(source: Path, target: Path) -> list[Path]:
    """Copy what ``make engines`` exported beside a python model (the captioner) where size or mtime differ."""
    if not source.is_dir() or target.resolve() == source.resolve():
        return []
    copied = []
    for file in sorted(p for p in source.iterdir()
                       if p.is_file() and p.name != MODEL_PY and p.suffix not in (".pyc", ".tmp")):
        dest = target / file.name
        st = file.stat()
        if not dest.is_file() or dest.stat().st_size != st.st_size or dest.stat().st_mtime_ns != st.st_mtime_ns:
            shutil.copy2(file, dest)
            copied.append(dest)
    return copied


def check_repository(config: Config, root: Path | None = None, cores: int | None = None) -> None:
    """Raise ModelSpecError when a config.pbtxt on disk differs from its spec (for ``cores``)."""
    root = root if root is not None else config.path(config.server.model_repository)
    for spec in repository_specs(config, cores=cores):
        path = root / spec.name / "config.pbtxt"
        if not path.exists():
            raise ModelSpecError(f"{path}: missing; run `python -m export repository`")
        if parse_config(path.read_text(encoding="utf-8")) != to_model_config(spec):
            raise ModelSpecError(f"{path}: differs from its spec; run `python -m export repository`")
        model_py = root / spec.name / "1" / MODEL_PY
        if spec.backend == "python" and (not model_py.is_file() or model_py.read_text(encoding="utf-8")
                                         != render_model_py(spec)):
            raise ModelSpecError(f"{model_py}: missing or differs from its spec; run `python -m export repository`")


def check_caption_model(config: Config, root: Path) -> None:
    """A configured neural captioner must be exported into ``root/caption/1`` from that same checkpoint."""
    import json

    cap = config.models.caption
    if not cap.neural:
        return
    meta = root / "caption" / "1" / "captioner.json"
    try:
        source = json.loads(meta.read_text(encoding="utf-8")).get("source")
    except FileNotFoundError:
        raise ModelSpecError(f"models.caption.model is {cap.model!r} but {meta} does not exist: the captioner is "
                             "not exported; run `make engines` (or set models.caption.model: \"\" for template "
                             "captions)") from None
    except ValueError as exc:
        raise ModelSpecError(f"{meta}: unreadable ({exc}); run `make engines`") from None
    if source != cap.model:
        raise ModelSpecError(f"models.caption.model is {cap.model!r} but the exported captioner in {meta.parent} "
                             f"was built from {source!r}; run `make engines`")

