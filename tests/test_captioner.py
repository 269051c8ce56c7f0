"""Neural captioning: export, exact decoding against ``generate()``, dense captions, served by a real Triton.

The checkpoints are tiny random-weight BLIP and GIT models built from their configs (no download);
tokens must equal ``model.generate()`` exactly, for greedy and beam search, cached and uncached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from export.captioner_onnx import build_captioner, load_captioner
from mmw.captioner import OnnxCaptioner
from mmw.config import Config, build
from mmw.errors import CaptionerError, ConfigError
from mmw.processing.caption_decoding import SearchSettings, generated_tokens
from mmw.processing.caption_images import (
    PixelSettings,
    caption_canvas,
    crop_from_canvas,
    dense_crop_indices,
    pixel_values,
)
from mmw.processing.images import decode_image
from mmw.specs import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from tests.conftest import NEURAL_CAPTION_SETTINGS, ROOT, jpeg, photo

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
CAPTION_OUTPUTS = ("CAPTION", "CAPTION_SOURCE", "CAPTION_TOKENS", "DENSE_CAPTIONS", "DENSE_BOX_INDEX", "DENSE_TOKENS",
                   "BOXES", "SCORES", "NUM_DETECTIONS")


def reference_tokens(model: torch.nn.Module, pixels: np.ndarray, eos: int, **generate: object) -> list[list[int]]:
    """What transformers' generate() produces, cut the way the served tokens are (after the prompt, up to EOS)."""
    with torch.no_grad():
        out = model.generate(pixel_values=torch.from_numpy(pixels), **generate)
    return [generated_tokens(row.numpy(), 1, eos) for row in out]


def photo_pixels(settings: PixelSettings, names: tuple[str, ...] = PHOTOS) -> np.ndarray:
    return pixel_values([caption_canvas(photo(n)) for n in names], settings)


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
def test_pixel_values_match_the_checkpoint_image_processor(arch: str, processor: str,
                                                           tiny_captioners: dict[str, Path]) -> None:
    import transformers

    folder = tiny_captioners[arch]
    config = json.loads((folder / "preprocessor_config.json").read_text())
    reference = getattr(transformers, processor)(**{k: v for k, v in config.items() if k != "image_processor_type"})
    settings = PixelSettings.from_processor_config(config)
    for name in ("astronaut", "rocket"):  # square and portrait photos
        image = photo(name)
        want = reference(image, return_tensors="np")["pixel_values"]
        np.testing.assert_allclose(pixel_values([image], settings), want, atol=1e-5)


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


def test_crop_from_canvas_maps_image_pixels_to_the_canvas() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[50:100, 100:200] = 255  # bottom-right quarter white
    canvas = caption_canvas(image, size=64)
    crop = crop_from_canvas(canvas, np.array([100, 50, 200, 100]), np.array([100, 200]))
    assert crop.shape == (32, 32, 3) and crop.min() == 255
    assert crop_from_canvas(canvas, np.array([5, 5, 5, 5]), np.array([100, 200])).shape[:2] == (1, 1)


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


def test_missing_checkpoint_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptionerError, match=r"models\.caption\.model = .*no checkpoint there"):
        load_captioner(str(tmp_path / "nothing-here"))


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
    assert "README.md#neural-captions" in err[0]


def test_template_mode_says_how_to_switch() -> None:
    from export.__main__ import build_caption_model

    config = build(Config, {})
    (line,) = build_caption_model(config, ROOT / "model_repository", force=False)
    assert "template" in line and "models.caption.model" in line and "README.md#neural-captions" in line


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


def expected_from_served(config: Config, model: torch.nn.Module, eos: int, settings: PixelSettings,
                         images: list[bytes], out: dict[str, np.ndarray], num_beams: int, max_new_tokens: int,
                         top_k: int) -> tuple[list, list]:
    """generate() on the frames and on the crops the shared code picks from the served detections."""
    canvases = [caption_canvas(decode_image(b)) for b in images]
    frames = reference_tokens(model, pixel_values(canvases, settings), eos, num_beams=num_beams,
                              max_new_tokens=max_new_tokens)
    dense = []
    for i, canvas in enumerate(canvases):
        image_size = np.array(decode_image(images[i]).shape[:2])
        picked = dense_crop_indices(out["BOXES"][i], out["SCORES"][i], int(out["NUM_DETECTIONS"][i, 0]), top_k,
                                    NEURAL_CAPTION_SETTINGS["dense_min_score"], 16)
        crops = [crop_from_canvas(canvas, out["BOXES"][i, j], image_size) for j in picked]
        tokens = reference_tokens(model, pixel_values(crops, settings), eos, num_beams=num_beams,
                                  max_new_tokens=max_new_tokens) if crops else []
        dense.append((picked.tolist(), tokens))
    return frames, dense


@pytest.mark.server
@pytest.mark.parametrize(("num_beams", "max_new_tokens", "top_k"), [(None, None, None), (3, 6, 2), (2, 8, 0)])
def test_served_tokens_equal_generate_with_dense_crops(neural_triton: Config, models: dict,
                                                        num_beams: int | None, max_new_tokens: int | None,
                                                        top_k: int | None) -> None:
    """astronaut: 1 crop, chelsea: 1, coffee: several, a flat grey image: none (no detection)."""
    grey = jpeg(np.full((120, 160, 3), 128, np.uint8))
    images = [jpeg(photo(n)) for n in ("astronaut", "chelsea", "coffee")] + [grey]
    parameters = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens),
                                    ("dense_top_k", top_k)) if v is not None}
    out = infer(neural_triton, images, **parameters)
    beams = num_beams or NEURAL_CAPTION_SETTINGS["num_beams"]
    length = max_new_tokens or NEURAL_CAPTION_SETTINGS["max_new_tokens"]
    k = NEURAL_CAPTION_SETTINGS["dense_top_k"] if top_k is None else top_k
    meta = json.loads((Path(neural_triton.server.model_repository) / "caption" / "1" / "captioner.json").read_text())
    frames, dense = expected_from_served(neural_triton, models["blip"], meta["eos_token_id"],
                                         PixelSettings(**{a: tuple(b) if isinstance(b, list) else b
                                                          for a, b in meta["pixels"].items()}),
                                         images, out, beams, length, k)
    assert [served_tokens(r) for r in out["CAPTION_TOKENS"]] == frames
    assert [s[0] for s in out["CAPTION_SOURCE"]] == [b"tiny-blip"] * 4
    counts = [len(picked) for picked, _ in dense]
    if k:
        assert counts[2] >= 2 and counts[3] == 0 and min(counts[:2]) >= 1
    else:
        assert counts == [0, 0, 0, 0]
    for i, (picked, tokens) in enumerate(dense):
        index = out["DENSE_BOX_INDEX"][i]
        assert index[index >= 0].tolist() == picked
        assert [served_tokens(out["DENSE_TOKENS"][i, s]) for s in range(len(picked))] == tokens
        assert all(c == b"" for c in out["DENSE_CAPTIONS"][i, len(picked):])


@pytest.mark.server
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


@pytest.mark.server
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


@pytest.mark.server
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


@pytest.mark.server
@pytest.mark.parametrize(("parameters", "message"), [
    ({"num_beams": 0}, "num_beams: expected 1..16, got 0"),
    ({"max_new_tokens": 9999}, "max_new_tokens: expected 1..512, got 9999"),
    ({"dense_top_k": 99}, "dense_top_k: expected 0..32, got 99"),
])
def test_bad_request_parameter_fails_that_request_clearly(neural_triton: Config, parameters: dict,
                                                          message: str) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=message):
        infer(neural_triton, [jpeg(photo("chelsea"))], **parameters)
    assert infer(neural_triton, [jpeg(photo("chelsea"))])["CAPTION"][0, 0]  # the server still serves
