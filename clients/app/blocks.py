"""The Gradio Blocks of the app (``launcher app``): the page's widgets, its events and its API endpoints.

The page has a status panel (``clients.app.status``), an Analyse tab (an upload run through
``clients.app.upload``, shown by ``clients.app.views``) and a Search tab (``clients.app.search_tab``).
Scripts use the named endpoints ``/analyse`` and ``/status`` with ``gradio_client`` (see ``build_app``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from clients.analysis.search import format_time
from clients.app.auth import check_exposure, load_auth
from clients.app.search_tab import JUMP_JS, SEARCH_COLUMNS, SearchView, range_media, search_run
from clients.app.status import (
    START_COMMAND,
    ServerReport,
    dense_note_for_server,
    server_report,
    status_kind,
    status_markdown,
)
from clients.app.upload import IMAGE_SUFFIXES, VIDEO_SUFFIXES, AppResult, analyse_upload
from clients.app.views import DENSE_COLUMNS, class_colors, counts_frame, dense_view, results_table, summary_text
from clients.pipeline import ProgressFn, one_line
from mmw.config import Config
from mmw.errors import InferenceError, MMWError, ServerError

log = logging.getLogger(__name__)

_CSS = """
.mmw-error { border-left: 4px solid #d33; padding-left: 10px; }
.mmw-warn { border-left: 4px solid #e90; padding-left: 10px; }
.mmw-ok { border-left: 4px solid #2a2; padding-left: 10px; }
"""
_INTRO = (
    "# Scene understanding on Triton\n"
    "Upload a video (or a photo): frames are sampled, sent to the Triton Inference Server, and come back "
    "with detected objects (SSD MobileNet V2, 80 COCO classes), a scene label (EfficientNet-Lite0) and a "
    "caption. You get the annotated video, a table per frame, object counts over time and the files "
    "to download."
)


# --- status panel ----------------------------------------------------------------------------------------


def _status_panel(report: ServerReport) -> Any:
    return gr.Markdown(status_markdown(report), elem_classes=[status_kind(report)])


def status_update(config: Config) -> Any:
    """The status panel as a Gradio update, coloured by how things stand."""
    return _status_panel(server_report(config))


def page_status(config: Config) -> tuple[Any, Any]:
    """The status panel and the dense-captions note, from one look at the server."""
    report = server_report(config)
    return _status_panel(report), gr.Markdown(dense_note_for_server(report))


# --- outputs of one analysis -----------------------------------------------------------------------------


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


def _result_outputs(result: AppResult) -> tuple[Any, ...]:
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


def analysis_outputs(config: Config, upload: str | None, fps: float, min_score: float,
                     progress: ProgressFn | None = None) -> tuple[Any, ...]:
    """The Analyse tab's updates after analysing ``upload``; errors become one line in the message."""
    try:
        result = analyse_upload(config, upload, fps, min_score, progress=progress)
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
    return _result_outputs(result)


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


# --- the two tabs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyseTab:
    """The Analyse tab's widgets."""

    upload: Any
    fps: Any
    min_score: Any
    analyse: Any
    message: Any
    video: Any
    image: Any
    files: Any
    table: Any
    dense_note: Any
    dense: Any
    plot: Any

    def outputs(self, last_run: Any) -> list[Any]:
        """What an analysis updates, in the order of ``analysis_outputs``."""
        return [self.message, self.video, self.image, self.table, self.plot, self.files, last_run,
                self.dense_note, self.dense]


def _analyse_tab(config: Config, sample_video: str | Path | None) -> AnalyseTab:
    server_min = config.models.detector.score_threshold
    max_fps = config.app.max_fps
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            upload = gr.File(label="1. Video or image", file_types=[*VIDEO_SUFFIXES, *IMAGE_SUFFIXES],
                             type="filepath", elem_id="upload", height=140)
            gr.Markdown(f"MP4, MKV, MOV, AVI, WebM, JPEG or PNG, up to {config.app.max_upload_mb:g} MB.")
            if sample_video is not None and Path(sample_video).is_file():
                gr.Examples([[str(sample_video)]], inputs=[upload], label="No video at hand? Try this one:",
                            cache_examples=False)
            fps = gr.Slider(0.5, max_fps, value=min(config.client.fps, max_fps), step=0.5,
                            label="2. Frames per second to analyse",
                            info="Frames sampled per second of video (ignored for images).", elem_id="fps")
            min_score = gr.Slider(config.models.detector.track_min_score, 1.0, value=server_min, step=0.05,
                                  label="Minimum detection score",
                                  info=f"Boxes shown, applied after tracking (default {server_min:g}, "
                                       "models.detector.score_threshold); the server returns weaker ones down to "
                                       f"{config.models.detector.track_min_score:g} for the tracker.")
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
                       x_title="time (s)", y_title="objects in the frame", color_title="class", elem_id="counts")
    gr.Markdown(f"Results of every run are also kept under `{config.app.out_dir}/` on the machine running "
                "the app. Scripts: see *Use via API* below (endpoint `/analyse`).")
    return AnalyseTab(upload, fps, min_score, analyse, message, video, image, files, table, dense_note, dense, plot)


@dataclass(frozen=True)
class SearchTab:
    """The Search tab's widgets."""

    objects: Any
    caption: Any
    semantic: Any
    button: Any
    message: Any
    ranges: Any
    details: Any
    jump_to: Any
    jump: Any
    frame: Any
    video: Any
    clip: Any

    @property
    def outputs(self) -> list[Any]:
        """What a search updates, in the order of ``_search_outputs``."""
        return [self.message, self.ranges, self.details, self.video, self.frame, self.clip, self.jump_to]


def _search_tab() -> SearchTab:
    gr.Markdown("Search the last video analysed in this page: when do objects appear (all of them in "
                "the same frame), what do the captions say, or what do they mean (semantic search with "
                "sentence embeddings, when installed). You get time ranges, the scenes and "
                "tracks that match, the first match's frame and clip, and **Jump** seeks the video "
                "below to the selected range.")
    with gr.Row(equal_height=True):
        objects = gr.Textbox(label="Objects", placeholder="dog   or   person, horse", elem_id="search-objects",
                             scale=2)
        caption = gr.Textbox(label="Caption contains", placeholder="riding", elem_id="search-caption", scale=2)
        semantic = gr.Textbox(label="Caption means (semantic)", placeholder="someone on horseback",
                              elem_id="search-semantic", scale=2)
        button = gr.Button("Search", variant="primary", elem_id="search-button", scale=1)
    message = gr.Markdown("Analyse a video, then search it here.", elem_id="search-message")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=320):
            ranges = gr.Dataframe(headers=SEARCH_COLUMNS, interactive=False, wrap=True,
                                  label="Time ranges (select a row)", elem_id="search-ranges", max_height=300)
            details = gr.Markdown(elem_id="search-details")
            with gr.Row(equal_height=True):
                jump_to = gr.Number(label="Jump to (s)", precision=2, elem_id="jump-to", scale=2)
                jump = gr.Button("Jump", elem_id="jump", scale=1)
            frame = gr.Image(label="First match", type="filepath", interactive=False, elem_id="search-frame",
                             height=240)
        with gr.Column(scale=3, min_width=320):
            video = gr.Video(label="Annotated video", interactive=False, elem_id="search-video", height=360)
            clip = gr.Video(label="Clip of the first match", interactive=False, elem_id="search-clip", height=360)
    return SearchTab(objects, caption, semantic, button, message, ranges, details, jump_to, jump, frame, video, clip)


# --- events ----------------------------------------------------------------------------------------------


def _pick_range(results_path: str | None, table: pd.DataFrame, evt: gr.SelectData) -> tuple[Any, ...]:
    """A selected row of the ranges: its start in the jump box, its frame and clip."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    try:
        start, end = float(table.iloc[row]["from (s)"]), float(table.iloc[row]["to (s)"])
        png, clip = range_media(Path(results_path), start, end) if results_path else (None, None)
    except (IndexError, KeyError, ValueError, MMWError) as exc:
        log.warning("search row: %s", exc)
        return gr.Number(), gr.Image(), gr.Video()
    return (gr.Number(value=round(start, 2)), gr.Image(value=str(png) if png else None),
            gr.Video(value=str(clip) if clip else None, label=f"Clip {format_time(start)}-{format_time(end)}"))


def _wire_search(tab: SearchTab, last_run: Any) -> None:
    def run_search(results_path: str | None, objects: str, caption: str, semantic: str) -> tuple[Any, ...]:
        return _search_outputs(search_run(results_path, objects, caption, semantic))

    for trigger in (tab.button.click, tab.objects.submit, tab.caption.submit, tab.semantic.submit):
        trigger(run_search, [last_run, tab.objects, tab.caption, tab.semantic], tab.outputs,
                api_visibility="private", concurrency_limit=None)
    tab.ranges.select(_pick_range, [last_run, tab.ranges], [tab.jump_to, tab.frame, tab.clip],
                      api_visibility="private", concurrency_limit=None).then(
        None, [tab.jump_to], None, js=JUMP_JS, api_visibility="private")
    tab.jump.click(None, [tab.jump_to], None, js=JUMP_JS, api_visibility="private")


def _api_endpoints(config: Config, tab: AnalyseTab) -> None:
    """``/analyse`` and ``/status`` for scripts, on hidden widgets."""
    def run_api(upload: str | None, fps: float, min_score: float) -> tuple[str, dict[str, Any], list[str]]:
        try:
            result = analyse_upload(config, upload, fps, min_score)
        except MMWError as exc:
            raise gr.Error(one_line(exc)) from None
        return summary_text(result), result.run.results.to_dict(), [str(p) for p in result.files]

    summary, results, files = gr.Textbox(visible=False), gr.JSON(visible=False), gr.File(file_count="multiple",
                                                                                         visible=False)
    trigger = gr.Button(visible=False)
    status, status_trigger = gr.JSON(visible=False), gr.Button(visible=False)
    trigger.click(run_api, [tab.upload, tab.fps, tab.min_score], [summary, results, files], api_name="analyse",
                  concurrency_id="analysis", concurrency_limit=1)
    status_trigger.click(lambda: dataclasses.asdict(server_report(config)), None, status, api_name="status",
                         concurrency_limit=None)


def build_app(config: Config, sample_video: str | Path | None = None) -> gr.Blocks:
    """The Gradio Blocks of the app for ``config``: UI events plus the ``/analyse`` and ``/status`` endpoints.

    ``/analyse`` (for ``gradio_client``): inputs ``upload`` (a file: ``handle_file(path)``), ``fps`` and
    ``min_score``; outputs a summary text, the ``results.json`` content and the list of files written.
    ``sample_video``, when given, is offered as a one-click example under the upload box.
    A bad input or an unreachable server raises ``gradio.Error`` with a one-line reason. ``/status`` returns
    the status panel's facts as a dict (``reachable``, ``version``, ``models``, ``caption_source``, ...).
    """
    def run_ui(upload: str | None, fps: float, min_score: float,
               progress: gr.Progress = gr.Progress()  # noqa: B008 - Gradio injects the progress tracker this way
               ) -> tuple[Any, ...]:
        def tick(done: int, total: int) -> None:
            progress((done, total), desc="Analysing on Triton", unit="frames")

        progress(0, desc="Connecting to Triton")
        return analysis_outputs(config, upload, fps, min_score, progress=tick)

    def status_now() -> tuple[Any, Any]:
        return page_status(config)

    with gr.Blocks(title="Scene understanding on Triton", analytics_enabled=False) as demo:
        gr.Markdown(_INTRO)
        with gr.Row(equal_height=False):
            status = gr.Markdown("Checking the Triton server ...", elem_id="status", container=True)
            refresh = gr.Button("Refresh status", size="sm", scale=0, min_width=120)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Analyse", id="analyse-tab", elem_id="analyse-tab"):
                analyse = _analyse_tab(config, sample_video)
            with gr.Tab("Search", id="search-tab", elem_id="search-tab"):
                search = _search_tab()
        last_run = gr.State(None)  # results.json of the last video analysed in this browser tab
        analyse.analyse.click(run_ui, [analyse.upload, analyse.fps, analyse.min_score], analyse.outputs(last_run),
                              api_visibility="private", show_progress_on=[analyse.video], concurrency_id="analysis",
                              concurrency_limit=1).then(
            lambda: status_update(config), None, status, api_visibility="private", show_progress="hidden")
        _api_endpoints(config, analyse)
        refresh.click(status_now, None, [status, analyse.dense_note], api_visibility="private", concurrency_limit=None)
        _wire_search(search, last_run)
        demo.load(status_now, None, [status, analyse.dense_note], api_visibility="private", concurrency_limit=None,
                  show_progress="hidden")
    return demo


def launch_app(config: Config, host: str | None = None, port: int | None = None,
               sample_video: str | Path | None = None, insecure: bool = False) -> tuple[gr.Blocks, str]:
    """Start the app in background threads; returns (the Blocks, its URL). ``demo.close()`` stops it.

    With a login (``app.auth_env``/``app.auth_file``) the page asks for it; without one only a loopback
    ``host`` is bound unless ``insecure`` (ConfigError otherwise)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    host = host or config.app.host
    port = port or config.app.port
    auth = load_auth(config)
    check_exposure(host, auth, insecure)
    out_root = config.path(config.app.out_dir)
    demo = build_app(config, sample_video)
    allowed = [str(out_root)] + ([str(Path(sample_video).resolve().parent)] if sample_video else [])
    try:
        _, local_url, _ = demo.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, prevent_thread_lock=True, share=False, quiet=True, ssr_mode=False,
            show_error=False, max_file_size=int(config.app.max_upload_mb * 1024 * 1024),
            allowed_paths=allowed, css=_CSS, footer_links=["api", "gradio"], auth=auth,
        )
    except OSError as exc:
        raise ServerError(f"the app cannot listen on {host}:{port} ({one_line(exc)}); expected a free port: stop "
                          "what uses it, or set app.port in config/config.yaml (or `launcher app --port N`)") from None
    return demo, str(local_url).rstrip("/")
