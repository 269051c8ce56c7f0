"""A BatchedStep whose merged batches fail: each request then reruns alone (see tests/test_triton_python.py)."""

from __future__ import annotations

import numpy as np

from mmw.triton_python import BatchedStep


class FailsWhenMerged(BatchedStep):
    """Y = X + 1, but a batch of more than one row is rejected."""

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(inputs["X"]) > 1:
            raise ValueError(f"batch of {len(inputs['X'])} rejected")
        return {"Y": inputs["X"] + 1}
