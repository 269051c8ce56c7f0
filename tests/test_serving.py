"""End to end against a real tritonserver: the ensemble over gRPC and HTTP, the CLI, curl and perf_analyzer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from clients.results import VideoResults
from clients.transport import SceneClient
from clients.transport.perf_analyzer import perf_analyzer_command, run_perf_analyzer, write_input_data
from launcher.local_server import server_status
from mmw.config import Config, load_config
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.errors import InferenceError
from mmw.onnx_runtime import InProcessPipeline
from tests.conftest import ROOT, jpeg, photo

pytestmark = pytest.mark.serving
PHOTOS = ("astronaut", "chelsea", "coffee")


@pytest.fixture(scope="session")
def in_process(engines: dict[str, Path]) -> InProcessPipeline:
    return InProcessPipeline.served(load_config().models, engines["detector"], engines["labeller"])


def _images() -> list[bytes]:
    return [jpeg(photo(name)) for name in PHOTOS]


def _raw_infer(config: Config, protocol: str, images: list[bytes]) -> dict[str, np.ndarray]:
    module = grpcclient if protocol == "grpc" else httpclient
    port = config.server.grpc_port if protocol == "grpc" else config.server.http_port
    client = module.InferenceServerClient(f"127.0.0.1:{port}")
    data = np.array([[b] for b in images], dtype=object)
    inp = module.InferInput("IMAGE", list(data.shape), "BYTES")
    inp.set_data_from_numpy(data)
    result = client.infer(ENSEMBLE_NAME, [inp])
    names = ("BOXES", "SCORES", "CLASS_IDS", "CLASS_NAMES", "NUM_DETECTIONS", "LABELS", "LABEL_SCORES",
             "LABEL_IDS", "CAPTION", "CAPTION_SOURCE", "ERROR")
    return {name: result.as_numpy(name) for name in names}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_results_equal_in_process_onnxruntime(triton: Config, in_process: InProcessPipeline,
                                                     protocol: str) -> None:
    images = _images()
    images.insert(1, b"not a jpeg")  # a bad image fails alone, the same way in both paths
    served = _raw_infer(triton, protocol, images)
    local = in_process(images)
    assert served["ERROR"][:, 0].tolist() == [b"", b"IMAGE[1]: image: expected JPEG or PNG bytes, got 10 bytes "
                                              b"that do not decode as an image", b"", b""]
    assert served["NUM_DETECTIONS"].tolist() == local["NUM_DETECTIONS"].tolist()
    for i, n in enumerate(served["NUM_DETECTIONS"][:, 0]):
        np.testing.assert_allclose(served["BOXES"][i, :n], local["BOXES"][i, :n], atol=1e-3)
        np.testing.assert_allclose(served["SCORES"][i, :n], local["SCORES"][i, :n], atol=1e-5)
        assert served["CLASS_IDS"][i, :n].tolist() == local["CLASS_IDS"][i, :n].tolist()
        assert served["CLASS_NAMES"][i, :n].tolist() == local["CLASS_NAMES"][i, :n].tolist()
    for name in ("LABELS", "LABEL_IDS", "CAPTION", "CAPTION_SOURCE", "ERROR"):
        assert served[name].tolist() == local[name].tolist(), name
    np.testing.assert_allclose(served["LABEL_SCORES"], local["LABEL_SCORES"], atol=1e-5)


def test_raw_frame_ensemble_equals_in_process(triton: Config, in_process: InProcessPipeline) -> None:
    """scene_understanding_raw takes uint8 [N, H, W, 3] frames (one size per request)."""
    frames = np.stack([photo("astronaut"), photo("astronaut")[:, ::-1]])
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.server.grpc_port}")
    inp = grpcclient.InferInput("FRAME", list(frames.shape), "UINT8")
    inp.set_data_from_numpy(frames)
    served = client.infer(RAW_ENSEMBLE_NAME, [inp])
    local = in_process.frames(frames)
    assert served.as_numpy("NUM_DETECTIONS").tolist() == local["NUM_DETECTIONS"].tolist()
    n = int(local["NUM_DETECTIONS"][0, 0])
    np.testing.assert_allclose(served.as_numpy("BOXES")[0, :n], local["BOXES"][0, :n], atol=1e-3)
    assert served.as_numpy("CAPTION").tolist() == local["CAPTION"].tolist()
    assert served.as_numpy("CLASS_NAMES")[0, 0] == b"person"
    assert served.as_numpy("ERROR").tolist() == local["ERROR"].tolist() == [[b""], [b""]]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_sees_person_cat_and_cup(triton: Config, protocol: str) -> None:
    port = triton.server.grpc_port if protocol == "grpc" else triton.server.http_port
    with SceneClient(f"127.0.0.1:{port}", protocol=protocol) as client:  # type: ignore[arg-type]
        results = client.infer(_images())
    firsts = [r.detections[0].class_name for r in results]
    assert firsts == ["person", "cat", "cup"]
    for r in results:
        assert r.caption_source == "template"
        assert r.caption.startswith(("a person", "a cat", "a cup"))
        assert len(r.labels) == 5
    assert results[1].labels[0].name in {"tiger cat", "Egyptian cat", "tabby"}
    x0, y0, x1, y1 = results[1].detections[0].box  # the cat fills chelsea (451x300)
    assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300 and (x1 - x0) > 200


def test_the_server_returns_low_scores_for_tracking_and_the_shown_ones_make_the_caption(
        triton: Config, tmp_path: Path) -> None:
    det = triton.models.detector
    with SceneClient(f"127.0.0.1:{triton.server.grpc_port}") as client:
        (coffee,) = client.infer([jpeg(photo("coffee"))])
    scores = {d.class_name: d.score for d in coffee.detections}
    assert det.track_min_score <= scores["spoon"] < det.score_threshold  # returned, for the tracker's second stage
    assert "spoon" not in coffee.caption and "cup" in coffee.caption  # the caption names the shown detections
    assert min(scores.values()) >= det.track_min_score
    image = tmp_path / "coffee.jpg"
    image.write_bytes(jpeg(photo("coffee")))
    done = subprocess.run([sys.executable, "-m", "clients", "image", str(image), "--out", str(tmp_path / "out"),
                           "--url", f"127.0.0.1:{triton.server.grpc_port}"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    shown = json.loads((tmp_path / "out" / "results.json").read_text())["images"][0]["detections"]
    assert shown and all(d["score"] >= det.score_threshold for d in shown)  # the client shows what the config says
    assert "spoon" not in {d["class_name"] for d in shown}


def test_many_requests_in_flight_keep_their_order(triton: Config) -> None:
    images = _images()
    batches = [[images[i % 3]] for i in range(12)]
    with SceneClient(f"127.0.0.1:{triton.server.grpc_port}", max_in_flight=4) as client:
        results = [r[0] for r in client.infer_many(batches)]
    assert [r.detections[0].class_name for r in results] == ["person", "cat", "cup"] * 4


def test_bad_image_fails_only_itself(triton: Config) -> None:
    """Concurrent requests: a request whose one image is bad gets that image's error, the others are untouched."""
    good = _images()[1]
    truncated = good[: len(good) // 3]
    url = f"127.0.0.1:{triton.server.grpc_port}"

    def call(images: list[bytes]) -> object:
        with SceneClient(url) as client:
            try:
                return client.infer(images)
            except InferenceError as exc:
                return exc

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(call, [[good], [b"definitely not a jpeg"], [good], [truncated], [good], [good]]))
    for i in (0, 2, 4, 5):
        assert outcomes[i][0].detections[0].class_name == "cat"  # type: ignore[index]
    for i in (1, 3):
        (result,) = outcomes[i]  # type: ignore[misc]
        assert result.error.startswith("IMAGE[0]: image")
        assert (result.detections, result.labels, result.caption) == ((), (), "")
    assert server_status(triton).running


def test_curl_health_and_ensemble_config(triton: Config) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed on this machine")
    base = f"http://127.0.0.1:{triton.server.http_port}"
    code = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/v2/health/ready"],
                          capture_output=True, text=True, check=True).stdout
    assert code == "200"
    body = subprocess.run([curl, "-sf", f"{base}/v2/models/{ENSEMBLE_NAME}/config"], capture_output=True,
                          text=True, check=True).stdout
    config = json.loads(body)
    assert config["platform"] == "ensemble"
    assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == [
        "preprocess", "detector", "labeller", "postprocess", "caption"]


def test_perf_analyzer_runs_unchanged_on_the_ensemble(triton: Config, tmp_path: Path) -> None:
    data = write_input_data([_images()[2]], tmp_path / "input.json")
    csv = tmp_path / "perf.csv"
    # A busy shared CPU makes latencies noisy: accept any spread so each concurrency level gets its row.
    cmd = perf_analyzer_command(ENSEMBLE_NAME, f"127.0.0.1:{triton.server.grpc_port}", "grpc", data, "1:2", 2000,
                                csv, extra=["--stability-percentage", "100", "--max-trials", "4"])
    run_perf_analyzer(cmd, tmp_path / "lib", timeout_s=240)
    rows = csv.read_text().strip().splitlines()
    header = rows[0].split(",")
    throughput = [float(r.split(",")[header.index("Inferences/Second")]) for r in rows[1:]]
    assert len(throughput) == 2 and all(t > 0 for t in throughput)


def test_metrics_and_statistics_endpoints(triton: Config) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{triton.server.http_port}/v2/models/detector/stats") as r:
        stats = json.load(r)
    assert stats["model_stats"][0]["inference_count"] > 0


def test_cli_analyses_a_video(triton: Config, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    subprocess.run([sys.executable, "-m", "clients", "sample-video", str(video), "--seconds", "4"], check=True,
                   cwd=ROOT)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "clients", "video", str(video), "--fps", "2", "--out", str(out),
         "--url", f"127.0.0.1:{triton.server.grpc_port}"],
        capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    results = VideoResults.read(out / "results.json")
    assert len(results.frames) == 8
    assert [f.timestamp_s for f in results.frames] == pytest.approx([i * 0.5 for i in range(8)], abs=0.06)
    assert any(d.class_name == "person" for f in results.frames for d in f.image.detections)
    assert all(f.image.caption and f.image.caption_source == "template" for f in results.frames)
    with av.open(str(out / "annotated.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == len(results.frames)
    assert "results.json" in done.stdout
