"""Search a video's results: when do objects appear, which scenes hold them, which captions say something.

A sampled frame matches a ``SearchQuery`` when every class in ``objects`` is detected in it (at or
above ``min_score``) and, when ``caption`` is given, its caption contains that text (case-insensitive).
Consecutive matching frames merge into a ``TimeRange`` that runs from the first one's time to one
sampling interval after the last one (clipped to the next sampled frame and to the video's end).
A scene matches when all the classes are detected somewhere in it and its caption, or one of its
frames' captions, contains the text. Tracks of the asked classes come along, with their times.
``semantic`` text matches frames whose caption means something close (``clients.analysis.semantic``: cosine
similarity of sentence embeddings >= ``min_similarity``); each range then carries its best similarity.
Cutting a range out of ``annotated.mp4`` is ``clients.media.clips``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.analysis.scenes import scene_frames, segment_scenes
from clients.results import FrameResult, Scene, Track, VideoResults
from mmw.errors import InputError
from mmw.processing.labels import COCO_NAMES

_KNOWN = frozenset(COCO_NAMES.values())


def format_time(seconds: float) -> str:
    """``1:02.50`` (minutes:seconds), ``1:02:03.50`` past an hour."""
    cs = max(0, round(float(seconds) * 100))
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    s, cs = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}" if h else f"{m}:{s:02d}.{cs:02d}"


def parse_objects(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"person, horse"`` (or a list of such) -> ``("person", "horse")``: lower case, no duplicates.

    Raises InputError for a name that is not a class of the detector, naming close ones.
    """
    if text is None:
        return ()
    parts = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for part in parts:
        for name in part.split(","):
            name = " ".join(name.strip().lower().split())
            if name and name not in names:
                names.append(name)
    for name in names:
        if name not in _KNOWN:
            close = sorted(k for k in _KNOWN if name[:3] in k or k in name)[:5]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(f"object {name!r}: expected a COCO class name such as person, dog, horse, car{hint}")
    return tuple(names)


@dataclass(frozen=True)
class SearchQuery:
    """All of ``objects`` in the same frame, and/or ``caption`` contained in the frame's caption."""

    objects: tuple[str, ...] = ()
    caption: str | None = None
    min_score: float = 0.0
    semantic: str | None = None  # captions that mean something close to this text
    min_similarity: float = 0.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", parse_objects(self.objects))
        for name in ("caption", "semantic"):
            text = " ".join((getattr(self, name) or "").split())
            object.__setattr__(self, name, text or None)
        if not self.objects and self.caption is None and self.semantic is None:
            raise InputError("search: expected objects (such as dog or person,horse), caption text or semantic "
                             "text, got none")
        if not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"search: expected min_score in [0, 1], got {self.min_score}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise InputError(f"search: expected min_similarity in [-1, 1], got {self.min_similarity}")

    def describe(self) -> str:
        parts = []
        if self.objects:
            parts.append(" and ".join(self.objects))
        if self.caption:
            parts.append(f'caption contains "{self.caption}"')
        if self.semantic:
            parts.append(f'caption like "{self.semantic}"')
        return ", ".join(parts)

    def matches(self, frame: FrameResult) -> bool:
        seen = {d.class_name.lower() for d in frame.image.detections if d.score >= self.min_score}
        if not set(self.objects) <= seen:
            return False
        return self.caption is None or self.caption.lower() in frame.image.caption.lower()


@dataclass(frozen=True)
class TimeRange:
    """Consecutive matching frames: [start_s, end_s); ``first_frame`` is the first one's frame index."""

    start_s: float
    end_s: float
    frames: int
    first_frame: int
    caption: str  # the first matching frame's caption
    similarity: float | None = None  # semantic search: the best caption similarity in the range

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def label(self) -> str:
        return f"{format_time(self.start_s)}-{format_time(self.end_s)}"

    def to_dict(self) -> dict[str, Any]:
        d = {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "frames": self.frames,
             "first_frame": self.first_frame, "caption": self.caption}
        return d if self.similarity is None else d | {"similarity": round(self.similarity, 4)}


@dataclass(frozen=True)
class SearchResult:
    """Time ranges, scenes and tracks that match a query."""

    query: SearchQuery
    ranges: tuple[TimeRange, ...]
    scenes: tuple[Scene, ...] = ()
    tracks: tuple[Track, ...] = field(default=())

    @property
    def total_s(self) -> float:
        return sum(r.duration_s for r in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": {"objects": list(self.query.objects), "caption": self.query.caption,
                      "min_score": self.query.min_score, "semantic": self.query.semantic},
            "total_s": round(self.total_s, 3),
            "ranges": [r.to_dict() for r in self.ranges],
            "scenes": [s.to_dict() for s in self.scenes],
            "tracks": [t.to_dict() for t in self.tracks],
        }


def time_ranges(frames: Sequence[FrameResult], hits: Sequence[bool], fps: float,
                duration_s: float | None = None, scores: Sequence[float] | None = None) -> tuple[TimeRange, ...]:
    """Merge runs of consecutive matching frames into time ranges (``scores``: best one per range)."""
    if len(frames) != len(hits):
        raise InputError(f"search: expected one flag per frame ({len(frames)}), got {len(hits)}")
    ranges = []
    k = 0
    while k < len(frames):
        if not hits[k]:
            k += 1
            continue
        start = k
        while k + 1 < len(frames) and hits[k + 1]:
            k += 1
        last = frames[k].timestamp_s
        end = last + 1.0 / fps
        if k + 1 < len(frames):
            end = min(end, frames[k + 1].timestamp_s)
        elif duration_s is not None and duration_s > last:
            end = min(end, duration_s)
        first = frames[start]
        best = None if scores is None else float(max(scores[start : k + 1]))
        ranges.append(TimeRange(first.timestamp_s, end, k - start + 1, first.index, first.image.caption, best))
        k += 1
    return tuple(ranges)


def search(results: VideoResults, query: SearchQuery, embedder: Any = None) -> SearchResult:
    """The time ranges, scenes and tracks of ``results`` that match ``query``.

    ``embedder`` (semantic queries only): a sentence-transformers model; default ``clients.analysis.semantic``'s.
    """
    frames = results.frames
    hits = [query.matches(f) for f in frames]
    similarity = None
    if query.semantic is not None:
        from clients.analysis.semantic import caption_similarity

        similarity = caption_similarity([f.image.caption for f in frames], query.semantic, embedder)
        hits = [h and bool(s >= query.min_similarity) for h, s in zip(hits, similarity, strict=True)]
    duration = results.duration_s if results.duration_s > 0 else None
    ranges = time_ranges(frames, hits, results.fps_sampled, duration, similarity)
    scenes = results.scenes or segment_scenes(frames, fps=results.fps_sampled, duration_s=duration)
    matching_scenes = []
    for scene in scenes:
        part = scene_frames(frames, scene)
        if not set(query.objects) <= {d.class_name.lower() for f in part for d in f.image.detections
                                      if d.score >= query.min_score}:
            continue
        if query.caption is not None and not any(
            query.caption.lower() in c.lower() for c in [scene.caption, *(f.image.caption for f in part)]
        ):
            continue
        if similarity is not None and not any(hits[scene.first_frame : scene.first_frame + scene.frames]):
            continue
        matching_scenes.append(scene)
    tracks = tuple(t for t in results.tracks if t.class_name.lower() in query.objects)
    return SearchResult(query, ranges, tuple(matching_scenes), tracks)


def result_lines(result: SearchResult) -> list[str]:
    """Human-readable lines: ranges, then scenes, then tracks."""
    q = result.query.describe()
    if not result.ranges:
        lines = [f"{q}: no sampled frame matches"]
    else:
        n = len(result.ranges)
        lines = [f"{q}: {n} time range{'s' if n != 1 else ''}, {result.total_s:.1f} s in all"]
        for r in result.ranges:
            like = f", similarity {r.similarity:.2f}" if r.similarity is not None else ""
            lines.append(f"  {r.label()}  ({r.frames} frame{'s' if r.frames != 1 else ''}, first at frame "
                         f"{r.first_frame}{like})  {r.caption}".rstrip())
    if result.scenes:
        lines.append(f"scenes ({len(result.scenes)}):")
        for s in result.scenes:
            lines.append(f"  scene {s.index}: {format_time(s.start_s)}-{format_time(s.end_s)}  {s.caption}".rstrip())
    if result.tracks:
        lines.append(f"tracks ({len(result.tracks)}):")
        for t in result.tracks:
            lines.append(f"  {t.class_name} #{t.track_id}: {format_time(t.first_seen_s)}-"
                         f"{format_time(t.last_seen_s)} ({t.frames} frames)")
    return lines
