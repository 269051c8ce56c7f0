"""Settings of the served captioner: config.pbtxt parameters and per-request overrides.

A request may carry Triton request parameters ``num_beams``, ``max_new_tokens`` and
``dense_top_k`` (gRPC/HTTP ``parameters``); anything else, or a value out of range, fails that
request alone with a message naming the parameter and the allowed values.
"""

from __future__ import annotations

import dataclasses
import json

from mmw.captioner import CaptionerMeta, DenseSettings
from mmw.contract import CAPTION_PARAMETERS
from mmw.errors import CaptionerError
from mmw.processing.caption_decoding import SearchSettings


def step_settings(parameters: dict[str, str], meta: CaptionerMeta) -> tuple[SearchSettings, DenseSettings]:
    """The defaults: config.pbtxt parameters (from config.yaml) and the checkpoint's length penalty."""
    return (SearchSettings(max_new_tokens=int(parameters["max_new_tokens"]), num_beams=int(parameters["num_beams"]),
                           length_penalty=meta.length_penalty, early_stopping=meta.early_stopping),
            DenseSettings(top_k=int(parameters["dense_top_k"]), min_score=float(parameters["dense_min_score"]),
                          min_size_px=float(parameters["dense_min_size_px"])))


def request_overrides(parameters_json: str, defaults: tuple[SearchSettings, DenseSettings]
                      ) -> tuple[SearchSettings, DenseSettings]:
    """Apply a request's parameters (JSON text from ``request.parameters()``) to the defaults."""
    search, dense = defaults
    allowed = ", ".join(CAPTION_PARAMETERS)
    try:
        ours = json.loads(parameters_json or "{}")
    except ValueError:
        raise CaptionerError(f"request parameters: expected a JSON object of {allowed}, "
                             f"got {parameters_json[:80]!r}") from None
    if not isinstance(ours, dict):
        raise CaptionerError(f"request parameters: expected a JSON object of {allowed}, got {ours!r}")
    for key, value in ours.items():
        if key not in CAPTION_PARAMETERS:
            raise CaptionerError(f"request parameter {key!r}: unknown; allowed: {allowed}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise CaptionerError(f"request parameter {key}: expected an integer, got {value!r}")
    low, high = CAPTION_PARAMETERS["dense_top_k"]  # num_beams and max_new_tokens: SearchSettings checks them
    if "dense_top_k" in ours and not low <= ours["dense_top_k"] <= high:
        raise CaptionerError(f"request parameter dense_top_k: expected {low}..{high}, got {ours['dense_top_k']}")
    search = dataclasses.replace(
        search, num_beams=ours.get("num_beams", search.num_beams),
        max_new_tokens=ours.get("max_new_tokens", search.max_new_tokens))
    return search, dataclasses.replace(dense, top_k=ours.get("dense_top_k", dense.top_k))
