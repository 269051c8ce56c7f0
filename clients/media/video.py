"""Read videos with PyAV: ``probe`` the stream and ``sample_frames`` at a fixed rate by timestamp.

Still images (``read_image``, ``encode_jpeg``) are ``clients.media.images``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from mmw.errors import InputError

__all__ = ["SampledFrame", "VideoInfo", "expected_sample_count", "probe", "sample_frames"]

_EPS = 1e-6
# A stream that ends this much earlier than its header says is reported as truncated.
_MIN_SHORTFALL_S = 0.5
_VIDEO_HINT = "expected a video file such as MP4, MKV, MOV, AVI or WebM"


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns: display size (after rotation), rate and length."""

    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int  # from the container, or duration x fps when the container does not store it
    codec: str
    rotation: int  # degrees counter-clockwise the decoded frames are turned for display


class SampledFrame(NamedTuple):
    """One sampled frame: ``index`` is its 0-based number in the decoded stream."""

    index: int
    timestamp_s: float
    rgb: np.ndarray


@contextmanager
def _open_video(path: str | Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"video {p}: not found ({_VIDEO_HINT})")
    if not p.is_file():
        raise InputError(f"video {p}: is not a file ({_VIDEO_HINT})")
    if p.stat().st_size == 0:
        raise InputError(f"video {p}: is empty (0 bytes); {_VIDEO_HINT}")
    try:
        container = av.open(str(p), mode="r")
    except av.error.PermissionError:
        raise InputError(f"video {p}: permission denied") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"video {p}: not a readable video ({_VIDEO_HINT}); FFmpeg said: {_reason(exc)}") from None
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams at all"]
            raise InputError(f"video {p}: has no video stream (expected one; found {', '.join(kinds)})")
        yield container, container.streams.video[0]
    finally:
        container.close()


def probe(path: str | Path) -> VideoInfo:
    """Size, rate, length and rotation of the first video stream; decodes only the first frame."""
    with _open_video(path) as (container, stream):
        fps = _stream_fps(stream)
        duration = _stream_duration(container, stream)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise InputError(f"video {path}: the first frame does not decode ({_reason(exc)})") from None
        if first is None:
            raise InputError(f"video {path}: contains no decodable frame")
        rotation = _rotation(first)
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        if duration is None:
            duration = _scan_duration(path)
        frame_count = int(stream.frames) or (round(duration * fps) if fps else 0)
        if not fps and duration:
            fps = frame_count / duration
        return VideoInfo(
            width=width,
            height=height,
            fps=float(fps),
            duration_s=float(duration),
            frame_count=frame_count,
            codec=stream.codec_context.name,
            rotation=rotation,
        )


def expected_sample_count(info: VideoInfo, fps: float) -> int:
    """About how many frames ``sample_frames`` yields (for progress bars)."""
    last = max(0.0, info.duration_s - (1.0 / info.fps if info.fps else 0.0))
    count = math.floor(last * fps + _EPS) + 1
    if info.fps and fps > info.fps:
        count = min(count, max(1, info.frame_count))
    return count


def sample_frames(path: str | Path, fps: float, *, strict: bool = True) -> Iterator[SampledFrame]:
    """Yield the frames nearest to t = 0, 1/fps, 2/fps, ... in presentation time.

    Times count from the first decoded frame. Timestamps come from the stream, so variable
    frame rate is handled; a frame nearest to several targets (sampling faster than the video)
    is yielded once. Targets after the last frame are not sampled. Frames are turned by the
    stream's rotation metadata. With ``strict`` a decoding error or a stream that ends well before
    its header says raises InputError (after the frames decoded before it were yielded) naming the
    time where decoding stopped; without ``strict`` sampling just stops there.
    """
    if not fps > 0:
        raise InputError(f"sampling rate: expected fps > 0, got {fps}")
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        expected_end = _stream_duration(container, stream, container_only_if_single=True)
        origin: float | None = None
        k = 0  # next target is k / fps
        prev: tuple[int, float, av.VideoFrame] | None = None
        last_yielded = -1
        number = -1
        last_abs: float | None = None
        decoder = container.decode(stream)
        while True:
            try:
                frame = next(decoder, None)
            except av.error.FFmpegError as exc:
                if not strict:
                    return
                where = f"after t={prev[1]:.2f} s (frame {prev[0]})" if prev else "before the first frame"
                raise InputError(f"video {path}: decoding stopped {where}: {_reason(exc)}") from None
            if frame is None:
                break
            number += 1
            t_abs = _frame_time(frame, last_abs, stream)
            last_abs = t_abs
            if origin is None:
                origin = t_abs
            t = t_abs - origin
            if prev is not None and t <= prev[1]:
                continue  # a timestamp that goes backwards: keep time monotonic
            while k / fps <= t + _EPS:
                target = k / fps
                chosen: tuple[int, float, av.VideoFrame] = (number, t, frame)
                if prev is not None and (target - prev[1]) < (t - target) - _EPS:
                    chosen = prev
                if chosen[0] != last_yielded:
                    last_yielded = chosen[0]
                    yield SampledFrame(chosen[0], chosen[1], _to_rgb(chosen[2]))
                k += 1
            prev = (number, t, frame)
        if prev is None:
            if strict:
                raise InputError(f"video {path}: contains no decodable frame")
            return
        if strict and expected_end is not None:
            frame_s = 1.0 / _stream_fps(stream) if _stream_fps(stream) else 0.0
            end = prev[1] + frame_s
            if expected_end - end > max(_MIN_SHORTFALL_S, 2 * frame_s):
                raise InputError(
                    f"video {path}: decoding stopped at t={prev[1]:.2f} s (frame {prev[0]}) but the header says "
                    f"the video lasts {expected_end:.2f} s; the file is truncated or corrupt"
                )


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = (_rotation(frame) // 90) % 4
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
    return rgb


def _rotation(frame: av.VideoFrame) -> int:
    """Display rotation in degrees counter-clockwise, snapped to a multiple of 90."""
    try:
        angle = float(frame.rotation or 0)
    except Exception:  # missing or malformed display matrix
        return 0
    return (round(angle / 90) * 90) % 360


def _frame_time(frame: av.VideoFrame, last: float | None, stream: av.video.stream.VideoStream) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    if last is None:
        return 0.0
    return last + 1.0 / (_stream_fps(stream) or 25.0)  # no timestamp: one frame after the previous one


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _stream_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, container_only_if_single: bool = False
) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and (not container_only_if_single or len(container.streams) == 1):
        return container.duration / av.time_base
    return None


def _scan_duration(path: str | Path) -> float:
    """Duration from packet timestamps, for containers that do not store it."""
    end = 0.0
    with _open_video(path) as (container, stream):
        start = None
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            t = float(packet.pts * packet.time_base)
            start = t if start is None else min(start, t)
            end = max(end, t + float((packet.duration or 0) * packet.time_base))
        return max(0.0, end - (start or 0.0))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__
