"""One analysis for the page: check an upload and run it through ``clients.pipeline`` into a fresh folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from clients.app.status import client_url
from clients.pipeline import ImageRun, ProgressFn, VideoRun, analyse_images, analyse_video, clamp_batch_size
from clients.results import ImageResult
from clients.transport import SceneClient
from mmw.config import Config
from mmw.errors import InputError, MMWError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppResult:
    """One analysis for the page: what was written and what to show."""

    kind: str  # "video" or "image"
    name: str  # the uploaded file's name
    run_dir: Path
    run: VideoRun | ImageRun
    seconds: float
    files: tuple[Path, ...] = field(default=())

    @property
    def results(self) -> list[tuple[str, ImageResult]]:
        """(time or image name, result) per analysed frame or image."""
        if isinstance(self.run, VideoRun):
            return [(f"{f.timestamp_s:.2f}", f.image) for f in self.run.results.frames]
        return [(Path(e.source).name, e.image) for e in self.run.results.images]

    @property
    def shown_media(self) -> Path | None:
        """The annotated video, or the first annotated image."""
        if isinstance(self.run, VideoRun):
            return self.run.annotated_path
        return self.run.annotated_paths[0] if self.run.annotated_paths else None


def _check_upload(path: Path, name: str, config: Config) -> None:
    if not path.is_file():
        raise InputError(f"{name}: the upload did not arrive (expected a video or an image file); upload it again")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{name} is empty (0 bytes); expected a video (MP4, MKV, MOV, AVI, WebM) or an image")
    limit = config.app.max_upload_mb
    if size > limit * 1024 * 1024:
        raise InputError(f"{name} is {size / 1024 / 1024:.1f} MB; the app accepts files up to {limit:g} MB "
                         "(app.max_upload_mb in config/config.yaml)")


def _run_dir(config: Config, name: str) -> Path:
    root = config.path(config.app.out_dir)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:40] or "upload"
    base = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"
    run_dir, k = base, 2
    while run_dir.exists():
        run_dir, k = Path(f"{base}-{k}"), k + 1
    return run_dir


def analyse_upload(
    config: Config,
    upload: str | Path | None,
    fps: float,
    min_score: float,
    progress: ProgressFn | None = None,
) -> AppResult:
    """Check an uploaded file and run it through ``clients.pipeline`` into a fresh folder under ``app.out_dir``.

    Raises MMWError subclasses with messages that name the uploaded file (never the temporary path).
    """
    if upload is None or upload == "":
        raise InputError("no file: upload a video (MP4, MKV, MOV, AVI, WebM) or an image (JPEG, PNG) first")
    path = Path(upload)
    name = path.name
    try:
        _check_upload(path, name, config)
        if not fps > 0:
            raise InputError(f"frames per second: expected a number > 0, got {fps}")
        server_min = config.models.detector.score_threshold
        wanted_min = float(min_score) if min_score is not None else server_min  # shown after tracking
        run_dir = _run_dir(config, name)
        url, protocol = client_url(config)
        started = time.monotonic()
        with SceneClient(url, protocol=protocol, timeout_s=config.client.timeout_s,  # type: ignore[arg-type]
                         max_in_flight=config.client.max_in_flight, transport=config.client.transport,
                         jpeg_quality=config.client.jpeg_quality) as client:
            client.check_ready()
            client.frame_transport()  # client.transport: how frames travel (auto: shm on loopback)
            for note in client.transport_notes:
                log.warning("%s", note)
            batch_size = clamp_batch_size(client, config.client.batch_size)
            run: VideoRun | ImageRun
            if path.suffix.lower() in IMAGE_SUFFIXES:
                kind = "image"
                run = analyse_images([path], run_dir, client, batch_size=batch_size, min_score=wanted_min,
                                     progress=progress, sources=[name])
            else:
                kind = "video"
                run = analyse_video(path, run_dir, client, fps=float(fps), batch_size=batch_size,
                                    min_score=wanted_min, progress=progress, source=name)
    except MMWError as exc:
        raise type(exc)(str(exc).replace(str(path), name)) from None
    seconds = time.monotonic() - started
    others = sorted(p for p in run_dir.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p != run.results_path)
    files = (run.results_path, *others)  # every file the run wrote: results.json, annotated media, other exports
    return AppResult(kind, name, run_dir, run, seconds, files)
