"""A constant-velocity Kalman filter of boxes, per sampled frame (the motion model of ``ObjectTracker``).

The state is (cx, cy, aspect, height) and their velocities per sampled frame, as in SORT/ByteTrack. The
noise is relative to the box height; at a low sampling rate an object moves and turns more between two
samples, so the velocity noise grows with the time between samples (``step_s``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_POSITION = 1 / 20  # standard deviation of the measured position, per unit of box height
_VELOCITY_PER_S = 1 / 8  # how much the velocity may change in a second, per unit of box height


def to_xyah(box: Sequence[float]) -> np.ndarray:
    """(x1, y1, x2, y2) -> (cx, cy, w / h, h)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h = max(y2 - y1, 1e-3)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h])


def to_box(xyah: np.ndarray) -> tuple[float, float, float, float]:
    """(cx, cy, w / h, h) -> (x1, y1, x2, y2)."""
    cx, cy, a, h = (float(v) for v in xyah[:4])
    w = a * h
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


class BoxFilter:
    """One track's Kalman filter: ``predict`` once per sampled frame, ``update`` with its detection's box."""

    def __init__(self, box: Sequence[float], step_s: float) -> None:
        self.step_s = float(step_s)
        self.mean = np.concatenate([to_xyah(box), np.zeros(4)])
        h = self.mean[3]
        v = self._velocity_std(h)
        self.cov = np.diag(np.square([2 * _POSITION * h, 2 * _POSITION * h, 1e-2, 2 * _POSITION * h,
                                      10 * v, 10 * v, 1e-4, 10 * v]))

    def _velocity_std(self, h: float) -> float:
        return _VELOCITY_PER_S * h * self.step_s

    def predict(self) -> None:
        """Advance one sampled frame."""
        f = np.eye(8)
        f[:4, 4:] = np.eye(4)
        h = self.mean[3]
        v = self._velocity_std(h)
        q = np.diag(np.square([_POSITION * h, _POSITION * h, 1e-2, _POSITION * h, v, v, 1e-4, v]))
        self.mean = f @ self.mean
        self.mean[3] = max(self.mean[3], 1.0)
        self.cov = f @ self.cov @ f.T + q

    def update(self, box: Sequence[float]) -> None:
        """Correct with a measured box."""
        z = to_xyah(box)
        h = self.mean[3]
        r = np.diag(np.square([_POSITION * h, _POSITION * h, 1e-1, _POSITION * h]))
        hm = np.eye(4, 8)
        s = hm @ self.cov @ hm.T + r
        gain = np.linalg.solve(s, hm @ self.cov).T
        self.mean = self.mean + gain @ (z - hm @ self.mean)
        self.cov = (np.eye(8) - gain @ hm) @ self.cov

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The filtered (or predicted) box."""
        return to_box(self.mean)
