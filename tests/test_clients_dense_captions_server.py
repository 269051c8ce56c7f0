"""Dense captions and caption parameters end to end: SceneClient and the CLI against real tritonservers.

``triton`` serves template captions (every dense output present and empty; parameters accepted and
ignored); ``neural_triton`` serves a tiny random-weight BLIP with dense captions on (tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from clients.results import TEMPLATE_NOTE, ImageResult, ImageSetResults
from clients.transport import CaptionOptions, SceneClient
from mmw.config import Config
from mmw.contract import CAPTION_OUTPUTS, ENSEMBLE_NAME
from tests.conftest import ROOT, jpeg, photo

pytestmark = pytest.mark.serving
PHOTOS = ("astronaut", "chelsea", "coffee")
NEURAL_SOURCE = "tiny-blip"  # caption_source of the neural_triton fixture: its checkpoint folder's name


def _images() -> list[bytes]:
    return [jpeg(photo(name)) for name in PHOTOS]


def _photo_files(folder: Path) -> list[Path]:
    """The PHOTOS as JPEG files in ``folder``."""
    paths = [folder / f"{name}.jpg" for name in PHOTOS]
    for name, path in zip(PHOTOS, paths, strict=True):
        path.write_bytes(jpeg(photo(name)))
    return paths


def _url(config: Config, protocol: str) -> str:
    return f"127.0.0.1:{config.server.grpc_port if protocol == 'grpc' else config.server.http_port}"


def _raw(config: Config, protocol: str, images: list[bytes], parameters: dict[str, Any] | None = None
         ) -> dict[str, np.ndarray]:
    """The dense outputs of one request sent with plain tritonclient."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(_url(config, protocol))
    try:
        data = np.array([[b] for b in images], dtype=object)
        inp = module.InferInput("IMAGE", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        result = client.infer(ENSEMBLE_NAME, [inp], parameters=parameters)
        return {name: result.as_numpy(name) for name in (t.name for t in CAPTION_OUTPUTS[1:])}
    finally:
        client.close()


def _expected_dense(result: ImageResult, top_k: int, min_score: float = 0.5, min_size: float = 16) -> list[int]:
    """Box indices the server should caption: the top_k best scoring >= min_score with both sides >= min_size."""
    ok = [j for j, d in enumerate(result.detections)
          if d.score >= min_score and d.box[2] - d.box[0] >= min_size and d.box[3] - d.box[1] >= min_size]
    return sorted(ok, key=lambda j: -result.detections[j].score)[:top_k]


# --- template captions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_template_server_returns_empty_dense_outputs(triton: Config, protocol: str) -> None:
    raw = _raw(triton, protocol, _images())
    assert raw["CAPTION_TOKENS"].shape == (3, 1) and (raw["CAPTION_TOKENS"] == -1).all()
    assert raw["DENSE_CAPTIONS"].shape == (3, 1) and list(raw["DENSE_CAPTIONS"].reshape(-1)) == [b""] * 3
    assert raw["DENSE_BOX_INDEX"].shape == (3, 1) and (raw["DENSE_BOX_INDEX"] == -1).all()
    assert raw["DENSE_TOKENS"].shape == (3, 1, 1) and (raw["DENSE_TOKENS"] == -1).all()
    with SceneClient(_url(triton, protocol), protocol=protocol) as client:  # type: ignore[arg-type]
        assert {t.name for t in CAPTION_OUTPUTS} <= set(client.output_names())
        results = client.infer(_images())
    assert [r.detections[0].class_name for r in results] == ["person", "cat", "cup"]
    for r in results:
        assert (r.caption_source, r.dense_captions, r.caption_tokens) == ("template", (), ())
        assert r.caption and not r.neural


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_template_server_accepts_and_ignores_caption_parameters(triton: Config, protocol: str) -> None:
    with SceneClient(_url(triton, protocol), protocol=protocol) as client:  # type: ignore[arg-type]
        plain = client.infer(_images())
        with_options = client.infer(_images(), caption=CaptionOptions(num_beams=2, max_new_tokens=3, dense_top_k=1))
    assert with_options == plain


def test_cli_image_against_the_template_server_says_captions_are_templates(triton: Config, tmp_path: Path) -> None:
    paths = _photo_files(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "clients", "image", *map(str, paths), "--out", str(out),
                           "--url", _url(triton, "grpc"), "--num-beams", "2", "--dense-top-k", "1"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert f"captions: {TEMPLATE_NOTE}\n" in done.stdout
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == "1.2"
    assert data["captions"]["source"] == "template" and data["captions"]["note"] == TEMPLATE_NOTE
    assert "docs/captions.md" in data["captions"]["note"]
    assert all(e["dense_captions"] == [] and "caption_tokens" not in e for e in data["images"])
    assert ImageSetResults.read(out / "results.json").captions.source == "template"


# --- a neural captioner ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def neural_results(neural_triton: Config) -> list[ImageResult]:
    with SceneClient(_url(neural_triton, "grpc")) as client:
        return client.infer(_images())


def test_neural_dense_captions_caption_the_best_detections(neural_results: list[ImageResult]) -> None:
    from tests.conftest import NEURAL_CAPTION_SETTINGS as settings

    assert any(r.dense_captions for r in neural_results), "no photo got a dense caption"
    for r in neural_results:
        assert r.caption_source == NEURAL_SOURCE and r.neural
        assert r.caption and 0 < len(r.caption_tokens) <= settings["max_new_tokens"]  # new tokens only
        indices = [c.box_index for c in r.dense_captions]
        assert indices == _expected_dense(r, settings["dense_top_k"], settings["dense_min_score"]), (
            [(d.class_name, round(d.score, 3)) for d in r.detections], indices)
        for c in r.dense_captions:
            det = r.detections[c.box_index]
            assert det.score >= 0.5 and (c.class_name, c.score, c.box) == (det.class_name, det.score, det.box)
            assert c.tokens and isinstance(c.caption, str)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_neural_raw_outputs_are_padded_consistently(neural_triton: Config, protocol: str) -> None:
    raw = _raw(neural_triton, protocol, _images())
    k = raw["DENSE_BOX_INDEX"].shape[1]
    assert raw["DENSE_CAPTIONS"].shape == (3, k) and raw["DENSE_TOKENS"].shape[:2] == (3, k)
    assert raw["CAPTION_TOKENS"].shape[0] == 3 and (raw["CAPTION_TOKENS"][:, 0] >= 0).all()
    pads = raw["DENSE_BOX_INDEX"] == -1
    assert all(raw["DENSE_CAPTIONS"][pads] == b"") and (raw["DENSE_TOKENS"][pads] == -1).all()
    assert list(raw["CAPTION_SOURCE"].reshape(-1)) == [NEURAL_SOURCE.encode()] * 3


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_max_new_tokens_limits_the_tokens(neural_triton: Config, protocol: str,
                                         neural_results: list[ImageResult]) -> None:
    assert any(len(r.caption_tokens) > 3 for r in neural_results)  # the served default is longer
    with SceneClient(_url(neural_triton, protocol), protocol=protocol,  # type: ignore[arg-type]
                     caption=CaptionOptions(max_new_tokens=3)) as client:
        results = client.infer(_images())
    for r in results:
        assert 0 < len(r.caption_tokens) <= 3
        assert all(0 < len(c.tokens) <= 3 for c in r.dense_captions)


def test_num_beams_and_dense_top_k_change_the_answer(neural_triton: Config,
                                                     neural_results: list[ImageResult]) -> None:
    url = _url(neural_triton, "grpc")
    with SceneClient(url, caption=CaptionOptions(num_beams=2)) as client:
        beams = client.infer(_images())
        again = client.infer(_images())
        none = client.infer(_images(), caption=CaptionOptions(dense_top_k=0))
        one = client.infer(_images(), caption=CaptionOptions(num_beams=1, dense_top_k=1))
    assert beams == again  # beam search is deterministic
    greedy = [(r.caption_tokens, [c.tokens for c in r.dense_captions]) for r in neural_results]
    assert [(r.caption_tokens, [c.tokens for c in r.dense_captions]) for r in beams] != greedy, \
        "num_beams=2 gave exactly the greedy tokens for every caption"
    assert [r.detections for r in beams] == [r.detections for r in neural_results]
    assert all(r.dense_captions == () for r in none)
    assert [[c.box_index for c in r.dense_captions] for r in one] == [
        [c.box_index for c in r.dense_captions][:1] for r in neural_results]
    assert [r.caption_tokens for r in one] == [r.caption_tokens for r in neural_results]  # greedy again


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(
    ("parameters", "name"),
    [({"num_beams": 0}, "num_beams"), ({"dense_top_k": 99}, "dense_top_k"), ({"max_new_tokens": "many"},
                                                                             "max_new_tokens")],
)
def test_a_bad_parameter_fails_that_request_alone(neural_triton: Config, protocol: str,
                                                  parameters: dict[str, Any], name: str) -> None:
    with pytest.raises(InferenceServerException) as info:
        _raw(neural_triton, protocol, _images()[:1], parameters)
    message = info.value.message() or str(info.value)
    assert name in message, message
    assert "Traceback" not in message
    raw = _raw(neural_triton, protocol, _images()[:1], {"num_beams": 1})  # the server goes on
    assert raw["CAPTION_SOURCE"][0, 0] == NEURAL_SOURCE.encode()


def test_scene_client_refuses_a_bad_option_before_sending(neural_triton: Config) -> None:
    from mmw.errors import ConfigError

    with pytest.raises(ConfigError, match=r"num_beams: expected an integer in 1\.\.16, got 0"), \
            SceneClient(_url(neural_triton, "grpc")) as client:
        client.infer(_images(), caption=CaptionOptions(num_beams=0))


def test_cli_image_with_a_neural_captioner(neural_triton: Config, tmp_path: Path) -> None:
    paths = _photo_files(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "clients", "image", *map(str, paths), "--out", str(out),
                           "--url", _url(neural_triton, "http"), "--protocol", "http", "--max-new-tokens", "3",
                           "--dense-top-k", "1"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("captions: ")]
    assert len(notes) == 1 and notes[0].startswith(f"captions: neural captions by {NEURAL_SOURCE} ("), notes
    results = ImageSetResults.read(out / "results.json")
    assert results.captions.source == NEURAL_SOURCE
    images = [e.image for e in results.images]
    assert any(r.dense_captions for r in images)
    assert all(len(r.dense_captions) <= 1 and 0 < len(r.caption_tokens) <= 3 for r in images)
    assert all(len(c.tokens) <= 3 for r in images for c in r.dense_captions)
    assert all((out / e.annotated).is_file() for e in results.images if e.annotated)
