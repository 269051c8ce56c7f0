"""Gradio app: a thin client of the served ``scene_understanding`` ensemble (``launcher app``).

Every pixel of processing happens in Triton or in ``clients.pipeline`` (the same code as
``python -m clients video``); this module only turns an upload into a pipeline call and the
results into widgets: the annotated video or image, a table per frame, a table of dense captions (one
per captioned object, when a neural captioner is served; else a note that captions are template ones),
a plot of object counts over time and the files to download. A status panel says whether Triton
answers and which captioner it serves. The Search tab
searches the last video analysed in the page (``clients.search``): time ranges, scenes and tracks,
the first match's frame and clip, and a Jump button that seeks its player to a range.

Scripts use the named endpoint ``/analyse`` with ``gradio_client`` (see ``build_app``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from clients.annotate import class_color
from clients.images import write_png
from clients.pipeline import (
    ImageRun,
    ProgressFn,
    VideoRun,
    analyse_images,
    analyse_video,
    clamp_batch_size,
    one_line,
)
from clients.results import NEURAL_CAPTIONS_DOC, ImageResult, VideoResults
from clients.search import SearchQuery, extract_clip, format_time, frame_at, search
from clients.summary import summarize, summary_lines
from clients.triton_client import SceneClient
from mmw.config import Config
from mmw.contract import ENSEMBLE_NAME, TEMPLATE_SOURCE
from mmw.errors import InferenceError, InputError, MMWError, ServerError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
START_COMMAND = "launcher run"
CAPTION_MODEL = "caption"
STATUS_TIMEOUT_S = 3.0

_CSS = """
.mmw-error { border-left: 4px solid #d33; padding-left: 10px; }
.mmw-warn { border-left: 4px solid #e90; padding-left: 10px; }
.mmw-ok { border-left: 4px solid #2a2; padding-left: 10px; }
"""


# --- status panel ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerReport:
    """What the status panel shows about Triton."""

    url: str
    protocol: str
    reachable: bool
    ready: bool = False
    version: str = ""
    models: tuple[tuple[str, bool], ...] = ()  # (name, ready): the ensemble, then its steps
    caption_source: str = ""
    error: str = ""
    caption_settings: tuple[tuple[str, str], ...] = ()  # the served captioner's defaults (neural only)

    @property
    def neural_captions(self) -> bool:
        """True when the served captioner is a neural one (not the template)."""
        return bool(self.caption_source) and self.caption_source != TEMPLATE_SOURCE

    @property
    def ensemble_ready(self) -> bool:
        return bool(self.models) and self.models[0][1]


def client_url(config: Config) -> tuple[str, str]:
    """(HOST:PORT, protocol) the app talks to, from the ``client`` and ``server`` sections."""
    protocol = config.client.protocol
    port = config.server.grpc_port if protocol == "grpc" else config.server.http_port
    return f"{config.server.host}:{port}", protocol


def server_report(config: Config) -> ServerReport:
    """Ask Triton whether it answers, its version, which models are ready and the caption source."""
    url, protocol = client_url(config)

    def client(model: str = ENSEMBLE_NAME) -> SceneClient:
        return SceneClient(url, protocol=protocol, model_name=model, timeout_s=STATUS_TIMEOUT_S)  # type: ignore[arg-type]

    with client() as c:
        try:
            meta = c.server_metadata()
        except InferenceError as exc:
            return ServerReport(url, protocol, reachable=False, error=one_line(exc))
        ready = c.server_ready()
        models = [(ENSEMBLE_NAME, c.model_ready())]
        steps: list[str] = []
        try:
            config_steps = c.model_config().get("ensemble_scheduling", {}).get("step", [])
            steps = [s.get("model_name", s.get("modelName", "")) for s in config_steps]
        except InferenceError:
            pass
    caption_source, settings = "", ()
    for step in steps:
        with client(step) as c:
            models.append((step, c.model_ready()))
            if step == CAPTION_MODEL:
                caption_source, settings = _caption_source(c)
    return ServerReport(url, protocol, reachable=True, ready=ready, version=str(meta.get("version", "")),
                        models=tuple(models), caption_source=caption_source, caption_settings=settings)


#: Parameters of the served caption model shown in the status panel.
CAPTION_SETTINGS = ("num_beams", "max_new_tokens", "dense_top_k", "dense_min_score")


def _caption_source(client: SceneClient) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(caption_source, the captioner's default settings) from the caption model's config parameters."""
    try:
        params = client.model_config().get("parameters", {})
    except InferenceError:
        return "", ()

    def text(key: str) -> str:
        value = params.get(key, {})
        return str(value.get("string_value", value.get("stringValue", ""))) if isinstance(value, dict) else ""

    settings = tuple((key, text(key)) for key in CAPTION_SETTINGS if text(key))
    return text("caption_source"), settings


def caption_source_text(report: ServerReport) -> str:
    """The status panel's words for the caption source."""
    if report.caption_source == TEMPLATE_SOURCE:
        return ("template (sentences composed from the detections and scene labels; no captioning model is "
                "configured, see README section *Neural captions*)")
    if not report.caption_source:
        return "unknown"
    settings = dict(report.caption_settings)
    parts = [f"{k.replace('_', ' ')} {settings[k]}" for k in ("num_beams", "max_new_tokens") if k in settings]
    if "dense_top_k" in settings:
        top_k = settings["dense_top_k"]
        parts.append("no dense captions" if top_k == "0" else f"dense captions for up to {top_k} objects per image"
                     + (f" scoring >= {settings['dense_min_score']}" if "dense_min_score" in settings else ""))
    return f"`{report.caption_source}` (neural captioner" + (f": {', '.join(parts)}" if parts else "") + ")"


def status_markdown(report: ServerReport) -> str:
    """The status panel's text."""
    where = f"`{report.url}` ({report.protocol})"
    if not report.reachable:
        return (f"**Triton is not reachable** at {where}, so videos cannot be analysed yet.  \n"
                f"Start it in a terminal with `{START_COMMAND}` (or `make run`), then press **Refresh status**.")
    ready = "ready" if report.ready else "**not ready** (models may still be loading)"
    models = ", ".join(f"{name} {'ready' if ok else '**NOT ready**'}" for name, ok in report.models) or "unknown"
    return (f"**Triton {report.version or '?'}** at {where}: {ready}  \n"
            f"Models: {models}  \n"
            f"Caption source: {caption_source_text(report)}")


def status_update(config: Config) -> Any:
    """The status panel as a Gradio update, coloured by how things stand."""
    return _status_markdown(server_report(config))


def _status_markdown(report: ServerReport) -> Any:
    kind = "mmw-ok" if report.reachable and report.ready and report.ensemble_ready else (
        "mmw-warn" if report.reachable else "mmw-error")
    return gr.Markdown(status_markdown(report), elem_classes=[kind])


def page_status(config: Config) -> tuple[Any, Any]:
    """The status panel and the dense-captions note, from one look at the server."""
    report = server_report(config)
    return _status_markdown(report), gr.Markdown(dense_note_for_server(report))


# --- dense captions --------------------------------------------------------------------------------------

TEMPLATE_DENSE_NOTE = (
    "**Dense captions are not available: captions are template ones** (sentences composed from the detected "
    "objects and the scene label), because no captioning model is configured (`models.caption.model`). "
    "To caption every frame and its objects with BLIP, see the README section **Neural captions** "
    f"(`{NEURAL_CAPTIONS_DOC}`)."
)


def dense_note_for_server(report: ServerReport) -> str:
    """The note above the dense-captions table before any analysis, from the served caption source."""
    if not report.reachable or not report.caption_source:
        return "Dense captions: the caption source is not known yet (see the status above)."
    if report.neural_captions:
        return (f"**Dense captions** by `{report.caption_source}`: one caption per detected object that is "
                "captioned, shown after an analysis.")
    return TEMPLATE_DENSE_NOTE


def dense_columns(kind: str) -> list[str]:
    """Columns of the dense-captions table: time (or image), object, score, dense caption."""
    return ["time (s)" if kind == "video" else "image", "object", "score", "dense caption"]


DENSE_COLUMNS = dense_columns("video")


def dense_table(result: AppResult) -> pd.DataFrame:
    """One row per dense caption: time (or image), object (``#track class``), score, the caption."""
    columns = dense_columns(result.kind)
    rows = []
    for key, r in result.results:
        for c in r.dense_captions:
            track = r.detections[c.box_index].track_id if c.box_index < len(r.detections) else None
            name = c.class_name if track is None else f"#{track} {c.class_name}"
            rows.append({columns[0]: key, "object": name, "score": round(c.score, 2), "dense caption": c.caption})
    return pd.DataFrame(rows, columns=columns)


def dense_view(result: AppResult) -> tuple[str, pd.DataFrame | None]:
    """(the note, the table or None when hidden) for a finished analysis."""
    summary = result.run.results.captions
    if summary.source == TEMPLATE_SOURCE:
        return TEMPLATE_DENSE_NOTE, None
    if not summary.source:
        return "No captions: no frame or image could be analysed.", None
    table = dense_table(result)
    n = len(table)
    note = (f"**{n} dense caption{'s' if n != 1 else ''}** by `{summary.source}`" if summary.source != "mixed"
            else f"**{n} dense caption{'s' if n != 1 else ''}** ({summary.note})")
    if not n:
        note += ": no detected object was captioned (too small, or scored below the server's dense_min_score)."
    return note, table


# --- one analysis ----------------------------------------------------------------------------------------


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
        wanted_min = float(min_score) if min_score is not None and float(min_score) > server_min + 1e-9 else None
        run_dir = _run_dir(config, name)
        url, protocol = client_url(config)
        started = time.monotonic()
        with SceneClient(url, protocol=protocol, timeout_s=config.client.timeout_s,  # type: ignore[arg-type]
                         max_in_flight=config.client.max_in_flight) as client:
            client.check_ready()
            batch_size = clamp_batch_size(client, config.client.batch_size)
            run: VideoRun | ImageRun
            if path.suffix.lower() in IMAGE_SUFFIXES:
                kind = "image"
                run = analyse_images([path], run_dir, client, batch_size=batch_size, min_score=wanted_min,
                                     progress=progress, sources=[name])
            else:
                kind = "video"
                run = analyse_video(path, run_dir, client, fps=float(fps), batch_size=batch_size,
                                    jpeg_quality=config.client.jpeg_quality, min_score=wanted_min,
                                    progress=progress, source=name)
    except MMWError as exc:
        raise type(exc)(str(exc).replace(str(path), name)) from None
    seconds = time.monotonic() - started
    others = sorted(p for p in run_dir.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p != run.results_path)
    files = (run.results_path, *others)  # every file the run wrote: results.json, annotated media, other exports
    return AppResult(kind, name, run_dir, run, seconds, files)


# --- what the page shows ---------------------------------------------------------------------------------


def _objects_text(result: ImageResult) -> str:
    counts = Counter(d.class_name for d in result.detections)
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.most_common()) or "-"


def results_table(result: AppResult) -> pd.DataFrame:
    """One row per frame (or image): time, caption, objects, best scene label."""
    first = "time (s)" if result.kind == "video" else "image"
    rows = [
        {first: key, "caption": r.caption, "objects": _objects_text(r),
         "scene": f"{r.labels[0].name} ({r.labels[0].score:.2f})" if r.labels else "-"}
        for key, r in result.results
    ]
    return pd.DataFrame(rows, columns=[first, "caption", "objects", "scene"])


def counts_frame(result: AppResult) -> pd.DataFrame:
    """Long table ``time_s, class, count`` for the plot: every class in every frame (0 when absent)."""
    if not isinstance(result.run, VideoRun):
        return pd.DataFrame(columns=["time_s", "class", "count"])
    frames = result.run.results.frames
    classes = sorted({d.class_name for f in frames for d in f.image.detections})
    rows = []
    for f in frames:
        counts = Counter(d.class_name for d in f.image.detections)
        rows += [{"time_s": round(f.timestamp_s, 3), "class": c, "count": counts.get(c, 0)} for c in classes]
    return pd.DataFrame(rows, columns=["time_s", "class", "count"])


def class_colors(result: AppResult) -> dict[str, str]:
    """Class name -> the colour its boxes have in the annotated video, so plot lines match the boxes."""
    ids = {d.class_name: d.class_id for _, r in result.results for d in r.detections}
    return {name: "#{:02x}{:02x}{:02x}".format(*class_color(class_id)) for name, class_id in ids.items()}


def summary_text(result: AppResult) -> str:
    """The message under the Analyse button after a run."""
    run = result.run
    images = [r for _, r in result.results]
    if isinstance(run, VideoRun):
        res = run.results
        head = (f"**{len(res.frames)} frames** of `{result.name}` ({res.width}x{res.height}, {res.duration_s:.1f} s) "
                f"sampled at {res.fps_sampled:g} fps and analysed in {result.seconds:.1f} s.")
        unit = "frames"
    else:
        entry = run.results.images[0]
        head = f"**`{result.name}`** ({entry.width}x{entry.height}) analysed in {result.seconds:.1f} s."
        unit = "images"
    lines = [head, *(f"- {line}" for line in summary_lines(summarize(images), unit=unit))]
    if isinstance(run, VideoRun):
        counts = ", ".join(f"{name} {n}" for name, n in run.results.object_counts.items()) or "none"
        scenes = len(run.results.scenes)
        lines.append(f"- unique objects (tracks): {counts}; {scenes} scene{'s' if scenes != 1 else ''} "
                     "(see the Search tab)")
    lines.append(f"- captions: {run.results.captions.note}")
    if run.error is not None:
        lines.insert(0, f"**Partial results**: the run stopped early: {one_line(run.error)}")
    return "\n".join(lines)


# --- search ---------------------------------------------------------------------------------------------

SEARCH_COLUMNS = ["from (s)", "to (s)", "from", "to", "frames", "caption"]
#: Seeks the Search tab's player: runs in the browser (gradio's Video cannot seek from Python).
JUMP_JS = """(t) => {
    const v = document.querySelector('#search-video video');
    if (v && t !== null && t !== undefined) { v.currentTime = Number(t); v.play().catch(() => {}); }
    return t;
}"""


@dataclass(frozen=True)
class SearchView:
    """What the Search tab shows for one query."""

    message: str
    ranges: pd.DataFrame
    details: str = ""
    video: Path | None = None
    first_frame: Path | None = None
    clip: Path | None = None
    jump_s: float | None = None


def _no_ranges(message: str, video: Path | None = None) -> SearchView:
    return SearchView(message, pd.DataFrame(columns=SEARCH_COLUMNS), video=video)


def range_media(results_path: Path, start_s: float, end_s: float) -> tuple[Path | None, Path | None]:
    """(PNG of the frame at ``start_s``, MP4 clip of [start_s, end_s)) cut from the run's annotated video."""
    video = results_path.parent / "annotated.mp4"
    if not video.is_file():
        return None, None
    folder = results_path.parent / "search"
    stem = f"{round(start_s * 1000):08d}-{round(end_s * 1000):08d}"
    png, clip = folder / f"frame-{stem}.png", folder / f"clip-{stem}.mp4"
    if not png.is_file():
        write_png(png, frame_at(video, start_s))
    if not clip.is_file():
        extract_clip(video, start_s, end_s, clip)
    return png, clip


def search_run(results_path: str | Path | None, objects: str, caption: str, semantic: str = "") -> SearchView:
    """Search the results of the last video run; errors become the message.

    ``semantic`` text needs the optional caption embedding model (``clients.semantic``).
    """
    if not results_path:
        return _no_ranges("Analyse a video first (the **Analyse** tab): the search looks at the last video "
                          "analysed in this page.")
    path = Path(results_path)
    video = path.parent / "annotated.mp4"
    video = video if video.is_file() else None
    try:
        query = SearchQuery(objects=objects or None, caption=caption or None,  # type: ignore[arg-type]
                            semantic=semantic or None)
        results = VideoResults.read(path)
        found = search(results, query)
    except MMWError as exc:
        return _no_ranges(f"**Cannot search**: {one_line(exc)}", video)
    rows = [{"from (s)": round(r.start_s, 2), "to (s)": round(r.end_s, 2), "from": format_time(r.start_s),
             "to": format_time(r.end_s), "frames": r.frames, "caption": r.caption} for r in found.ranges]
    table = pd.DataFrame(rows, columns=SEARCH_COLUMNS)
    details = []
    if found.scenes:
        details.append("**Scenes**: " + "; ".join(
            f"{s.index} ({format_time(s.start_s)}-{format_time(s.end_s)}) {s.caption}" for s in found.scenes))
    if found.tracks:
        details.append("**Tracks**: " + "; ".join(
            f"{t.class_name} #{t.track_id} {format_time(t.first_seen_s)}-{format_time(t.last_seen_s)}"
            for t in found.tracks))
    if not found.ranges:
        return SearchView(f"{query.describe()}: no analysed frame matches.", table, "  \n".join(details), video)
    first = found.ranges[0]
    try:
        png, clip = range_media(path, first.start_s, first.end_s)
    except MMWError as exc:
        log.warning("search media: %s", one_line(exc))
        png = clip = None
    n = len(found.ranges)
    message = (f"**{query.describe()}**: {n} time range{'s' if n != 1 else ''}, {found.total_s:.1f} s in all. "
               f"First at {format_time(first.start_s)}: its frame and clip are shown; select a row, then "
               "**Jump** to seek the video to it.")
    return SearchView(message, table, "  \n".join(details), video, png, clip, round(first.start_s, 2))


def _search_outputs(view: SearchView) -> tuple[Any, ...]:
    return (
        gr.Markdown(view.message, elem_classes=["mmw-ok" if view.jump_s is not None else "mmw-warn"]),
        gr.Dataframe(value=view.ranges),
        gr.Markdown(view.details),
        gr.Video(value=str(view.video) if view.video else None),
        gr.Image(value=str(view.first_frame) if view.first_frame else None),
        gr.Video(value=str(view.clip) if view.clip else None),
        gr.Number(value=view.jump_s),
    )


# --- the Blocks app --------------------------------------------------------------------------------------


def _error_outputs(message: str) -> tuple[Any, ...]:
    return (
        gr.Markdown(message, elem_classes=["mmw-error"]),
        gr.Video(value=None, visible=True),
        gr.Image(value=None, visible=False),
        gr.Dataframe(value=None),
        gr.LinePlot(value=None, visible=True),
        gr.File(value=None),
        None,  # nothing to search
        gr.Markdown(),
        gr.Dataframe(value=None, visible=False),
    )


def build_app(config: Config, sample_video: str | Path | None = None) -> gr.Blocks:
    """The Gradio Blocks of the app for ``config``: UI events plus the ``/analyse`` and ``/status`` endpoints.

    ``/analyse`` (for ``gradio_client``): inputs ``upload`` (a file: ``handle_file(path)``), ``fps`` and
    ``min_score``; outputs a summary text, the ``results.json`` content and the list of files written.
    ``sample_video``, when given, is offered as a one-click example under the upload box.
    A bad input or an unreachable server raises ``gradio.Error`` with a one-line reason. ``/status`` returns
    the status panel's facts as a dict (``reachable``, ``version``, ``models``, ``caption_source``, ...).
    """
    server_min = config.models.detector.score_threshold
    max_fps = config.app.max_fps
    default_fps = min(config.client.fps, max_fps)

    def run_ui(upload: str | None, fps: float, min_score: float,
               progress: gr.Progress = gr.Progress()  # noqa: B008 - Gradio injects the progress tracker this way
               ) -> tuple[Any, ...]:
        def tick(done: int, total: int) -> None:
            progress((done, total), desc="Analysing on Triton", unit="frames")

        progress(0, desc="Connecting to Triton")
        try:
            result = analyse_upload(config, upload, fps, min_score, progress=tick)
        except InferenceError as exc:
            report = server_report(config)
            if not report.reachable:
                return _error_outputs(f"**Could not analyse: Triton is not reachable** at `{report.url}`. Start it "
                                      f"with `{START_COMMAND}` (or `make run`), then press **Refresh status**.")
            return _error_outputs(f"**Could not analyse**: {one_line(exc)}")
        except MMWError as exc:
            return _error_outputs(f"**Could not analyse**: {one_line(exc)}")
        except Exception as exc:  # never a traceback in the page: one line, details in the log
            log.exception("analysis failed")
            return _error_outputs(f"**Unexpected error** ({type(exc).__name__}: {one_line(exc)}); "
                                  "see the terminal running `launcher app`")
        is_video = result.kind == "video"
        media = str(result.shown_media) if result.shown_media else None
        note, dense = dense_view(result)
        return (
            gr.Markdown(summary_text(result), elem_classes=["mmw-warn" if result.run.error else "mmw-ok"]),
            gr.Video(value=media if is_video else None, visible=is_video),
            gr.Image(value=None if is_video else media, visible=not is_video),
            gr.Dataframe(value=results_table(result)),
            gr.LinePlot(value=counts_frame(result), visible=is_video, color_map=class_colors(result)),
            gr.File(value=[str(p) for p in result.files]),
            str(result.run.results_path) if is_video else None,  # what the Search tab searches
            gr.Markdown(note),
            gr.Dataframe(value=dense, visible=dense is not None),
        )

    def run_api(upload: str | None, fps: float, min_score: float) -> tuple[str, dict[str, Any], list[str]]:
        try:
            result = analyse_upload(config, upload, fps, min_score)
        except MMWError as exc:
            raise gr.Error(one_line(exc)) from None
        return summary_text(result), result.run.results.to_dict(), [str(p) for p in result.files]

    with gr.Blocks(title="Scene understanding on Triton", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Scene understanding on Triton\n"
            "Upload a video (or a photo): frames are sampled, sent to the Triton Inference Server, and come back "
            "with detected objects (SSD MobileNet V2, 80 COCO classes), a scene label (EfficientNet-Lite0) and a "
            "caption. You get the annotated video, a table per frame, object counts over time and the files "
            "to download."
        )
        with gr.Row(equal_height=False):
            status = gr.Markdown("Checking the Triton server ...", elem_id="status", container=True)
            refresh = gr.Button("Refresh status", size="sm", scale=0, min_width=120)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Analyse", id="analyse-tab", elem_id="analyse-tab"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        upload = gr.File(label="1. Video or image", file_types=[*VIDEO_SUFFIXES, *IMAGE_SUFFIXES],
                                         type="filepath", elem_id="upload", height=140)
                        gr.Markdown(f"MP4, MKV, MOV, AVI, WebM, JPEG or PNG, up to {config.app.max_upload_mb:g} MB.")
                        if sample_video is not None and Path(sample_video).is_file():
                            gr.Examples([[str(sample_video)]], inputs=[upload], label="No video at hand? Try this one:",
                                        cache_examples=False)
                        fps = gr.Slider(0.5, max_fps, value=default_fps, step=0.5,
                                        label="2. Frames per second to analyse",
                                        info="Frames sampled per second of video (ignored for images).", elem_id="fps")
                        min_score = gr.Slider(server_min, 1.0, value=server_min, step=0.05,
                                              label="Minimum detection score",
                                              info=f"Hides weaker boxes here, in the app. The server already drops "
                                                   f"detections below {server_min:g} "
                                                   "(models.detector.score_threshold).")
                        analyse = gr.Button("3. Analyse", variant="primary", elem_id="analyse")
                        message = gr.Markdown("Upload a file, then press **Analyse**.", elem_id="message")
                    with gr.Column(scale=3, min_width=360):
                        gr.Markdown("**Annotated result**: boxes, class, score and the caption drawn on every analysed "
                                    "frame. The video plays once when ready; hover it for the controls.")
                        video = gr.Video(label="Annotated video", show_label=False, interactive=False, autoplay=True,
                                         elem_id="annotated-video", buttons=["download"])
                        image = gr.Image(label="Annotated image", show_label=False, interactive=False, visible=False,
                                         type="filepath", elem_id="annotated-image")
                        files = gr.File(label="Downloads: results.json, annotated video or image, exports (COCO, "
                                              "SRT, WebVTT, tracks CSV)", file_count="multiple", interactive=False,
                                        elem_id="downloads")
                table = gr.Dataframe(headers=["time (s)", "caption", "objects", "scene"], interactive=False, wrap=True,
                                     label="Per frame: time, caption, objects, scene label", elem_id="frames",
                                     max_height=420, column_widths=["10%", "45%", "25%", "20%"])
                dense_note = gr.Markdown("Dense captions: checking the caption source ...", elem_id="dense-note")
                dense = gr.Dataframe(headers=DENSE_COLUMNS, interactive=False, wrap=True, visible=False,
                                     label="Dense captions: one per captioned object", elem_id="dense-captions",
                                     max_height=360, column_widths=["10%", "20%", "10%", "60%"])
                plot = gr.LinePlot(x="time_s", y="count", color="class", label="Objects per class over time",
                                   x_title="time (s)", y_title="objects in the frame", color_title="class",
                                   elem_id="counts")
                gr.Markdown(f"Results of every run are also kept under `{config.app.out_dir}/` on the machine running "
                            "the app. Scripts: see *Use via API* below (endpoint `/analyse`).")
            with gr.Tab("Search", id="search-tab", elem_id="search-tab"):
                gr.Markdown("Search the last video analysed in this page: when do objects appear (all of them in "
                            "the same frame), what do the captions say, or what do they mean (semantic search with "
                            "sentence embeddings, when installed). You get time ranges, the scenes and "
                            "tracks that match, the first match's frame and clip, and **Jump** seeks the video "
                            "below to the selected range.")
                with gr.Row(equal_height=True):
                    search_objects = gr.Textbox(label="Objects", placeholder="dog   or   person, horse",
                                                elem_id="search-objects", scale=2)
                    search_caption = gr.Textbox(label="Caption contains", placeholder="riding",
                                                elem_id="search-caption", scale=2)
                    search_semantic = gr.Textbox(label="Caption means (semantic)", placeholder="someone on horseback",
                                                 elem_id="search-semantic", scale=2)
                    search_button = gr.Button("Search", variant="primary", elem_id="search-button", scale=1)
                search_message = gr.Markdown("Analyse a video, then search it here.", elem_id="search-message")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=320):
                        search_ranges = gr.Dataframe(headers=SEARCH_COLUMNS, interactive=False, wrap=True,
                                                     label="Time ranges (select a row)", elem_id="search-ranges",
                                                     max_height=300)
                        search_details = gr.Markdown(elem_id="search-details")
                        with gr.Row(equal_height=True):
                            jump_to = gr.Number(label="Jump to (s)", precision=2, elem_id="jump-to", scale=2)
                            jump = gr.Button("Jump", elem_id="jump", scale=1)
                        search_frame = gr.Image(label="First match", type="filepath", interactive=False,
                                                elem_id="search-frame", height=240)
                    with gr.Column(scale=3, min_width=320):
                        search_video = gr.Video(label="Annotated video", interactive=False, elem_id="search-video",
                                                height=360)
                        search_clip = gr.Video(label="Clip of the first match", interactive=False,
                                               elem_id="search-clip", height=360)

        # hidden outputs of the API endpoint
        api_summary = gr.Textbox(visible=False)
        api_results = gr.JSON(visible=False)
        api_files = gr.File(file_count="multiple", visible=False)
        api_trigger = gr.Button(visible=False)
        api_status = gr.JSON(visible=False)
        api_status_trigger = gr.Button(visible=False)

        last_run = gr.State(None)  # results.json of the last video analysed in this browser tab
        outputs = [message, video, image, table, plot, files, last_run, dense_note, dense]
        analyse.click(run_ui, [upload, fps, min_score], outputs, api_visibility="private", show_progress_on=[video],
                      concurrency_id="analysis", concurrency_limit=1).then(
            lambda: status_update(config), None, status, api_visibility="private", show_progress="hidden")
        api_trigger.click(run_api, [upload, fps, min_score], [api_summary, api_results, api_files],
                          api_name="analyse", concurrency_id="analysis", concurrency_limit=1)
        api_status_trigger.click(lambda: dataclasses.asdict(server_report(config)), None, api_status,
                                 api_name="status", concurrency_limit=None)
        refresh.click(lambda: page_status(config), None, [status, dense_note], api_visibility="private",
                      concurrency_limit=None)

        search_outputs = [search_message, search_ranges, search_details, search_video, search_frame, search_clip,
                          jump_to]

        def run_search(results_path: str | None, objects: str, caption: str, semantic: str) -> tuple[Any, ...]:
            return _search_outputs(search_run(results_path, objects, caption, semantic))

        def pick_range(results_path: str | None, table: pd.DataFrame, evt: gr.SelectData) -> tuple[Any, ...]:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            try:
                start, end = float(table.iloc[row]["from (s)"]), float(table.iloc[row]["to (s)"])
                png, clip = range_media(Path(results_path), start, end) if results_path else (None, None)
            except (IndexError, KeyError, ValueError, MMWError) as exc:
                log.warning("search row: %s", exc)
                return gr.Number(), gr.Image(), gr.Video()
            return (gr.Number(value=round(start, 2)), gr.Image(value=str(png) if png else None),
                    gr.Video(value=str(clip) if clip else None, label=f"Clip {format_time(start)}-{format_time(end)}"))

        for trigger in (search_button.click, search_objects.submit, search_caption.submit, search_semantic.submit):
            trigger(run_search, [last_run, search_objects, search_caption, search_semantic], search_outputs,
                    api_visibility="private", concurrency_limit=None)
        search_ranges.select(pick_range, [last_run, search_ranges], [jump_to, search_frame, search_clip],
                             api_visibility="private", concurrency_limit=None).then(
            None, [jump_to], None, js=JUMP_JS, api_visibility="private")
        jump.click(None, [jump_to], None, js=JUMP_JS, api_visibility="private")
        demo.load(lambda: page_status(config), None, [status, dense_note], api_visibility="private",
                  concurrency_limit=None, show_progress="hidden")
    return demo


def launch_app(config: Config, host: str | None = None, port: int | None = None,
               sample_video: str | Path | None = None) -> tuple[gr.Blocks, str]:
    """Start the app in background threads; returns (the Blocks, its URL). ``demo.close()`` stops it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    host = host or config.app.host
    port = port or config.app.port
    out_root = config.path(config.app.out_dir)
    demo = build_app(config, sample_video)
    allowed = [str(out_root)] + ([str(Path(sample_video).resolve().parent)] if sample_video else [])
    try:
        _, local_url, _ = demo.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, prevent_thread_lock=True, share=False, quiet=True, ssr_mode=False,
            show_error=False, max_file_size=int(config.app.max_upload_mb * 1024 * 1024),
            allowed_paths=allowed, css=_CSS, footer_links=["api", "gradio"],
        )
    except OSError as exc:
        raise ServerError(f"the app cannot listen on {host}:{port} ({one_line(exc)}); expected a free port: stop "
                          "what uses it, or set app.port in config/config.yaml (or `launcher app --port N`)") from None
    return demo, str(local_url).rstrip("/")


def triton_warning(config: Config) -> str | None:
    """A one-line warning when Triton does not answer or the ensemble is not ready; None when all is well."""
    report = server_report(config)
    if not report.reachable:
        return (f"Triton is not reachable at {report.url} ({report.protocol}); the app starts anyway and says so. "
                f"Start Triton with `{START_COMMAND}`.")
    if not (report.ready and report.ensemble_ready):
        return f"Triton at {report.url} answers but '{ENSEMBLE_NAME}' is not ready yet; see `launcher status`."
    return None


__all__: Sequence[str] = ["AppResult", "ServerReport", "analyse_upload", "build_app", "dense_table", "dense_view",
                          "launch_app", "server_report", "status_markdown", "triton_warning"]
