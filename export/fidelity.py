"""Fidelity of what is served against the source models, on the frame sizes users send.

``python -m export fidelity`` runs every check and prints one table: for each check, the
reference, the tolerance and the measured value. The tests (``tests/test_fidelity.py``) assert
the same checks frame by frame.

- **Resize kernels**: the numpy TF1 bilinear/bicubic kernels against values TensorFlow recorded.
- **Networks**: each ONNX against its PyTorch module (the spec's listed tolerance).
- **Detector**: the served path (TF1 bilinear float resize, the network on the served CPU runtime and
  precision, box decoding and NMS) against
  the original SSD frozen graph run by OpenCV dnn on the graph's own float resize, on the real
  photos resized to every size in :data:`FRAME_SIZES`.
- **Labeller**: the served path (EfficientNet's evaluation crop, TF1 bicubic to uint8, ONNX)
  against the PyTorch model on the float reference input, top-1 on the same frames.
- **Captions**: pixel values against the checkpoint's transformers image processor, and tokens
  against ``generate()``, for the tiny BLIP and GIT test checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmw.config import PROJECT_ROOT
from mmw.errors import ExportError
from mmw.processing.detection import Detections, postprocess_detections
from mmw.processing.images import detector_input, labeller_input
from mmw.processing.nms import box_iou
from mmw.processing.resize import resize_bicubic_tf1, resize_bilinear_tf1
from mmw.specs import DETECTOR, LABELLER

#: (width, height) of the frames made from each photo: camera sizes from QVGA to 4K, and a portrait phone video.
FRAME_SIZES: tuple[tuple[int, int], ...] = ((320, 240), (640, 480), (1280, 720), (1920, 1080), (3840, 2160),
                                            (1080, 1920))
PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
SCORE = 0.5             # boxes compared: score above this on either side
MIN_IOU = 0.9           # a match: same class and at least this IoU ...
SCORE_TOLERANCE = 0.02  # ... and scores this close (a box this close to SCORE may be missing on the other side)
LABEL_TIE = LABELLER.atol  # labeller: a different top-1 passes only if the reference logits tie within this
TF_RESIZE_REFERENCE = Path(__file__).resolve().parent / "reference" / "tf1_resize.json"


def photo(name: str) -> np.ndarray:
    """One of :data:`PHOTOS`: an RGB photo shipped by scikit-image."""
    try:
        import skimage.data
    except ImportError:
        raise ExportError("the sample photos come from scikit-image, which is not installed: run "
                          "`make install` (or pip install scikit-image)") from None
    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()[..., :3]


def frame_from_photo(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo as a ``size`` (width, height) camera frame: area-averaged down, bicubic up."""
    shrinking = size[0] * size[1] < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def mosaic(size: tuple[int, int], photos: Iterable[str]) -> np.ndarray:
    """A ``size`` (width, height) frame of photos at their own resolution, left to right in rows, on black:
    real detail at every frame size, with objects as small as a wide camera shot has them."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    x = y = row = 0
    for name in photos:
        rgb = photo(name)
        h, w = rgb.shape[:2]
        if x + w > width:
            x, y, row = 0, y + row, 0
        if y + h > height:
            break
        frame[y : y + h, x : x + w] = rgb
        x, row = x + w, max(row, h)
    return frame


#: The mosaics' sizes: HD and 4K, where resizing differs most.
MOSAIC_SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080), (3840, 2160))


def fidelity_frames(photos: Iterable[str] = PHOTOS, sizes: Iterable[tuple[int, int]] = FRAME_SIZES,
                    mosaic_sizes: Iterable[tuple[int, int]] = MOSAIC_SIZES) -> dict[str, np.ndarray]:
    """``"photo@WxH"`` -> every photo resized to every size; ``"mosaicK@WxH"`` -> the photos tiled at their own
    resolution, starting with the K-th, at every mosaic size."""
    photos, sizes = tuple(photos), tuple(sizes)
    frames = {f"{name}@{w}x{h}": frame_from_photo(photo(name), (w, h)) for name in photos for w, h in sizes}
    for k in range(len(photos)):
        order = (photos[k:] + photos[:k]) * 4
        frames |= {f"mosaic{k}@{w}x{h}": mosaic((w, h), order) for w, h in mosaic_sizes}
    return frames


# --- resize kernels ------------------------------------------------------------------------------------------

def reference_input(height: int, width: int) -> np.ndarray:
    """The deterministic image TensorFlow resized (see ``export/reference/record_tf1_resize.py``)."""
    i, j, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((i * 7 + j * 13 + c * 101 + (i * j) % 31) % 256).astype(np.uint8)


@dataclass(frozen=True)
class ResizeCase:
    """One recorded TensorFlow resize and what the numpy kernel gives for it."""

    kernel: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    bit_exact: bool
    max_abs_diff: float | None  # None where TensorFlow's output was recorded as a digest only


def resize_cases(path: Path = TF_RESIZE_REFERENCE) -> list[ResizeCase]:
    """Each recorded TensorFlow resize, recomputed by :mod:`mmw.processing.resize`."""
    kernels: dict[str, Callable[[np.ndarray, tuple[int, int]], np.ndarray]] = {
        "bilinear": resize_bilinear_tf1, "bicubic": resize_bicubic_tf1}
    cases = []
    for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
        (h, w), size = case["input"], tuple(case["output"])
        ours = kernels[case["kernel"]](reference_input(h, w), size)
        digest = hashlib.sha256(np.ascontiguousarray(ours, dtype="<f4").tobytes()).hexdigest()
        diff = float(np.abs(ours - np.asarray(case["values"], np.float32)).max()) if "values" in case else None
        cases.append(ResizeCase(case["kernel"], (h, w), size, digest == case["sha256"], diff))  # type: ignore[arg-type]
    return cases


# --- detector ------------------------------------------------------------------------------------------------

class OriginalDetector:
    """The original SSD MobileNet V2 frozen graph in OpenCV dnn, fed the graph's own float resize of the frame."""

    def __init__(self) -> None:
        from export.ssd_mobilenet_v2 import frozen_graph_paths

        pb, pbtxt = frozen_graph_paths()
        self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))

    def __call__(self, rgb: np.ndarray, min_score: float) -> Detections:
        """Detections above ``min_score``, boxes in frame pixels."""
        h, w = rgb.shape[:2]
        self.net.setInput(detector_input(rgb).transpose(2, 0, 1)[None].copy())
        out = self.net.forward()[0, 0]
        out = out[out[:, 2] > min_score]
        boxes = (out[:, 3:7] * np.array([w, h, w, h], np.float32)).astype(np.float32)
        return Detections(boxes, out[:, 2].astype(np.float32), out[:, 1].astype(np.int32))


class ServedDetector:
    """What the ensemble computes: the shared preprocessing, the exported network on the served runtime and
    precision (:func:`mmw.network_runtimes.open_network`), and the shared box decoding."""

    def __init__(self, onnx_path: str | Path, runtime: str = "onnxruntime", precision: str = "f32") -> None:
        from mmw.network_runtimes import open_network

        self.session, _ = open_network(onnx_path, runtime, precision, threads=2)

    def __call__(self, rgb: np.ndarray, min_score: float) -> Detections:
        boxes, scores = self.session.run(None, {"images": detector_input(rgb)[None]})
        return postprocess_detections(boxes[0], scores[0], rgb.shape[:2], min_score, 0.6, 100)


@dataclass(frozen=True)
class BoxComparison:
    """The boxes of one frame on both sides: how many above :data:`SCORE` found a match on the other side."""

    frame: str
    reference: int
    reference_matched: int
    served: int
    served_matched: int
    min_iou: float        # over the matched boxes (1.0 when there are none)
    max_score_diff: float

    @property
    def ok(self) -> bool:
        return self.reference == self.reference_matched and self.served == self.served_matched


def _matches(strict: Detections, loose: Detections) -> tuple[int, list[float], list[float]]:
    """How many of ``strict`` (above SCORE) have a same-class partner in ``loose`` (above SCORE - tolerance)."""
    found, ious, diffs = 0, [], []
    keep = strict.scores > SCORE
    for box, score, cls in zip(strict.boxes[keep], strict.scores[keep], strict.class_ids[keep], strict=True):
        if not len(loose):
            continue
        iou = box_iou(box[None], loose.boxes)[0]
        candidates = (loose.class_ids == cls) & (iou >= MIN_IOU) & (np.abs(loose.scores - score) <= SCORE_TOLERANCE)
        if candidates.any():
            best = int(np.argmax(np.where(candidates, iou, -1)))
            found += 1
            ious.append(float(iou[best]))
            diffs.append(float(abs(loose.scores[best] - score)))
    return found, ious, diffs


def compare_boxes(frame: str, reference: Detections, served: Detections) -> BoxComparison:
    """Both directions: every box above SCORE on one side needs a match among the other side's boxes above
    SCORE - SCORE_TOLERANCE (same class, IoU >= MIN_IOU, scores within SCORE_TOLERANCE)."""
    ref_found, ref_ious, ref_diffs = _matches(reference, served)
    ours_found, our_ious, our_diffs = _matches(served, reference)
    return BoxComparison(frame, int((reference.scores > SCORE).sum()), ref_found, int((served.scores > SCORE).sum()),
                         ours_found, min(ref_ious + our_ious, default=1.0), max(ref_diffs + our_diffs, default=0.0))


def detector_comparisons(frames: dict[str, np.ndarray], served: ServedDetector,
                         original: OriginalDetector) -> list[BoxComparison]:
    low = SCORE - SCORE_TOLERANCE
    return [compare_boxes(name, original(rgb, low), served(rgb, low)) for name, rgb in frames.items()]


# --- labeller ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelComparison:
    """The labeller's top-1 on one frame: served (the exported ONNX) vs the PyTorch module."""

    frame: str
    reference_top1: int
    served_top1: int
    logit_gap: float  # reference logit of its top-1 minus its logit of the served top-1 (0 when equal)

    @property
    def ok(self) -> bool:
        return self.logit_gap <= LABEL_TIE


def labeller_comparisons(frames: dict[str, np.ndarray], onnx_path: str | Path, runtime: str = "onnxruntime",
                         precision: str = "f32") -> list[LabelComparison]:
    import torch

    from export.efficientnet_lite import load_efficientnet_lite0
    from mmw.network_runtimes import open_network

    session, _ = open_network(onnx_path, runtime, precision, threads=2)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = load_efficientnet_lite0()
    out = []
    for name, rgb in frames.items():
        with torch.no_grad():
            reference = model(torch.from_numpy(labeller_input(rgb)[None])).numpy()[0]
        (served,) = session.run(None, {"images": labeller_input(rgb)[None]})
        ref_top, our_top = int(reference.argmax()), int(served[0].argmax())
        out.append(LabelComparison(name, ref_top, our_top, float(reference[ref_top] - reference[our_top])))
    return out


# --- captions ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaptionComparison:
    """One tiny test checkpoint: pixel values vs its transformers processor, tokens vs ``generate()``."""

    architecture: str
    images: int
    pixels_max_abs_diff: float
    tokens_equal: int


def caption_comparisons(photos: Iterable[str] = PHOTOS, num_beams: int = 3, max_new_tokens: int = 8,
                        runtime: str = "onnxruntime", precision: str = "f32") -> list[CaptionComparison]:
    """Build the tiny BLIP and GIT checkpoints, export them as ``make engines`` does, and compare on
    the whole photos and on a crop of each (as a dense caption's box)."""
    import torch
    from transformers import AutoImageProcessor

    from export.captioner_onnx import build_captioner, load_captioner
    from export.tiny_captioners import build_tiny_captioner
    from mmw.captioner import OnnxCaptioner
    from mmw.processing.caption_decoding import generated_tokens
    from mmw.processing.caption_images import pixel_values

    images = []
    for name in photos:
        rgb = photo(name)
        h, w = rgb.shape[:2]
        images += [rgb, rgb[h // 5 : h // 2, w // 3 : w - w // 6]]
    out = []
    with tempfile.TemporaryDirectory(prefix="mmw-fidelity-") as tmp:
        for arch in ("blip", "git"):
            checkpoint = build_tiny_captioner(arch, Path(tmp) / f"tiny-{arch}")
            build_captioner(str(checkpoint), Path(tmp) / f"onnx-{arch}", PROJECT_ROOT)
            captioner = OnnxCaptioner(Path(tmp) / f"onnx-{arch}", runtime=runtime, precision=precision)
            reference = AutoImageProcessor.from_pretrained(checkpoint)(images=images, return_tensors="np")
            ours = pixel_values(images, captioner.meta.pixels)
            model = load_captioner(str(checkpoint))[0]
            with torch.no_grad():
                generated = model.generate(pixel_values=torch.from_numpy(reference["pixel_values"]),
                                           num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False)
            want = [generated_tokens(row.numpy(), 1, captioner.meta.eos_token_id) for row in generated]
            got = captioner.generate(ours, captioner.settings(num_beams, max_new_tokens))
            out.append(CaptionComparison(arch, len(images), float(np.abs(ours - reference["pixel_values"]).max()),
                                         sum(g == t for g, t in zip(got, want, strict=True))))
    return out


# --- the report ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FidelityCheck:
    """One row of the fidelity table."""

    check: str
    reference: str
    tolerance: str
    measured: str
    passed: bool


def _size_of(frame: str) -> str:
    return frame.split("@", 1)[1]


def fidelity_checks(repository: Path, captions: bool = True, progress: Callable[[str], None] = lambda _: None,
                    runtime: str = "onnxruntime", precision: str = "f32") -> list[FidelityCheck]:
    """Every check of the table, against the networks exported into ``repository`` on the served ``runtime``
    and ``precision`` (config.yaml's serving.cpu_runtime and cpu_precision)."""
    from export import efficientnet_lite, ssd_mobilenet_v2
    from export.onnx_export import validate_onnx

    checks = []
    progress("resize kernels vs TensorFlow")
    cases = resize_cases()
    exact = sum(c.bit_exact for c in cases)
    checks.append(FidelityCheck("TF1 bilinear + bicubic resize (numpy)", "TensorFlow 2.21 `compat.v1.image.resize_*`",
                                "bit-exact", f"{exact}/{len(cases)} outputs bit-exact", exact == len(cases)))
    progress("ONNX vs PyTorch")
    onnx = {spec.name: repository / spec.name / "1" / "model.onnx" for spec in (DETECTOR, LABELLER)}
    with contextlib.redirect_stdout(io.StringIO()):
        jobs = ((DETECTOR, ssd_mobilenet_v2.load_ssd_mobilenet_v2(), ssd_mobilenet_v2.example_input),
                (LABELLER, efficientnet_lite.load_efficientnet_lite0(), efficientnet_lite.example_input))
    for spec, module, make_input in jobs:
        report = validate_onnx(module, spec, onnx[spec.name], make_input, batches=(1, 5))
        worst = max(report.max_abs_diff.values())
        checks.append(FidelityCheck(f"{spec.name} ONNX, batch 1 and 5", "PyTorch module",
                                    f"max abs diff <= {spec.atol}", f"{worst:.1e}", worst <= spec.atol))
    frames = fidelity_frames()
    progress(f"detector vs the original graph on {len(frames)} frames")
    served = ServedDetector(onnx["detector"], runtime, precision)
    runs_on = served.session.description.split(",")[0]  # e.g. "openvino f32"
    boxes = detector_comparisons(frames, served, OriginalDetector())
    for size in dict.fromkeys(_size_of(b.frame) for b in boxes):
        rows = [b for b in boxes if _size_of(b.frame) == size]
        ref, found = sum(b.reference for b in rows), sum(b.reference_matched for b in rows)
        ours, ours_found = sum(b.served for b in rows), sum(b.served_matched for b in rows)
        checks.append(FidelityCheck(
            f"detector ({runs_on}) boxes > {SCORE}, {len(rows)} frames at {size}", "frozen graph in OpenCV dnn",
            f"same class, IoU >= {MIN_IOU}, score within {SCORE_TOLERANCE}",
            f"{found}/{ref} matched, {ours_found}/{ours} served matched, min IoU {min(b.min_iou for b in rows):.3f}, "
            f"max score diff {max(b.max_score_diff for b in rows):.3f}", found == ref and ours_found == ours))
    progress(f"labeller vs PyTorch on {len(frames)} frames")
    labels = labeller_comparisons(frames, onnx["labeller"], runtime, precision)
    equal, ok = sum(c.reference_top1 == c.served_top1 for c in labels), sum(c.ok for c in labels)
    checks.append(FidelityCheck(f"labeller ({runs_on}) top-1, {len(labels)} frames (all sizes)",
                                "the PyTorch module, same input",
                                f"equal, or a reference tie within {LABEL_TIE} logits",
                                f"{equal}/{len(labels)} equal, {ok - equal} within a tie", ok == len(labels)))
    if captions:
        progress("captioners vs transformers")
        for c in caption_comparisons(runtime=runtime, precision=precision):
            checks.append(FidelityCheck(f"tiny {c.architecture.upper()} pixel values, {c.images} photos and crops",
                                        "the checkpoint's transformers image processor", "bit-exact",
                                        f"max abs diff {c.pixels_max_abs_diff:.1e}", c.pixels_max_abs_diff == 0))
            checks.append(FidelityCheck(f"tiny {c.architecture.upper()} tokens, 3 beams", "transformers `generate()`",
                                        "equal", f"{c.tokens_equal}/{c.images} equal", c.tokens_equal == c.images))
    return checks


def format_table(checks: list[FidelityCheck]) -> str:
    """The checks as a Markdown table (what README's fidelity table is)."""
    lines = ["| check | reference | tolerance | measured | |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {c.check} | {c.reference} | {c.tolerance} | {c.measured} | {'pass' if c.passed else 'FAIL'} |"
              for c in checks]
    return "\n".join(lines)
