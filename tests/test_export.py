"""Fidelity of the rebuilt networks: PyTorch vs the original frozen graph (OpenCV dnn), ONNX vs PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from export.efficientnet_lite import example_input as labeller_example
from export.efficientnet_lite import load_efficientnet_lite0
from export.onnx_export import build_network, validate_onnx
from export.ssd_mobilenet_v2 import FROZEN_GRAPH_SHA256, frozen_graph_paths, load_ssd_mobilenet_v2
from export.ssd_mobilenet_v2 import example_input as detector_example
from export.tf_graphdef import load_tf_graph
from mmw.errors import ExportError
from mmw.processing.classification import top_k
from mmw.processing.detection import postprocess_detections
from mmw.processing.images import detector_input, labeller_input
from mmw.processing.nms import box_iou
from mmw.specs import DETECTOR, LABELLER
from tests.conftest import PHOTOS, ROOT, photo

SCORE = 0.5
MIN_IOU = 0.9


@pytest.fixture(scope="module")
def ssd() -> torch.nn.Module:
    return load_ssd_mobilenet_v2()


@pytest.fixture(scope="module")
def opencv_ssd() -> cv2.dnn.Net:
    pb, pbtxt = frozen_graph_paths()
    return cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))


def test_frozen_graph_is_the_model_zoo_file() -> None:
    from export.onnx_export import sha256_file

    assert sha256_file(frozen_graph_paths()[0]) == FROZEN_GRAPH_SHA256


@pytest.mark.parametrize("name", PHOTOS)
def test_detector_matches_original_frozen_graph(name: str, ssd: torch.nn.Module, opencv_ssd: cv2.dnn.Net) -> None:
    """Same classes and IoU >= 0.9 for every box above 0.5, against OpenCV running the original graph."""
    rgb = photo(name)
    h, w = rgb.shape[:2]
    small = detector_input(rgb)
    with torch.no_grad():
        boxes, scores = ssd(torch.from_numpy(small[None]))
    ours = postprocess_detections(boxes[0].numpy(), scores[0].numpy(), (h, w), SCORE, 0.6, 100)
    opencv_ssd.setInput(cv2.dnn.blobFromImage(small, size=(300, 300), swapRB=False, crop=False))
    ref = opencv_ssd.forward()[0, 0]
    ref = ref[ref[:, 2] > SCORE]
    ref_boxes = ref[:, 3:7] * np.array([w, h, w, h], np.float32)
    assert len(ours) == len(ref), (ours.class_ids, ref[:, 1])
    for i in range(len(ours)):
        ious = box_iou(ours.boxes[i : i + 1], ref_boxes)[0]
        j = int(ious.argmax())
        assert int(ref[j, 1]) == ours.class_ids[i]
        assert ious[j] >= MIN_IOU
        assert abs(float(ref[j, 2]) - float(ours.scores[i])) < 0.01


@pytest.mark.parametrize(("name", "expected_class"), [("astronaut", 1), ("chelsea", 17), ("coffee", 47)])
def test_detector_finds_the_obvious_object(name: str, expected_class: int, ssd: torch.nn.Module) -> None:
    rgb = photo(name)
    with torch.no_grad():
        boxes, scores = ssd(torch.from_numpy(detector_input(rgb)[None]))
    det = postprocess_detections(boxes[0].numpy(), scores[0].numpy(), rgb.shape[:2], SCORE, 0.6, 100)
    assert det.class_ids[0] == expected_class


@pytest.mark.parametrize(
    ("name", "allowed_top1"), [("chelsea", {281, 282, 283, 284, 285}), ("coffee", {967, 968, 504})])
def test_labeller_top1_on_real_photos(name: str, allowed_top1: set[int]) -> None:
    model = load_efficientnet_lite0()
    with torch.no_grad():
        logits = model(torch.from_numpy(labeller_input(photo(name))[None])).numpy()
    assert int(top_k(logits, 1)[0][0, 0]) in allowed_top1


@pytest.mark.parametrize(
    ("spec", "load", "make_input"),
    [(DETECTOR, load_ssd_mobilenet_v2, detector_example), (LABELLER, load_efficientnet_lite0, labeller_example)],
    ids=["detector", "labeller"],
)
def test_onnx_matches_pytorch(spec, load, make_input, engines: dict[str, Path]) -> None:
    """The shipped ONNX equals PyTorch within the spec's listed tolerance, at batch 1 and 5 (dynamic axis)."""
    report = validate_onnx(load(), spec, engines[spec.name], make_input, batches=(1, 5))
    assert all(v <= spec.atol for v in report.max_abs_diff.values())
    stamp = json.loads(engines[spec.name].with_suffix(".onnx.json").read_text())
    assert stamp["validation"]["atol"] == spec.atol


def test_engines_rebuild_is_a_no_op(engines: dict[str, Path]) -> None:
    before = engines["detector"].stat().st_mtime_ns
    outcome = build_network(DETECTOR, load_ssd_mobilenet_v2, frozen_graph_paths()[0], detector_example,
                            engines["detector"], ROOT)
    assert outcome == "up to date"
    assert engines["detector"].stat().st_mtime_ns == before


def test_graph_reader_rejects_non_graphs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff\x0f")
    with pytest.raises(ExportError, match="not a valid GraphDef"):
        load_tf_graph(bad)
    with pytest.raises(ExportError, match="cannot be read"):
        load_tf_graph(tmp_path / "missing.pb")


def test_graph_reader_reads_weights_and_attributes() -> None:
    graph = load_tf_graph(frozen_graph_paths()[0])
    conv = graph.nodes["FeatureExtractor/MobilenetV2/Conv/Conv2D"]
    assert conv.op == "Conv2D" and conv.attrs["strides"] == [1, 2, 2, 1] and conv.attrs["padding"] == b"SAME"
    assert graph.constants()["FeatureExtractor/MobilenetV2/Conv/weights"].shape == (3, 3, 3, 32)
