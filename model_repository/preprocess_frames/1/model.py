"""Triton python model ``preprocess_frames``: ``mmw.triton_models.PreprocessFrames``."""
# Generated from mmw/specs.py by `python -m export repository`. Do not edit.

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.triton_models import PreprocessFrames as TritonPythonModel  # noqa: E402, F401
