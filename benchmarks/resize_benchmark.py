"""What exact resizing costs and buys (``make bench``): ratios taken in one run on one machine.

For each way of making the networks' inputs, on camera-sized frames:

- ``previous``: OpenCV, INTER_AREA when the short side is over 600 px (448 for the labeller crop), else
  INTER_LINEAR, crop round(0.875 * short side), rounded to uint8 (what the pipeline did before);
- ``cv2-linear``: OpenCV INTER_LINEAR everywhere (half-pixel sampling), rounded to uint8;
- ``tf1``: the TF1 kernels of the source models (bilinear for the detector, EfficientNet's crop and
  bicubic for the labeller), float32: what is served now.

It prints the milliseconds per frame (detector input + labeller input, median of repeats), the
ratio to ``previous``, and the detector boxes above 0.5 that match the original frozen graph
(OpenCV dnn, same class, IoU >= 0.9, score within 0.02) over ``export.fidelity``'s frames.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))
Prepare = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _cv2(rgb: np.ndarray, size: int, area_above: int | None) -> np.ndarray:
    interp = cv2.INTER_AREA if area_above is not None and min(rgb.shape[:2]) > area_above else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp).astype(np.float32)


def _centre(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = max(1, round(min(h, w) * 0.875))
    return rgb[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]


def preparations() -> dict[str, Prepare]:
    from mmw.processing.images import detector_input, labeller_input

    return {
        "previous": lambda f: (_cv2(f, 300, 600), _cv2(_centre(f), 224, 448)),
        "cv2-linear": lambda f: (_cv2(f, 300, None), _cv2(_centre(f), 224, None)),
        "tf1": lambda f: (detector_input(f), labeller_input(f)),
    }


def ms_per_frame(prepare: Prepare, frame: np.ndarray, repeats: int) -> float:
    prepare(frame)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        prepare(frame)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def boxes_matched(prepare: Prepare) -> tuple[int, int]:
    """Reference boxes above 0.5 matched, over the fidelity frames, when the detector gets ``prepare``'s input."""
    from export.fidelity import SCORE, SCORE_TOLERANCE, OriginalDetector, compare_boxes, fidelity_frames
    from mmw.onnx_runtime import create_session
    from mmw.processing.detection import postprocess_detections

    session = create_session(ROOT / "model_repository" / "detector" / "1" / "model.onnx", threads=2)
    original, low = OriginalDetector(), SCORE - SCORE_TOLERANCE
    found = total = 0
    for name, frame in fidelity_frames().items():
        boxes, scores = session.run(None, {"images": prepare(frame)[0][None]})
        served = postprocess_detections(boxes[0], scores[0], frame.shape[:2], low, 0.6, 100)
        c = compare_boxes(name, original(frame, low), served)
        found, total = found + c.reference_matched, total + c.reference
    return found, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per frame size")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from export.fidelity import frame_from_photo, photo

    ways = preparations()
    frames = {f"{w}x{h}": frame_from_photo(photo("coffee"), (w, h)) for w, h in SIZES}
    timings = {way: {size: ms_per_frame(fn, f, args.repeats) for size, f in frames.items()} for way, fn in ways.items()}
    matched = {way: boxes_matched(fn) for way, fn in ways.items()}
    print(f"{'ms per frame (both inputs)':28s}" + "".join(f"{s:>11s}" for s in frames) + "   boxes matching the graph")
    for way in ways:
        ratios = "".join(f"{timings[way][s]:6.2f} x{timings[way][s] / timings['previous'][s]:<4.2f}" for s in frames)
        found, total = matched[way]
        print(f"{way:28s}{ratios}   {found}/{total} ({100 * found / total:.0f}%)")
    extra = {s: timings["tf1"][s] - timings["previous"][s] for s in frames}
    print("tf1 costs per frame vs previous: " + ", ".join(f"{s} {v:+.2f} ms" for s, v in extra.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"ms_per_frame": timings, "boxes_matched": matched, "extra_ms": extra},
                                       indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
