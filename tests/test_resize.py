"""The TF1 resize kernels in numpy: bit-exact against TensorFlow's recorded outputs, and what sets them apart."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from export.fidelity import resize_cases
from mmw.errors import InputError
from mmw.processing.images import labeller_crop
from mmw.processing.resize import resize_bicubic_tf1, resize_bilinear_tf1

CASES = resize_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kernel}-{c.input_size}-{c.output_size}" for c in CASES])
def test_kernel_is_bit_exact_against_tensorflow(case) -> None:
    """export/reference/tf1_resize.json holds TensorFlow 2.21's outputs (whole, or their sha256)."""
    assert case.bit_exact
    assert case.max_abs_diff in (None, 0.0)


def test_the_reference_covers_both_kernels_at_the_pipeline_scales() -> None:
    assert {c.kernel for c in CASES} == {"bilinear", "bicubic"}
    assert {((2160, 3840), (300, 300)), ((1890, 1890), (224, 224))} <= {(c.input_size, c.output_size) for c in CASES}


@pytest.mark.parametrize(("row", "width", "expected"), [
    ([0, 10, 20, 30], 2, [0, 20]),           # down: samples 0 and 2, no half-pixel offset, no averaging
    ([0, 10], 4, [0, 5, 10, 10]),            # up: positions 0, .5, 1, 1.5 (the last clamps to the edge)
    ([0, 30, 60], 2, [0, 45]),               # position 1.5 -> halfway between 30 and 60
    ([7], 3, [7, 7, 7]),                     # a single pixel everywhere
])
def test_bilinear_samples_at_i_times_scale(row: list, width: int, expected: list) -> None:
    image = np.asarray(row, np.uint8)[None, :, None]
    np.testing.assert_array_equal(resize_bilinear_tf1(image, (1, width))[0, :, 0], expected)


def test_bilinear_differs_from_opencv_half_pixel_sampling() -> None:
    """cv2.INTER_LINEAR samples (i + 0.5) * scale - 0.5: it averages neighbours where TF1 picks a pixel."""
    image = np.asarray([0, 10, 20, 30], np.uint8)[None, :, None].repeat(3, axis=2)
    assert cv2.resize(image, (2, 1), interpolation=cv2.INTER_LINEAR)[0, :, 0].tolist() == [5, 25]
    assert resize_bilinear_tf1(image, (1, 2))[0, :, 0].tolist() == [0, 20]


@pytest.mark.parametrize("kernel", [resize_bilinear_tf1, resize_bicubic_tf1])
@pytest.mark.parametrize(("shape", "size"), [((1, 1, 3), (300, 300)), ((2160, 3840, 3), (300, 300)),
                                             ((5, 7, 3), (224, 224)), ((9, 4, 1), (3, 3))])
def test_flat_images_stay_flat(kernel, shape: tuple, size: tuple) -> None:
    out = kernel(np.full(shape, 77, np.uint8), size)
    assert out.dtype == np.float32 and out.shape == (*size, shape[2])
    np.testing.assert_allclose(out, 77, atol=1e-4)  # bicubic weights sum to 1 up to float rounding


def test_bicubic_overshoots_at_an_edge_like_tensorflow() -> None:
    """Keys' cubic with a = -0.75 rings at a step edge: values outside 0..255 are kept (not clipped)."""
    image = np.zeros((1, 8, 3), np.uint8)
    image[:, 4:] = 255
    out = resize_bicubic_tf1(image, (1, 13))
    assert out.min() < 0 and out.max() > 255


@pytest.mark.parametrize(("shape", "size", "message"), [
    ((0, 4, 3), (3, 3), r"expected an image \[H, W, C\] with H, W, C > 0, got \[0, 4, 3\]"),
    ((4, 4), (3, 3), r"got \[4, 4\]"),
    ((4, 4, 3), (0, 3), r"expected an output size \(height, width\) > 0, got \(0, 3\)"),
])
def test_bad_shapes_are_clear_errors(shape: tuple, size: tuple, message: str) -> None:
    for kernel in (resize_bilinear_tf1, resize_bicubic_tf1):
        with pytest.raises(InputError, match=message):
            kernel(np.zeros(shape, np.uint8), size)


@pytest.mark.parametrize(("shape", "side", "top", "left"), [
    ((256, 256, 3), 224, 16, 16),     # 224/256 of the short side ...
    ((480, 640, 3), 420, 30, 110),    # ... centred, offsets rounded up as tensorflow/tpu does
    ((2160, 3840, 3), 1890, 135, 975),
    ((101, 50, 3), 43, 29, 4),        # int(0.875 * 50) = 43; (101 - 43 + 1) // 2 = 29
    ((1, 1, 3), 1, 0, 0),             # at least one pixel
])
def test_labeller_crop_is_efficientnets_evaluation_crop(shape: tuple, side: int, top: int, left: int) -> None:
    image = np.arange(np.prod(shape), dtype=np.uint32).reshape(shape)
    np.testing.assert_array_equal(labeller_crop(image), image[top:top + side, left:left + side])
