"""Triton python model ``caption``: a template caption, or a neural captioner (BLIP/GIT) with dense captions."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.captioning_step import request_overrides, step_settings  # noqa: E402
from mmw.contract import TEMPLATE_SOURCE  # noqa: E402
from mmw.processing.pipeline import caption  # noqa: E402
from mmw.triton_python import BatchedStep  # noqa: E402


class TritonPythonModel(BatchedStep):
    pad_to_merge = True  # BOXES/SCORES are padded per request

    def setup(self):
        self.source = self.parameters["caption_source"]
        if self.source == TEMPLATE_SOURCE:
            self.min_label_score = float(self.parameters["min_label_score"])
        else:
            from mmw.captioner import OnnxCaptioner

            self.captioner = OnnxCaptioner(self.model_dir, threads=int(self.parameters["onnx_threads"]))
            self.defaults = step_settings(self.parameters, self.captioner.meta)

    def request_options(self, request):
        return () if self.source == TEMPLATE_SOURCE else request_overrides(request.parameters(), self.defaults)

    def compute_with(self, inputs, options):
        if self.source == TEMPLATE_SOURCE:
            return caption(inputs["CLASS_IDS"], inputs["NUM_DETECTIONS"], inputs["LABEL_IDS"],
                           inputs["LABEL_SCORES"], self.min_label_score, inputs["IMAGE_OK"])
        from mmw.captioner import neural_captions

        search, dense = options
        return neural_captions(self.captioner, inputs["FRAME"], inputs["BOXES"], inputs["SCORES"],
                               inputs["NUM_DETECTIONS"], inputs["IMAGE_SIZE"], inputs["IMAGE_OK"], search, dense,
                               self.source)
