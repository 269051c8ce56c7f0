"""Tracking sequences with ground truth, made from the project's real photos (``benchmarks.tracking_benchmark``).

Each sequence is a scene: a real background (scikit-image's brick wall over gravel, tinted), crops of real
objects from scikit-image's photos (the astronaut and the cameraman as people, Chelsea the cat, the stereo
motorcycle) walking along known piecewise-linear paths, and brick pillars in front of some of
them. Objects enter and leave the frame, cross each other (the nearer one hides the farther one) and pass
behind pillars. A scene is described in frame-relative units, so it renders at any size (640x480, 1280x720);
``render`` draws it at a time, ``ground_truth`` gives each visible object's box and identity.

Ground truth boxes are the detector's own box of each photo's object (found once on the whole photo, see
``SPRITES``) carried along with the crop. An object counts as visible when at least ``VISIBLE`` of its box is
in the frame and unhidden; one seen less than that but more than ``IGNORED`` is a "don't care": a tracker's
box on it is neither right nor wrong (the MOTChallenge convention for heavily occluded people).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from mmw.errors import InputError

VISIBLE = 0.5  # ground truth: at least this much of the object's box is seen
IGNORED = 0.15  # between IGNORED and VISIBLE: a don't-care region
RENDER_FPS = 10.0  # frames are rendered at this rate; lower sampling rates take every k-th frame
DURATION_S = 12.0


@dataclass(frozen=True)
class Sprite:
    """A crop of a photo holding one object: ``crop`` and ``box`` (the detector's box) in photo pixels."""

    photo: str
    class_name: str
    crop: tuple[int, int, int, int]  # x1, y1, x2, y2
    box: tuple[int, int, int, int]
    flip: bool = False


#: Boxes measured with the served detector (openvino f32) on the whole photo, class and score >= 0.84.
SPRITES: dict[str, Sprite] = {
    "astronaut": Sprite("astronaut", "person", (0, 0, 384, 512), (12, 11, 369, 509)),
    "cameraman": Sprite("camera", "person", (0, 40, 320, 512), (0, 62, 304, 508)),
    "cat": Sprite("chelsea", "cat", (0, 0, 420, 300), (8, 0, 407, 296), flip=True),
    "motorcycle": Sprite("motorcycle", "motorcycle", (90, 60, 700, 460), (103, 78, 686, 443)),
}


@dataclass(frozen=True)
class Actor:
    """One object's path: (t, x, y) waypoints of its box's bottom centre in frame units, height in frame units."""

    name: str  # unique in the scene: the ground-truth identity
    sprite: str
    path: tuple[tuple[float, float, float], ...]
    height: float
    depth: float  # larger is nearer: drawn later, hides what is behind

    def at(self, t: float) -> tuple[float, float] | None:
        """Bottom centre at time ``t``, or None outside the path's time span."""
        times = [p[0] for p in self.path]
        if t < times[0] - 1e-9 or t > times[-1] + 1e-9:
            return None
        x = float(np.interp(t, times, [p[1] for p in self.path]))
        y = float(np.interp(t, times, [p[2] for p in self.path]))
        return x, y


@dataclass(frozen=True)
class Scene:
    """A background, actors and pillars (x1, x2 in frame units, drawn in front of everything)."""

    name: str
    actors: tuple[Actor, ...]
    pillars: tuple[tuple[float, float], ...] = ()
    duration_s: float = DURATION_S


def _walk(t0: float, x0: float, t1: float, x1: float, y: float) -> tuple[tuple[float, float, float], ...]:
    return ((t0, x0, y), (t1, x1, y))


#: The scenes: crossings, occlusions by pillars and by each other, entries and exits, a turn and a stop.
SCENES: dict[str, Scene] = {
    "crossing": Scene("crossing", (
        Actor("astronaut", "astronaut", _walk(0.0, -0.08, 12.0, 1.08, 0.92), 0.42, 2.0),
        Actor("cameraman", "cameraman", _walk(1.0, 1.08, 11.5, -0.08, 0.86), 0.40, 1.0),
        Actor("cat", "cat", _walk(3.0, 1.15, 12.0, 0.25, 0.99), 0.26, 3.0),
    )),
    "pillar": Scene("pillar", (
        Actor("astronaut", "astronaut", _walk(0.0, 0.05, 12.0, 1.1, 0.9), 0.40, 1.0),
        Actor("cameraman", "cameraman", _walk(0.5, 1.1, 10.5, -0.1, 0.97), 0.42, 2.0),
        Actor("motorcycle", "motorcycle", _walk(5.0, -0.2, 12.0, 0.75, 0.8), 0.28, 0.5),
    ), pillars=((0.40, 0.50),)),
    "crowd": Scene("crowd", (
        Actor("astronaut", "astronaut", ((0.0, 0.2, 0.9), (5.0, 0.7, 0.9), (6.0, 0.72, 0.9), (12.0, 0.15, 0.9)),
              0.40, 1.0),
        Actor("cameraman", "cameraman", _walk(0.0, 1.08, 9.0, -0.08, 0.95), 0.44, 2.0),
        Actor("cat", "cat", _walk(2.0, -0.2, 11.0, 1.2, 0.8), 0.26, 0.5),
        Actor("motorcycle", "motorcycle", _walk(6.0, 1.2, 12.0, 0.55, 0.99), 0.28, 3.0),
    ), pillars=((0.78, 0.84),)),
    "stop_and_go": Scene("stop_and_go", (
        Actor("cameraman", "cameraman", ((0.0, -0.08, 0.9), (4.0, 0.38, 0.9), (7.0, 0.38, 0.9), (12.0, 1.05, 0.9)),
              0.42, 1.0),
        Actor("astronaut", "astronaut", _walk(2.0, 1.08, 10.0, -0.08, 0.97), 0.40, 2.0),
        Actor("cat", "cat", _walk(0.0, 0.75, 12.0, 0.05, 0.8), 0.26, 0.5),
    ), pillars=((0.30, 0.37),)),
}


@dataclass(frozen=True)
class Truth:
    """One object in one frame: its identity, class, box (x1, y1, x2, y2 pixels) and visible fraction."""

    name: str
    class_name: str
    box: tuple[float, float, float, float]
    visible: float


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data as data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


@cache
def _sprite_pixels(key: str) -> tuple[np.ndarray, np.ndarray]:
    """The sprite's RGB crop and its alpha (float32 in [0, 1], feathered at the edges)."""
    s = SPRITES[key]
    x1, y1, x2, y2 = s.crop
    rgb = _photo(s.photo)[y1:y2, x1:x2].copy()
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    edge = np.minimum.reduce([xx + 0.5, yy + 0.5, w - xx - 0.5, h - yy - 0.5])
    alpha = np.clip(edge / 6.0, 0.0, 1.0)  # feathered over 6 px
    if s.flip:
        rgb, alpha = rgb[:, ::-1].copy(), alpha[:, ::-1].copy()
    return rgb, alpha


def _sprite_box(key: str) -> tuple[float, float, float, float]:
    """The object's box in sprite-relative units (fractions of the crop's width and height)."""
    s = SPRITES[key]
    cx1, cy1, cx2, cy2 = s.crop
    bx1, by1, bx2, by2 = s.box
    w, h = cx2 - cx1, cy2 - cy1
    fx1, fx2 = (bx1 - cx1) / w, (bx2 - cx1) / w
    if s.flip:
        fx1, fx2 = 1 - fx2, 1 - fx1
    return fx1, (by1 - cy1) / h, fx2, (by2 - cy1) / h


@cache
def background(width: int, height: int) -> np.ndarray:
    """A brick wall (tinted brick red) over gravel ground (tinted ochre), from scikit-image's textures."""
    import skimage.data as data

    horizon = round(height * 0.62)
    wall = cv2.resize(np.asarray(data.brick()), (width, horizon), interpolation=cv2.INTER_AREA).astype(np.float32)
    ground = cv2.resize(np.asarray(data.gravel()), (width, height - horizon),
                        interpolation=cv2.INTER_AREA).astype(np.float32)
    wall_rgb = wall[:, :, None] / 255.0 * np.array([190, 110, 90], np.float32)
    ground_rgb = ground[:, :, None] / 255.0 * np.array([200, 180, 140], np.float32)
    return np.clip(np.concatenate([wall_rgb, ground_rgb], axis=0), 0, 255).astype(np.uint8)


def _pillar_texture(width: int, height: int) -> np.ndarray:
    import skimage.data as data

    tex = cv2.resize(np.asarray(data.brick()).T, (max(1, width), height), interpolation=cv2.INTER_AREA)
    return np.clip(tex.astype(np.float32)[:, :, None] / 255.0 * np.array([120, 115, 110]), 0, 255).astype(np.uint8)


def _placement(actor: Actor, t: float, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The sprite's rectangle in frame pixels (x, y, w, h) at ``t``, or None when the actor is not on."""
    at = actor.at(t)
    if at is None:
        return None
    width, height = size
    rgb, _ = _sprite_pixels(actor.sprite)
    sh = max(8, round(actor.height * height))
    sw = max(8, round(sh * rgb.shape[1] / rgb.shape[0]))
    fx1, _, fx2, fy2 = _sprite_box(actor.sprite)
    cx = at[0] * width - ((fx1 + fx2) / 2 - 0.5) * sw  # the object's box, not the crop, is centred on the path
    bottom = at[1] * height + (1 - fy2) * sh
    return round(cx - sw / 2), round(bottom - sh), sw, sh


def _draw(scene: Scene, t: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The frame at ``t`` and its label map (actor index + 1 where an actor is seen, 0 elsewhere)."""
    width, height = size
    frame = background(width, height).astype(np.float32)
    labels = np.zeros((height, width), np.int16)
    order = sorted(range(len(scene.actors)), key=lambda k: scene.actors[k].depth)
    for k in order:
        actor = scene.actors[k]
        place = _placement(actor, t, size)
        if place is None:
            continue
        x, y, sw, sh = place
        rgb, alpha = _sprite_pixels(actor.sprite)
        rgb = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_LINEAR)
        fx1, fy1, fx2, fy2 = max(0, x), max(0, y), min(width, x + sw), min(height, y + sh)
        if fx1 >= fx2 or fy1 >= fy2:
            continue
        a = alpha[fy1 - y : fy2 - y, fx1 - x : fx2 - x, None]
        frame[fy1:fy2, fx1:fx2] = frame[fy1:fy2, fx1:fx2] * (1 - a) + rgb[fy1 - y : fy2 - y, fx1 - x : fx2 - x] * a
        labels[fy1:fy2, fx1:fx2][a[:, :, 0] > 0.5] = k + 1
    for x1, x2 in scene.pillars:
        px1, px2 = round(x1 * width), round(x2 * width)
        frame[:, px1:px2] = _pillar_texture(px2 - px1, height)
        labels[:, px1:px2] = 0
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), labels


def render(scene: Scene, t: float, size: tuple[int, int]) -> np.ndarray:
    """The RGB frame (uint8 [H, W, 3]) of ``scene`` at ``t`` seconds, ``size`` = (width, height)."""
    return _draw(scene, t, size)[0]


def ground_truth(scene: Scene, t: float, size: tuple[int, int]) -> list[Truth]:
    """Every actor on at ``t`` whose box is seen at least ``IGNORED``, with its visible fraction."""
    return frame_and_truth(scene, t, size)[1]


def frame_and_truth(scene: Scene, t: float, size: tuple[int, int]) -> tuple[np.ndarray, list[Truth]]:
    """``render`` and ``ground_truth`` at once."""
    frame, labels = _draw(scene, t, size)
    width, height = size
    out = []
    for k, actor in enumerate(scene.actors):
        place = _placement(actor, t, size)
        if place is None:
            continue
        x, y, sw, sh = place
        fx1, fy1, fx2, fy2 = _sprite_box(actor.sprite)
        box = (x + fx1 * sw, y + fy1 * sh, x + fx2 * sw, y + fy2 * sh)
        bx1, by1 = max(0, round(box[0])), max(0, round(box[1]))
        bx2, by2 = min(width, round(box[2])), min(height, round(box[3]))
        area = (box[2] - box[0]) * (box[3] - box[1])
        seen = float((labels[by1:by2, bx1:bx2] == k + 1).sum()) if bx2 > bx1 and by2 > by1 else 0.0
        full = _unhidden_area(actor, (sw, sh), box, (x, y), size)
        visible = min(1.0, seen / full) if full > 0 else 0.0
        if visible >= IGNORED and area > 0:
            out.append(Truth(actor.name, SPRITES[actor.sprite].class_name, box, visible))
    return frame, out


def _unhidden_area(actor: Actor, wh: tuple[int, int], box: Sequence[float], xy: tuple[int, int],
                   size: tuple[int, int]) -> float:
    """How many pixels of the object's box the sprite would cover if nothing hid it and the frame were endless."""
    sw, sh = wh
    _, alpha = _sprite_pixels(actor.sprite)
    alpha = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_LINEAR)
    x, y = xy
    bx1, by1 = max(0, round(box[0]) - x), max(0, round(box[1]) - y)
    bx2, by2 = min(sw, round(box[2]) - x), min(sh, round(box[3]) - y)
    return float((alpha[by1:by2, bx1:bx2] > 0.5).sum())


def sample_times(scene: Scene, fps: float) -> list[float]:
    """The sampling times at ``fps``: every k-th rendered frame (``fps`` must divide ``RENDER_FPS``)."""
    step = RENDER_FPS / fps
    if fps <= 0 or abs(step - round(step)) > 1e-9:
        raise InputError(f"tracking sequences: expected an fps dividing {RENDER_FPS:g} (10, 5, 2, 1), got {fps:g}")
    n = round(scene.duration_s * RENDER_FPS)
    return [k / RENDER_FPS for k in range(0, n, round(step))]
