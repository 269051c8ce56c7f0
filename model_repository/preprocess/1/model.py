"""Triton python model ``preprocess``: encoded images -> resized uint8 inputs of both networks."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.processing.pipeline import preprocess_images  # noqa: E402
from mmw.triton_python import BatchedStep  # noqa: E402


class TritonPythonModel(BatchedStep):
    merge_requests = False  # ERROR names a bad image by its index in its own request

    def compute(self, inputs):
        return preprocess_images(inputs["IMAGE"].reshape(-1), decoded="DECODED_FRAME" in self.output_names)
