"""Typed facts about a Triton server and its models, read once from the JSON either protocol returns.

HTTP returns a model's config itself; gRPC (``as_json=True``) wraps it in ``config``, and depending on the
tritonclient version spells its keys as in the proto (``model_name``, ``string_value``) or in camelCase
(``modelName``, ``stringValue``). The readers here accept both, so no other module sees a protocol's spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmw.contract import CAPTION_PARAMETERS, CAPTION_SOURCE, TEMPLATE_SOURCE

#: The ensemble tensor only the caption step writes: it tells that step from the others.
CAPTION_STEP_OUTPUT = CAPTION_SOURCE.name
#: The caption model's config parameter that names its caption source (TEMPLATE_SOURCE or a checkpoint).
CAPTION_SOURCE_PARAMETER = "caption_source"
#: The caption model's config parameters that are its defaults for requests (shown by the app).
CAPTIONER_SETTINGS: tuple[str, ...] = (*CAPTION_PARAMETERS, "dense_min_score")


def _field(data: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``data[name]`` under its proto spelling (``model_name``) or its JSON one (``modelName``)."""
    if name in data:
        return data[name]
    head, *rest = name.split("_")
    return data.get(head + "".join(part.title() for part in rest), default)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


@dataclass(frozen=True)
class ServerInfo:
    """What the server says about itself."""

    name: str
    version: str
    extensions: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerInfo:
        return cls(str(data.get("name", "")), str(data.get("version", "")),
                   tuple(str(e) for e in _list(data.get("extensions"))))


@dataclass(frozen=True)
class ModelMetadata:
    """A served model's name, versions, platform and tensor names."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelMetadata:
        def names(key: str) -> tuple[str, ...]:
            return tuple(str(t.get("name", "")) for t in _list(data.get(key)) if isinstance(t, Mapping))

        return cls(str(data.get("name", "")), tuple(str(v) for v in _list(data.get("versions"))),
                   str(data.get("platform", "")), names("inputs"), names("outputs"))


@dataclass(frozen=True)
class EnsembleStep:
    """One step of an ensemble: the model it runs and the ensemble tensors it writes."""

    model: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class ModelConfig:
    """The parts of a served model's ``config.pbtxt`` that clients use."""

    name: str
    platform: str = ""
    backend: str = ""
    max_batch_size: int = 0  # 0: no batching
    steps: tuple[EnsembleStep, ...] = ()  # an ensemble's steps, in order
    parameters: tuple[tuple[str, str], ...] = ()  # the string parameters

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        config = _mapping(data.get("config")) or data  # gRPC wraps the config
        steps = []
        for step in _list(_field(_mapping(_field(config, "ensemble_scheduling")), "step")):
            step = _mapping(step)
            written = _mapping(_field(step, "output_map"))
            steps.append(EnsembleStep(str(_field(step, "model_name", "")), tuple(str(v) for v in written.values())))
        parameters = []
        for key, value in _mapping(config.get("parameters")).items():
            text = _field(_mapping(value), "string_value")
            if text is not None:
                parameters.append((str(key), str(text)))
        return cls(str(config.get("name", "")), str(config.get("platform", "")), str(config.get("backend", "")),
                   int(_field(config, "max_batch_size", 0) or 0), tuple(steps), tuple(sorted(parameters)))

    def parameter(self, key: str, default: str = "") -> str:
        """A string parameter, or ``default`` when the config does not set it."""
        return dict(self.parameters).get(key, default)

    def step_writing(self, tensor: str) -> EnsembleStep | None:
        """The ensemble step that writes ``tensor``, if any."""
        return next((s for s in self.steps if tensor in s.outputs), None)


@dataclass(frozen=True)
class CaptionerInfo:
    """The ensemble's caption step as served: its model, readiness, caption source and request defaults."""

    model: str
    ready: bool
    source: str = ""  # TEMPLATE_SOURCE or the checkpoint's name; "" when its config cannot be read
    settings: tuple[tuple[str, str], ...] = ()  # CAPTIONER_SETTINGS the config sets, in that order

    @property
    def neural(self) -> bool:
        """True for a neural captioner (not the template one)."""
        return bool(self.source) and self.source != TEMPLATE_SOURCE

    @classmethod
    def from_config(cls, config: ModelConfig, ready: bool) -> CaptionerInfo:
        settings = tuple((key, config.parameter(key)) for key in CAPTIONER_SETTINGS if config.parameter(key))
        return cls(config.name, ready, config.parameter(CAPTION_SOURCE_PARAMETER), settings)


def repository_models(data: Any) -> tuple[tuple[str, str], ...]:
    """(name, state) per model of a repository index (HTTP: a list; gRPC: ``{"models": [...]}``)."""
    entries = _list(data.get("models")) if isinstance(data, Mapping) else _list(data)
    return tuple((str(e.get("name", "")), str(e.get("state", ""))) for e in entries if isinstance(e, Mapping))


def ready_models(models: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The sorted names of the models whose state is READY, from ``repository_models``."""
    return tuple(sorted({name for name, state in models if state == "READY"}))


def shm_regions(data: Any) -> dict[str, str]:
    """name -> key of a system shared-memory status (HTTP: a list; gRPC: ``{"regions": {name: {...}}}``)."""
    entries = _mapping(data.get("regions")).values() if isinstance(data, Mapping) else _list(data)
    return {str(e.get("name", "")): str(e.get("key", "")) for e in entries if isinstance(e, Mapping)}
