"""Typed, validated settings from ``config/config.yaml``: the one place users change things.

Every section is a frozen pydantic dataclass: pydantic checks every key and type, and
:func:`build` turns its errors into one :class:`ConfigError` that names the field
(``server.http_port``), what was expected and what is allowed. Each setting's docstring is its
documentation (``docs/configuration.md`` is generated from them).
"""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mmw.contract import CAPTION_PARAMETERS
from mmw.errors import ConfigError


def _project_root() -> Path:
    """Where relative paths of the config resolve: ``$MMW_PROJECT_ROOT``; else the source checkout this package
    runs from; else (an installed package) the current folder, the user's project."""
    if os.environ.get("MMW_PROJECT_ROOT"):
        return Path(os.environ["MMW_PROJECT_ROOT"]).resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "config").is_dir():
        return checkout
    return Path.cwd()


PROJECT_ROOT = _project_root()
#: The user's config.yaml; where there is none (an installed package outside a project) the defaults apply.
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "config.yaml"

# YAML types as written: no coercion ("8000" is not a port, true is not 1); an integer is a number.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]


_Section = typing.TypeVar("_Section")


@typing.dataclass_transform(frozen_default=True, field_specifiers=(field,))
def section(cls: type[_Section]) -> type[_Section]:
    """A config.yaml section: a frozen pydantic dataclass that forbids unknown keys."""
    return pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))(cls)


@section
class ServerConfig:
    """How and where Triton runs."""

    mode: Literal["local", "docker"] = "local"
    """local: a tritonserver process here; docker: Triton in a container (settings under `docker`)."""
    host: Text = "127.0.0.1"
    """Address clients connect to; Triton binds 127.0.0.1 by default."""
    http_port: Int = 8000
    """Triton's HTTP/REST port."""
    grpc_port: Int = 8001
    """Triton's gRPC port."""
    metrics_port: Int = 8002
    """Triton's Prometheus metrics port."""
    model_repository: Text = "model_repository"
    """The model repository Triton serves (relative paths: from the project root)."""
    state_dir: Text = ".triton"
    """PID file, server log and the prepared python backend."""
    startup_timeout_s: Number = 180.0
    """Wait this long for the server and the ensemble to be ready."""
    exit_timeout_s: Int = 30
    """On stop: the time Triton gets to drain in-flight requests."""
    log_verbose: Int = 0
    """Triton's --log-verbose level (0: off)."""
    replicas: Int = 1
    """How many tritonservers `launcher run` starts (or `--replicas N`); replica i listens on the three ports + 3*i."""
    restrict_apis: Literal["auto", "always", "never"] = "auto"
    """When Triton's model-repository, shared-memory, trace and logging APIs need the admin key (auto: off loopback)."""
    admin_key_file: Text = ""
    """A file holding the admin key (the env var MMW_TRITON_ADMIN_KEY wins); "" if none."""

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"server.replicas: expected a whole number >= 1, got {self.replicas}")
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


@section
class DockerConfig:
    """Triton in a container (``server.mode: docker``) and the dev container (``launcher shell``)."""

    host: Text = ""
    """Docker daemon URL; "" means DOCKER_HOST, else the default socket."""
    manifest: Text = "docker/manifest.json"
    """Image names, tags and pinned digests."""
    image_kind: Literal["ngc", "release"] = "ngc"
    """ngc: the stock NGC Triton image, repository and mmw/ mounted; release: docker/release, all baked in."""
    image: Text = ""
    """"" means the manifest's image for image_kind."""
    tag: Text = ""
    """"" means the manifest's tag."""
    allow_unpinned: Flag = False
    """Run an image the manifest does not pin by digest."""
    gpus: Text = "all"
    """"all", "" (none) or GPU indices "0,1"."""
    shm_size: Text = "1g"
    """/dev/shm of the container (python backend tensors travel through it)."""
    ulimits: dict[str, Int] = field(default_factory=lambda: {"memlock": -1, "stack": 67108864})
    """Container resource limits, NAME: value (soft = hard); -1 is unlimited."""
    env: dict[str, Text] = field(default_factory=dict)
    """Extra environment of the Triton container, e.g. {CUDA_MODULE_LOADING: LAZY}."""
    container_name: Text = "mmw-triton"
    """Name of the Triton container."""
    network: Literal["bridge", "host"] = "bridge"
    """bridge: publish the server ports on server.host; host: share the host's network."""
    container_python: Text = "3.10"
    """Python of the ngc image (the python models' packages are prepared for it); "" if it has them."""

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


@section
class DetectorConfig:
    """SSD MobileNet V2 COCO: the frozen graph it is rebuilt from and its post-processing."""

    score_threshold: Number = 0.3
    """Detections scoring at least this are shown: in results.json, the exports, the drawings and the template
    caption (the clients filter after tracking; the template caption step on the server)."""
    track_min_score: Number = 0.1
    """The server returns detections down to this score, for the tracker's second association stage
    (ByteTrack); the clients hide those below score_threshold after tracking."""
    iou_threshold: Number = 0.6
    """Per-class NMS overlap."""
    max_detections: Int = 100
    """Per image; detection outputs are padded to at most this length."""

    def __post_init__(self) -> None:
        _unit_interval("models.detector.score_threshold", self.score_threshold)
        _unit_interval("models.detector.track_min_score", self.track_min_score)
        if self.track_min_score > self.score_threshold:
            raise ConfigError(f"models.detector.track_min_score: expected <= score_threshold "
                              f"({self.score_threshold}), got {self.track_min_score}")
        _unit_interval("models.detector.iou_threshold", self.iou_threshold)
        _positive("models.detector.max_detections", self.max_detections)


@section
class LabellerConfig:
    """EfficientNet-Lite0 scene labels."""

    top_k: Int = 5
    """Scene labels per image."""

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 1000:
            raise ConfigError(f"models.labeller.top_k: expected 1..1000, got {self.top_k}")


@section
class CaptionConfig:
    """How captions are made.

    ``model`` empty: a template caption composed from the detections and scene labels. Otherwise a
    BLIP or GIT checkpoint (a local folder, or a hub id for machines with internet) exported by
    ``make engines`` and served by Triton, with dense captions for the top detections.
    """

    model: Text = ""
    """\"\": template captions composed from detections and labels. A BLIP or GIT checkpoint folder (or a hub
    id with internet), exported by `make engines` and served by Triton."""
    num_beams: Int = 1
    """1: greedy; more: beam search (the request parameter num_beams overrides it)."""
    max_new_tokens: Int = 20
    """Caption length limit in tokens (request parameter max_new_tokens)."""
    dense_top_k: Int = 3
    """Also caption the best K detections of each image (0: none; request parameter dense_top_k)."""
    dense_min_score: Number = 0.5
    """Dense captions only for detections scoring at least this."""
    dense_min_size_px: Int = 16
    """Dense captions only for boxes at least this many pixels on both sides."""
    min_label_score: Number = 0.2
    """Template captions leave out scene labels below this score."""

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


@section
class ModelsConfig:
    """Every model of the pipeline."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    """SSD MobileNet V2 COCO."""
    labeller: LabellerConfig = field(default_factory=LabellerConfig)
    """EfficientNet-Lite0 scene labels."""
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    """Template or neural (BLIP/GIT) captions."""


@section
class ServingConfig:
    """How each Triton model step is scheduled on this machine."""

    max_batch_size: Int = 8
    """Per model step (dynamic batching)."""
    instances: Int | Literal["auto"] = "auto"
    """Instances per step; auto: from the core count (2 cores: detector 2, others 1)."""
    onnx_threads: Int | Literal["auto"] = "auto"
    """Inference threads per network instance (OpenVINO or onnxruntime); auto: planned from the core count."""
    cpu_runtime: Literal["openvino", "onnxruntime"] = "openvino"
    """What runs the networks in the CPU repository's python models."""
    cpu_precision: Literal["auto", "f32", "bf16", "int8"] = "auto"
    """OpenVINO precision; auto: bf16 where the CPU has AVX512_BF16 or AMX, else f32. A precision that fails the
    fidelity gate of `make engines` is served as f32 (int8: NNCF post-training quantization)."""
    max_queue_delay_us: Int = 500
    """Dynamic batching: how long a request may wait for others."""
    warmup: Flag = True
    """model_warmup in the networks' config.pbtxt: Triton marks them ready only after it."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"serving.max_batch_size: expected >= 1, got {self.max_batch_size}")
        for name in ("instances", "onnx_threads"):
            value = getattr(self, name)
            if value != "auto":
                _positive(f"serving.{name}", value)


@section
class EnginesConfig:
    """TensorRT plans (``make engines`` on an NVIDIA GPU) and the GPU repository variant."""

    gpu_backend: Literal["tensorrt", "onnxruntime"] = "tensorrt"
    """What serves the networks in the GPU variant."""
    gpu_repository: Text = "model_repository_gpu"
    """Where the GPU variant (configs, plans) is written."""
    openvino_repository: Text = "model_repository_openvino"
    """Where the CPU variant for Triton's own OpenVINO backend (NGC containers) is written."""
    precision: Literal["fp16", "fp32", "int8"] = "fp16"
    """fp16, fp32 or int8 (int8 calibrates on calibration_images)."""
    workspace_mb: Int = 1024
    """TensorRT builder workspace (also the onnxruntime TensorRT provider's)."""
    timing_cache: Text = "build/tensorrt/timing.cache"
    """TensorRT timing cache, reused across builds: loaded if present, saved after each build."""
    onnxruntime_accelerator: Literal["tensorrt", "cuda"] = "tensorrt"
    """With gpu_backend onnxruntime: the TensorRT execution provider, or CUDA only."""
    calibration_images: Text = ""
    """int8: a folder of JPEG/PNG images; "" = scikit-image's sample photos."""

    def __post_init__(self) -> None:
        if not 16 <= self.workspace_mb <= 1 << 20:
            raise ConfigError(f"engines.workspace_mb: expected 16..1048576 MiB, got {self.workspace_mb}")
        if not self.timing_cache.strip():
            raise ConfigError("engines.timing_cache: expected a file path such as build/tensorrt/timing.cache, "
                              "got an empty string")
        if not self.gpu_repository.strip():
            raise ConfigError("engines.gpu_repository: expected a folder such as model_repository_gpu, "
                              "got an empty string")


@section
class ClientConfig:
    """Defaults of the command-line client."""

    protocol: Literal["grpc", "http"] = "grpc"
    """grpc or http."""
    fps: Number = 2.0
    """Frames sampled per second of video."""
    batch_size: Int = 4
    """Images per request."""
    max_in_flight: Int = 2
    """Requests in flight at once."""
    timeout_s: Number = 60.0
    """Per request."""
    transport: Literal["auto", "jpeg", "raw", "shm"] = "auto"
    """How frames travel: jpeg bytes, raw RGB tensors, or raw through Triton's system shared memory;
    auto: shm when the server is on loopback, else jpeg."""
    jpeg_quality: Int = 90
    """Frames sent as JPEG (transport jpeg) are encoded at this quality."""
    out_dir: Text = "results"
    """Where results folders are written."""
    retry_s: Number = 60.0
    """While the server is unreachable, retry with backoff this long (0: fail at once)."""
    reconnect_s: Number = 30.0
    """``live``: a stream URL that drops is opened again with backoff this long, then given up (0: never)."""
    urls: tuple[Text, ...] = ()
    """Triton endpoints (HOST:PORT of the protocol's port) to spread requests over, failing over between
    them; a DNS name with several addresses (a headless Service) counts each; empty: server.host and its
    port."""
    cue_s: Number = 4.0
    """Subtitles (captions.srt/.vtt): a new cue at least every this many seconds within a scene, and at
    each caption change."""

    def __post_init__(self) -> None:
        _positive("client.fps", self.fps)
        _positive("client.cue_s", self.cue_s)
        if not self.retry_s >= 0:
            raise ConfigError(f"client.retry_s: expected >= 0 seconds, got {self.retry_s}")
        if not self.reconnect_s >= 0:
            raise ConfigError(f"client.reconnect_s: expected >= 0 seconds (0: never reconnect), got {self.reconnect_s}")
        _positive("client.batch_size", self.batch_size)
        _positive("client.max_in_flight", self.max_in_flight)
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"client.jpeg_quality: expected 1..100, got {self.jpeg_quality}")


@section
class CorpusConfig:
    """``python -m clients corpus``: many videos, on a local process pool or a Ray cluster."""

    workers: Int = 0
    """Videos analysed at once (0: the CPUs of this machine, or of the Ray cluster, at most 8 locally)."""
    ray: Text = ""
    """Ray cluster to run on: auto (the one ``ray start`` set up here), ADDRESS (HOST:PORT or ray://HOST:PORT),
    empty: a local process pool."""
    outputs: Text = "results,coco,srt,vtt,csv,mp4"
    """What each video's folder gets; results.json always (the index and resuming read it), mp4 the costly one."""
    attempts: Int = 3
    """Tries per video when a worker or node is lost (each resumes from the video's checkpoint)."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"corpus.workers: expected >= 0 (0: one per CPU), got {self.workers}")
        _positive("corpus.attempts", self.attempts)


@section
class AppConfig:
    """The Gradio app (``launcher app``): a thin client of the served ensemble."""

    host: Text = "127.0.0.1"
    """Address the app binds; another than loopback (0.0.0.0 exposes it) needs a login (auth_env, auth_file)."""
    port: Int = 7860
    """The app's port (must differ from Triton's)."""
    max_upload_mb: Number = 500.0
    """Larger uploads are refused with a message."""
    max_fps: Number = 10.0
    """Upper end of the sampling-rate slider (its default is client.fps)."""
    out_dir: Text = "results/app"
    """One folder per run: results.json, annotated.mp4 or PNG."""
    auth_env: Text = "MMW_APP_AUTH"
    """Environment variable holding the login as user:password (several: comma-separated); it wins over
    auth_file; unset or empty: no login from it."""
    auth_file: Text = ""
    """A file of user:password lines for the login; "" for none. Without a login the app binds only a
    loopback address (`launcher app --insecure` overrides)."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"app.port: expected a port in 1..65535, got {self.port}")
        if not self.host.strip():
            raise ConfigError("app.host: expected an address such as 127.0.0.1, got an empty string")
        _positive("app.max_upload_mb", self.max_upload_mb)
        _positive("app.max_fps", self.max_fps)


@section
class Config:
    """The whole of config.yaml."""

    server: ServerConfig = field(default_factory=ServerConfig)
    """How and where Triton runs."""
    docker: DockerConfig = field(default_factory=DockerConfig)
    """Triton in a container and the dev container."""
    models: ModelsConfig = field(default_factory=ModelsConfig)
    """The pipeline's models."""
    serving: ServingConfig = field(default_factory=ServingConfig)
    """How each Triton model step is scheduled."""
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    """The GPU path: TensorRT plans and the GPU repository."""
    client: ClientConfig = field(default_factory=ClientConfig)
    """Defaults of the command-line client."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """Many videos at once (``python -m clients corpus``)."""
    app: AppConfig = field(default_factory=AppConfig)
    """The Gradio app."""

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
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        parts = [", ".join(repr(a) for a in typing.get_args(o)) if typing.get_origin(o) is Literal
                 else _type_name(o) for o in typing.get_args(tp)]
        return " or ".join(parts)
    if origin is dict or hasattr(tp, "__dataclass_fields__"):
        return "a mapping"
    return _NOUNS.get(tp, getattr(tp, "__name__", str(tp)))


def _setting_at(cls: type, loc: tuple[Any, ...]) -> tuple[list[str], Any, type | None]:
    """Follow a pydantic error location through the sections: (path, the setting's type, its section).

    Union member tags at the end of ``loc`` (``'int'``, ``"literal['auto']"``) are not settings and stop the walk.
    """
    path: list[str] = []
    tp: Any = cls
    owner: type | None = None
    for item in loc:
        if hasattr(tp, "__dataclass_fields__"):
            owner = tp
            if item not in tp.__dataclass_fields__:
                path.append(str(item))
                return path, None, owner
            path.append(str(item))
            tp = typing.get_type_hints(tp)[item]
        elif typing.get_origin(tp) is dict:
            path.append(str(item))
            tp = typing.get_args(tp)[1]
        else:
            break
    return path, tp, owner


def _config_error(cls: type, exc: ValidationError) -> ConfigError:
    """The first of pydantic's errors as one line that names the setting, what it expected and what it got."""
    error = exc.errors()[0]
    path, tp, owner = _setting_at(cls, tuple(error["loc"]))
    where, value = ".".join(path) or "config", error["input"]
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        parent = ".".join(path[:-1])
        allowed = ", ".join(sorted(owner.__dataclass_fields__)) if owner is not None else ""
        return ConfigError(f"{where}: unknown setting; allowed keys{' under ' + parent if parent else ''}: {allowed}")
    expected = _type_name(tp) if tp is not None else error["msg"]
    if typing.get_origin(tp) in (Literal, typing.Union, types.UnionType):
        return ConfigError(f"{where}: expected {expected}, got {value!r}")
    return ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def build(cls: type, data: dict[str, Any]) -> Any:
    """Build section ``cls`` (e.g. :class:`Config`) from a mapping, rejecting unknown keys and wrong types."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise _config_error(cls, exc) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate config.yaml (the project's own when ``path`` is None; the defaults when it has none)."""
    if path is None and not DEFAULT_CONFIG_PATH.is_file():
        return Config()
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
