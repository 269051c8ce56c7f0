"""Which outputs a run writes: ``--outputs results,coco,srt,vtt,csv,mp4``.

``results.json`` is always written (resuming and the corpus index read it back); the others can be
left out by a batch user who does not want them. ``mp4`` (``annotated.mp4``) is the costly one: leaving
it out skips drawing and encoding every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.outputs.exports import COCO_FILE, SRT_FILE, TRACKS_FILE, VTT_FILE
from mmw.errors import InputError

#: Output names as ``--outputs`` spells them, and the export file each one writes.
EXPORT_NAMES = {"coco": COCO_FILE, "srt": SRT_FILE, "vtt": VTT_FILE, "csv": TRACKS_FILE}
OUTPUT_NAMES = ("results", *EXPORT_NAMES, "mp4")


@dataclass(frozen=True)
class OutputSelection:
    """The outputs of a run (every one by default); build it from text with ``parse``."""

    names: frozenset[str] = frozenset(OUTPUT_NAMES)

    def __post_init__(self) -> None:
        unknown = sorted(self.names - set(OUTPUT_NAMES))
        if unknown:
            raise InputError(f"--outputs: unknown {', '.join(unknown)}; expected a comma-separated list of "
                             f"{','.join(OUTPUT_NAMES)}")
        object.__setattr__(self, "names", frozenset(self.names) | {"results"})

    @classmethod
    def parse(cls, text: str) -> OutputSelection:
        """``"results,srt,mp4"`` -> the selection; ``all`` means every output."""
        names = {part.strip().lower() for part in text.split(",") if part.strip()}
        if not names:
            raise InputError(f"--outputs: expected a comma-separated list of {','.join(OUTPUT_NAMES)}, got {text!r}")
        return cls(frozenset(OUTPUT_NAMES) if names == {"all"} else frozenset(names))

    @property
    def annotated_video(self) -> bool:
        """Whether ``annotated.mp4`` is drawn and written."""
        return "mp4" in self.names

    @property
    def export_files(self) -> frozenset[str]:
        """The export files to write (``clients.outputs.exports``)."""
        return frozenset(file for name, file in EXPORT_NAMES.items() if name in self.names)

    def covers(self, other: OutputSelection) -> bool:
        """Whether a run that wrote these outputs also wrote everything ``other`` asks for."""
        return other.names <= self.names

    def __str__(self) -> str:
        return ",".join(name for name in OUTPUT_NAMES if name in self.names)
