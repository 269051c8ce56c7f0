"""Triton model repository: ``config.pbtxt`` files generated from the specs, never edited by hand.

Configs are built as ``model_config_pb2.ModelConfig`` messages (Triton's own schema) and written
with protobuf's text format, so what Triton parses is exactly what the spec says.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from mmw.config import Config
from mmw.errors import ModelSpecError
from mmw.specs import TensorSpec, TritonModelSpec, repository_specs

HEADER = "# Generated from mmw/specs.py and config/config.yaml by `python -m export repository`. Do not edit.\n"
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "ensemble": "ensemble"}


def _tensor(message, spec: TensorSpec) -> None:
    message.name = spec.name
    message.data_type = mc.DataType.Value(spec.triton_type)
    message.dims.extend(spec.dims)


def to_model_config(spec: TritonModelSpec) -> mc.ModelConfig:
    """The ModelConfig message a spec stands for."""
    cfg = mc.ModelConfig(name=spec.name, max_batch_size=spec.max_batch_size)
    if spec.backend == "python":
        cfg.backend = "python"
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
    return cfg


def render_config(spec: TritonModelSpec) -> str:
    """config.pbtxt text for one model."""
    body = text_format.MessageToString(to_model_config(spec))
    comment = f"# {spec.description}\n" if spec.description else ""
    return HEADER + comment + body


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text back into a ModelConfig (comments ignored)."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ModelSpecError(f"config.pbtxt does not parse as a Triton ModelConfig: {exc}") from None


def write_repository(config: Config, root: Path | None = None, variant: str = "cpu",
                     gpu_backend: str = "onnxruntime", cores: int | None = None) -> list[Path]:
    """Write every model's config.pbtxt under ``root`` for ``cores`` (default: this host); return the changed files."""
    root = root if root is not None else config.path(config.server.model_repository)
    changed = []
    for spec in repository_specs(config, variant, gpu_backend, cores):
        path = root / spec.name / "config.pbtxt"
        text = render_config(spec)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            (root / spec.name / "1").mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def check_repository(config: Config, root: Path | None = None, cores: int | None = None) -> None:
    """Raise ModelSpecError when a config.pbtxt on disk differs from its spec (for ``cores``)."""
    root = root if root is not None else config.path(config.server.model_repository)
    for spec in repository_specs(config, cores=cores):
        path = root / spec.name / "config.pbtxt"
        if not path.exists():
            raise ModelSpecError(f"{path}: missing; run `python -m export repository`")
        if parse_config(path.read_text(encoding="utf-8")) != to_model_config(spec):
            raise ModelSpecError(f"{path}: differs from its spec; run `python -m export repository`")
