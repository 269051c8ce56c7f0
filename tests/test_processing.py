"""Table tests of the shared numpy pre/post-processing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mmw.errors import InputError
from mmw.processing.captions import count_phrase, join_phrases, plural, template_caption
from mmw.processing.classification import softmax, top_k
from mmw.processing.detection import (
    NUM_ANCHORS,
    NUM_DETECTOR_CLASSES,
    Detections,
    decode_boxes,
    postprocess_detections,
    ssd_anchors,
)
from mmw.processing.images import decode_image, detector_input, labeller_input
from mmw.processing.labels import COCO_NAMES, coco_name, imagenet_labels, imagenet_short_name
from mmw.processing.nms import batched_nms, box_iou, nms
from mmw.processing.pipeline import (
    PostprocessParams,
    caption,
    pad_detections,
    postprocess,
    preprocess_frames,
    preprocess_images,
)
from tests.conftest import png_header


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_box_iou(a: list[float], b: list[float], expected: float) -> None:
    got = box_iou(np.array([a], np.float32), np.array([b], np.float32))[0, 0]
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("boxes", "scores", "threshold", "kept"),
    [
        ([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], [0.9, 0.8, 0.7], 0.5, [0, 2]),
        ([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], [0.8, 0.9, 0.7], 0.5, [1, 2]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8], 0.9, [0, 1]),
        ([[0, 0, 10, 10]], [0.1], 0.5, [0]),
    ],
)
def test_nms(boxes: list, scores: list, threshold: float, kept: list[int]) -> None:
    assert nms(np.array(boxes, np.float32), np.array(scores, np.float32), threshold).tolist() == kept


def test_batched_nms_keeps_overlapping_boxes_of_other_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert batched_nms(boxes, scores, np.array([1, 2, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), 0.5).size == 0


def test_ssd_anchors_layout() -> None:
    anchors = ssd_anchors()
    assert anchors.shape == (NUM_ANCHORS, 4)
    # first cell of the 19x19 layer: (0.1, 1.0), (0.2, 2.0), (0.2, 0.5) boxes centred at 0.5/19
    np.testing.assert_allclose(anchors[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1], rtol=1e-5)
    np.testing.assert_allclose(anchors[1, 2:], [0.2 / np.sqrt(2), 0.2 * np.sqrt(2)], rtol=1e-5)
    # the last anchor is the 1x1 layer's interpolated box: sqrt(0.95 * 1.0), centred
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, np.sqrt(0.95), np.sqrt(0.95)], rtol=1e-5)


def test_decode_zero_encodings_gives_the_anchors() -> None:
    anchors = ssd_anchors()
    boxes = decode_boxes(np.zeros((NUM_ANCHORS, 4), np.float32), anchors)
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, anchors[:, 0], atol=1e-6)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], anchors[:, 3], atol=1e-6)


def test_postprocess_detections_scales_to_input_pixels_and_thresholds() -> None:
    scores = np.zeros((NUM_ANCHORS, NUM_DETECTOR_CLASSES), np.float32)
    last = NUM_ANCHORS - 1  # centred box of side sqrt(0.95)
    scores[last, 17] = 0.9
    scores[last, 18] = 0.2  # below threshold
    det = postprocess_detections(np.zeros((NUM_ANCHORS, 4), np.float32), scores, (200, 400), 0.3, 0.6, 10)
    assert det.class_ids.tolist() == [17]
    side = np.sqrt(0.95)
    np.testing.assert_allclose(det.boxes[0], [400 * (0.5 - side / 2), 200 * (0.5 - side / 2),
                                              400 * (0.5 + side / 2), 200 * (0.5 + side / 2)], rtol=1e-5)
    with pytest.raises(ValueError, match="expected box encodings"):
        postprocess_detections(np.zeros((3, 4), np.float32), scores, (1, 1), 0.3, 0.6, 10)


def test_postprocess_detections_caps_count() -> None:
    scores = np.zeros((NUM_ANCHORS, NUM_DETECTOR_CLASSES), np.float32)
    scores[:1083, 1] = np.linspace(0.5, 0.99, 1083)  # every 19x19 anchor: many overlapping people
    det = postprocess_detections(np.zeros((NUM_ANCHORS, 4), np.float32), scores, (300, 300), 0.3, 0.99, 7)
    assert len(det) == 7
    assert np.all(np.diff(det.scores) <= 0)


@pytest.mark.parametrize(
    ("noun", "count", "expected"),
    [
        ("person", 1, "a person"), ("person", 2, "two people"), ("umbrella", 1, "an umbrella"),
        ("bus", 3, "three buses"), ("knife", 2, "two knives"), ("sheep", 4, "four sheep"),
        ("teddy bear", 2, "two teddy bears"), ("car", 12, "12 cars"), ("couch", 2, "two couches"),
    ],
)
def test_count_phrase(noun: str, count: int, expected: str) -> None:
    assert count_phrase(noun, count) == expected


@pytest.mark.parametrize(
    ("objects", "labels", "expected"),
    [
        (["person", "horse", "person"], [("seashore", 0.6)], "two people and a horse; scene: seashore"),
        ([], [("espresso", 0.9)], "no objects detected; scene: espresso"),
        (["cat"], [("tabby", 0.1)], "a cat"),
        (["cup", "bowl", "dining table"], [("x", 0.1), ("espresso", 0.3)],
         "a cup, a bowl and a dining table; scene: espresso"),
        (["a1", "b1", "c1", "d1", "e1"], [], "an a1, a b1, a c1, a d1 and other objects"),
    ],
)
def test_template_caption(objects: list[str], labels: list, expected: str) -> None:
    assert template_caption(objects, labels, min_label_score=0.2) == expected


def test_join_and_plural_edges() -> None:
    assert join_phrases([]) == "" and join_phrases(["a"]) == "a"
    assert plural("dog", 1) == "dog" and plural("toothbrush", 2) == "toothbrushes"


def test_softmax_and_top_k() -> None:
    logits = np.array([[1.0, 3.0, 2.0, 0.0]], np.float32)
    np.testing.assert_allclose(softmax(logits).sum(), 1.0, rtol=1e-6)
    idx, prob = top_k(logits, 2)
    assert idx.tolist() == [[1, 2]]
    assert prob[0, 0] > prob[0, 1]
    assert top_k(logits, 10)[0].shape == (1, 4)


def test_label_tables() -> None:
    assert len(imagenet_labels()) == 1000
    assert imagenet_short_name(281) == "tabby"
    assert coco_name(1) == "person" and coco_name(17) == "cat" and coco_name(47) == "cup"
    assert coco_name(999) == "class 999"
    assert len(COCO_NAMES) == 90


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    "image",
    [
        np.full((20, 30), 128, np.uint8),  # grayscale
        np.full((20, 30, 4), 200, np.uint8),  # RGBA
        np.full((20, 30, 3), 60000, np.uint16),  # 16-bit
        np.full((1, 1, 3), 7, np.uint8),  # 1x1
    ],
    ids=["gray", "rgba", "16bit", "1x1"],
)
def test_decode_image_variants_become_rgb_uint8(image: np.ndarray) -> None:
    rgb = decode_image(_encode(image, ".png"))
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == image.shape[:2]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty buffer"), (b"not an image at all", "do not decode"), (b"\xff\xd8\xff\xe0" + b"\0" * 20, "decode")],
)
def test_decode_image_rejects_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_image(data)


def test_decode_image_names_the_pixel_limit_even_for_a_bomb() -> None:
    with pytest.raises(InputError, match=r"at most 1000 pixels allowed, got 40x40"):
        decode_image(png_header(40, 40), max_pixels=1000)
    with pytest.raises(InputError, match=r"at most \d+ pixels allowed, got a larger image \(Image size"):
        decode_image(png_header(40000, 40000))


def test_decode_image_rejects_huge_frames() -> None:
    data = _encode(np.zeros((64, 64, 3), np.uint8), ".png")
    with pytest.raises(InputError, match="at most 1024 pixels"):
        decode_image(data, max_pixels=1024)


def test_network_inputs_have_fixed_shapes() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert detector_input(rgb).shape == (300, 300, 3)
    assert labeller_input(rgb).shape == (224, 224, 3)
    assert labeller_input(rgb[:5, :3]).shape == (224, 224, 3)


def test_pad_detections_and_caption_batch() -> None:
    one = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.9], np.float32), np.array([18], np.int32))
    none = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    out = pad_detections([one, none])
    assert out["BOXES"].shape == (2, 1, 4) and out["NUM_DETECTIONS"].tolist() == [[1], [0]]
    assert out["CLASS_NAMES"].tolist() == [[b"dog"], [b""]]
    cap = caption(out["CLASS_IDS"], out["NUM_DETECTIONS"], np.array([[281], [967]]), np.array([[0.5], [0.1]]), 0.2)
    assert cap["CAPTION"].tolist() == [[b"a dog; scene: tabby"], [b"no objects detected"]]
    assert cap["CAPTION_SOURCE"].tolist() == [[b"template"], [b"template"]]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((1, 4, 4, 3), np.float32), "expected uint8"),
        (np.zeros((4, 4, 3), np.uint8), "expected uint8 \\[N, H, W, 3\\]"),
        (np.zeros((1, 4, 4, 4), np.uint8), "got uint8 \\[1, 4, 4, 4\\]"),
        (np.zeros((0, 4, 4, 3), np.uint8), "N, H, W > 0"),
        (np.zeros((1, 40, 40, 3), np.uint8), "at most 1000 pixels per frame allowed, got 40x40"),
    ],
)
def test_preprocess_frames_rejects_bad_tensors(frames: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        preprocess_frames(frames, max_pixels=1000)


def test_preprocess_frames_matches_the_encoded_path() -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (2, 120, 160, 3), dtype=np.uint8)
    out = preprocess_frames(rgb)
    assert out["DETECTOR_INPUT"].shape == (2, 300, 300, 3) and out["IMAGE_SIZE"].tolist() == [[120, 160]] * 2
    np.testing.assert_array_equal(out["LABELLER_INPUT"][1], labeller_input(rgb[1]))
    assert out["IMAGE_OK"].tolist() == [[True], [True]] and out["ERROR"].tolist() == [[b""], [b""]]


def test_a_bad_image_fails_alone_through_the_numpy_steps() -> None:
    ok, buf = cv2.imencode(".png", np.full((40, 60, 3), 200, np.uint8))
    assert ok
    pre = preprocess_images([buf.tobytes(), b"notanimage", b""])
    assert pre["IMAGE_OK"].tolist() == [[True], [False], [False]]
    assert pre["ERROR"].tolist() == [
        [b""], [b"IMAGE[1]: image: expected JPEG or PNG bytes, got 10 bytes that do not decode as an image"],
        [b"IMAGE[2]: image: expected encoded image bytes (JPEG or PNG), got an empty buffer"]]
    assert pre["DETECTOR_INPUT"].shape == (3, 300, 300, 3) and not pre["DETECTOR_INPUT"][1:].any()
    n, k = 3, 2
    box_encodings = np.zeros((n, NUM_ANCHORS, 4), np.float32)
    class_scores = np.zeros((n, NUM_ANCHORS, NUM_DETECTOR_CLASSES), np.float32)
    class_scores[:, 0, 1] = 0.9  # one confident "person" in every image
    logits = np.tile(np.arange(1000, dtype=np.float32), (n, 1))
    out = postprocess(box_encodings, class_scores, pre["IMAGE_SIZE"], logits, PostprocessParams(top_k=k),
                      pre["IMAGE_OK"])
    assert out["NUM_DETECTIONS"].tolist() == [[1], [0], [0]]
    assert out["LABEL_IDS"].tolist() == [[999, 998], [-1, -1], [-1, -1]]
    assert out["LABELS"][1:].tolist() == [[b"", b""]] * 2 and not out["LABEL_SCORES"][1:].any()
    cap = caption(out["CLASS_IDS"], out["NUM_DETECTIONS"], out["LABEL_IDS"], out["LABEL_SCORES"], 0.2,
                  pre["IMAGE_OK"])
    assert cap["CAPTION"][0, 0].startswith(b"a person") and cap["CAPTION"][1:].tolist() == [[b""], [b""]]
    assert cap["CAPTION_SOURCE"].tolist() == [[b"template"], [b""], [b""]]
    with pytest.raises(InputError, match="got an empty batch"):
        preprocess_images([])
