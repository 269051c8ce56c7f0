"""Gradio app: a thin client of the served ``scene_understanding`` ensemble (``launcher app``).

Every pixel of processing happens in Triton or in ``clients.pipeline`` (the same code as
``python -m clients video``), and every word with Triton goes through ``SceneClient``; the app only
turns an upload into a pipeline call and the results into widgets: the annotated video or image, a table
per frame, a table of dense captions (one per captioned object, when a neural captioner is served; else a
note that captions are template ones), a plot of object counts over time and the files to download. A
status panel says whether Triton answers and which captioner it serves. The Search tab searches the last
video analysed in the page (``clients.analysis.search``): time ranges, scenes and tracks, the first
match's frame and clip, and a Jump button that seeks its player to a range.

Modules: ``status`` (the server's facts for the status panel), ``upload`` (one analysis), ``views`` (its
tables and texts), ``search_tab`` (the Search tab's query), ``blocks`` (the widgets, events and endpoints).
"""

from clients.app.blocks import build_app, launch_app
from clients.app.status import ServerReport, server_report, status_markdown, triton_warning
from clients.app.upload import AppResult, analyse_upload
from clients.app.views import dense_table, dense_view

__all__ = ["AppResult", "ServerReport", "analyse_upload", "build_app", "dense_table", "dense_view", "launch_app",
           "server_report", "status_markdown", "triton_warning"]
