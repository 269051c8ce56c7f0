"""Record TensorFlow's own TF1 resize outputs for ``tests/test_resize.py`` (run once, where TensorFlow is installed).

    python export/reference/record_tf1_resize.py > export/reference/tf1_resize.json

The inputs are a formula of the pixel position (:func:`reference_input`, no random generator), so
the test rebuilds them. Small outputs are stored whole; large ones as the sha256 of their float32
bytes, which only a bit-exact emulation reproduces. Needs only tensorflow and numpy (not this project).
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

#: (input height, width) -> (output height, width): up, down, mixed, and the pipeline's real scales.
CASES = (((7, 9), (3, 4)), ((5, 13), (11, 6)), ((37, 53), (16, 23)), ((480, 640), (300, 300)),
         ((1080, 1920), (300, 300)), ((2160, 3840), (300, 300)), ((1890, 1890), (224, 224)), ((100, 150), (224, 224)))
WHOLE_UP_TO = 16 * 23  # outputs with at most this many pixels are stored whole


def reference_input(height: int, width: int) -> np.ndarray:
    """A deterministic uint8 [height, width, 3] image with detail at every scale."""
    i, j, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((i * 7 + j * 13 + c * 101 + (i * j) % 31) % 256).astype(np.uint8)


def digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def main() -> int:
    import tensorflow as tf

    kernels = {"bilinear": tf.compat.v1.image.resize_bilinear, "bicubic": tf.compat.v1.image.resize_bicubic}
    cases = []
    for (h, w), size in CASES:
        image = reference_input(h, w)[None].astype(np.float32)
        for kernel, resize in kernels.items():
            out = resize(image, size, align_corners=False, half_pixel_centers=False).numpy()[0]
            case = {"kernel": kernel, "input": [h, w], "output": list(size), "sha256": digest(out)}
            if size[0] * size[1] <= WHOLE_UP_TO:
                case["values"] = out.tolist()
            cases.append(case)
    lines = ",\n  ".join(json.dumps(case, separators=(",", ":")) for case in cases)  # one case a line
    sys.stdout.write(f'{{"tensorflow": "{tf.__version__}",\n "cases": [\n  {lines}\n ]}}\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
