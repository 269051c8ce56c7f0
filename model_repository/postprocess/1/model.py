"""Triton python model ``postprocess``: SSD box decoding + NMS and top-k scene labels."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.processing.pipeline import PostprocessParams, postprocess  # noqa: E402
from mmw.triton_python import BatchedStep  # noqa: E402


class TritonPythonModel(BatchedStep):
    def setup(self):
        self.params = PostprocessParams.from_parameters(self.parameters)

    def compute(self, inputs):
        return postprocess(inputs["box_encodings"], inputs["class_scores"], inputs["IMAGE_SIZE"], inputs["logits"],
                           self.params, inputs["IMAGE_OK"])
