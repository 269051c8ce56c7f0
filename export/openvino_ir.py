"""ONNX -> OpenVINO for the CPU repository (``make engines``): IR, int8 by NNCF, the fidelity gate, the cache.

For each network folder of the CPU repository (detector, labeller, and the neural captioner's three networks):

1. ``onnx_to_ir``: ``model.onnx`` -> ``model.xml``/``.bin`` (``ov.save_model``, f32 weights kept as they are);
2. ``onnx_to_int8_ir`` when ``serving.cpu_precision`` is int8: NNCF post-training quantization calibrated on
   photos and video frames through the shared preprocessing -> ``model.int8.xml``;
3. the gate (:mod:`export.precision_gate`) of f32 and of the precision this CPU would serve, against
   onnxruntime fp32; the outcome goes to ``openvino_gate.json``, which the served models read;
4. one compile with the served settings into OpenVINO's model cache, so Triton's first start is a cache hit.

Each step is skipped when its record says it is up to date (same ONNX, OpenVINO and NNCF versions).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mmw.config import Config
from mmw.engine_provenance import sha256_file
from mmw.errors import ExportError, ExportValidationError
from mmw.network_runtimes import (
    CACHE_DIR,
    GATE_FILE,
    OnnxRuntimeRunner,
    PrecisionChoice,
    cpu_capabilities,
    ir_path,
    open_network,
    read_gate_record,
    resolve_precision,
)
from mmw.processing.images import detector_input, labeller_input
from mmw.specs import DETECTOR, LABELLER, serving_plan

GATE_VERSION = 2  # bump when the gate's checks change: every record is redone
CALIBRATION_VIDEO = "data/sample.mp4"
CALIBRATION_VIDEO_FRAMES = 24
_PREPARE: dict[str, Callable[[np.ndarray], np.ndarray]] = {DETECTOR.name: detector_input,
                                                          LABELLER.name: labeller_input}


def _versions() -> dict[str, str]:
    import openvino

    versions = {"openvino": openvino.__version__, "gate": str(GATE_VERSION)}
    try:
        import nncf

        versions["nncf"] = nncf.__version__
    except ImportError:
        pass
    return versions


def _write_record(folder: Path, record: dict) -> None:
    (folder / GATE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def onnx_to_ir(onnx_path: Path, max_batch_size: int | None = None) -> Path:
    """Convert one ONNX file to OpenVINO IR beside it (weights stay f32: no fp16 compression).

    With ``max_batch_size`` the batch axis of every input becomes the bounded range 1..max_batch_size
    (what Triton sends), which lets OpenVINO's CPU plugin pick faster kernels than for an unbounded one
    (measured here: the detector at 2 threads 36 -> 28 ms per image).
    """
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if max_batch_size is not None:
        model.reshape({port.get_any_name(): ov.PartialShape([ov.Dimension(1, max_batch_size),
                                                             *port.get_partial_shape()[1:]])
                       for port in model.inputs})
    xml = ir_path(onnx_path)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def calibration_frames(config: Config) -> list[np.ndarray]:
    """RGB frames for int8 calibration: the calibration photos and, when present, frames of the sample video,
    each also mirrored and as two 3/4 crops (measured here: the int8 detector kept 97% of the boxes instead of
    94%, the labeller 34 instead of 32 of 45 top-1s; both still short of the gate)."""
    import cv2

    from export.trt.calibration import calibration_photos

    frames = calibration_photos(config.engines.calibration_images)
    video = config.path(CALIBRATION_VIDEO)
    if video.is_file():
        capture = cv2.VideoCapture(str(video))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or CALIBRATION_VIDEO_FRAMES
        for index in np.linspace(0, count - 1, CALIBRATION_VIDEO_FRAMES).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = capture.read()
            if ok:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        capture.release()
    rng = np.random.default_rng(0)
    augmented = []
    for rgb in frames:
        h, w = rgb.shape[:2]
        augmented += [rgb, np.ascontiguousarray(rgb[:, ::-1])]
        for _ in range(2):
            y, x = int(rng.integers(0, h // 4 + 1)), int(rng.integers(0, w // 4 + 1))
            augmented.append(np.ascontiguousarray(rgb[y:y + 3 * h // 4, x:x + 3 * w // 4]))
    return augmented


def onnx_to_int8_ir(onnx_path: Path, network: str, frames: Iterable[np.ndarray]) -> Path:
    """NNCF post-training quantization of a network's IR on ``frames`` -> ``model.int8.xml``."""
    try:
        import nncf
    except ImportError:
        raise ExportError("serving.cpu_precision is int8 but nncf is not installed: run `make install`") from None
    import openvino as ov

    if network not in _PREPARE:
        raise ExportError(f"{network}: int8 quantization knows the detector and the labeller, not {network!r}")
    prepare = _PREPARE[network]
    samples = [{"images": prepare(rgb)[None]} for rgb in frames]
    model = ov.Core().read_model(str(ir_path(onnx_path)))
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                              preset=nncf.QuantizationPreset.MIXED)
    out = ir_path(onnx_path, "int8")
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


def _up_to_date(record: dict, key: str, stamp: dict, files: Iterable[Path]) -> bool:
    return record.get(key) == stamp and all(p.is_file() for p in files)


def _gate_frames() -> dict[str, np.ndarray]:
    from export.fidelity import fidelity_frames

    return fidelity_frames()


def build_openvino(config: Config, repo: Path, force: bool = False,
                   say: Callable[[str], None] = lambda line: None) -> list[str]:
    """IR, int8, gate and cache for every network of the CPU repository; one line per network."""
    lines: list[str] = []
    caps = cpu_capabilities()
    wanted = resolve_precision(config.serving.cpu_precision, caps)
    served_here = config.serving.cpu_runtime == "openvino"
    plan = serving_plan(config.serving)
    frames: dict[str, np.ndarray] | None = None
    for network in (DETECTOR.name, LABELLER.name):
        folder = repo / network / "1"
        onnx = folder / "model.onnx"
        if not onnx.is_file():
            raise ExportError(f"{onnx}: not found; the ONNX export must come first")
        record = read_gate_record(folder)
        stamp = {"onnx_sha256": sha256_file(onnx), "max_batch_size": config.serving.max_batch_size, **_versions()}
        done = []
        if force or not _up_to_date(record, "ir", stamp, [ir_path(onnx)]):
            onnx_to_ir(onnx, config.serving.max_batch_size)
            record = {"ir": stamp}  # a new IR invalidates every gate, the int8 model and the compiled blobs
            shutil.rmtree(folder / CACHE_DIR, ignore_errors=True)
            done.append("IR saved")
        if not served_here:
            _write_record(folder, record)
            lines.append(f"{network}: openvino IR {'saved' if done else 'up to date'} (not served: "
                         "serving.cpu_runtime is onnxruntime)")
            continue
        precisions = ["f32"] + [p for p in (wanted.precision,) if p != "f32"]
        if "int8" in precisions and (force or not _up_to_date(record, "int8", stamp, [ir_path(onnx, "int8")])):
            say(f"{network}: quantizing to int8 with NNCF ...")
            onnx_to_int8_ir(onnx, network, calibration_frames(config))
            record["int8"] = stamp
            record.get("precisions", {}).pop("int8", None)
            done.append("int8 quantized")
        gates = record.setdefault("precisions", {})
        reference: OnnxRuntimeRunner | None = None
        for precision in precisions:
            if not force and gates.get(precision, {}).get("stamp") == stamp:
                continue
            say(f"{network}: fidelity gate of openvino {precision} ...")
            frames = frames if frames is not None else _gate_frames()
            reference = reference or OnnxRuntimeRunner(onnx, threads=2)
            candidate, _ = open_network(onnx, "openvino", threads=2, choice=PrecisionChoice(precision))
            result = _gate(network, reference, candidate, frames, precision, config)
            gates[precision] = {**result.record(), "stamp": stamp}
        _write_record(folder, record)
        if not gates["f32"]["passed"]:
            raise ExportValidationError(f"{network}: OpenVINO f32 differs from onnxruntime fp32 "
                                        f"({gates['f32']['detail']}); set serving.cpu_runtime: onnxruntime")
        served, _ = open_network(onnx, "openvino", config.serving.cpu_precision, plan[network].threads)
        lines.append(_outcome_line(network, wanted, gates, served.description, done))
    if config.models.caption.neural:
        lines.append(build_captioner_openvino(config, repo / "caption" / "1", force, say))
    return lines


def _gate(network, reference, candidate, frames, precision, config: Config):
    from export.precision_gate import detector_gate, labeller_gate

    if network == DETECTOR.name:
        det = config.models.detector
        return detector_gate(reference, candidate, frames, precision, det.iou_threshold, det.max_detections)
    return labeller_gate(reference, candidate, frames, precision)


def _outcome_line(network: str, wanted: PrecisionChoice, gates: dict, served: str, done: list[str]) -> str:
    """One line: what is served and why, with the gate's speed and fidelity of the precisions tried."""
    tried = "; ".join(f"{p}: {'passed' if g['passed'] else 'FAILED'} ({g['detail']})" for p, g in gates.items()
                      if p in ("f32", wanted.precision))
    head = f"{network}: serving {served}"
    if wanted.precision != "f32" and not gates.get(wanted.precision, {}).get("passed"):
        head += f" ({wanted.precision} failed the fidelity gate: falling back to f32)"
    if wanted.note:
        head += f" ({wanted.note})"
    return f"{head}{'; ' + ', '.join(done) if done else ''}; gate {tried}"


def build_captioner_openvino(config: Config, folder: Path, force: bool,
                             say: Callable[[str], None] = lambda line: None) -> str:
    """The captioner's three networks as IR, and the token gate of the precision this CPU would serve."""
    from export.fidelity import PHOTOS, photo
    from export.precision_gate import captioner_gate
    from mmw.captioner import DECODER_FILE, DECODER_NO_CACHE_FILE, ENCODER_FILE, OnnxCaptioner

    files = [folder / f for f in (ENCODER_FILE, DECODER_FILE, DECODER_NO_CACHE_FILE)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ExportError(f"captioner: {missing} not found; the captioner's ONNX export must come first")
    record = read_gate_record(folder)
    stamp = {"onnx_sha256": "+".join(sha256_file(f) for f in files), **_versions()}
    if force or not _up_to_date(record, "ir", stamp, [ir_path(f) for f in files]):
        for f in files:
            onnx_to_ir(f)
        record = {"ir": stamp}
        shutil.rmtree(folder / CACHE_DIR, ignore_errors=True)
    cap = config.models.caption
    wanted = resolve_precision("auto" if config.serving.cpu_precision == "int8" else config.serving.cpu_precision,
                               cpu_capabilities())
    gates = record.setdefault("precisions", {})
    for precision in dict.fromkeys(("f32", wanted.precision)):
        if force or gates.get(precision, {}).get("stamp") != stamp:
            say(f"captioner: fidelity gate of openvino {precision} ...")
            images = [photo(name) for name in PHOTOS]
            reference = OnnxCaptioner(folder, threads=2)
            candidate = OnnxCaptioner(folder, threads=2, runtime="openvino", choice=PrecisionChoice(precision))
            result = captioner_gate(reference, candidate, images, precision, cap.num_beams, cap.max_new_tokens)
            gates[precision] = {**result.record(), "stamp": stamp}
    _write_record(folder, record)
    served = OnnxCaptioner(folder, threads=serving_plan(config.serving)["caption"].threads, runtime="openvino",
                           precision=config.serving.cpu_precision)
    return _outcome_line("captioner", wanted, gates, served.encoder.description, [])

