"""Typed, validated settings from ``config/config.yaml``: the one place users change things.

Every section is a frozen dataclass. Loading checks every key and type and names the field
(``server.http_port``) in any error, with what was expected and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmw.contract import CAPTION_PARAMETERS
from mmw.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "config.yaml"


@dataclass(frozen=True)
class ServerConfig:
    """How and where Triton runs."""

    mode: Literal["local", "docker"] = "local"  # docker: the NGC Triton image, settings under docker:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_repository: str = "model_repository"
    state_dir: str = ".triton"
    startup_timeout_s: float = 180.0
    exit_timeout_s: int = 30
    log_verbose: int = 0

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ConfigError(f"server.{name}: expected a port in 1..65535, got {port}")
        ports = [self.http_port, self.grpc_port, self.metrics_port]
        if len(set(ports)) != 3:
            raise ConfigError(f"server: http_port, grpc_port and metrics_port must differ, got {ports}")
        _positive("server.startup_timeout_s", self.startup_timeout_s)


ULIMIT_NAMES = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
                "rss", "rtprio", "rttime", "sigpending", "stack")
"""The resource limits Docker accepts (``--ulimit NAME=soft[:hard]``)."""
SIZE_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?[bkmg]?$", re.IGNORECASE)
"""A Docker size such as ``16G``, ``512m`` or ``1073741824`` (bytes)."""
GPUS_PATTERN = re.compile(r"^(all|none|[0-9]+(,[0-9]+)*)?$")
"""``all``, ``none`` or empty (no GPUs), or comma-separated GPU indices such as ``0,1``."""
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTAINER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class DockerConfig:
    """Triton in a container (``server.mode: docker``) and the dev container (``launcher shell``)."""

    host: str = ""  # Docker daemon URL; "" means DOCKER_HOST, else the default socket
    manifest: str = "docker/manifest.json"  # image names, tags and pinned digests
    image_kind: Literal["ngc", "release"] = "ngc"  # ngc: stock Triton image + mounts; release: everything baked in
    image: str = ""  # "" means the manifest's image for image_kind
    tag: str = ""  # "" means the manifest's tag
    allow_unpinned: bool = False  # run an image the manifest does not pin by digest
    gpus: str = "all"  # "all", "" (none) or GPU indices "0,1"
    shm_size: str = "1g"
    ulimits: dict[str, int] = field(default_factory=lambda: {"memlock": -1, "stack": 67108864})
    env: dict[str, str] = field(default_factory=dict)
    container_name: str = "mmw-triton"
    network: Literal["bridge", "host"] = "bridge"  # bridge: publish the server ports; host: share the host's
    container_python: str = "3.10"  # python of the ngc image: its packages for the python models; "" if it has them

    def __post_init__(self) -> None:
        if not GPUS_PATTERN.match(self.gpus):
            raise ConfigError(f"docker.gpus: expected 'all', '' (no GPUs) or comma-separated GPU indices such as "
                              f"'0,1', got {self.gpus!r}")
        if not SIZE_PATTERN.match(self.shm_size):
            raise ConfigError(f"docker.shm_size: expected a size such as 1g, 512m or a number of bytes, got "
                              f"{self.shm_size!r}")
        for name, value in self.ulimits.items():
            if name not in ULIMIT_NAMES:
                raise ConfigError(f"docker.ulimits.{name}: unknown limit; allowed: {', '.join(ULIMIT_NAMES)}")
            if value < -1:
                raise ConfigError(f"docker.ulimits.{name}: expected -1 (unlimited) or a number >= 0, got {value}")
        for name in self.env:
            if not ENV_NAME_PATTERN.match(name):
                raise ConfigError(f"docker.env.{name}: expected a variable name of letters, digits and _ "
                                  "(not starting with a digit)")
        if not CONTAINER_NAME_PATTERN.match(self.container_name):
            raise ConfigError(f"docker.container_name: expected [a-zA-Z0-9][a-zA-Z0-9_.-]+, got "
                              f"{self.container_name!r}")
        if self.container_python and not re.match(r"^3\.[0-9]+$", self.container_python):
            raise ConfigError(f"docker.container_python: expected a Python version such as '3.10', or '' when the "
                              f"image already has the python models' packages, got {self.container_python!r}")


@dataclass(frozen=True)
class DetectorConfig:
    """SSD MobileNet V2 COCO: the frozen graph it is rebuilt from and its post-processing."""

    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    max_detections: int = 100

    def __post_init__(self) -> None:
        _unit_interval("models.detector.score_threshold", self.score_threshold)
        _unit_interval("models.detector.iou_threshold", self.iou_threshold)
        _positive("models.detector.max_detections", self.max_detections)


@dataclass(frozen=True)
class LabellerConfig:
    """EfficientNet-Lite0 scene labels."""

    top_k: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 1000:
            raise ConfigError(f"models.labeller.top_k: expected 1..1000, got {self.top_k}")


@dataclass(frozen=True)
class CaptionConfig:
    """How captions are made.

    ``model`` empty: a template caption composed from the detections and scene labels. Otherwise a
    BLIP or GIT checkpoint (a local folder, or a hub id for machines with internet) exported by
    ``make engines`` and served by Triton, with dense captions for the top detections.
    """

    model: str = ""
    num_beams: int = 1
    max_new_tokens: int = 20
    dense_top_k: int = 3
    dense_min_score: float = 0.5
    dense_min_size_px: int = 16
    min_label_score: float = 0.2

    def __post_init__(self) -> None:
        _unit_interval("models.caption.min_label_score", self.min_label_score)
        _unit_interval("models.caption.dense_min_score", self.dense_min_score)
        for name, (low, high) in CAPTION_PARAMETERS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                hint = " (0: no dense captions)" if name == "dense_top_k" else ""
                raise ConfigError(f"models.caption.{name}: expected {low}..{high}{hint}, got {value}")
        if self.dense_min_size_px < 1:
            raise ConfigError(f"models.caption.dense_min_size_px: expected >= 1, got {self.dense_min_size_px}")

    @property
    def neural(self) -> bool:
        """True when a captioning checkpoint is configured."""
        return bool(self.model.strip())


@dataclass(frozen=True)
class ModelsConfig:
    """Every model of the pipeline."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    labeller: LabellerConfig = field(default_factory=LabellerConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)


@dataclass(frozen=True)
class ServingConfig:
    """How each Triton model step is scheduled on this machine."""

    max_batch_size: int = 8
    instances: int | Literal["auto"] = "auto"
    onnx_threads: int | Literal["auto"] = "auto"
    max_queue_delay_us: int = 500
    warmup: bool = True  # model_warmup in the networks' config.pbtxt: Triton marks them ready only after it

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"serving.max_batch_size: expected >= 1, got {self.max_batch_size}")
        for name in ("instances", "onnx_threads"):
            value = getattr(self, name)
            if value != "auto":
                _positive(f"serving.{name}", value)


@dataclass(frozen=True)
class EnginesConfig:
    """TensorRT plans (``make engines`` on an NVIDIA GPU) and the GPU repository variant."""

    gpu_backend: Literal["tensorrt", "onnxruntime"] = "tensorrt"  # what serves the networks in the GPU variant
    gpu_repository: str = "model_repository_gpu"  # where the GPU variant (configs, plans) is written
    precision: Literal["fp16", "fp32", "int8"] = "fp16"  # int8 calibrates on calibration_images
    workspace_mb: int = 1024  # TensorRT builder workspace (also the onnxruntime TensorRT provider's)
    timing_cache: str = "build/tensorrt/timing.cache"  # reused across builds: loaded if present, saved after
    onnxruntime_accelerator: Literal["tensorrt", "cuda"] = "tensorrt"  # gpu_backend onnxruntime: TensorRT EP or CUDA
    calibration_images: str = ""  # int8: folder of JPEG/PNG images; "" = scikit-image's sample photos

    def __post_init__(self) -> None:
        if not 16 <= self.workspace_mb <= 1 << 20:
            raise ConfigError(f"engines.workspace_mb: expected 16..1048576 MiB, got {self.workspace_mb}")
        if not self.timing_cache.strip():
            raise ConfigError("engines.timing_cache: expected a file path such as build/tensorrt/timing.cache, "
                              "got an empty string")
        if not self.gpu_repository.strip():
            raise ConfigError("engines.gpu_repository: expected a folder such as model_repository_gpu, "
                              "got an empty string")


@dataclass(frozen=True)
class ClientConfig:
    """Defaults of the command-line client."""

    protocol: Literal["grpc", "http"] = "grpc"
    fps: float = 2.0
    batch_size: int = 4
    max_in_flight: int = 2
    timeout_s: float = 60.0
    jpeg_quality: int = 90
    out_dir: str = "results"
    retry_s: float = 60.0  # while the server is unreachable, retry with backoff this long (0: fail at once)

    def __post_init__(self) -> None:
        _positive("client.fps", self.fps)
        if not self.retry_s >= 0:
            raise ConfigError(f"client.retry_s: expected >= 0 seconds, got {self.retry_s}")
        _positive("client.batch_size", self.batch_size)
        _positive("client.max_in_flight", self.max_in_flight)
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"client.jpeg_quality: expected 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class AppConfig:
    """The Gradio app (``launcher app``): a thin client of the served ensemble."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 500.0
    max_fps: float = 10.0
    out_dir: str = "results/app"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"app.port: expected a port in 1..65535, got {self.port}")
        if not self.host.strip():
            raise ConfigError("app.host: expected an address such as 127.0.0.1, got an empty string")
        _positive("app.max_upload_mb", self.max_upload_mb)
        _positive("app.max_fps", self.max_fps)


@dataclass(frozen=True)
class Config:
    """The whole of config.yaml."""

    server: ServerConfig = field(default_factory=ServerConfig)
    docker: DockerConfig = field(default_factory=DockerConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    app: AppConfig = field(default_factory=AppConfig)

    def __post_init__(self) -> None:
        server_ports = {"http_port": self.server.http_port, "grpc_port": self.server.grpc_port,
                        "metrics_port": self.server.metrics_port}
        for name, port in server_ports.items():
            if port == self.app.port:
                raise ConfigError(f"app.port: {port} is also server.{name}; expected a port Triton does not use, "
                                  "such as 7860")

    def path(self, relative: str) -> Path:
        """Resolve a path setting against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else PROJECT_ROOT / p


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: expected a positive number, got {value}")


def _unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: expected a number in [0, 1], got {value}")


_NOUNS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def _type_name(tp: Any) -> str:
    """How a setting's type reads in an error: 'an integer or 'auto'', 'one of 'local', 'docker''."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        parts = [", ".join(repr(a) for a in typing.get_args(o)) if typing.get_origin(o) is Literal
                 else _type_name(o) for o in typing.get_args(tp)]
        return " or ".join(parts)
    return _NOUNS.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and build nested dataclasses."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        key_tp, value_tp = typing.get_args(tp)
        return {_convert(k, key_tp, where): _convert(v, value_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # pragma: no cover - programming error


def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown setting; allowed keys{' under ' + where if where else ''}: "
            + ", ".join(sorted(known))
        )
    kwargs = {name: _convert(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate config.yaml (the project's own when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p}: not found (expected a YAML file such as config/config.yaml)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level, got {type(data).__name__}")
    return build(Config, data)
