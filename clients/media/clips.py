"""Cut a time range out of a video and read one frame of it: for players that cannot seek on request."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from clients.media.mp4 import Mp4Writer
from mmw.errors import InputError


def extract_clip(video: str | Path, start_s: float, end_s: float, out: str | Path) -> Path:
    """Re-encode the frames of ``video`` shown in [start_s, end_s) into ``out`` (an MP4 that starts at 0).

    Raises InputError when the range holds no frame.
    """
    video, out = Path(video), Path(out)
    if not end_s > start_s:
        raise InputError(f"clip: expected end_s > start_s, got {start_s}..{end_s}")
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"clip: cannot read {video} ({exc})") from None
    writer: Mp4Writer | None = None
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        if start_s > 0:
            container.seek(int(max(0.0, start_s - 1.0) / float(stream.time_base)), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            if t < start_s - 1e-6:
                continue
            if t >= end_s - 1e-6:
                break
            rgb = frame.to_ndarray(format="rgb24")
            if writer is None:
                writer = Mp4Writer(out, fps, (rgb.shape[1], rgb.shape[0]))
            writer.write(rgb, timestamp_s=t - start_s)
    finally:
        container.close()
        if writer is not None:
            writer.close()
    if writer is None:
        raise InputError(f"clip: no frame of {video} between {start_s:.2f} s and {end_s:.2f} s")
    return out


def frame_at(video: str | Path, t_s: float) -> np.ndarray:
    """The RGB frame of ``video`` shown at ``t_s`` (the first one at or after it; the last one if none)."""
    video = Path(video)
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"frame: cannot read {video} ({exc})") from None
    last: np.ndarray | None = None
    try:
        stream = container.streams.video[0]
        if t_s > 1.0:
            container.seek(int((t_s - 1.0) / float(stream.time_base)), stream=stream, backward=True)
        for frame in container.decode(stream):
            last = frame.to_ndarray(format="rgb24")
            if frame.pts is not None and float(frame.pts * frame.time_base) >= t_s - 1e-3:
                break
    finally:
        container.close()
    if last is None:
        raise InputError(f"frame: {video} has no frame")
    return last
