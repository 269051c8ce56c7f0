"""Class names: COCO ids of the detector and ImageNet-1k classes of the labeller."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

_DATA = Path(__file__).resolve().parent.parent / "data"

# The TF model zoo's mscoco_label_map: ids 1..90 with ten ids never trained (names in brackets in
# the original map). The detector's 91 outputs are indexed by these ids; 0 is background.
COCO_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 12: "street sign", 13: "stop sign", 14: "parking meter",
    15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant",
    23: "bear", 24: "zebra", 25: "giraffe", 26: "hat", 27: "backpack", 28: "umbrella", 29: "shoe",
    30: "eye glasses", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard",
    37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove", 41: "skateboard", 42: "surfboard",
    43: "tennis racket", 44: "bottle", 45: "plate", 46: "wine glass", 47: "cup", 48: "fork", 49: "knife",
    50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli",
    57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch",
    64: "potted plant", 65: "bed", 66: "mirror", 67: "dining table", 68: "window", 69: "desk", 70: "toilet",
    71: "door", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone",
    78: "microwave", 79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 83: "blender", 84: "book",
    85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}


def coco_name(class_id: int) -> str:
    """Name of a COCO id; unknown ids read ``class <id>``."""
    return COCO_NAMES.get(int(class_id), f"class {int(class_id)}")


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (full synonym lists)."""
    names = tuple(line.strip() for line in (_DATA / "imagenet_labels.txt").read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_labels.txt: expected 1000 names, found {len(names)}")  # packaging error
    return names


def imagenet_short_name(index: int) -> str:
    """First synonym of an ImageNet class: 'tabby, tabby cat' -> 'tabby'; unknown indices read ``class <index>``."""
    names = imagenet_labels()
    if not 0 <= int(index) < len(names):
        return f"class {int(index)}"
    return names[int(index)].split(",")[0].strip()


def names_array(names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Strings -> a numpy object array of UTF-8 bytes (Triton's BYTES)."""
    return np.array([n.encode("utf-8") for n in names], dtype=object)
