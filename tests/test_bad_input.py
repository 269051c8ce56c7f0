"""Bad input straight over the wire to a real tritonserver: each fails clearly, alone, and the server keeps serving."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from clients.transport import SceneClient
from mmw.config import Config
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.processing.images import MAX_IMAGE_PIXELS
from tests.conftest import jpeg, photo, png_header

pytestmark = pytest.mark.serving
PROTOCOLS = ("grpc", "http")
CORRUPT = b"notanimage"  # 10 bytes
CORRUPT_ERROR = "image: expected JPEG or PNG bytes, got 10 bytes that do not decode as an image"


def _module(protocol: str) -> Any:
    return grpcclient if protocol == "grpc" else httpclient


def _client(config: Config, protocol: str) -> Any:
    port = config.server.grpc_port if protocol == "grpc" else config.server.http_port
    return _module(protocol).InferenceServerClient(f"127.0.0.1:{port}")


def _infer(config: Config, protocol: str, data: np.ndarray, datatype: str, name: str = "IMAGE",
           model: str = ENSEMBLE_NAME) -> Any:
    """One raw request (no client-side checks); raises InferenceServerException on a server error."""
    module = _module(protocol)
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return _client(config, protocol).infer(model, [tensor])


def _images(config: Config, protocol: str, images: list[bytes]) -> dict[str, np.ndarray]:
    """Encoded images -> every output of the ensemble."""
    result = _infer(config, protocol, np.array([[b] for b in images], dtype=object), "BYTES")
    names = ("BOXES", "SCORES", "NUM_DETECTIONS", "CLASS_NAMES", "LABELS", "LABEL_SCORES", "CAPTION",
             "CAPTION_SOURCE", "ERROR")
    return {n: result.as_numpy(n) for n in names}


def _assert_still_serving(config: Config, protocol: str) -> None:
    """The server is ready and a good request still succeeds."""
    assert _client(config, protocol).is_server_ready()
    out = _images(config, protocol, [jpeg(photo("chelsea"))])
    assert out["ERROR"].tolist() == [[b""]]
    assert out["CLASS_NAMES"][0, 0] == b"cat"


def _errors(out: dict[str, np.ndarray]) -> list[str]:
    return [e.decode() for e in out["ERROR"][:, 0]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_corrupt_jpeg_fails_only_itself(triton: Config, protocol: str) -> None:
    good = [jpeg(photo(name)) for name in ("astronaut", "chelsea", "coffee")]
    mixed = _images(triton, protocol, [good[0], good[1], CORRUPT, good[2]])
    alone = _images(triton, protocol, good)
    assert _errors(mixed) == ["", "", f"IMAGE[2]: {CORRUPT_ERROR}", ""]
    assert _errors(alone) == ["", "", ""]
    assert mixed["NUM_DETECTIONS"][2, 0] == 0
    assert mixed["CAPTION"][2, 0] == b"" and mixed["LABELS"][2].tolist() == [b""] * mixed["LABELS"].shape[1]
    for m, a in zip((0, 1, 3), range(3), strict=True):
        n = int(alone["NUM_DETECTIONS"][a, 0])
        assert n > 0 and int(mixed["NUM_DETECTIONS"][m, 0]) == n
        np.testing.assert_allclose(mixed["BOXES"][m, :n], alone["BOXES"][a, :n], atol=1e-3)
        np.testing.assert_allclose(mixed["SCORES"][m, :n], alone["SCORES"][a, :n], atol=1e-5)
        np.testing.assert_allclose(mixed["LABEL_SCORES"][m], alone["LABEL_SCORES"][a], atol=1e-5)
        for name in ("CLASS_NAMES", "LABELS", "CAPTION", "CAPTION_SOURCE"):
            assert mixed[name][m, :n].tolist() == alone[name][a, :n].tolist(), name
    _assert_still_serving(triton, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scene_client_reports_the_bad_image(triton: Config, protocol: str) -> None:
    port = triton.server.grpc_port if protocol == "grpc" else triton.server.http_port
    with SceneClient(f"127.0.0.1:{port}", protocol=protocol) as client:  # type: ignore[arg-type]
        assert "ERROR" in client.output_names()
        good, bad = client.infer([jpeg(photo("chelsea")), CORRUPT])
        (only_bad,) = client.infer([CORRUPT])  # a batch of only bad images still answers per image
    assert good.error == "" and good.detections[0].class_name == "cat"
    assert bad.error == f"IMAGE[1]: {CORRUPT_ERROR}"
    assert (bad.detections, bad.labels, bad.caption, bad.caption_source) == ((), (), "", "")
    assert only_bad.error == f"IMAGE[0]: {CORRUPT_ERROR}"
    _assert_still_serving(triton, protocol)


def test_concurrent_requests_number_bad_images_within_their_own_request(triton: Config) -> None:
    """Requests batched together on the server still name a bad image by its index in its own request."""
    good = jpeg(photo("chelsea"))
    batches = [[good, CORRUPT], [CORRUPT, good, good], [good], [good, good, CORRUPT]] * 3

    def call(images: list[bytes]) -> list[str]:
        with SceneClient(f"127.0.0.1:{triton.server.grpc_port}") as client:
            return [r.error or r.detections[0].class_name for r in client.infer(images)]

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(call, batches))
    for images, outcome in zip(batches, outcomes, strict=True):
        expected = [f"IMAGE[{i}]: {CORRUPT_ERROR}" if data == CORRUPT else "cat" for i, data in enumerate(images)]
        assert outcome == expected
    _assert_still_serving(triton, "grpc")


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo("chelsea")).convert("CMYK").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _gray_jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("cmyk", _cmyk_jpeg),
        ("8k", lambda: jpeg(cv2.resize(photo("astronaut"), (7680, 4320), interpolation=cv2.INTER_LINEAR), 80)),
        ("1x1", lambda: jpeg(np.full((1, 1, 3), 128, np.uint8))),
    ],
)
def test_unusual_images_are_analysed(triton: Config, protocol: str, kind: str, make: Any) -> None:
    out = _images(triton, protocol, [make()])
    assert _errors(out) == [""]
    assert out["CAPTION"][0, 0] and out["CAPTION_SOURCE"][0, 0] == b"template"
    if kind == "8k":
        assert out["CLASS_NAMES"][0, 0] == b"person"
        x0, y0, x1, y1 = out["BOXES"][0, 0]
        assert 0 <= x0 < x1 <= 7680 and 0 <= y0 < y1 <= 4320
    _assert_still_serving(triton, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_frame_over_the_pixel_limit_gets_its_own_error(triton: Config, protocol: str) -> None:
    side = int(MAX_IMAGE_PIXELS**0.5) + 8
    out = _images(triton, protocol, [jpeg(photo("chelsea")), _gray_jpeg(side, side), png_header(40000, 40000)])
    errors = _errors(out)
    assert errors[:2] == ["", f"IMAGE[1]: image: at most {MAX_IMAGE_PIXELS} pixels allowed, got {side}x{side}"]
    assert errors[2].startswith(f"IMAGE[2]: image: at most {MAX_IMAGE_PIXELS} pixels allowed, got a larger image")
    assert out["CLASS_NAMES"][0, 0] == b"cat" and out["NUM_DETECTIONS"][1:, 0].tolist() == [0, 0]
    _assert_still_serving(triton, protocol)


BAD_REQUESTS = [
    # id, model, input name, data, datatype, words the error must contain
    ("image-fp32", ENSEMBLE_NAME, "IMAGE", np.zeros((1, 1), np.float32), "FP32", ["IMAGE", "FP32", "BYTES"]),
    ("frame-uint16", RAW_ENSEMBLE_NAME, "FRAME", np.zeros((1, 8, 8, 3), np.uint16), "UINT16",
     ["FRAME", "UINT16", "UINT8"]),
    ("frame-4-channels", RAW_ENSEMBLE_NAME, "FRAME", np.zeros((1, 8, 8, 4), np.uint8), "UINT8",
     ["FRAME", "shape", "[-1,-1,-1,3]", "[1,8,8,4]"]),
    ("empty-batch", ENSEMBLE_NAME, "IMAGE", np.zeros((0, 1), dtype=object), "BYTES", ["IMAGE", "got 0"]),
    ("batch-of-9", ENSEMBLE_NAME, "IMAGE", np.array([[b"x"]] * 9, dtype=object), "BYTES", ["batch-size", "8"]),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("model", "name", "data", "datatype", "words"), [r[1:] for r in BAD_REQUESTS],
                         ids=[r[0] for r in BAD_REQUESTS])
def test_bad_requests_fail_clearly(triton: Config, protocol: str, model: str, name: str, data: np.ndarray,
                                   datatype: str, words: list[str]) -> None:
    with pytest.raises(InferenceServerException) as caught:
        _infer(triton, protocol, data, datatype, name, model)
    message = caught.value.message() or str(caught.value)
    for word in words:
        assert word in message, message
    _assert_still_serving(triton, protocol)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{this is not json", ["failed to parse the request JSON"]),
        (b'{"inputs": 5}', ["'inputs'", "array"]),
        (json.dumps({"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": [1.5]}]}).encode(),
         ["JSON bytes array", "string"]),
    ],
    ids=["not-json", "inputs-not-a-list", "number-as-bytes"],
)
def test_garbage_json_over_http_fails_clearly(triton: Config, body: bytes, words: list[str]) -> None:
    url = f"http://127.0.0.1:{triton.server.http_port}/v2/models/{ENSEMBLE_NAME}/infer"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    # This Triton build answers 500 (not 400) when it cannot parse the body; either way the body says why.
    assert caught.value.code in (400, 500)
    message = json.loads(caught.value.read())["error"]
    for word in words:
        assert word in message, message
    _assert_still_serving(triton, "http")
