"""The pipeline's numpy steps, exactly as the Triton python models and the in-process path run them.

Each function takes and returns batches (first axis = image), with the tensor names of the
ensemble (see :mod:`mmw.specs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmw.contract import TEMPLATE_SOURCE
from mmw.errors import InputError
from mmw.processing.caption_images import pad_frames
from mmw.processing.captions import template_caption
from mmw.processing.classification import top_k
from mmw.processing.detection import DETECTOR_INPUT_SIZE, Detections, postprocess_detections
from mmw.processing.images import MAX_IMAGE_PIXELS, decode_image, detector_input, labeller_input
from mmw.processing.labels import coco_name, imagenet_short_name, names_array

#: What an image that does not decode is replaced by (its results are blanked downstream).
BAD_IMAGE_FRAME = np.zeros((DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE, 3), np.uint8)
NO_DETECTIONS = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))


@dataclass(frozen=True)
class PostprocessParams:
    """Thresholds of the postprocess step (from config.yaml via config.pbtxt parameters)."""

    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    max_detections: int = 100
    top_k: int = 5

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> PostprocessParams:
        return cls(float(params["score_threshold"]), float(params["iou_threshold"]),
                   int(params["max_detections"]), int(params["top_k"]))


def _network_inputs(frames: Sequence[np.ndarray], errors: Sequence[str] | None = None,
                    decoded: bool = False) -> dict[str, np.ndarray]:
    errors = [""] * len(frames) if errors is None else errors
    out = {"DECODED_FRAME": pad_frames(list(frames))} if decoded else {}
    return out | {"DETECTOR_INPUT": np.stack([detector_input(f) for f in frames]),
            "LABELLER_INPUT": np.stack([labeller_input(f) for f in frames]),
            "IMAGE_SIZE": np.asarray([f.shape[:2] for f in frames], dtype=np.int32),
            "IMAGE_OK": np.array([[not e] for e in errors], dtype=bool).reshape(len(frames), 1),
            "ERROR": np.array([e.encode() for e in errors], dtype=object).reshape(len(frames), 1)}


def _is_ok(image_ok: np.ndarray | None, n: int) -> np.ndarray:
    """IMAGE_OK [N, 1] (or None: every image is fine) -> bool [N]."""
    return np.ones(n, dtype=bool) if image_ok is None else np.asarray(image_ok, dtype=bool).reshape(n)


def preprocess_images(encoded: Sequence[bytes], decoded: bool = False) -> dict[str, np.ndarray]:
    """Encoded images -> DETECTOR_INPUT [N,300,300,3], LABELLER_INPUT [N,224,224,3], IMAGE_SIZE [N,2],
    IMAGE_OK [N,1] and ERROR [N,1]; with ``decoded``, also DECODED_FRAME [N,H,W,3] (the decoded images,
    zero-padded to the largest) for a neural captioner.

    Each image is decoded on its own: one that does not decode becomes a black frame with
    IMAGE_OK false and its reason in ERROR (``b""`` for a good image), so it fails alone.
    """
    if len(encoded) == 0:
        raise InputError("IMAGE: expected a batch of at least one encoded image, got an empty batch")
    frames, errors = [], []
    for i, data in enumerate(encoded):
        try:
            frames.append(decode_image(bytes(data)))
            errors.append("")
        except InputError as exc:
            frames.append(BAD_IMAGE_FRAME)
            errors.append(f"IMAGE[{i}]: {exc}")
    return _network_inputs(frames, errors, decoded)


def preprocess_frames(frames: np.ndarray, max_pixels: int = MAX_IMAGE_PIXELS) -> dict[str, np.ndarray]:
    """Raw RGB frames uint8 [N, H, W, 3] -> the network inputs of :func:`preprocess_images` (the raw-frame
    ensemble gives its captioner FRAME itself)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or 0 in frames.shape:
        raise InputError(
            f"FRAME: expected uint8 [N, H, W, 3] with N, H, W > 0, got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1] * frames.shape[2] > max_pixels:
        raise InputError(
            f"FRAME: at most {max_pixels} pixels per frame allowed, got {frames.shape[2]}x{frames.shape[1]}")
    return _network_inputs(list(frames))


def pad_detections(per_image: Sequence[Detections]) -> dict[str, np.ndarray]:
    """Detections of each image -> arrays padded to the largest count, plus NUM_DETECTIONS."""
    n = len(per_image)
    width = max((len(d) for d in per_image), default=0)
    boxes = np.zeros((n, width, 4), np.float32)
    scores = np.zeros((n, width), np.float32)
    class_ids = np.zeros((n, width), np.int32)
    class_names = np.full((n, width), b"", dtype=object)
    for i, d in enumerate(per_image):
        k = len(d)
        boxes[i, :k], scores[i, :k], class_ids[i, :k] = d.boxes, d.scores, d.class_ids
        class_names[i, :k] = names_array([coco_name(c) for c in d.class_ids])
    counts = np.array([[len(d)] for d in per_image], dtype=np.int32)
    return {"BOXES": boxes, "SCORES": scores, "CLASS_IDS": class_ids, "CLASS_NAMES": class_names,
            "NUM_DETECTIONS": counts}


def postprocess(box_encodings: np.ndarray, class_scores: np.ndarray, image_size: np.ndarray,
                logits: np.ndarray, params: PostprocessParams,
                image_ok: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Raw heads of both networks -> detections (padded) and top-k scene labels.

    An image whose IMAGE_OK is false gets no detections and blank labels (id -1, score 0, name b"").
    """
    ok = _is_ok(image_ok, box_encodings.shape[0])
    detections = [
        postprocess_detections(box_encodings[i], class_scores[i], (int(image_size[i, 0]), int(image_size[i, 1])),
                               params.score_threshold, params.iou_threshold, params.max_detections)
        if ok[i] else NO_DETECTIONS
        for i in range(box_encodings.shape[0])
    ]
    out = pad_detections(detections)
    label_ids, label_scores = top_k(logits, params.top_k)
    label_ids = np.where(ok[:, None], label_ids, -1).astype(np.int32)
    out["LABEL_IDS"] = label_ids
    out["LABEL_SCORES"] = np.where(ok[:, None], label_scores, 0.0).astype(np.float32)
    out["LABELS"] = np.array([[imagenet_short_name(j).encode() if j >= 0 else b"" for j in row] for row in label_ids],
                             dtype=object).reshape(label_ids.shape)
    return out


def caption(class_ids: np.ndarray, num_detections: np.ndarray, label_ids: np.ndarray, label_scores: np.ndarray,
            min_label_score: float, image_ok: np.ndarray | None = None, scores: np.ndarray | None = None,
            min_score: float = 0.0) -> dict[str, np.ndarray]:
    """Template captions: CAPTION [N,1] and CAPTION_SOURCE [N,1]; both b"" for an image whose IMAGE_OK is false.

    With ``scores`` the caption names only the detections scoring at least ``min_score`` (the shown ones:
    the server returns lower ones too, for tracking).
    """
    ok = _is_ok(image_ok, class_ids.shape[0])
    captions, sources = [], []
    for i in range(class_ids.shape[0]):
        if not ok[i]:
            captions.append([b""])
            sources.append([b""])
            continue
        sources.append([TEMPLATE_SOURCE.encode()])
        count = int(num_detections[i].reshape(-1)[0])
        ids = class_ids[i, :count]
        if scores is not None:  # only the shown detections (the server returns lower ones for tracking)
            ids = ids[: scores.shape[1]][scores[i, : len(ids)] >= min_score]
        objects = [coco_name(c) for c in ids]
        scene = [(imagenet_short_name(j), float(s)) for j, s in zip(label_ids[i], label_scores[i], strict=False)]
        captions.append([template_caption(objects, scene, min_label_score).encode()])
    n = len(captions)
    return {"CAPTION": np.array(captions, dtype=object).reshape(n, 1),
            "CAPTION_SOURCE": np.array(sources, dtype=object).reshape(n, 1), **no_dense_captions(n)}


def no_dense_captions(n: int) -> dict[str, np.ndarray]:
    """The token and dense-caption outputs of ``n`` images without any (one padding slot each)."""
    return {"CAPTION_TOKENS": np.full((n, 1), -1, np.int32), "DENSE_CAPTIONS": np.full((n, 1), b"", dtype=object),
            "DENSE_BOX_INDEX": np.full((n, 1), -1, np.int32), "DENSE_TOKENS": np.full((n, 1, 1), -1, np.int32)}
