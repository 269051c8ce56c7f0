"""Triton python model ``preprocess_frames``: raw RGB frames -> resized uint8 inputs of both networks."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.processing.pipeline import preprocess_frames  # noqa: E402
from mmw.triton_python import BatchedStep  # noqa: E402


class TritonPythonModel(BatchedStep):
    def compute(self, inputs):
        return preprocess_frames(inputs["FRAME"])
