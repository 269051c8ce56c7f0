"""Triton python model ``labeller``: ``mmw.triton_models.NetworkStep``."""
# Generated from mmw/specs.py by `python -m export repository`. Do not edit.

import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from mmw.triton_models import NetworkStep as TritonPythonModel  # noqa: E402, F401
