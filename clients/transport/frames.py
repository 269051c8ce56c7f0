"""The requests' inputs: encoded images as IMAGE, raw frames as FRAME (in the request or in shared memory).

``image_request`` builds the ``scene_understanding`` ensemble's IMAGE input ([N, 1] BYTES);
``frame_request`` the ``scene_understanding_raw`` ensemble's FRAME input (uint8 [N, H, W, 3]) with the
pixels in the request, ``shm_frame_request`` the same tensor naming a shared-memory region instead
(``clients.transport.shared_memory``). The raw ensemble takes one frame size per request, so
``split_batch`` cuts a batch into one part per kind (encoded or raw) and frame size, in first-seen order,
remembering where each item goes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmw.contract import CLIENT_REQUIRED_OUTPUTS, FRAME, IMAGE
from mmw.errors import InputError
from mmw.processing.images import check_rgb

#: One item of a batch: encoded JPEG/PNG bytes, or a uint8 RGB frame [H, W, 3].
Payload = bytes | np.ndarray


def check_frame(rgb: Any, where: str = "frame") -> np.ndarray:
    """``rgb`` as a C-contiguous uint8 [H, W, 3] array with H, W > 0, else InputError."""
    return np.ascontiguousarray(check_rgb(rgb, where))


@dataclass(frozen=True)
class Part:
    """The items of one request and their positions in the batch they came from."""

    items: tuple[Payload, ...]
    positions: tuple[int, ...]
    raw: bool = False  # True: frames (FRAME); False: encoded images (IMAGE)

    @property
    def shape(self) -> tuple[int, ...]:
        """FRAME's shape [N, H, W, 3] (raw parts only)."""
        return (len(self.items), *self.items[0].shape)  # type: ignore[union-attr]

    @property
    def nbytes(self) -> int:
        return sum(int(i.nbytes) for i in self.items) if self.raw else 0  # type: ignore[union-attr]


def whole_batch(images: Sequence[bytes]) -> list[Part]:
    """A batch of encoded images as one part (``image_request`` checks its items)."""
    if isinstance(images, (bytes, bytearray)) or len(images) == 0:
        raise InputError(f"images: expected a non-empty list of encoded images (bytes), got {type(images).__name__}")
    return [Part(tuple(images), tuple(range(len(images))))]


def split_batch(batch: Sequence[Payload]) -> list[Part]:
    """One part per kind and frame size, in the order each first appears (encoded images: one part)."""
    if isinstance(batch, (bytes, bytearray, np.ndarray)) or len(batch) == 0:
        raise InputError(f"batch: expected a non-empty list of frames or encoded images, got {type(batch).__name__}")
    groups: dict[object, list[int]] = {}
    for i, item in enumerate(batch):
        if isinstance(item, np.ndarray):
            key: object = check_frame(item, f"frames[{i}]").shape
        elif isinstance(item, (bytes, bytearray, memoryview)) and len(item):
            key = "encoded"
        else:
            raise InputError(f"batch[{i}]: expected a uint8 RGB frame or non-empty JPEG/PNG bytes, got "
                             f"{type(item).__name__}")
        groups.setdefault(key, []).append(i)
    return [Part(tuple(batch[i] for i in idx), tuple(idx), key != "encoded") for key, idx in groups.items()]


def _outputs(module: Any, output_names: Sequence[str]) -> list[Any]:
    return [module.InferRequestedOutput(name) for name in output_names]


def image_request(module: Any, images: Sequence[bytes],
                  output_names: Sequence[str] = CLIENT_REQUIRED_OUTPUTS) -> tuple[list[Any], list[Any]]:
    """The IMAGE input ([N, 1] BYTES) and the requested outputs for one batch of encoded images."""
    if isinstance(images, (bytes, bytearray)) or len(images) == 0:
        raise InputError(f"images: expected a non-empty list of encoded images (bytes), got {type(images).__name__}")
    batch = np.empty((len(images), 1), dtype=object)
    for i, data in enumerate(images):
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise InputError(f"images[{i}]: expected non-empty JPEG or PNG bytes, got {type(data).__name__}")
        batch[i, 0] = bytes(data)
    tensor = module.InferInput(IMAGE.name, list(batch.shape), IMAGE.wire_type)
    tensor.set_data_from_numpy(batch)
    return [tensor], _outputs(module, output_names)


def frame_request(module: Any, frames: Sequence[np.ndarray],
                  output_names: Sequence[str] = CLIENT_REQUIRED_OUTPUTS) -> tuple[list[Any], list[Any]]:
    """The FRAME input (uint8 [N, H, W, 3], one size) with the pixels in the request, and the outputs."""
    batch = np.stack([check_frame(f, f"frames[{i}]") for i, f in enumerate(frames)])
    tensor = module.InferInput(FRAME.name, list(batch.shape), FRAME.wire_type)
    tensor.set_data_from_numpy(batch)
    return [tensor], _outputs(module, output_names)


def shm_frame_request(module: Any, region_name: str, shape: Sequence[int], byte_size: int,
                      output_names: Sequence[str] = CLIENT_REQUIRED_OUTPUTS) -> tuple[list[Any], list[Any]]:
    """The FRAME input of ``shape`` read by the server from bytes 0..``byte_size`` of a registered region."""
    tensor = module.InferInput(FRAME.name, [int(d) for d in shape], FRAME.wire_type)
    tensor.set_shared_memory(region_name, int(byte_size))
    return [tensor], _outputs(module, output_names)
