"""python -m clients with a fake SceneClient: outputs, partial results and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import av
import cv2
import numpy as np
import pytest

import clients.cli as cli
from clients.media.images import encode_jpeg
from clients.media.sample_video import make_pattern_video
from clients.results import Detection, ImageResult, ImageSetResults, SceneLabel, VideoResults
from clients.transport import CaptionOptions
from mmw.errors import InferenceError


class FakeClient:
    """Stands in for SceneClient: one 'cat' box in the middle of each image."""

    made: ClassVar[list[FakeClient]] = []
    fail_at_batch: ClassVar[int | None] = None
    down: ClassVar[bool] = False
    interrupt_at_batch: ClassVar[int | None] = None

    def __init__(self, url: str, protocol: str = "grpc", timeout_s: float = 60.0, max_in_flight: int = 2,
                 retry_s: float = 0.0, caption: CaptionOptions | None = None, transport: str = "auto",
                 jpeg_quality: int = 90) -> None:
        self.url, self.protocol, self.timeout_s, self.max_in_flight = url, protocol, timeout_s, max_in_flight
        self.caption = caption or CaptionOptions()
        self.transport, self.jpeg_quality, self.transport_notes = transport, jpeg_quality, []
        self.batch_sizes: list[int] = []
        FakeClient.made.append(self)

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def check_ready(self) -> None:
        if self.down:
            raise InferenceError(
                f"the Triton server at {self.url} ({self.protocol}) is not reachable: refused. "
                "Start it with `launcher run`."
            )

    def max_batch_size(self) -> int:
        return 8

    def describe(self) -> dict[str, Any]:
        return {"ensemble": "scene_understanding", "protocol": self.protocol, "url": self.url}

    def frame_transport(self) -> str:
        return "jpeg"

    def frame_payload(self, rgb: np.ndarray, encoded: bytes | None = None) -> bytes:
        return encoded if encoded is not None else encode_jpeg(rgb, self.jpeg_quality)

    def infer_frames_many(self, batches: Iterable[list[bytes]]) -> Iterator[list[ImageResult]]:
        for k, batch in enumerate(batches):
            if k == self.fail_at_batch:
                raise InferenceError("the Triton server answered an error: boom")
            if k == self.interrupt_at_batch:
                raise KeyboardInterrupt
            self.batch_sizes.append(len(batch))
            yield [self._result(data) for data in batch]

    @staticmethod
    def _result(data: bytes) -> ImageResult:
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        box = (w * 0.25, h * 0.25, w * 0.75, h * 0.75)
        return ImageResult([Detection(box, 0.8, 17, "cat")], [SceneLabel("tabby", 0.6)], "A cat.", "template")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(FakeClient, "made", [])
    monkeypatch.setattr(FakeClient, "fail_at_batch", None)
    monkeypatch.setattr(FakeClient, "down", False)
    monkeypatch.setattr(FakeClient, "interrupt_at_batch", None)
    monkeypatch.setattr(cli, "SceneClient", FakeClient)
    return FakeClient


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return make_pattern_video(tmp_path / "clip.mp4", [i / 10 for i in range(30)])  # 3 s at 10 fps


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("clients: error: ")
    return err[0]


def test_video(fake: type[FakeClient], video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = cli.main(["video", str(video), "--out", str(out), "--fps", "2", "--batch-size", "4"])
    assert rc == 0
    results = VideoResults.read(out / "results.json")
    assert results.complete and results.error is None
    assert [f.timestamp_s for f in results.frames] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert [f.index for f in results.frames] == [0, 5, 10, 15, 20, 25]
    assert (results.width, results.height, results.fps_sampled) == (64, 48, 2.0)
    assert results.frames[0].image.detections[0].box == pytest.approx((16, 12, 48, 36))
    assert _frame_count(out / "annotated.mp4") == 6
    assert fake.made[0].batch_sizes == [4, 2]
    stdout = capsys.readouterr().out
    assert str(out / "results.json") in stdout
    assert "cat 6 (in 6 frames)" in stdout
    assert 'most frequent caption: "A cat." (6/6 frames)' in stdout


def test_video_defaults_come_from_config(fake: type[FakeClient], video: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    out = tmp_path / "from-config"
    config.write_text(
        f"server: {{host: 10.0.0.5, http_port: 9000}}\n"
        f"client: {{protocol: http, fps: 1.0, batch_size: 2, max_in_flight: 3, timeout_s: 7, out_dir: {out}}}\n",
        encoding="utf-8",
    )
    assert cli.main(["video", str(video), "--config", str(config)]) == 0
    client = fake.made[0]
    assert (client.url, client.protocol, client.max_in_flight, client.timeout_s) == ("10.0.0.5:9000", "http", 3, 7.0)
    assert client.batch_sizes == [2, 1]  # 3 frames at 1 fps
    assert len(VideoResults.read(out / "results.json").frames) == 3


def test_video_partial_results_on_server_error(
    fake: type[FakeClient], video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail_at_batch = 1
    out = tmp_path / "out"
    rc = cli.main(["video", str(video), "--out", str(out), "--fps", "2", "--batch-size", "2"])
    assert rc == 1
    assert "boom" in _error_line(capsys)
    results = VideoResults.read(out / "results.json")
    assert not results.complete and "boom" in (results.error or "")
    assert len(results.frames) == 2
    assert _frame_count(out / "annotated.mp4") == 2


def test_video_interrupted_keeps_results(
    fake: type[FakeClient], video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.interrupt_at_batch = 1
    out = tmp_path / "out"
    assert cli.main(["video", str(video), "--out", str(out), "--fps", "2", "--batch-size", "2"]) == 130
    assert capsys.readouterr().err.strip() == "clients: interrupted"
    results = VideoResults.read(out / "results.json")
    assert not results.complete and results.error == "interrupted after 2 frames"


def test_video_partial_results_on_truncated_file(
    fake: type[FakeClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clients.media.mp4 import Mp4Writer

    rng = np.random.default_rng(0)
    full = tmp_path / "full.mp4"
    with Mp4Writer(full, 10, (64, 48)) as writer:
        for _ in range(60):
            writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "out"
    assert cli.main(["video", str(cut), "--out", str(out), "--fps", "2"]) == 1
    assert "decoding stopped" in _error_line(capsys)
    results = VideoResults.read(out / "results.json")
    assert not results.complete and len(results.frames) >= 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "not found"),
        ("empty.mp4", b"", "is empty"),
        ("notes.mp4", b"hello\n" * 50, "not a readable video"),
    ],
)
def test_video_bad_input(
    fake: type[FakeClient],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["video", str(path), "--out", str(tmp_path / "out")]) == 1
    assert message in _error_line(capsys)
    assert fake.made == []  # the input is checked before the server is contacted
    assert not (tmp_path / "out").exists()


def test_server_down(fake: type[FakeClient], video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.down = True
    assert cli.main(["video", str(video), "--out", str(tmp_path / "out")]) == 1
    assert "launcher run" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def _images(tmp_path: Path) -> list[Path]:
    y, x = np.mgrid[0:40, 0:60]
    bgr = np.stack([x * 4, y * 6, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    paths = [tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "sub" / "a.png"]
    for p in paths:
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), bgr)
    return paths


def test_images(fake: type[FakeClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _images(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["image", *map(str, paths), "--out", str(out), "--batch-size", "2"]) == 0
    results = ImageSetResults.read(out / "results.json")
    assert [e.source for e in results.images] == [str(p) for p in paths]
    assert [e.annotated for e in results.images] == ["a.annotated.png", "b.annotated.png", "a_2.annotated.png"]
    for entry in results.images:
        annotated = cv2.imread(str(out / entry.annotated))
        assert annotated.shape == (40, 60, 3) and (entry.width, entry.height) == (60, 40)
    assert json.loads((out / "results.json").read_text())["kind"] == "images"
    assert "cat 3 (in 3 images)" in capsys.readouterr().out


def test_images_partial_on_unreadable_image(
    fake: type[FakeClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _images(tmp_path)[0]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    assert cli.main(["image", str(good), str(bad), str(good), "--out", str(out), "--batch-size", "1"]) == 1
    assert "bad.png" in _error_line(capsys)
    results = ImageSetResults.read(out / "results.json")
    assert len(results.images) == 1 and not results.complete


def test_images_missing_file(fake: type[FakeClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["image", str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg: not found" in _error_line(capsys)


def test_sample_video_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("skimage")
    out = tmp_path / "sample.mp4"
    assert cli.main(["sample-video", str(out), "--seconds", "2", "--fps", "5", "--size", "96x64"]) == 0
    assert _frame_count(out) == 10
    assert str(out) in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["video", "x.mp4", "--fps", "-1"])
    assert info.value.code == 2
    assert "--fps: expected a number > 0" in capsys.readouterr().err
