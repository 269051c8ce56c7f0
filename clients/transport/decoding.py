"""The ensemble's output arrays -> one ``ImageResult`` per image (the names and shapes of mmw/contract.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from clients.results.records import DenseCaption, Detection, ImageResult, SceneLabel
from mmw import contract
from mmw.contract import CLIENT_REQUIRED_OUTPUTS
from mmw.errors import InferenceError


def parse_outputs(outputs: Mapping[str, np.ndarray | None]) -> list[ImageResult]:
    """Ensemble output arrays (batch dimension first) -> one ``ImageResult`` per image.

    Detection arrays are padded to the largest count in the request; only the first
    ``NUM_DETECTIONS`` rows of each image are kept. BYTES outputs are decoded as UTF-8. ``ERROR``
    is optional (older servers lack it): an image with an error has no detections, labels or caption.
    The caption token and dense outputs are optional too: ``DENSE_CAPTIONS``/``DENSE_BOX_INDEX``
    [N, K] and ``DENSE_TOKENS`` [N, K, L] hold one slot per dense caption, padded with b"" / -1 / -1;
    a slot whose box index is -1 is padding, any other must point at one of that image's detections.
    ``CAPTION_TOKENS`` [N, L] is -1 padded.
    """
    missing = [name for name in CLIENT_REQUIRED_OUTPUTS if outputs.get(name) is None]
    if missing:
        got = sorted(k for k, v in outputs.items() if v is not None)
        raise InferenceError(f"server response: expected outputs {', '.join(missing)}, got only {got}")
    num = np.asarray(outputs["NUM_DETECTIONS"])
    n = num.shape[0] if num.ndim else 1
    num = num.reshape(n, -1)
    if num.shape[1] != 1:
        raise InferenceError(f"server response: NUM_DETECTIONS expected shape [{n}, 1], got {list(num.shape)}")
    boxes = _batched(outputs["BOXES"], "BOXES", n, extra=(4,))
    m = boxes.shape[1]
    scores = _batched(outputs["SCORES"], "SCORES", n, width=m)
    class_ids = _batched(outputs["CLASS_IDS"], "CLASS_IDS", n, width=m)
    class_names = _batched(outputs["CLASS_NAMES"], "CLASS_NAMES", n, width=m)
    labels = _batched(outputs["LABELS"], "LABELS", n)
    label_scores = _batched(outputs["LABEL_SCORES"], "LABEL_SCORES", n, width=labels.shape[1])
    captions = _batched(outputs["CAPTION"], "CAPTION", n, width=1)
    sources = _batched(outputs["CAPTION_SOURCE"], "CAPTION_SOURCE", n, width=1)
    raw_errors = outputs.get(contract.ERROR.name)
    errors = None if raw_errors is None else _batched(raw_errors, contract.ERROR.name, n, width=1)
    caption_tokens = _optional_tokens(outputs.get("CAPTION_TOKENS"), "CAPTION_TOKENS", n)
    dense = _dense_arrays(outputs, n)

    results = []
    for i in range(n):
        error = _text(errors[i, 0]) if errors is not None else ""
        if error:
            results.append(ImageResult(error=error))
            continue
        count = int(num[i, 0])
        if not 0 <= count <= m:
            raise InferenceError(
                f"server response: NUM_DETECTIONS[{i}] = {count} is outside 0..{m} (the padded detection count)"
            )
        detections = tuple(
            Detection(
                box=tuple(float(v) for v in boxes[i, j]),  # type: ignore[arg-type]
                score=float(scores[i, j]),
                class_id=int(class_ids[i, j]),
                class_name=_text(class_names[i, j]),
            )
            for j in range(count)
        )
        scene = tuple(
            SceneLabel(name=_text(labels[i, k]), score=float(label_scores[i, k])) for k in range(labels.shape[1])
        )
        dense_captions: list[DenseCaption] = []
        if dense is not None:
            texts, index, tokens = dense
            for k in range(index.shape[1]):
                j = int(index[i, k])
                if j == -1:
                    continue
                if not 0 <= j < count:
                    raise InferenceError(f"server response: DENSE_BOX_INDEX[{i}, {k}] = {j} is not a detection "
                                         f"of that image (expected 0..{count - 1}, or -1 for padding)")
                det = detections[j]
                dense_captions.append(DenseCaption(
                    box_index=j, caption=_text(texts[i, k]), class_name=det.class_name, score=det.score,
                    box=det.box, tokens=_token_ids(tokens[i, k]) if tokens is not None else ()))
        results.append(
            ImageResult(
                detections=detections,
                labels=scene,
                caption=_text(captions[i, 0]),
                caption_source=_text(sources[i, 0]),
                dense_captions=tuple(dense_captions),
                caption_tokens=_token_ids(caption_tokens[i]) if caption_tokens is not None else (),
            )
        )
    return results


def _token_ids(row: np.ndarray) -> tuple[int, ...]:
    """Token ids of one -1 padded row."""
    return tuple(int(t) for t in np.asarray(row).reshape(-1) if t >= 0)


def _optional_tokens(value: np.ndarray | None, name: str, n: int) -> np.ndarray | None:
    """An optional [N, L] int token output (None when absent)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == 1 and arr.shape[0] == n:
        arr = arr.reshape(n, 1)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise InferenceError(f"server response: {name} expected shape [{n}, L], got {list(arr.shape)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InferenceError(f"server response: {name} expected integer token ids, got {arr.dtype}")
    return arr


def _dense_arrays(outputs: Mapping[str, np.ndarray | None], n: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(DENSE_CAPTIONS [N,K], DENSE_BOX_INDEX [N,K], DENSE_TOKENS [N,K,L] or None), or None without dense outputs."""
    texts, index, tokens = (outputs.get(name) for name in ("DENSE_CAPTIONS", "DENSE_BOX_INDEX", "DENSE_TOKENS"))
    if texts is None and index is None:
        return None
    if texts is None or index is None:
        missing = "DENSE_CAPTIONS" if texts is None else "DENSE_BOX_INDEX"
        raise InferenceError(f"server response: expected DENSE_CAPTIONS and DENSE_BOX_INDEX together, {missing} "
                             "is missing")
    index_arr = _batched(index, "DENSE_BOX_INDEX", n)
    k = index_arr.shape[1]
    if index_arr.size and not np.issubdtype(index_arr.dtype, np.integer):
        raise InferenceError(f"server response: DENSE_BOX_INDEX expected integers, got {index_arr.dtype}")
    text_arr = _batched(texts, "DENSE_CAPTIONS", n, width=k) if k else np.empty((n, 0), dtype=object)
    if tokens is None:
        return text_arr, index_arr, None
    tok = np.asarray(tokens)
    if tok.size == 0:
        tok = tok.reshape(n, k, 0)
    if tok.ndim != 3 or tok.shape[:2] != (n, k):
        raise InferenceError(f"server response: DENSE_TOKENS expected shape [{n}, {k}, L], got {list(tok.shape)}")
    return text_arr, index_arr, tok



# --- helpers ---------------------------------------------------------------------------------------------


def _batched(value: np.ndarray, name: str, n: int, width: int | None = None, extra: tuple[int, ...] = ()) -> np.ndarray:
    """Reshape an output to [n, width, *extra], accepting an empty array of any shape."""
    arr = np.asarray(value)
    if arr.size == 0:
        return arr.reshape((n, 0, *extra)) if width in (None, 0) else _bad_shape(name, arr, n, width, extra)
    if arr.ndim == 1 + len(extra) and width in (None, 1) and arr.shape[0] == n:
        arr = arr.reshape((n, 1, *extra))  # a [N] output where [N, 1] was expected
    if arr.ndim != 2 + len(extra) or arr.shape[0] != n or arr.shape[2:] != extra:
        return _bad_shape(name, arr, n, width, extra)
    if width is not None and arr.shape[1] != width:
        return _bad_shape(name, arr, n, width, extra)
    return arr


def _bad_shape(name: str, arr: np.ndarray, n: int, width: int | None, extra: tuple[int, ...]) -> np.ndarray:
    want = [n, "K" if width is None else width, *extra]
    raise InferenceError(f"server response: {name} expected shape {want}, got {list(arr.shape)}")


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)




