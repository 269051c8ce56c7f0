"""The fidelity gate of a CPU precision: OpenVINO at that precision against onnxruntime fp32, on real photos.

A precision is served only if it passes (``make engines`` records the outcome in ``openvino_gate.json``,
:mod:`mmw.network_runtimes` reads it):

- **detector**: boxes above :data:`BOX_SCORE` after the shared box decoding + NMS; a box matches when the
  other side has one of the same class with IoU >= :data:`BOX_IOU` (among its boxes above
  ``BOX_SCORE - BOX_SCORE_SLACK``, so a box at 0.51 on one side and 0.49 on the other is no miss), both
  directions; at least :data:`BOX_MATCH_SHARE` of them must match;
- **labeller**: the same top-1 on every frame;
- **captioner**: the same tokens on every photo and crop.

The frames are the fidelity frames (the sample photos at QVGA to 4K, and HD/4K mosaics of them).
Each check also measures ms per image of both sides, so the outcome line tells speed and fidelity together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mmw.network_runtimes import NetworkRunner
from mmw.processing.detection import Detections, postprocess_detections
from mmw.processing.images import detector_input, labeller_input
from mmw.processing.nms import box_iou

BOX_SCORE = 0.5
BOX_SCORE_SLACK = 0.1
BOX_IOU = 0.9
BOX_MATCH_SHARE = 0.99
TIMING_BATCH = 4
TIMING_REPEATS = 5


@dataclass(frozen=True)
class GateResult:
    """One network (or the captioner) at one precision: what matched, and how fast both sides ran."""

    network: str
    precision: str
    matched: int
    total: int
    required_share: float
    reference_ms: float  # onnxruntime fp32, ms per image (batch TIMING_BATCH); 0 when not timed
    candidate_ms: float
    unit: str            # what ``matched``/``total`` count: "boxes", "frames", "captions"

    @property
    def passed(self) -> bool:
        return self.total == 0 or self.matched >= self.required_share * self.total

    @property
    def detail(self) -> str:
        need = "all" if self.required_share >= 1 else f">= {self.required_share:.0%}"
        speed = (f"; {self.candidate_ms:.1f} vs {self.reference_ms:.1f} ms/image onnxruntime fp32"
                 if self.reference_ms else "")
        return f"{self.matched}/{self.total} {self.unit} match onnxruntime fp32, need {need}{speed}"

    def record(self) -> dict[str, object]:
        """The entry written to ``openvino_gate.json``."""
        return {"passed": self.passed, "detail": self.detail, "matched": self.matched, "total": self.total,
                "unit": self.unit, "reference_ms_per_image": round(self.reference_ms, 3),
                "candidate_ms_per_image": round(self.candidate_ms, 3)}


def ms_per_image(runner: NetworkRunner, feed: Mapping[str, np.ndarray], repeats: int = TIMING_REPEATS) -> float:
    """Best-of-``repeats`` ms per image of one batch (after one warm-up run)."""
    runner.run(None, feed)
    batch = len(next(iter(feed.values())))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(None, feed)
        best = min(best, time.perf_counter() - start)
    return best * 1000 / batch


def _matched(strict: Detections, loose: Detections) -> tuple[int, int]:
    """(boxes of ``strict`` above BOX_SCORE, how many have a same-class IoU >= BOX_IOU box in ``loose``)."""
    keep = strict.scores > BOX_SCORE
    found = 0
    for box, cls in zip(strict.boxes[keep], strict.class_ids[keep], strict=True):
        if len(loose):
            iou = box_iou(box[None], loose.boxes)[0]
            found += bool(((loose.class_ids == cls) & (iou >= BOX_IOU)).any())
    return int(keep.sum()), found


def _detections(runner: NetworkRunner, rgb: np.ndarray, iou_threshold: float, max_detections: int) -> Detections:
    boxes, scores = runner.run(None, {"images": detector_input(rgb)[None]})
    return postprocess_detections(boxes[0], scores[0], rgb.shape[:2], BOX_SCORE - BOX_SCORE_SLACK, iou_threshold,
                                  max_detections)


def detector_gate(reference: NetworkRunner, candidate: NetworkRunner, frames: Mapping[str, np.ndarray],
                  precision: str, iou_threshold: float = 0.6, max_detections: int = 100,
                  progress: Callable[[int], None] | None = None) -> GateResult:
    """Boxes of ``candidate`` vs ``reference`` on ``frames`` (both directions)."""
    total = matched = 0
    for i, rgb in enumerate(frames.values()):
        ref = _detections(reference, rgb, iou_threshold, max_detections)
        ours = _detections(candidate, rgb, iou_threshold, max_detections)
        for strict, loose in ((ref, ours), (ours, ref)):
            n, found = _matched(strict, loose)
            total, matched = total + n, matched + found
        if progress:
            progress(i)
    feed = _timing_feed(frames, detector_input)
    return GateResult("detector", precision, matched, total, BOX_MATCH_SHARE, ms_per_image(reference, feed),
                      ms_per_image(candidate, feed), "boxes")


def labeller_gate(reference: NetworkRunner, candidate: NetworkRunner, frames: Mapping[str, np.ndarray],
                  precision: str) -> GateResult:
    """Top-1 of ``candidate`` vs ``reference`` on every frame."""
    batch = np.stack([labeller_input(rgb) for rgb in frames.values()])
    same = 0
    for start in range(0, len(batch), 8):
        feed = {"images": batch[start:start + 8]}
        same += int((reference.run(None, feed)[0].argmax(1) == candidate.run(None, feed)[0].argmax(1)).sum())
    feed = _timing_feed(frames, labeller_input)
    return GateResult("labeller", precision, same, len(batch), 1.0, ms_per_image(reference, feed),
                      ms_per_image(candidate, feed), "frames")


def captioner_gate(reference, candidate, images: Sequence[np.ndarray], precision: str, num_beams: int = 1,
                   max_new_tokens: int = 20) -> GateResult:
    """Tokens of two :class:`~mmw.captioner.OnnxCaptioner` (onnxruntime fp32 and OpenVINO) on ``images``."""
    from mmw.processing.caption_images import pixel_values

    pixels = pixel_values(list(images), reference.meta.pixels)
    settings = reference.settings(num_beams, max_new_tokens)
    timings = []
    tokens = []
    for captioner in (reference, candidate):
        start = time.perf_counter()
        tokens.append(captioner.generate(pixels, settings))
        timings.append((time.perf_counter() - start) * 1000 / max(1, len(images)))
    same = sum(a == b for a, b in zip(*tokens, strict=True))
    return GateResult("captioner", precision, same, len(images), 1.0, timings[0], timings[1], "captions")


def _timing_feed(frames: Mapping[str, np.ndarray], prepare: Callable[[np.ndarray], np.ndarray]
                 ) -> dict[str, np.ndarray]:
    chosen = list(frames.values())[:TIMING_BATCH]
    return {"images": np.stack([prepare(rgb) for rgb in chosen])}
