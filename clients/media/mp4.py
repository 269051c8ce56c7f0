"""Write RGB frames as an H.264 (or MPEG-4 part 2) MP4 with PyAV."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from mmw.errors import InputError

PREFERRED_CODECS = ("libx264", "mpeg4")


def pick_codec() -> str:
    """``libx264`` when PyAV's bundled FFmpeg has it, else ``mpeg4`` (always built in)."""
    for name in PREFERRED_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # PyAV raises different errors for a missing encoder
            continue
        return name
    raise InputError(f"no MP4 video encoder available in PyAV's FFmpeg (tried {', '.join(PREFERRED_CODECS)})")


def _even(n: int) -> int:
    return n + (n % 2)


class Mp4Writer:
    """Context manager writing RGB uint8 frames to an MP4 (yuv420p, even dimensions).

    ``size`` is (width, height); frames of another size are resized to it, and an odd width or
    height is padded by one black pixel because yuv420p needs even dimensions. The file is
    written under a temporary name and renamed when the writer closes, so an interrupted run
    never leaves a half-written file at ``path``; a writer that got no frame writes no file.
    ``deterministic`` makes libx264 write the same bytes for the same frames on every run.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        *,
        codec: str | None = None,
        crf: int = 23,
        deterministic: bool = False,
    ) -> None:
        if fps <= 0:
            raise InputError(f"video writer: expected fps > 0, got {fps}")
        width, height = size
        if width <= 0 or height <= 0:
            raise InputError(f"video writer: expected a positive (width, height), got {size}")
        self.path = Path(path)
        self.fps = float(fps)
        self.rate = Fraction(self.fps).limit_denominator(1001)
        self.size = (int(width), int(height))
        self.encoded_size = (_even(self.size[0]), _even(self.size[1]))
        self.codec = codec or pick_codec()
        self.crf = crf
        self.deterministic = deterministic
        self.frames_written = 0
        self._last_pts = -1
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._tmp = self.path.with_name(f".{self.path.name}.part")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        options: dict[str, str] = {}
        if self.codec == "libx264":
            options = {"crf": str(self.crf), "preset": "veryfast"}
            if self.deterministic:  # x264's macroblock tree made byte-different files run to run here
                options |= {"threads": "1", "x264-params": "mbtree=0"}
        stream = container.add_stream(self.codec, rate=self.rate, options=options)
        stream.width, stream.height = self.encoded_size
        stream.pix_fmt = "yuv420p"
        if self.codec != "libx264":
            stream.bit_rate = max(500_000, int(self.encoded_size[0] * self.encoded_size[1] * self.fps * 0.3))
        self._container, self._stream = container, stream

    def write(self, rgb: np.ndarray, timestamp_s: float | None = None) -> None:
        """Add one RGB uint8 frame. With ``timestamp_s`` it is shown at that time (rounded to 1/fps),
        so gaps in the timeline stay gaps; without, frames follow each other at ``fps``."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"video writer: expected an RGB uint8 frame [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
        if self._container is None:
            self._open()
        assert self._container is not None and self._stream is not None
        frame_rgb = self._fit(rgb)
        pts = self._last_pts + 1
        if timestamp_s is not None:
            pts = max(pts, round(timestamp_s * self.rate))
        frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
        frame.pts = pts
        frame.time_base = 1 / self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames_written += 1

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        w, h = self.size
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        ew, eh = self.encoded_size
        if (ew, eh) != (w, h):
            rgb = cv2.copyMakeBorder(rgb, 0, eh - h, 0, ew - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return np.ascontiguousarray(rgb)

    def close(self) -> Path | None:
        """Flush the encoder and move the file into place; returns its path, or None if no frame was written."""
        if self._container is None:
            return None
        container, stream = self._container, self._stream
        self._container = self._stream = None
        try:
            assert stream is not None
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
        os.replace(self._tmp, self.path)
        return self.path

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Frames written before an error are kept: a partial video is still useful.
        self.close()
