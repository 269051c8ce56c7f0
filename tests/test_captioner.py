"""Neural captioning: export, exact decoding against ``generate()``, dense captions, served by a real Triton.

The checkpoints are tiny random-weight BLIP and GIT models built from their configs (no download);
tokens must equal ``model.generate()`` exactly, for greedy and beam search, cached and uncached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from export.captioner_onnx import build_captioner, load_captioner
from mmw.captioner import OnnxCaptioner
from mmw.config import Config, build
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.errors import CaptionerError, ConfigError
from mmw.processing.caption_decoding import SearchSettings, generated_tokens
from mmw.processing.caption_images import (
    PixelSettings,
    crop_box,
    dense_crop_indices,
    frames_of,
    pad_frames,
    pixel_values,
)
from tests.conftest import NEURAL_CAPTION_SETTINGS, ROOT, jpeg, neural_serving, photo

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
CAPTION_OUTPUTS = ("CAPTION", "CAPTION_SOURCE", "CAPTION_TOKENS", "DENSE_CAPTIONS", "DENSE_BOX_INDEX", "DENSE_TOKENS",
                   "BOXES", "SCORES", "NUM_DETECTIONS")


def reference_tokens(model: torch.nn.Module, pixels: np.ndarray, eos: int, **generate: object) -> list[list[int]]:
    """What transformers' generate() produces, cut the way the served tokens are (after the prompt, up to EOS)."""
    with torch.no_grad():
        out = model.generate(pixel_values=torch.from_numpy(pixels), **generate)
    return [generated_tokens(row.numpy(), 1, eos) for row in out]


def photo_pixels(settings: PixelSettings, names: tuple[str, ...] = PHOTOS) -> np.ndarray:
    return pixel_values([photo(n) for n in names], settings)


@pytest.fixture(scope="module")
def models(tiny_captioners: dict[str, Path]) -> dict[str, torch.nn.Module]:
    return {arch: load_captioner(str(path))[0] for arch, path in tiny_captioners.items()}


@pytest.mark.parametrize("arch", ["blip", "git"])
@pytest.mark.parametrize(("num_beams", "max_new_tokens"), [(1, 12), (1, 3), (2, 10), (3, 12), (4, 6)])
def test_onnx_tokens_equal_generate(arch: str, num_beams: int, max_new_tokens: int, models: dict,
                                    exported_captioners: dict[str, Path]) -> None:
    captioner = OnnxCaptioner(exported_captioners[arch])
    pixels = photo_pixels(captioner.meta.pixels)
    got = captioner.generate(pixels, captioner.settings(num_beams, max_new_tokens))
    want = reference_tokens(models[arch], pixels, captioner.meta.eos_token_id, num_beams=num_beams,
                            max_new_tokens=max_new_tokens, do_sample=False)
    assert got == want
    assert all(len(t) <= max_new_tokens for t in got)
    assert len({tuple(t) for t in got}) > 1, "different images should give different captions"


@pytest.mark.parametrize("arch", ["blip", "git"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_kv_cache_and_no_cache_decoders_give_identical_tokens(arch: str, num_beams: int,
                                                              exported_captioners: dict[str, Path]) -> None:
    captioner = OnnxCaptioner(exported_captioners[arch])
    pixels = photo_pixels(captioner.meta.pixels)
    settings = captioner.settings(num_beams, 12)
    assert captioner.generate(pixels, settings) == captioner.generate(pixels, settings, use_cache=False)


def test_generation_stops_at_end_of_sequence(models: dict, exported_captioners: dict[str, Path]) -> None:
    """Some captions end before max_new_tokens with the end token; the rest run to the limit."""
    captioner = OnnxCaptioner(exported_captioners["blip"])
    rng = np.random.default_rng(0)
    pixels = pixel_values([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(24)],
                          captioner.meta.pixels)
    got = captioner.generate(pixels, captioner.settings(1, 12))
    eos = captioner.meta.eos_token_id
    assert got == reference_tokens(models["blip"], pixels, eos, max_new_tokens=12)
    ended = [t for t in got if t and t[-1] == eos]
    assert ended and len(ended) < len(got)


def test_export_lines_stamp_and_rerun_is_up_to_date(tiny_captioners: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "caption"
    lines = build_captioner(str(tiny_captioners["git"]), out, ROOT)
    assert [line.split(":")[0] for line in lines] == ["captioner caption_encoder", "captioner caption_decoder",
                                                     "captioner caption_decoder_no_cache"]
    assert all("exported and validated" in line for line in lines)
    meta = json.loads((out / "captioner.json").read_text())
    assert (meta["architecture"], meta["name"], meta["prompt_ids"], meta["eos_token_id"]) == ("git", "tiny-git", [2], 3)
    stamp = json.loads((out / "captioner.onnx.json").read_text())
    assert max(stamp["max_abs_diff"].values()) < 1e-3
    mtime = (out / "decoder.onnx").stat().st_mtime_ns
    again = build_captioner(str(tiny_captioners["git"]), out, ROOT)
    assert again == [f"captioner {tiny_captioners['git']}: up to date"]
    assert (out / "decoder.onnx").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(("arch", "processor"), [("blip", "BlipImageProcessorPil"), ("git", "CLIPImageProcessorPil")])
def test_pixel_values_equal_the_checkpoint_image_processor(arch: str, processor: str,
                                                           tiny_captioners: dict[str, Path]) -> None:
    """Bit for bit what transformers' processor (as from_pretrained loads it) computes, on photos and crops."""
    from transformers import AutoImageProcessor

    folder = tiny_captioners[arch]
    reference = AutoImageProcessor.from_pretrained(folder)
    assert type(reference).__name__ == processor
    settings = PixelSettings.from_processor_config(json.loads((folder / "preprocessor_config.json").read_text()))
    for name in (*PHOTOS, "motorcycle_left"):  # square, landscape and portrait photos
        image = photo(name)
        for part in (image, image[37:151, 11:302], image[:60, :5]):  # the whole photo, a crop, a sliver
            want = reference(images=part, return_tensors="np")["pixel_values"]
            np.testing.assert_array_equal(pixel_values([part], settings), want)


@pytest.mark.parametrize(("scores", "boxes", "count", "top_k", "expected"), [
    ([0.9, 0.8, 0.7], [[0, 0, 50, 50]] * 3, 3, 2, [0, 1]),          # the best two
    ([0.6, 0.95, 0.7], [[0, 0, 50, 50]] * 3, 3, 3, [1, 2, 0]),      # by score
    ([0.4, 0.3], [[0, 0, 50, 50]] * 2, 2, 3, []),                   # below dense_min_score
    ([0.9, 0.9], [[0, 0, 10, 50], [0, 0, 50, 50]], 2, 3, [1]),      # too narrow
    ([0.9, 0.9], [[0, 0, 50, 50]] * 2, 1, 3, [0]),                  # only NUM_DETECTIONS count
    ([0.9], [[0, 0, 50, 50]], 1, 0, []),                            # dense captions off
    ([], np.zeros((0, 4)), 0, 3, []),                               # no detections
])
def test_dense_crop_indices(scores: list, boxes: list, count: int, top_k: int, expected: list) -> None:
    got = dense_crop_indices(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), count, top_k, 0.5, 16)
    assert got.tolist() == expected


@pytest.mark.parametrize(("box", "rows", "columns"), [
    ([100, 50, 200, 100], (50, 100), (100, 200)),      # whole pixels: exactly the box
    ([10.4, 20.6, 30.2, 40.5], (20, 41), (10, 31)),    # every pixel the box touches
    ([-5, -5, 1000, 1000], (0, 100), (0, 200)),        # clipped to the image
    ([5, 5, 5, 5], (5, 6), (5, 6)),                    # empty box: one pixel
    ([250, 150, 260, 160], (99, 100), (199, 200)),     # outside: the nearest pixel
])
def test_crop_box_cuts_the_original_image(box: list, rows: tuple, columns: tuple) -> None:
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    np.testing.assert_array_equal(crop_box(image, np.array(box, np.float32)),
                                  image[rows[0]:rows[1], columns[0]:columns[1]])


def test_padded_frames_round_trip_at_their_own_sizes() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((30, 40, 3), (50, 20, 3), (1, 1, 3))]
    padded = pad_frames(frames)
    assert padded.shape == (3, 50, 40, 3)
    for got, want in zip(frames_of(padded, np.array([f.shape[:2] for f in frames])), frames, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("parameters_json", "message"), [
    ("{not json", r"request parameters: expected a JSON object of num_beams, max_new_tokens, dense_top_k, got"),
    ("[1, 2]", r"request parameters: expected a JSON object .*got \[1, 2\]"),
    ('{"num_beam": 2}', r"request parameter 'num_beam': unknown; allowed: num_beams, max_new_tokens, dense_top_k"),
    ('{"num_beams": 2.5}', r"request parameter num_beams: expected an integer, got 2\.5"),
    ('{"dense_top_k": -1}', r"dense_top_k: expected 0\.\.32, got -1"),
])
def test_request_parameters_fail_clearly(parameters_json: str, message: str) -> None:
    from mmw.captioner import DenseSettings
    from mmw.captioning_step import request_overrides

    with pytest.raises(CaptionerError, match=message):
        request_overrides(parameters_json, (SearchSettings(), DenseSettings()))


def test_request_parameters_override_the_defaults() -> None:
    from mmw.captioner import DenseSettings
    from mmw.captioning_step import request_overrides

    search, dense = request_overrides('{"num_beams": 3, "dense_top_k": 0}', (SearchSettings(), DenseSettings()))
    assert (search.num_beams, search.max_new_tokens, dense.top_k) == (3, SearchSettings().max_new_tokens, 0)
    assert request_overrides("", (SearchSettings(), DenseSettings())) == (SearchSettings(), DenseSettings())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_beams", 0, "models.caption.num_beams: expected 1..16, got 0"),
    ("max_new_tokens", 1000, "models.caption.max_new_tokens: expected 1..512, got 1000"),
    ("dense_top_k", -1, "models.caption.dense_top_k: expected 0..32"),
    ("dense_min_score", 1.5, "models.caption.dense_min_score"),
])
def test_caption_config_errors_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build(Config, {"models": {"caption": {field: value}}})


def test_search_settings_reject_out_of_range() -> None:
    with pytest.raises(CaptionerError, match=r"num_beams: expected 1\.\.16, got 17"):
        SearchSettings(num_beams=17)


@pytest.mark.integration  # a subprocess or transformers' import
def test_missing_checkpoint_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptionerError, match=r"models\.caption\.model = .*no checkpoint there"):
        load_captioner(str(tmp_path / "nothing-here"))


@pytest.mark.integration  # a subprocess or transformers' import
def test_unreachable_hub_id_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    """`make engines` with a hub id and no network: one line on stderr naming the setting, exit 1."""
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  caption:\n    model: Salesforce/blip-image-captioning-base\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-m", "export", "--config", str(config), "engines"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert err[0].startswith("export: error: models.caption.model = 'Salesforce/blip-image-captioning-base': "
                             "cannot be loaded")
    assert "docs/captions.md" in err[0]


def test_template_mode_says_how_to_switch() -> None:
    from export.__main__ import build_caption_model

    config = build(Config, {})
    (line,) = build_caption_model(config, ROOT / "model_repository", force=False)
    assert "template" in line and "models.caption.model" in line and "docs/captions.md" in line


# --- served by Triton -------------------------------------------------------------------------------------------

def infer(config: Config, images: list[bytes], model: str = ENSEMBLE_NAME, **parameters: int) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{config.server.grpc_port}")
    data = grpcclient.InferInput("IMAGE", [len(images), 1], "BYTES")
    data.set_data_from_numpy(np.array(images, dtype=object).reshape(-1, 1))
    result = client.infer(model, [data], outputs=[grpcclient.InferRequestedOutput(n) for n in CAPTION_OUTPUTS],
                          parameters=parameters or None)
    return {n: result.as_numpy(n) for n in CAPTION_OUTPUTS}


def served_tokens(row: np.ndarray) -> list[int]:
    return [int(t) for t in row if t >= 0]


def png(rgb: np.ndarray) -> bytes:
    """Lossless bytes of ``rgb``: the server decodes exactly the array the reference is given."""
    import cv2

    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def box_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The reference crop: every pixel the box touches (PIL's crop of floor/ceil corners, clipped to the image)."""
    from PIL import Image

    h, w = image.shape[:2]
    x1, y1 = max(0, min(int(np.floor(box[0])), w - 1)), max(0, min(int(np.floor(box[1])), h - 1))
    x2, y2 = min(w, max(int(np.ceil(box[2])), x1 + 1)), min(h, max(int(np.ceil(box[3])), y1 + 1))
    return np.asarray(Image.fromarray(image).crop((x1, y1, x2, y2)))


class TransformersCaptioner:
    """What a transformers user computes: the checkpoint's processor on the image, ``generate()``, decode."""

    def __init__(self, checkpoint: Path) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        self.model = load_captioner(str(checkpoint))[0]
        self.processor = AutoImageProcessor.from_pretrained(checkpoint)
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.eos = self.model.generation_config.eos_token_id

    def __call__(self, images: list[np.ndarray], num_beams: int, max_new_tokens: int) -> tuple[list, list[str]]:
        """Token ids (after the prompt, up to EOS) and caption texts of ``images`` (any sizes)."""
        if not images:
            return [], []
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out = self.model.generate(pixel_values=pixels, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                      do_sample=False)
        return ([generated_tokens(row.numpy(), 1, self.eos) for row in out],
                [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in out])


@pytest.fixture(scope="module", params=["blip", "git"])
def captioning_server(request: pytest.FixtureRequest, tiny_captioners: dict[str, Path],
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, TransformersCaptioner]]:
    """Triton serving the tiny BLIP (the session's server) or GIT (this module's), and its transformers reference."""
    reference = TransformersCaptioner(tiny_captioners[request.param])
    if request.param == "blip":
        yield request.getfixturevalue("neural_triton"), reference
        return
    request.getfixturevalue("engines")
    with neural_serving(tmp_path_factory.mktemp("neural-git"), tiny_captioners["git"]) as config:
        yield config, reference


def fidelity_images() -> list[np.ndarray]:
    """Real photos (square, landscape, portrait), one as an HD frame, and a flat grey image (no detection)."""
    import cv2

    hd = cv2.resize(photo("coffee"), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    return [photo(n) for n in (*PHOTOS, "motorcycle_left")] + [hd, np.full((120, 160, 3), 128, np.uint8)]


@pytest.mark.serving
@pytest.mark.parametrize(("num_beams", "max_new_tokens", "top_k"), [(None, None, None), (3, 6, 2), (2, 8, 0)])
def test_served_captions_equal_transformers_on_the_original_images(
        captioning_server: tuple[Config, TransformersCaptioner], num_beams: int | None, max_new_tokens: int | None,
        top_k: int | None) -> None:
    """Frame captions: transformers on each whole original image; dense captions: on the crop of the original
    image under each captioned box. Tokens and texts equal, greedy and beam, for BLIP and GIT."""
    config, reference = captioning_server
    images = fidelity_images()
    parameters = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens),
                                    ("dense_top_k", top_k)) if v is not None}
    out = infer(config, [png(i) for i in images], **parameters)
    beams = num_beams or NEURAL_CAPTION_SETTINGS["num_beams"]
    length = max_new_tokens or NEURAL_CAPTION_SETTINGS["max_new_tokens"]
    k = NEURAL_CAPTION_SETTINGS["dense_top_k"] if top_k is None else top_k
    tokens, texts = reference(images, beams, length)
    assert [served_tokens(r) for r in out["CAPTION_TOKENS"]] == tokens
    assert [c.decode() for c in out["CAPTION"][:, 0]] == texts
    assert len(set(texts)) > 1, "different images should give different captions"
    counts = []
    for i, image in enumerate(images):
        picked = dense_crop_indices(out["BOXES"][i], out["SCORES"][i], int(out["NUM_DETECTIONS"][i, 0]), k,
                                    NEURAL_CAPTION_SETTINGS["dense_min_score"], 16)
        index = out["DENSE_BOX_INDEX"][i]
        assert index[index >= 0].tolist() == picked.tolist()
        crop_tokens, crop_texts = reference([box_crop(image, out["BOXES"][i, j]) for j in picked], beams, length)
        assert [served_tokens(out["DENSE_TOKENS"][i, s]) for s in range(len(picked))] == crop_tokens
        assert [c.decode() for c in out["DENSE_CAPTIONS"][i, :len(picked)]] == crop_texts
        assert all(c == b"" for c in out["DENSE_CAPTIONS"][i, len(picked):])
        counts.append(len(picked))
    if k:
        assert counts[-1] == 0 and sum(counts) >= 4 and max(counts) >= 2
    else:
        assert counts == [0] * len(images)


@pytest.mark.serving
def test_served_captions_are_the_tokenizer_text(neural_triton: Config, tiny_captioners: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_captioners["blip"])
    out = infer(neural_triton, [jpeg(photo("coffee"))])
    assert out["CAPTION"][0, 0].decode() == tokenizer.decode(served_tokens(out["CAPTION_TOKENS"][0]),
                                                              skip_special_tokens=True).strip()
    for slot, index in enumerate(out["DENSE_BOX_INDEX"][0]):
        if index >= 0:
            want = tokenizer.decode(served_tokens(out["DENSE_TOKENS"][0, slot]), skip_special_tokens=True).strip()
            assert out["DENSE_CAPTIONS"][0, slot].decode() == want


@pytest.mark.serving
def test_raw_frame_ensemble_captions_like_the_encoded_one(neural_triton: Config) -> None:
    import cv2

    rgb = photo("chelsea")
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    encoded = infer(neural_triton, [png])
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{neural_triton.server.grpc_port}")
    frame = grpcclient.InferInput("FRAME", [1, *rgb.shape], "UINT8")
    frame.set_data_from_numpy(rgb[None])
    raw = client.infer(RAW_ENSEMBLE_NAME, [frame])
    np.testing.assert_array_equal(raw.as_numpy("CAPTION_TOKENS"), encoded["CAPTION_TOKENS"])
    np.testing.assert_array_equal(raw.as_numpy("DENSE_TOKENS"), encoded["DENSE_TOKENS"])


@pytest.mark.serving
def test_concurrent_requests_with_different_settings_are_batched_apart(neural_triton: Config) -> None:
    """Requests that Triton batches together keep their own num_beams/max_new_tokens."""
    from concurrent.futures import ThreadPoolExecutor

    images = [jpeg(photo(n)) for n in PHOTOS]
    alone = {length: infer(neural_triton, images, max_new_tokens=length)["CAPTION_TOKENS"] for length in (2, 5)}
    with ThreadPoolExecutor(6) as pool:
        futures = [(length, pool.submit(infer, neural_triton, images, max_new_tokens=length))
                   for length in (2, 5, 2, 5, 2, 5)]
        for length, future in futures:
            got = future.result()["CAPTION_TOKENS"]
            assert [served_tokens(r) for r in got] == [served_tokens(r) for r in alone[length]]


@pytest.mark.serving
@pytest.mark.parametrize(("parameters", "message"), [
    ({"num_beams": 0}, "num_beams: expected 1..16, got 0"),
    ({"max_new_tokens": 9999}, "max_new_tokens: expected 1..512, got 9999"),
    ({"dense_top_k": 99}, "dense_top_k: expected 0..32, got 99"),
    ({"num_beam": 3}, "request parameter 'num_beam': unknown; allowed: num_beams, max_new_tokens, dense_top_k"),
    ({"num_beams": "3"}, "request parameter num_beams: expected an integer, got '3'"),
    ({"max_new_tokens": True}, "request parameter max_new_tokens: expected an integer, got True"),
])
def test_bad_request_parameter_fails_that_request_clearly(neural_triton: Config, parameters: dict,
                                                          message: str) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=message):
        infer(neural_triton, [jpeg(photo("chelsea"))], **parameters)
    assert infer(neural_triton, [jpeg(photo("chelsea"))])["CAPTION"][0, 0]  # the server still serves
