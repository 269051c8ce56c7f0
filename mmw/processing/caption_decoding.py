"""Greedy and beam-search decoding in numpy, step for step what ``transformers``' ``generate()`` does.

The search talks to the network through a :class:`DecodeSession`: ``step`` returns the logits of
the last position for each row, ``reorder`` picks rows (beams) after a beam-search step. A cached
session feeds only the newest token; an uncached one re-runs the whole prefix. Both give the same
tokens, which the tests check, together with equality to ``generate()`` for greedy and beam search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mmw.contract import CAPTION_PARAMETERS
from mmw.errors import CaptionerError

NEG_INF = np.float32(-1.0e9)  # what transformers adds to rule a candidate out


class DecodeSession(Protocol):
    """The network seen from the search: rows are (image, beam) pairs."""

    def step(self, sequences: np.ndarray, new_tokens: int) -> np.ndarray:
        """Logits [rows, vocab] (float32) of the last position, given the sequences so far [rows, T]."""

    def reorder(self, rows: np.ndarray) -> None:
        """Keep rows ``rows`` (in that order) of the cached state."""


@dataclass(frozen=True)
class SearchSettings:
    """How to search; the defaults are transformers' GenerationConfig defaults."""

    max_new_tokens: int = 20
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_beams"):
            low, high = CAPTION_PARAMETERS[name]
            if not low <= getattr(self, name) <= high:
                raise CaptionerError(f"{name}: expected {low}..{high}, got {getattr(self, name)}")
        if self.early_stopping not in (True, False, "never"):
            raise CaptionerError(f"early_stopping: expected true, false or 'never', got {self.early_stopping!r}")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32 (as torch computes it: x - max - log(sum(exp(x - max))))."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (ties: lower index first)."""
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]


def generated_tokens(sequence: np.ndarray, prompt_length: int, eos_token_id: int) -> list[int]:
    """The tokens after the prompt, up to and including the first end-of-sequence token."""
    tokens = [int(t) for t in sequence[prompt_length:]]
    return tokens[: tokens.index(eos_token_id) + 1] if eos_token_id in tokens else tokens


def greedy_search(session: DecodeSession, prompt: np.ndarray, settings: SearchSettings,
                  eos_token_id: int, pad_token_id: int) -> list[list[int]]:
    """Greedy decoding of ``prompt`` [rows, T0] (int64); generated tokens per row."""
    sequences = prompt.astype(np.int64)
    unfinished = np.ones(len(sequences), dtype=bool)
    new = sequences.shape[1]
    for _ in range(settings.max_new_tokens):
        logits = session.step(sequences, new)
        new = 1
        tokens = np.argmax(logits, axis=-1).astype(np.int64)
        tokens = np.where(unfinished, tokens, pad_token_id)
        sequences = np.concatenate([sequences, tokens[:, None]], axis=1)
        unfinished &= tokens != eos_token_id
        if not unfinished.any():
            break
    return [generated_tokens(s, prompt.shape[1], eos_token_id) for s in sequences]


def beam_search(session: DecodeSession, prompt: np.ndarray, settings: SearchSettings,
                eos_token_id: int, pad_token_id: int) -> list[list[int]]:
    """Beam search over ``prompt`` [batch, T0]: the best sequence per row, as transformers' ``_beam_search``.

    The session must hold ``batch * num_beams`` rows (each prompt row repeated ``num_beams`` times).
    """
    k = settings.num_beams
    batch, prompt_len = prompt.shape
    max_length = prompt_len + settings.max_new_tokens
    keep = 2 * k  # one end-of-sequence token: max(2, 1 + 1) * num_beams candidates per step
    top_k_mask = np.arange(keep) < k
    lp, early = np.float32(settings.length_penalty), settings.early_stopping
    fill = pad_token_id if pad_token_id else eos_token_id

    running = np.full((batch, k, max_length), fill, dtype=np.int64)
    running[:, :, :prompt_len] = prompt[:, None, :]
    finished_seqs = running.copy()
    running_scores = np.zeros((batch, k), dtype=np.float32)
    running_scores[:, 1:] = NEG_INF
    finished_scores = np.full((batch, k), NEG_INF, dtype=np.float32)
    is_finished = np.zeros((batch, k), dtype=bool)
    improvable = np.ones((batch, 1), dtype=bool)
    rows = np.arange(batch)[:, None]
    cur_len, new = prompt_len, prompt_len
    while True:
        logits = session.step(running[:, :, :cur_len].reshape(batch * k, cur_len), new)
        new = 1
        vocab = logits.shape[-1]
        scores = log_softmax(logits.astype(np.float32)).reshape(batch, k, vocab) + running_scores[:, :, None]
        scores = scores.reshape(batch, k * vocab)
        top = _topk(scores, keep)
        top_scores = np.take_along_axis(scores, top, axis=1)
        beam_of, token_of = top // vocab, top % vocab
        candidates = running[rows, beam_of].copy()
        candidates[:, :, cur_len] = token_of
        hits = (token_of == eos_token_id) | (cur_len + 1 >= max_length)

        # the best unfinished candidates run on
        live_scores = top_scores + hits.astype(np.float32) * NEG_INF
        pick = _topk(live_scores, k)
        running = np.take_along_axis(candidates, pick[:, :, None], axis=1)
        running_scores = np.take_along_axis(live_scores, pick, axis=1)
        source_beam = np.take_along_axis(beam_of, pick, axis=1)

        # finished candidates among the top k enter the finished set if they beat it
        just_finished = hits & top_k_mask[None, :]
        final_scores = top_scores / np.float32((cur_len + 1 - prompt_len) ** lp)
        full = is_finished.all(axis=-1, keepdims=True) & (early is True)
        final_scores = final_scores + full.astype(np.float32) * NEG_INF
        final_scores = final_scores + (~improvable).astype(np.float32) * NEG_INF
        final_scores = final_scores + (~just_finished).astype(np.float32) * NEG_INF
        merged_seqs = np.concatenate([finished_seqs, candidates], axis=1)
        merged_scores = np.concatenate([finished_scores, final_scores], axis=1)
        merged_finished = np.concatenate([is_finished, just_finished], axis=1)
        best = _topk(merged_scores, k)
        finished_seqs = np.take_along_axis(merged_seqs, best[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        is_finished = np.take_along_axis(merged_finished, best, axis=1)

        session.reorder((source_beam + np.arange(batch)[:, None] * k).reshape(-1))
        cur_len += 1

        length = (max_length - prompt_len) if (early == "never" and lp > 0) else (cur_len - prompt_len)
        best_running = running_scores[:, :1] / np.float32(length ** lp)
        worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), NEG_INF)
        improvable = improvable & np.any(best_running > worst_finished, axis=-1, keepdims=True)
        still_open = not (is_finished.all() and early is True)
        if not (improvable.any() and still_open and not hits.all()):
            break
    return [generated_tokens(finished_seqs[b, 0], prompt_len, eos_token_id) for b in range(batch)]


def search(session: DecodeSession, prompt: np.ndarray, settings: SearchSettings,
           eos_token_id: int, pad_token_id: int) -> list[list[int]]:
    """Greedy when ``num_beams`` is 1, else beam search (the session then holds ``num_beams`` rows per prompt)."""
    if settings.num_beams == 1:
        return greedy_search(session, prompt, settings, eos_token_id, pad_token_id)
    return beam_search(session, prompt, settings, eos_token_id, pad_token_id)
