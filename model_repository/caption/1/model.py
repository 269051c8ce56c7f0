"""Triton python model ``caption``: a template caption from the detections and scene labels."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.processing.pipeline import caption  # noqa: E402
from mmw.triton_python import BatchedStep  # noqa: E402


class TritonPythonModel(BatchedStep):
    def setup(self):
        self.min_label_score = float(self.parameters["min_label_score"])

    def compute(self, inputs):
        return caption(inputs["CLASS_IDS"], inputs["NUM_DETECTIONS"], inputs["LABEL_IDS"], inputs["LABEL_SCORES"],
                       self.min_label_score, inputs["IMAGE_OK"])
