"""Fidelity over the frame sizes users send: the served path against the original graphs, frame by frame.

Frames: the project's real photos resized to 320x240 ... 3840x2160 and a portrait 1080x1920, and
mosaics of the photos at their own resolution at 1280x720, 1920x1080 and 3840x2160.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.fidelity import (
    FRAME_SIZES,
    MIN_IOU,
    MOSAIC_SIZES,
    SCORE,
    OriginalDetector,
    ServedDetector,
    compare_boxes,
    detector_comparisons,
    fidelity_frames,
    labeller_comparisons,
)
from mmw.config import load_config
from mmw.processing.detection import Detections
from tests.conftest import ROOT

SERVED = (load_config().serving.cpu_runtime, load_config().serving.cpu_precision)  # what the CPU repository runs

SIZES = sorted({f"{w}x{h}" for w, h in FRAME_SIZES + MOSAIC_SIZES})


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    return fidelity_frames()


@pytest.fixture(scope="module")
def box_comparisons(frames: dict[str, np.ndarray], engines: dict[str, Path]) -> dict[str, list]:
    by_size: dict[str, list] = {}
    for c in detector_comparisons(frames, ServedDetector(engines["detector"], *SERVED), OriginalDetector()):
        by_size.setdefault(c.frame.split("@")[1], []).append(c)
    return by_size


def test_frames_cover_every_size_and_orientation(frames: dict[str, np.ndarray]) -> None:
    shapes = {f.shape for f in frames.values()}
    assert {(h, w, 3) for w, h in FRAME_SIZES} <= shapes and (1920, 1080, 3) in shapes  # portrait too


@pytest.mark.parametrize("size", SIZES)
def test_detector_boxes_match_the_original_graph(size: str, box_comparisons: dict[str, list]) -> None:
    """Every box above 0.5 on either side: same class, IoU >= 0.9 and score within 0.02 on the other."""
    rows = box_comparisons[size]
    assert sum(c.reference for c in rows) >= len(rows), "the frames should have boxes to compare"
    bad = [c for c in rows if not c.ok]
    assert not bad, bad
    assert min(c.min_iou for c in rows) >= MIN_IOU


def test_labeller_top1_equals_pytorch_on_every_frame(frames: dict[str, np.ndarray], engines: dict[str, Path]) -> None:
    rows = labeller_comparisons(frames, engines["labeller"], *SERVED)
    assert len(rows) == len(frames)
    assert [c for c in rows if c.reference_top1 != c.served_top1] == []


def _detections(*rows: tuple) -> Detections:
    boxes = np.array([r[0] for r in rows], np.float32).reshape(-1, 4)
    return Detections(boxes, np.array([r[1] for r in rows], np.float32), np.array([r[2] for r in rows], np.int32))


@pytest.mark.parametrize(("reference", "served", "ok"), [
    ([((0, 0, 100, 100), 0.9, 1)], [((0, 0, 100, 100), 0.91, 1)], True),     # same box
    ([((0, 0, 100, 100), 0.9, 1)], [((0, 0, 100, 100), 0.9, 2)], False),     # another class
    ([((0, 0, 100, 100), 0.9, 1)], [((0, 0, 100, 80), 0.9, 1)], False),      # IoU 0.8
    ([((0, 0, 100, 100), 0.9, 1)], [((0, 0, 100, 100), 0.87, 1)], False),    # score off by 0.03
    ([((0, 0, 100, 100), 0.51, 1)], [((0, 0, 100, 100), 0.495, 1)], True),   # both near the threshold
    ([], [((0, 0, 100, 100), 0.7, 1)], False),                               # a box the reference has not
    ([((0, 0, 100, 100), 0.3, 1)], [], True),                                # below 0.5: not compared
])
def test_box_comparison_table(reference: list, served: list, ok: bool) -> None:
    assert compare_boxes("frame", _detections(*reference), _detections(*served)).ok is ok
    assert SCORE == 0.5


def test_fidelity_command_prints_the_table(tmp_path: Path, engines: dict[str, Path]) -> None:
    out = tmp_path / "fidelity.json"
    done = subprocess.run([sys.executable, "-m", "export", "fidelity", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "| check | reference | tolerance | measured | |"
    assert all(line.endswith("| pass |") for line in lines[2:])
    checks = json.loads(out.read_text())
    assert len(checks) == len(lines) - 2 and all(c["passed"] for c in checks)
    names = " ".join(c["check"] for c in checks)
    for what in ("TF1 bilinear", "detector ONNX", "labeller ONNX", "3840x2160", "1080x1920", "top-1",
                 "tiny BLIP pixel values", "tiny GIT tokens"):
        assert what in names
    assert "fidelity: detector vs the original graph" in done.stderr  # progress goes to stderr
