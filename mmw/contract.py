"""The ensemble's contract, declared once: names, inputs, outputs, caption sources and request parameters.

The repository specs (:mod:`mmw.specs`, hence every ``config.pbtxt``), the clients' request and output
decoding, the app and the benchmarks all import these; nothing else spells a tensor or model name.
Importing this module needs only numpy (clients do not need the server-side config).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmw.errors import ModelSpecError

#: The ensemble clients call: encoded images in.
ENSEMBLE_NAME = "scene_understanding"
#: The same pipeline for raw uint8 RGB frames (one frame size per request).
RAW_ENSEMBLE_NAME = f"{ENSEMBLE_NAME}_raw"

#: The HTTP header that carries the admin key of Triton's restricted APIs (model-repository, shared-memory,
#: trace, logging); gRPC clients send it as ``GRPC_HEADER_PREFIX + RESTRICTED_HEADER``.
RESTRICTED_HEADER = "mmw-admin-key"
#: Triton 2.51 expects a restricted gRPC protocol's header under this prefix.
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
#: The environment variable holding the admin key (the server's and the clients').
ADMIN_KEY_ENV = "MMW_TRITON_ADMIN_KEY"

_TRITON_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "bytes": "TYPE_STRING",
}
#: Triton's wire names (tritonclient ``InferInput`` datatypes) of the dtypes above.
_WIRE_TYPES = {"bool": "BOOL", "uint8": "UINT8", "int32": "INT32", "int64": "INT64", "float16": "FP16",
               "float32": "FP32", "bytes": "BYTES"}


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor; ``dims`` exclude the batch axis, -1 is a variable size."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.dtype not in _TRITON_TYPES:
            raise ModelSpecError(
                f"tensor {self.name}: dtype {self.dtype!r} not allowed; allowed: {sorted(_TRITON_TYPES)}")

    @property
    def triton_type(self) -> str:
        """The ``config.pbtxt`` data type, e.g. ``TYPE_FP32``."""
        return _TRITON_TYPES[self.dtype]

    @property
    def wire_type(self) -> str:
        """The datatype a client sends or receives, e.g. ``FP32``."""
        return _WIRE_TYPES[self.dtype]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "bytes" else np.dtype(self.dtype)


# --- inputs --------------------------------------------------------------------------------------------------
IMAGE = TensorSpec("IMAGE", "bytes", (1,))             # one encoded JPEG/PNG per row
FRAME = TensorSpec("FRAME", "uint8", (-1, -1, 3))      # raw RGB frames (the raw ensemble)

# --- outputs (detections are padded per request; NUM_DETECTIONS says how many rows are real) ------------------
BOXES = TensorSpec("BOXES", "float32", (-1, 4))         # x1, y1, x2, y2 in pixels of the image sent
SCORES = TensorSpec("SCORES", "float32", (-1,))
CLASS_IDS = TensorSpec("CLASS_IDS", "int32", (-1,))     # COCO ids 1..90
CLASS_NAMES = TensorSpec("CLASS_NAMES", "bytes", (-1,))
NUM_DETECTIONS = TensorSpec("NUM_DETECTIONS", "int32", (1,))
DETECTION_OUTPUTS = (BOXES, SCORES, CLASS_IDS, CLASS_NAMES, NUM_DETECTIONS)


def label_outputs(top_k: int) -> tuple[TensorSpec, TensorSpec, TensorSpec]:
    """The scene labels: LABELS, LABEL_SCORES and LABEL_IDS, ``top_k`` per image (config ``models.labeller``)."""
    return (TensorSpec("LABELS", "bytes", (top_k,)), TensorSpec("LABEL_SCORES", "float32", (top_k,)),
            TensorSpec("LABEL_IDS", "int32", (top_k,)))


CAPTION = TensorSpec("CAPTION", "bytes", (1,))
CAPTION_SOURCE = TensorSpec("CAPTION_SOURCE", "bytes", (1,))    # TEMPLATE_SOURCE or the model's name
CAPTION_TOKENS = TensorSpec("CAPTION_TOKENS", "int32", (-1,))   # neural: the frame caption's token ids (-1 pads)
DENSE_CAPTIONS = TensorSpec("DENSE_CAPTIONS", "bytes", (-1,))   # one per captioned detection (b"" pads)
DENSE_BOX_INDEX = TensorSpec("DENSE_BOX_INDEX", "int32", (-1,))  # its index into BOXES (-1 pads)
DENSE_TOKENS = TensorSpec("DENSE_TOKENS", "int32", (-1, -1))    # token ids per dense caption (-1 pads)
CAPTION_OUTPUTS = (CAPTION, CAPTION_SOURCE, CAPTION_TOKENS, DENSE_CAPTIONS, DENSE_BOX_INDEX, DENSE_TOKENS)
ERROR = TensorSpec("ERROR", "bytes", (1,))                      # b"" for a good image, else why it failed


def ensemble_outputs(top_k: int) -> tuple[TensorSpec, ...]:
    """Every output of both ensembles, in order."""
    return (*DETECTION_OUTPUTS, *label_outputs(top_k), *CAPTION_OUTPUTS, ERROR)


#: What a client decodes. Required: every server has them. Optional: servers older than the per-image
#: error or the neural captioner lack them, so the client asks for them only when the ensemble has them.
#: LABEL_IDS is not decoded (results carry the label names).
CLIENT_REQUIRED_OUTPUTS: tuple[str, ...] = (
    *(t.name for t in DETECTION_OUTPUTS), "LABELS", "LABEL_SCORES", CAPTION.name, CAPTION_SOURCE.name)
CLIENT_OPTIONAL_OUTPUTS: tuple[str, ...] = (
    CAPTION_TOKENS.name, DENSE_CAPTIONS.name, DENSE_BOX_INDEX.name, DENSE_TOKENS.name, ERROR.name)

# --- captions ------------------------------------------------------------------------------------------------
#: CAPTION_SOURCE of a caption composed from the detections and labels (no captioning model).
TEMPLATE_SOURCE = "template"
#: Request parameters a request may set (Triton ``parameters``): name -> (lowest, highest) allowed. The same
#: limits bound ``models.caption`` in config.yaml and the clients' ``CaptionOptions``.
CAPTION_PARAMETERS: dict[str, tuple[int, int]] = {"num_beams": (1, 16), "max_new_tokens": (1, 512),
                                                  "dense_top_k": (0, 32)}
