"""The status panel's facts about Triton, asked through ``SceneClient`` (the app never talks to Triton itself)."""

from __future__ import annotations

from dataclasses import dataclass

from clients.pipeline import one_line
from clients.transport import SceneClient
from mmw.config import Config
from mmw.contract import ENSEMBLE_NAME, TEMPLATE_SOURCE
from mmw.errors import InferenceError
from mmw.processing.captions import NEURAL_CAPTIONS_DOC

START_COMMAND = "launcher run"
STATUS_TIMEOUT_S = 3.0

TEMPLATE_DENSE_NOTE = (
    "**Dense captions are not available: captions are template ones** (sentences composed from the detected "
    "objects and the scene label), because no captioning model is configured (`models.caption.model`). "
    "To caption every frame and its objects with BLIP, see the README section **Neural captions** "
    f"(`{NEURAL_CAPTIONS_DOC}`)."
)


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
    """(HOST:PORT, protocol) the app talks to, from the ``client`` and ``server`` sections: ``client.urls``
    (comma-separated: the client spreads requests over them) when set, else server.host and the port."""
    protocol = config.client.protocol
    port = config.server.grpc_port if protocol == "grpc" else config.server.http_port
    return ",".join(config.client.urls) or f"{config.server.host}:{port}", protocol


def server_report(config: Config) -> ServerReport:
    """Ask Triton whether it answers, its version, which models are ready and the caption source."""
    url, protocol = client_url(config)
    with SceneClient(url, protocol=protocol, timeout_s=STATUS_TIMEOUT_S) as client:  # type: ignore[arg-type]
        try:
            info = client.server_info()
        except InferenceError as exc:
            return ServerReport(url, protocol, reachable=False, error=one_line(exc))
        ready = client.server_ready()
        models = [(ENSEMBLE_NAME, client.model_ready())]
        try:
            models += [(step.model, client.model_ready(step.model)) for step in client.model_config().steps]
            captioner = client.captioner()
        except InferenceError:
            captioner = None
    return ServerReport(url, protocol, reachable=True, ready=ready, version=info.version, models=tuple(models),
                        caption_source=captioner.source if captioner else "",
                        caption_settings=captioner.settings if captioner else ())


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


def status_kind(report: ServerReport) -> str:
    """The panel's colour class: ``mmw-ok``, ``mmw-warn`` (answers, not all ready) or ``mmw-error``."""
    if report.reachable and report.ready and report.ensemble_ready:
        return "mmw-ok"
    return "mmw-warn" if report.reachable else "mmw-error"


def dense_note_for_server(report: ServerReport) -> str:
    """The note above the dense-captions table before any analysis, from the served caption source."""
    if not report.reachable or not report.caption_source:
        return "Dense captions: the caption source is not known yet (see the status above)."
    if report.neural_captions:
        return (f"**Dense captions** by `{report.caption_source}`: one caption per detected object that is "
                "captioned, shown after an analysis.")
    return TEMPLATE_DENSE_NOTE


def triton_warning(config: Config) -> str | None:
    """A one-line warning when Triton does not answer or the ensemble is not ready; None when all is well."""
    report = server_report(config)
    if not report.reachable:
        return (f"Triton is not reachable at {report.url} ({report.protocol}); the app starts anyway and says so. "
                f"Start Triton with `{START_COMMAND}`.")
    if not (report.ready and report.ensemble_ready):
        return f"Triton at {report.url} answers but '{ENSEMBLE_NAME}' is not ready yet; see `launcher status`."
    return None
