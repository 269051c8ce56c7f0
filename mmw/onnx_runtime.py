"""onnxruntime sessions, and the whole pipeline in-process (the reference the served results must equal)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmw.errors import ExportError
from mmw.processing.pipeline import PostprocessParams, caption, postprocess, preprocess_frames, preprocess_images

if TYPE_CHECKING:
    from mmw.config import ModelsConfig


def create_session(path: str | Path, threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)):
    """An onnxruntime InferenceSession tuned for small CPU hosts (inter-op 1, no spinning)."""
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"ONNX model {p}: not found; run `make engines`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(p), sess_options=options, providers=list(providers))


class InProcessPipeline:
    """Preprocess -> detector -> labeller -> postprocess -> caption without Triton, on either CPU runtime."""

    def __init__(self, detector_onnx: str | Path, labeller_onnx: str | Path, params: PostprocessParams,
                 min_label_score: float = 0.2, threads: int = 1, runtime: str = "onnxruntime",
                 precision: str = "f32", caption_min_score: float = 0.0) -> None:
        from mmw.network_runtimes import open_network

        self.detector, _ = open_network(detector_onnx, runtime, precision, threads)
        self.labeller, _ = open_network(labeller_onnx, runtime, precision, threads)
        self.params = params
        self.min_label_score = min_label_score
        self.caption_min_score = caption_min_score  # the template caption names detections scoring this or more

    @classmethod
    def served(cls, models: ModelsConfig, detector_onnx: str | Path, labeller_onnx: str | Path,
               **kwargs: Any) -> InProcessPipeline:
        """The pipeline with the settings Triton serves ``models`` (config.yaml's models section) with."""
        det = models.detector
        params = PostprocessParams(det.track_min_score, det.iou_threshold, det.max_detections, models.labeller.top_k)
        return cls(detector_onnx, labeller_onnx, params, models.caption.min_label_score,
                   caption_min_score=det.score_threshold, **kwargs)

    def __call__(self, encoded: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Encoded images -> the ensemble's outputs."""
        return self.run_preprocessed(preprocess_images(encoded))

    def frames(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Raw RGB frames [N, H, W, 3] -> the raw-frame ensemble's outputs."""
        return self.run_preprocessed(preprocess_frames(frames))

    def run_preprocessed(self, pre: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        box_encodings, class_scores = self.detector.run(None, {"images": pre["DETECTOR_INPUT"]})
        (logits,) = self.labeller.run(None, {"images": pre["LABELLER_INPUT"]})
        out = postprocess(box_encodings, class_scores, pre["IMAGE_SIZE"], logits, self.params, pre["IMAGE_OK"])
        out.update(caption(out["CLASS_IDS"], out["NUM_DETECTIONS"], out["LABEL_IDS"], out["LABEL_SCORES"],
                           self.min_label_score, pre["IMAGE_OK"], out["SCORES"], self.caption_min_score))
        out["ERROR"] = pre["ERROR"]
        return out
