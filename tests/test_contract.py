"""The ensemble's contract is declared once (mmw/contract.py) and both sides keep to it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from clients.transport.decoding import parse_outputs
from mmw import contract
from mmw.config import Config, build
from mmw.specs import repository_specs
from tests.conftest import ROOT, project_sources

CONFIGS = {
    "template": {},
    "neural": {"models": {"caption": {"model": "some/checkpoint"}}},
    "top-3 labels": {"models": {"labeller": {"top_k": 3}}},
}


def _ensembles(overrides: dict, variant: str):
    config = build(Config, overrides)
    specs = {m.name: m for m in repository_specs(config, variant=variant)}
    return config, [specs[contract.ENSEMBLE_NAME], specs[contract.RAW_ENSEMBLE_NAME]]


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_generated_ensembles_have_the_contract_interface(overrides: dict, variant: str) -> None:
    config, (encoded, raw) = _ensembles(overrides, variant)
    assert encoded.inputs == (contract.IMAGE,) and raw.inputs == (contract.FRAME,)
    for ensemble in (encoded, raw):
        assert ensemble.outputs == contract.ensemble_outputs(config.models.labeller.top_k)


class RecordingOutputs(Mapping):
    """The ensemble's outputs as a Mapping that records which ones the client reads."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays, self.read = arrays, set()

    def __getitem__(self, name: str) -> np.ndarray:
        self.read.add(name)
        return self.arrays[name]

    def get(self, name: str, default=None):
        self.read.add(name)
        return self.arrays.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)


def _arrays_as_declared(outputs: tuple[contract.TensorSpec, ...], n: int = 2) -> dict[str, np.ndarray]:
    """A response with every declared output in its declared dtype and shape (one detection per image)."""
    arrays = {}
    for t in outputs:
        shape = (n, *(1 if d == -1 else d for d in t.dims))
        arrays[t.name] = np.full(shape, b"x", dtype=object) if t.dtype == "bytes" else np.zeros(shape, t.numpy_dtype)
    arrays["NUM_DETECTIONS"][:] = 1
    arrays["DENSE_BOX_INDEX"][:] = 0
    arrays["ERROR"][:] = b""
    return arrays


def test_the_client_decodes_exactly_what_the_ensemble_declares() -> None:
    _, (encoded, _) = _ensembles(CONFIGS["neural"], "cpu")
    declared = {t.name for t in encoded.outputs}
    client = set(contract.CLIENT_REQUIRED_OUTPUTS) | set(contract.CLIENT_OPTIONAL_OUTPUTS)
    assert client <= declared
    assert declared - client == {"LABEL_IDS"}  # the label names are decoded instead
    response = RecordingOutputs(_arrays_as_declared(encoded.outputs))
    results = parse_outputs(response)
    assert response.read == client
    assert len(results) == 2 and results[0].detections[0].class_name == "x"
    assert results[0].dense_captions[0].caption == "x" and results[0].caption_tokens == (0,)


def test_the_client_fails_clearly_without_a_required_output() -> None:
    from mmw.errors import InferenceError

    arrays = _arrays_as_declared(contract.ensemble_outputs(5))
    del arrays["LABEL_SCORES"]
    with pytest.raises(InferenceError, match="expected outputs LABEL_SCORES"):
        parse_outputs(arrays)


def test_the_ensemble_name_is_written_once_in_code() -> None:
    """Only mmw/contract.py spells it; everything else imports ENSEMBLE_NAME / RAW_ENSEMBLE_NAME."""
    spelled = [str(p.relative_to(ROOT)) for p in project_sources()
               if not p.is_relative_to(ROOT / "tests") and '"scene_understanding' in p.read_text(encoding="utf-8")]
    assert spelled == ["mmw/contract.py"]
