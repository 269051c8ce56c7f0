"""Subtitles of a video's results: cues that follow the captions inside each scene, as SubRip and WebVTT.

Within a scene a new cue starts at the scene's start, at each sampled frame whose caption differs from the
cue's (compared normalised: case, spacing and end punctuation ignored) and where the cue would otherwise run
past ``cue_s`` seconds. Cue times are sampled-frame times, so cues are frame-accurate and never overlap; a
cue is longer than ``cue_s`` only when one sampled frame is; a scene's last cue ends at the scene's end.
A frame without a caption (a failed frame) continues the cue it falls in; a scene whose frames have no
caption at all shows the scene's caption (its label). The first line of a cue is the caption; when the
cue's frames have dense captions, a second line lists the distinct ones seen during the cue
(``person: a man riding a horse; dog: a brown dog``), at most ``DENSE_LINE_CHARS`` characters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clients.outputs.text import shorten
from clients.results import FrameResult, Scene, VideoResults, write_text_atomic
from mmw.errors import InputError

#: Longest a cue runs inside a scene, in seconds, unless set (``client.cue_s``).
DEFAULT_CUE_S = 4.0
#: Longest second line (the dense captions of a cue), in characters, ``...`` included.
DENSE_LINE_CHARS = 120
_EPS = 1e-6  # frame times are multiples of 1/fps: a cue that ends "at" start + cue_s fits


@dataclass(frozen=True)
class Cue:
    """One subtitle: [start_s, end_s) of scene ``scene``; ``caption`` and ``dense`` are single lines."""

    start_s: float
    end_s: float
    caption: str
    dense: str = ""  # the dense captions seen during the cue ("" when none)
    scene: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s) and 0 <= self.start_s < self.end_s):
            raise InputError(f"subtitle cue: expected 0 <= start_s < end_s, got {self.start_s}..{self.end_s}")
        if any("\n" in line for line in (self.caption, self.dense)):
            raise InputError(f"subtitle cue: expected single-line text, got {self.caption!r} / {self.dense!r}")

    @property
    def lines(self) -> tuple[str, ...]:
        """The cue's text lines: the caption, then the dense captions when there are any."""
        return (self.caption, self.dense) if self.dense else (self.caption,)


# --- cues ------------------------------------------------------------------------------------------------


def one_line(text: str) -> str:
    """``text`` on one line, whitespace collapsed; ``-->`` (a cue timing arrow) becomes ``->``."""
    return " ".join(text.split()).replace("-->", "->")


def caption_key(text: str) -> str:
    """What two captions are compared by: case, spacing and surrounding punctuation ignored."""
    return " ".join(text.casefold().split()).strip(" .,;:!?")


def check_cue_s(cue_s: float) -> float:
    """``cue_s`` as a float; raises InputError unless it is a finite number of seconds > 0."""
    if isinstance(cue_s, bool) or not isinstance(cue_s, int | float) or not (math.isfinite(cue_s) and cue_s > 0):
        raise InputError(f"subtitles: expected cue_s a number of seconds > 0, got {cue_s!r}")
    return float(cue_s)


def dense_line(frames: Sequence[FrameResult], max_chars: int = DENSE_LINE_CHARS) -> str:
    """The distinct dense captions of ``frames`` in order of first appearance, ``class: caption; ...``."""
    items: dict[tuple[str, str], str] = {}
    for f in frames:
        for c in f.image.dense_captions:
            text = one_line(c.caption)
            if text:
                items.setdefault((c.class_name, caption_key(text)), f"{one_line(c.class_name)}: {text}")
    return shorten("; ".join(items.values()), max_chars)


def _frame_captions(part: Sequence[FrameResult], scene: Scene) -> list[str]:
    """Each frame's caption; a frame without one takes the one before it (the first one after, at the start)."""
    texts = [one_line(f.image.caption) for f in part]
    previous = next((t for t in texts if t), one_line(scene.caption))
    for n, text in enumerate(texts):
        previous = texts[n] = text or previous
    return texts


def scene_cues(scene: Scene, frames: Sequence[FrameResult], cue_s: float = DEFAULT_CUE_S) -> list[Cue]:
    """The cues of one scene, from its sampled frames (in time order; none: one cue with the scene's caption)."""
    cue_s = check_cue_s(cue_s)
    if scene.end_s <= scene.start_s:
        return []
    part = [f for f in frames if scene.start_s - _EPS <= f.timestamp_s < scene.end_s]
    ends = [f.timestamp_s for f in part[1:]] + [scene.end_s] if part else []  # where each frame's time ends
    groups: list[tuple[float, str, list[FrameResult]]] = []  # (start, caption, frames) of each cue
    for frame, text, end in zip(part, _frame_captions(part, scene), ends, strict=True):
        if groups:
            start, caption, members = groups[-1]
            if caption_key(text) == caption_key(caption) and end - start <= cue_s + _EPS:
                members.append(frame)
                continue
        groups.append((scene.start_s if not groups else max(frame.timestamp_s, scene.start_s), text, [frame]))
    if not groups:
        groups.append((scene.start_s, one_line(scene.caption), []))
    cue_ends = [g[0] for g in groups[1:]] + [scene.end_s]
    return [Cue(start, end, caption, dense_line(members), scene.index)
            for (start, caption, members), end in zip(groups, cue_ends, strict=True) if caption and end > start]


def subtitle_cues(frames: Sequence[FrameResult], scenes: Sequence[Scene], cue_s: float = DEFAULT_CUE_S) -> list[Cue]:
    """The cues of every scene, in time order; a cue that would start before the previous one ends is cut."""
    cues: list[Cue] = []
    for scene in scenes:
        for cue in scene_cues(scene, frames[scene.first_frame : scene.first_frame + scene.frames], cue_s):
            floor = cues[-1].end_s if cues else 0.0
            if cue.start_s < floor < cue.end_s:
                cue = Cue(floor, cue.end_s, cue.caption, cue.dense, cue.scene)
            if cue.start_s >= floor:
                cues.append(cue)
    return cues


def cues_of(results: VideoResults, cue_s: float = DEFAULT_CUE_S) -> list[Cue]:
    """The subtitle cues of a video's results."""
    return subtitle_cues(results.frames, results.scenes, cue_s)


# --- SubRip and WebVTT -----------------------------------------------------------------------------------


def format_timestamp(seconds: float, decimal_mark: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``decimal_mark="."``, ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = max(0, round(float(seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal_mark}{ms:03d}"


def srt_text(cues: Sequence[Cue]) -> str:
    """SubRip subtitles: the cues numbered from 1."""
    blocks = [
        f"{n}\n{format_timestamp(c.start_s)} --> {format_timestamp(c.end_s)}\n" + "".join(f"{t}\n" for t in c.lines)
        for n, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_text(cues: Sequence[Cue]) -> str:
    """WebVTT subtitles: each cue identified ``scene-<scene index>-<n>``, n counting from 1 in its scene."""
    blocks = ["WEBVTT\n"]
    count: dict[int, int] = {}
    for c in cues:
        count[c.scene] = count.get(c.scene, 0) + 1
        start, end = format_timestamp(c.start_s, "."), format_timestamp(c.end_s, ".")
        text = "".join(f"{_vtt_escape(t)}\n" for t in c.lines)
        blocks.append(f"scene-{c.scene}-{count[c.scene]}\n{start} --> {end}\n{text}")
    return "\n".join(blocks)


def write_srt(cues: Sequence[Cue], path: str | Path) -> Path:
    """Write ``captions.srt``."""
    return write_text_atomic(Path(path), srt_text(cues))


def write_vtt(cues: Sequence[Cue], path: str | Path) -> Path:
    """Write ``captions.vtt``."""
    return write_text_atomic(Path(path), vtt_text(cues))
