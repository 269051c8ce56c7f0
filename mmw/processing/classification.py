"""Scene-label post-processing for the ImageNet labeller (numpy)."""

from __future__ import annotations

import numpy as np

LABELLER_INPUT_SIZE = 224


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, numerically stable."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [..., k] and probabilities [..., k] of the k best classes, best first."""
    probs = softmax(logits.astype(np.float32))
    k = min(k, probs.shape[-1])
    idx = np.argpartition(-probs, k - 1, axis=-1)[..., :k]
    part = np.take_along_axis(probs, idx, axis=-1)
    order = np.argsort(-part, axis=-1, kind="stable")
    return np.take_along_axis(idx, order, axis=-1).astype(np.int32), np.take_along_axis(part, order, axis=-1)
