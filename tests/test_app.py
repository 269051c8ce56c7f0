"""The Gradio app against a real tritonserver: headless Chromium (Playwright), gradio_client, ``launcher app``.

Screenshots land in ``artifacts/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmw.config import AppConfig, Config, build, load_config
from mmw.errors import ConfigError, InputError
from tests.conftest import ROOT, free_ports, jpeg, photo

gr = pytest.importorskip("gradio", reason="the app needs gradio: pip install -e '.[app]'")
from clients.app import analyse_upload, launch_app, server_report, status_markdown, triton_warning  # noqa: E402
from clients.media.sample_video import make_sample_video  # noqa: E402
from clients.pipeline import VideoRun  # noqa: E402
from clients.results import VideoResults  # noqa: E402

server = pytest.mark.serving  # these start a real tritonserver
pytestmark = [  # gradio 6.31's own use of pandas 3 (not ours)
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ARTIFACTS = ROOT / "artifacts"
TIMEOUT_MS = 60_000
ROWS = "#frames [role=row].virtual-row"  # gradio's Dataframe renders a virtual table of div rows
CELLS = "#frames [role=gridcell]"
EXPORTS = ("detections.coco.json", "captions.srt", "captions.vtt", "tracks.csv")


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_config(triton: Config, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The test Triton's config with the app on a free port writing into a temporary folder."""
    runs = tmp_path_factory.mktemp("app-runs")
    return dataclasses.replace(triton, app=AppConfig(port=free_ports(1)[0], out_dir=str(runs)))


@pytest.fixture(scope="module")
def app_url(app_config: Config, sample: Path) -> Iterator[str]:
    demo, url = launch_app(app_config, sample_video=sample)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_video(tmp_path_factory.mktemp("sample") / "sample.mp4", seconds=4)


@dataclasses.dataclass
class OpenPage:
    page: Any
    external: list[str]  # requests that left 127.0.0.1
    failed: list[str]  # requests that failed (not counting those the page aborted)


@pytest.fixture
def page(browser: Any, app_url: str) -> Iterator[OpenPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    opened = OpenPage(pg, [], [])
    local = ("http://127.0.0.1", "data:", "blob:", "about:")
    pg.on("request", lambda r: None if r.url.startswith(local) else opened.external.append(r.url))
    # ERR_ABORTED: the page itself closed the request (the queue's event stream when a job ends, media ranges)
    pg.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "") else opened.failed.append(
        f"{r.url}: {r.failure}"))
    pg.goto(app_url)
    pg.locator("#status").get_by_text("Caption source").wait_for()
    try:
        yield opened
    finally:
        context.close()


@contextlib.contextmanager
def _app_page(browser: Any, config: Config) -> Iterator[Any]:
    """A page of a freshly launched app for ``config``, at its URL; the app and the context closed after."""
    demo, url = launch_app(config)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        pg = context.new_page()
        pg.goto(url)
        yield pg
    finally:
        context.close()
        demo.close()


def _screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _upload(page: Any, path: Path) -> None:
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.locator("#upload").get_by_text(path.name).first.wait_for()


# --- real browser ----------------------------------------------------------------------------------------


@server
def test_browser_analyses_the_sample_video(page: OpenPage, sample: Path) -> None:
    pg = page.page
    status = pg.locator("#status").inner_text()
    assert "Triton" in status and "scene_understanding ready" in status and "template" in status
    assert "no captioning model is configured" in status and "Neural captions" in status
    pg.locator("#dense-note").get_by_text("captions are template ones").wait_for()  # before any analysis too
    _upload(pg, sample)
    pg.locator("#analyse").click()
    pg.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length >= 8", timeout=TIMEOUT_MS)
    assert pg.locator(ROWS).count() == 8
    captions = pg.locator(f"{CELLS}[data-col='1']").all_inner_texts()
    objects = pg.locator(f"{CELLS}[data-col='2']").all_inner_texts()
    assert len(captions) == 8 and all(c.strip() for c in captions), captions
    assert captions[0].startswith("a person") and "person" in objects[0], (captions, objects)
    video = pg.locator("#annotated-video video")
    video.wait_for()
    assert (video.get_attribute("src") or "").startswith("http://127.0.0.1")
    playable = pg.evaluate("""async () => {
        const v = document.querySelector('#annotated-video video');
        if (v.readyState < 1) await new Promise((ok, bad) => {
            v.addEventListener('loadedmetadata', ok, {once: true});
            v.addEventListener('error', () => bad(new Error('video error ' + (v.error && v.error.code))), {once: true});
        });
        return {duration: v.duration, width: v.videoWidth, can: v.canPlayType('video/mp4; codecs="avc1.64001e"')};
    }""")
    assert playable["width"] == 640 and 3.0 < playable["duration"] < 5.0 and playable["can"], playable
    # it autoplays: frames really decode and time moves on
    pg.wait_for_function("() => document.querySelector('#annotated-video video').currentTime > 0.5")
    downloads = pg.locator("#downloads").inner_text().replace("\n", "")  # names show as stem + extension
    assert "results.json" in downloads and "annotated.mp4" in downloads
    assert all(name in downloads for name in EXPORTS), downloads
    assert "8 frames" in pg.locator("#message").inner_text()
    note = pg.locator("#dense-note").inner_text()
    assert "captions are template ones" in note and "Neural captions" in note and "docs/captions.md" in note
    assert not pg.locator("#dense-captions").is_visible()  # no table of dense captions with template captions
    assert "template captions: no captioning model is configured" in pg.locator("#message").inner_text()
    pg.locator("#counts canvas, #counts svg").first.wait_for()
    _screenshot(pg, "app_sample_video.png")
    assert page.external == [], f"the page fetched from outside 127.0.0.1: {page.external}"
    assert page.failed == [], page.failed


@server
def test_browser_search_tab_finds_the_cat_and_jumps_to_it(page: OpenPage, sample: Path) -> None:
    pg = page.page
    _upload(pg, sample)
    pg.locator("#analyse").click()
    pg.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length >= 8", timeout=TIMEOUT_MS)
    pg.get_by_role("tab", name="Search").click()
    pg.locator("#search-objects textarea, #search-objects input").first.fill("cat")
    pg.locator("#search-button").click()
    pg.locator("#search-message").get_by_text("1 time range").wait_for()
    cells = pg.locator("#search-ranges [role=gridcell]").all_inner_texts()
    assert cells[:4] == ["2", "4", "0:02.00", "0:04.00"], cells  # the cat photo is on from 2 s to 4 s
    pg.locator("#search-frame img").wait_for()
    pg.locator("#search-clip video").wait_for()
    assert "cat #" in pg.locator("#search-details").inner_text()
    pg.locator("#search-video video").wait_for()
    pg.wait_for_function("() => document.querySelector('#search-video video').readyState >= 1")
    pg.locator("#jump").click()
    pg.wait_for_function("() => Math.abs(document.querySelector('#search-video video').currentTime - 2.0) < 0.6")
    _screenshot(pg, "app_search.png")
    pg.locator("#search-objects textarea, #search-objects input").first.fill("unicorn")
    pg.locator("#search-button").click()
    pg.locator("#search-message").get_by_text("expected a COCO class name").wait_for()
    assert page.external == [] and page.failed == [], (page.external, page.failed)


@server
def test_browser_bad_upload_says_why(page: OpenPage, tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are meeting notes, not a video\n" * 20)
    pg = page.page
    _upload(pg, bad)
    pg.locator("#analyse").click()
    message = pg.locator("#message")
    message.get_by_text("not a readable video").wait_for()
    text = message.inner_text()
    assert "notes.mp4" in text and "expected a video file" in text, text
    assert "Traceback" not in pg.content() and str(tmp_path) not in text
    assert pg.locator(ROWS).count() == 0  # nothing from a previous run
    _screenshot(pg, "app_bad_upload.png")


def test_browser_when_triton_is_down_and_upload_too_large(browser: Any, sample: Path, tmp_path: Path) -> None:
    http, grpc, metrics, port = free_ports(4)
    config = build(Config, {"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics},
                            "app": {"port": port, "out_dir": str(tmp_path / "runs"), "max_upload_mb": 0.1}})
    with _app_page(browser, config) as pg:
        status = pg.locator("#status")
        status.get_by_text("Triton is not reachable").wait_for()
        assert "launcher run" in status.inner_text()
        pg.locator("#upload input[type=file]").set_input_files(str(sample))  # 300 KB > 0.1 MB
        pg.get_by_text("exceed the maximum allowed size").first.wait_for()
        small = tmp_path / "grey.jpg"
        small.write_bytes(jpeg(np.full((40, 60, 3), 128, np.uint8)))
        _upload(pg, small)
        pg.locator("#analyse").click()
        message = pg.locator("#message")
        message.get_by_text("Triton is not reachable").wait_for()
        assert "launcher run" in message.inner_text()
        assert "Traceback" not in pg.content()
        _screenshot(pg, "app_triton_down.png")


@server
def test_browser_shows_dense_captions_of_a_neural_captioner(browser: Any, neural_triton: Config,
                                                           tmp_path: Path) -> None:
    config = dataclasses.replace(neural_triton, app=AppConfig(port=free_ports(1)[0], out_dir=str(tmp_path / "runs")))
    with _app_page(browser, config) as pg:
        status = pg.locator("#status")
        status.get_by_text("tiny-blip").wait_for()
        assert "neural captioner" in status.inner_text() and "dense captions for up to 3" in status.inner_text()
        astronaut = tmp_path / "astronaut.jpg"
        astronaut.write_bytes(jpeg(photo("astronaut")))
        _upload(pg, astronaut)
        pg.locator("#analyse").click()
        pg.locator("#dense-note").get_by_text("dense caption").first.wait_for()
        pg.wait_for_function("() => document.querySelectorAll('#dense-captions [role=row].virtual-row').length >= 1")
        cells = pg.locator("#dense-captions [role=gridcell]").all_inner_texts()
        assert cells[0] == "astronaut.jpg" and cells[1] == "person", cells  # image, object, score, dense caption
        assert float(cells[2]) >= 0.5, cells
        assert "tiny-blip" in pg.locator("#dense-note").inner_text()
        assert "neural captions by tiny-blip" in pg.locator("#message").inner_text()
        _screenshot(pg, "app_dense_captions.png")


@server
def test_dense_view_of_a_neural_run(neural_triton: Config, tmp_path: Path) -> None:
    from clients.app import dense_view

    config = dataclasses.replace(neural_triton, app=AppConfig(port=free_ports(1)[0], out_dir=str(tmp_path / "runs")))
    report = server_report(config)
    assert report.caption_source == "tiny-blip" and report.neural_captions
    assert dict(report.caption_settings)["dense_top_k"] == "3"
    photos = tmp_path / "coffee.jpg"
    photos.write_bytes(jpeg(photo("coffee")))
    result = analyse_upload(config, photos, 2.0, 0.6)  # the app's score slider drops weaker boxes
    note, table = dense_view(result)
    image = result.run.results.images[0].image  # type: ignore[union-attr]
    assert table is not None and len(table) == len(image.dense_captions) >= 1
    assert list(table.columns) == ["image", "object", "score", "dense caption"]
    assert all(score >= 0.6 for score in table["score"])
    assert all(0 <= c.box_index < len(image.detections) for c in image.dense_captions)
    assert "tiny-blip" in note


# --- gradio_client ---------------------------------------------------------------------------------------


def _client(app_url: str, tmp_path: Path) -> Any:
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(app_url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)


@server
def test_gradio_client_analyse_endpoint(app_url: str, sample: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = _client(app_url, tmp_path)
    summary, results, files = client.predict(handle_file(str(sample)), 2.0, 0.5, api_name="/analyse")
    parsed = VideoResults.from_dict(results)
    assert parsed.source == "sample.mp4" and len(parsed.frames) == 8 and parsed.complete
    assert all(d.score >= 0.5 for f in parsed.frames for d in f.image.detections)
    assert parsed.models["client_min_score"] == 0.5
    assert results["schema_version"] == "1.2" and results["captions"]["source"] == "template"
    assert all(f["dense_captions"] == [] for f in results["frames"])
    assert "8 frames" in summary
    names = sorted(Path(f).name for f in files)
    assert names == sorted(["annotated.mp4", "results.json", *EXPORTS])
    assert Path(files[0]).name == "results.json"
    assert VideoResults.read(next(f for f in files if f.endswith("results.json"))).frames == parsed.frames


@server
def test_gradio_client_image_and_errors(app_url: str, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = _client(app_url, tmp_path / "out")
    cat = tmp_path / "chelsea.jpg"
    cat.write_bytes(jpeg(photo("chelsea")))
    summary, results, files = client.predict(handle_file(str(cat)), 2.0, 0.3, api_name="/analyse")
    assert "chelsea.jpg" in summary
    assert results["kind"] == "images" and results["images"][0]["detections"][0]["class_name"] == "cat"
    assert sorted(Path(f).name for f in files) == ["chelsea.annotated.png", "results.json"]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        client.predict(handle_file(str(empty)), 2.0, 0.3, api_name="/analyse")
    status = client.predict(api_name="/status")
    assert status["reachable"] and status["caption_source"] == "template"
    assert ["scene_understanding", True] in status["models"]


# --- the same code without a browser ---------------------------------------------------------------------


@server
def test_truncated_video_gives_partial_results(app_config: Config, tmp_path: Path) -> None:
    from clients.media.mp4 import Mp4Writer

    full = tmp_path / "full.mp4"
    rng = np.random.default_rng(0)
    with Mp4Writer(full, 10, (64, 48)) as writer:
        for _ in range(60):
            writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = analyse_upload(app_config, cut, 2.0, 0.3)
    assert isinstance(result.run, VideoRun) and result.run.error is not None
    assert not result.run.results.complete and len(result.run.results.frames) >= 2


@server
def test_too_large_upload_is_refused(app_config: Config, sample: Path) -> None:
    small = dataclasses.replace(app_config, app=dataclasses.replace(app_config.app, max_upload_mb=0.01))
    with pytest.raises(InputError, match=r"sample\.mp4 is 0\.3 MB; the app accepts files up to 0\.01 MB"):
        analyse_upload(small, sample, 2.0, 0.3)


def test_status_when_triton_is_down() -> None:
    http, grpc, metrics = free_ports(3)
    config = build(Config, {"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics}})
    report = server_report(config)
    assert not report.reachable
    text = status_markdown(report)
    assert "not reachable" in text and "`launcher run`" in text
    assert "launcher run" in (triton_warning(config) or "")


@pytest.mark.integration  # a subprocess or transformers' import
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_launcher_app_warns_when_triton_is_down_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    http, grpc, metrics, port = free_ports(4)
    config = tmp_path / "config.yaml"
    config.write_text(f"server: {{http_port: {http}, grpc_port: {grpc}, metrics_port: {metrics}}}\n"
                      f"app: {{port: {port}, out_dir: {tmp_path / 'runs'}}}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "--config", str(config), "app"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"app ready: http://127.0.0.1:{port}"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "app stopped" in out
    assert "launcher: warning: Triton is not reachable" in err and "launcher run" in err
    assert "Traceback" not in err


# --- config ----------------------------------------------------------------------------------------------


def test_app_config_defaults() -> None:
    app = load_config().app
    assert (app.host, app.port, app.max_upload_mb, app.out_dir) == ("127.0.0.1", 7860, 500.0, "results/app")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"app": {"port": 0}}, r"app.port: expected a port in 1..65535, got 0"),
        ({"app": {"port": 8001}}, r"app.port: 8001 is also server.grpc_port"),
        ({"app": {"max_upload_mb": -5}}, r"app.max_upload_mb: expected a positive number, got -5"),
        ({"app": {"prot": 1}}, r"app.prot: unknown setting; allowed keys under app: "),
        ({"app": {"host": ""}}, r"app.host: expected an address"),
    ],
)
def test_app_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(Config, data)
