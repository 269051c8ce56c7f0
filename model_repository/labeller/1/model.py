"""Triton python model ``labeller`` (CPU repository): runs the EfficientNet-Lite0 ONNX network with onnxruntime."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.triton_python import OnnxStep as TritonPythonModel  # noqa: E402, F401
