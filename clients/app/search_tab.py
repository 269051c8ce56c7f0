"""The Search tab: search the last video analysed in the page, with its frame, clip and a seekable player."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clients.analysis.search import SearchQuery, format_time, search
from clients.media.clips import extract_clip, frame_at
from clients.media.images import write_png
from clients.pipeline import one_line
from clients.recorder import ANNOTATED_VIDEO_FILE
from clients.results import VideoResults
from mmw.errors import MMWError

log = logging.getLogger(__name__)

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
    video = results_path.parent / ANNOTATED_VIDEO_FILE
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

    ``semantic`` text needs the optional caption embedding model (``clients.analysis.semantic``).
    """
    if not results_path:
        return _no_ranges("Analyse a video first (the **Analyse** tab): the search looks at the last video "
                          "analysed in this page.")
    path = Path(results_path)
    video = path.parent / ANNOTATED_VIDEO_FILE
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
