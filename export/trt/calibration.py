"""int8 calibration data: real photos through the shared preprocessing, as Polygraphy's ``Calibrator`` takes them.

``CalibrationBatches`` is the calibrator's data loader: a re-iterable sequence of ``{input name: batch}``
feed dicts, float32 pixel values 0..255 (``mmw.processing.images``), each batch of the calibration
profile's *opt* shape (Polygraphy checks calibration data against the opt shapes and silently stops at the
first batch that does not match, so every batch is full: the photos wrap around). ``CalibratorFromBatches``
is the lazy step that turns it into Polygraphy's ``Calibrator`` (an ``IInt8EntropyCalibrator2``, which needs
``tensorrt``) when the builder config is created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseLoader
from polygraphy.backend.trt import Calibrator

from mmw.errors import EngineError, ExportError
from mmw.processing.images import decode_image, detector_input, labeller_input
from mmw.specs import DETECTOR, LABELLER, NetworkSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    DETECTOR.name: detector_input, LABELLER.name: labeller_input,
}


def calibration_photos(images: str = "") -> list[np.ndarray]:
    """RGB uint8 photos: every JPEG/PNG of the folder ``images``, or scikit-image's sample photos when it is ""."""
    if images:
        folder = Path(images)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise EngineError(f"engines.calibration_images: expected a folder of JPEG/PNG images, got {images!r}")
        return [decode_image(p.read_bytes()) for p in files]
    from export.fidelity import PHOTOS, photo

    try:
        return [photo(name) for name in PHOTOS]
    except ExportError as exc:  # no scikit-image
        raise EngineError(f"int8 calibration: engines.calibration_images is empty and {exc}; "
                          "or set a folder") from None


class CalibrationBatches:
    """Feed dicts ``{input: float32 [batch_size, *dims]}`` of photos preprocessed for ``spec``; read on first use."""

    def __init__(self, spec: NetworkSpec, batch_size: int, images: str = "") -> None:
        if spec.name not in _PREPROCESSING:
            raise EngineError(f"{spec.name}: no preprocessing known for int8 calibration (known: "
                              f"{sorted(_PREPROCESSING)}); use engines.precision fp16")
        if len(spec.inputs) != 1:
            raise EngineError(f"{spec.name}: int8 calibration feeds one image input, the spec has "
                              f"{[t.name for t in spec.inputs]}")
        if batch_size < 1:
            raise EngineError(f"{spec.name}: calibration batch size: expected >= 1, got {batch_size}")
        self.spec = spec
        self.batch_size = batch_size
        self.images = images
        self._batches: list[dict[str, np.ndarray]] | None = None

    def _load(self) -> list[dict[str, np.ndarray]]:
        if self._batches is None:
            prepare = _PREPROCESSING[self.spec.name]
            arrays = np.stack([prepare(rgb) for rgb in calibration_photos(self.images)]).astype(np.float32, copy=False)
            count = -(-len(arrays) // self.batch_size)  # every photo once; the last batch wraps around to the first
            order = np.arange(count * self.batch_size) % len(arrays)
            name = self.spec.inputs[0].name
            self._batches = [{name: np.ascontiguousarray(arrays[order[i : i + self.batch_size]])}
                             for i in range(0, len(order), self.batch_size)]
        return self._batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


class CalibratorFromBatches(BaseLoader):
    """Calibration feed dicts -> Polygraphy's int8 ``Calibrator``, keeping TensorRT's scale table in ``cache``.

    A cache that exists is read instead of calibrating again (delete it after changing the photos).
    """

    def __init__(self, data_loader: Iterable[Mapping[str, np.ndarray]], cache: Path) -> None:
        self.data_loader = data_loader
        self.cache = cache

    def call_impl(self):  # -> trt.IInt8EntropyCalibrator2 (tensorrt is imported here, not before)
        return Calibrator(self.data_loader, cache=str(self.cache))
