"""A few human-readable lines about a run's results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clients.results import ImageResult, VideoResults


@dataclass(frozen=True)
class Summary:
    """Counts over a sequence of image results (video frames or still images)."""

    count: int
    objects: Counter[str]  # detections per class name, summed over images
    images_with: Counter[str]  # images with at least one detection of the class
    top_labels: Counter[str]  # best scene label per image
    captions: Counter[str]


def summarize(results: Sequence[ImageResult]) -> Summary:
    objects: Counter[str] = Counter()
    images_with: Counter[str] = Counter()
    top_labels: Counter[str] = Counter()
    captions: Counter[str] = Counter()
    for r in results:
        names = [d.class_name for d in r.detections]
        objects.update(names)
        images_with.update(set(names))
        if r.labels:
            top_labels[r.labels[0].name] += 1
        if r.caption:
            captions[r.caption] += 1
    return Summary(len(results), objects, images_with, top_labels, captions)


def summary_lines(summary: Summary, unit: str = "frames", max_classes: int = 8) -> list[str]:
    """``objects: ...``, ``most frequent scene label: ...`` and ``most frequent caption: ...`` lines."""
    n = summary.count
    lines = []
    if summary.objects:
        parts = [
            f"{name} {count} (in {_count(summary.images_with[name], unit)})"
            for name, count in summary.objects.most_common(max_classes)
        ]
        more = len(summary.objects) - max_classes
        lines.append("objects: " + ", ".join(parts) + (f", and {more} more classes" if more > 0 else ""))
    else:
        lines.append("objects: none detected")
    if summary.top_labels:
        label, count = summary.top_labels.most_common(1)[0]
        lines.append(f"most frequent scene label: {label} ({count}/{n} {unit})")
    if summary.captions:
        caption, count = summary.captions.most_common(1)[0]
        lines.append(f'most frequent caption: "{caption}" ({count}/{n} {unit})')
    return lines


def _count(n: int, unit: str) -> str:
    """``1 frame``, ``2 frames``: ``unit`` is the plural."""
    return f"{n} {unit if n != 1 else unit.removesuffix('s')}"


def video_lines(results: VideoResults, exports: Sequence[Path]) -> list[str]:
    """A video run's ``summary_lines``, then its unique objects (tracks), scenes and export files."""
    lines = summary_lines(summarize([f.image for f in results.frames]), unit="frames")
    counts = results.object_counts
    lines.append("unique objects (tracks): " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    n = len(results.scenes)
    spans = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s" for s in results.scenes[:6]) + (", ..." if n > 6 else "")
    lines.append(f"{n} scene{'s' if n != 1 else ''}" + (f": {spans}" if n else ""))
    if exports:
        lines.append("exports: " + ", ".join(p.name for p in exports))
    return lines
