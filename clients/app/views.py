"""What the Analyse tab shows of a finished analysis: tables, plot data, colours and texts (no widgets)."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from clients.analysis.summary import summarize, summary_lines
from clients.app.status import TEMPLATE_DENSE_NOTE
from clients.app.upload import AppResult
from clients.outputs.annotators import class_color
from clients.pipeline import VideoRun, one_line
from clients.results import ImageResult
from mmw.contract import TEMPLATE_SOURCE


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


# --- dense captions --------------------------------------------------------------------------------------


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
