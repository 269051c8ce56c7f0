"""SSD detector post-processing: anchors, box decoding and the final detections.

The ONNX detector outputs raw heads; everything after them is here, in numpy:
``ssd_anchors`` reproduces the TF Object Detection API's ``ssd_anchor_generator`` for
ssd_mobilenet_v2_coco, ``decode_boxes`` its FasterRCNN box coder (scale factors 10, 10, 5, 5),
and ``postprocess_detections`` clips, thresholds and runs per-class NMS like its
``BatchMultiClassNonMaxSuppression``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mmw.processing.nms import batched_nms

DETECTOR_INPUT_SIZE = 300
NUM_DETECTOR_CLASSES = 91  # background + the 90 COCO ids (ten of them unused)
SSD_GRID_SIZES = (19, 10, 5, 3, 2, 1)
NUM_ANCHORS = 1917
BOX_CODER_SCALES = np.array([10.0, 10.0, 5.0, 5.0], dtype=np.float32)


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes`` xyxy in input pixels, best score first."""

    boxes: np.ndarray  # float32 [K, 4]
    scores: np.ndarray  # float32 [K]
    class_ids: np.ndarray  # int32 [K], COCO ids 1..90

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@lru_cache(maxsize=1)
def ssd_anchors(min_scale: float = 0.2, max_scale: float = 0.95,
                aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)) -> np.ndarray:
    """Anchors [1917, 4] as (ycenter, xcenter, height, width), normalised, in the heads' order."""
    n = len(SSD_GRID_SIZES)
    scales = [min_scale + (max_scale - min_scale) * i / (n - 1) for i in range(n)] + [1.0]
    layers = []
    for i, grid in enumerate(SSD_GRID_SIZES):
        if i == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[i], ar) for ar in aspect_ratios] + [(float(np.sqrt(scales[i] * scales[i + 1])), 1.0)]
        scale = np.array([s for s, _ in specs])
        ratio = np.sqrt(np.array([r for _, r in specs]))
        heights, widths = scale / ratio, scale * ratio
        centers = (np.arange(grid) + 0.5) / grid
        cy, cx = np.meshgrid(centers, centers, indexing="ij")
        cell = np.stack([cy, cx], axis=-1).reshape(-1, 1, 2)  # row-major over (y, x)
        size = np.stack([heights, widths], axis=-1).reshape(1, -1, 2)
        anchors = np.concatenate(np.broadcast_arrays(cell, size), axis=-1).reshape(-1, 4)
        layers.append(anchors)
    return np.concatenate(layers).astype(np.float32)


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Box encodings [..., 4] (ty, tx, th, tw) -> boxes [..., 4] (ymin, xmin, ymax, xmax), normalised."""
    t = encodings / BOX_CODER_SCALES
    h = np.exp(t[..., 2]) * anchors[:, 2]
    w = np.exp(t[..., 3]) * anchors[:, 3]
    cy = t[..., 0] * anchors[:, 2] + anchors[:, 0]
    cx = t[..., 1] * anchors[:, 3] + anchors[:, 1]
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def postprocess_detections(box_encodings: np.ndarray, class_scores: np.ndarray, image_size: tuple[int, int],
                           score_threshold: float, iou_threshold: float, max_detections: int) -> Detections:
    """Raw heads of one image -> final detections in the pixels of an image of ``image_size`` (h, w).

    The detector saw the image stretched to 300x300, so normalised boxes scale back by (w, h).
    """
    if box_encodings.shape != (NUM_ANCHORS, 4) or class_scores.shape != (NUM_ANCHORS, NUM_DETECTOR_CLASSES):
        raise ValueError(
            f"expected box encodings [{NUM_ANCHORS}, 4] and class scores [{NUM_ANCHORS}, {NUM_DETECTOR_CLASSES}], "
            f"got {list(box_encodings.shape)} and {list(class_scores.shape)}"
        )
    boxes = np.clip(decode_boxes(box_encodings, ssd_anchors()), 0.0, 1.0)
    anchor_idx, class_idx = np.nonzero(class_scores[:, 1:] > score_threshold)
    class_ids = class_idx + 1
    scores = class_scores[anchor_idx, class_ids]
    height, width = image_size
    xyxy = boxes[anchor_idx][:, [1, 0, 3, 2]] * np.array([width, height, width, height], dtype=np.float32)
    keep = batched_nms(xyxy, scores, class_ids, iou_threshold)[:max_detections]
    return Detections(xyxy[keep].astype(np.float32), scores[keep].astype(np.float32), class_ids[keep].astype(np.int32))
