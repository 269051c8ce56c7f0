"""The python models of the Triton repository, one class each; every ``model.py`` just imports one.

``model.py`` files are generated from the specs (:func:`mmw.repository.render_model_py`); Triton's
python backend loads them and instantiates ``TritonPythonModel``. Importable only inside the
backend stub (it provides ``triton_python_backend_utils``).
"""

from __future__ import annotations

import numpy as np

from mmw.captioning_step import request_overrides, step_settings
from mmw.contract import TEMPLATE_SOURCE
from mmw.processing.pipeline import PostprocessParams, caption, postprocess, preprocess_frames, preprocess_images
from mmw.triton_python import BatchedStep, NetworkStep

__all__ = ["Caption", "NetworkStep", "Postprocess", "Preprocess", "PreprocessFrames"]


class Preprocess(BatchedStep):
    """``preprocess``: encoded images -> the networks' inputs (and DECODED_FRAME for a neural captioner)."""

    merge_requests = False  # ERROR names a bad image by its index in its own request

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return preprocess_images(inputs["IMAGE"].reshape(-1), decoded="DECODED_FRAME" in self.output_names)


class PreprocessFrames(BatchedStep):
    """``preprocess_frames``: raw RGB frames -> the networks' inputs."""

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return preprocess_frames(inputs["FRAME"])


class Postprocess(BatchedStep):
    """``postprocess``: SSD box decoding + NMS and top-k scene labels."""

    def setup(self) -> None:
        self.params = PostprocessParams.from_parameters(self.parameters)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return postprocess(inputs["box_encodings"], inputs["class_scores"], inputs["IMAGE_SIZE"], inputs["logits"],
                           self.params, inputs["IMAGE_OK"])


class Caption(BatchedStep):
    """``caption``: a template caption, or a neural captioner (BLIP/GIT) with dense captions."""

    pad_to_merge = True  # BOXES/SCORES (and FRAME) are padded per request

    def setup(self) -> None:
        self.source = self.parameters["caption_source"]
        if self.source == TEMPLATE_SOURCE:
            self.min_label_score = float(self.parameters["min_label_score"])
            self.min_score = float(self.parameters.get("min_score", 0.0))
        else:
            from mmw.captioner import OnnxCaptioner

            self.captioner = OnnxCaptioner(self.model_dir, threads=int(self.parameters["threads"]),
                                           runtime=self.parameters["runtime"], precision=self.parameters["precision"])
            self.log_runs_on(self.captioner.description, self.captioner.encoder.loaded_from_cache,
                             self.captioner.note)
            self.defaults = step_settings(self.parameters, self.captioner.meta)

    def request_options(self, request: object) -> tuple:
        if self.source == TEMPLATE_SOURCE:
            return ()  # a template caption has no settings: request parameters are ignored
        return request_overrides(request.parameters(), self.defaults)  # type: ignore[attr-defined]

    def compute_with(self, inputs: dict[str, np.ndarray], options: tuple) -> dict[str, np.ndarray]:
        if self.source == TEMPLATE_SOURCE:
            return caption(inputs["CLASS_IDS"], inputs["NUM_DETECTIONS"], inputs["LABEL_IDS"],
                           inputs["LABEL_SCORES"], self.min_label_score, inputs["IMAGE_OK"], inputs.get("SCORES"),
                           self.min_score)
        from mmw.captioner import neural_captions

        search, dense = options
        return neural_captions(self.captioner, inputs["FRAME"], inputs["BOXES"], inputs["SCORES"],
                               inputs["NUM_DETECTIONS"], inputs["IMAGE_SIZE"], inputs["IMAGE_OK"], search, dense,
                               self.source)
