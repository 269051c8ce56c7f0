"""Tracking benchmark with ground truth (``make bench``): the tracker before issue 18 vs the tracker now.

Sequences from ``benchmarks.tracking_sequences`` (real photo crops walking over a real background, with
crossings, pillars, entries and exits; known identities) are rendered at 10 frames/s, JPEG-compressed as a
video would be, and run through the served detector network in-process (the ONNX/IR of ``make engines`` on
``serving.cpu_runtime``, the served pre- and post-processing) down to the tracker's low score. Detections are
cached per sequence under ``build/tracking_benchmark/`` (keyed by the sequences' source, the network and the
thresholds). Each sequence is then sampled at 2, 5 and 10 frames/s and tracked online by

- ``old``: ``benchmarks.tracking_baseline`` (supervision's ByteTrack as the client ran it before issue 18),
  on the detections at or above the display score (models.detector.score_threshold), as the server returned
  them before;
- ``new``: ``clients.analysis.tracking.ObjectTracker`` with the frames (colour cues) on the same detections;
- ``new+low``: the same tracker also given the detections down to ``LOW_SCORE`` for its second stage, as the
  server returns them now (models.detector.track_min_score, 0.1): what ``clients video`` does.

Every output is filtered to the display score after tracking, as results.json is. Only detections with a
track id count (as tracks.csv). The tracks are scored with ``motmetrics`` (IoU >= 0.5, same class; boxes on
objects seen less than half are don't-cares): MOTA, IDF1, ID switches, fragmentations, and the most ID
switches of any one identity.
There is no real pedestrian footage in this project (the issue's 80 s clip is not available here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import tracking_sequences as seqs
from mmw.errors import InputError, MMWError

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "build" / "tracking_benchmark"
SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))
FPS: tuple[float, ...] = (2.0, 5.0, 10.0)
MATCH_IOU = 0.5
JPEG_QUALITY = 90
TRACKERS = ("old", "new", "new+low")
LOW_SCORE = 0.1  # the tracker's low_score: what the detector returns for its second stage


@dataclass(frozen=True)
class Row:
    """One sequence at one sampling rate, tracked by one tracker."""

    scene: str
    size: str
    fps: float
    tracker: str
    mota: float
    idf1: float
    id_switches: int
    fragmentations: int
    identities: int
    max_switches_per_identity: int
    tracks: int  # distinct track ids in the output


def open_detector() -> tuple[Any, dict[str, Any]]:
    """The served detector network in-process, and what it is (for the cache key)."""
    from mmw.config import load_config
    from mmw.network_runtimes import open_network

    config = load_config()
    onnx = ROOT / "model_repository" / "detector" / "1" / "model.onnx"
    net, _ = open_network(onnx, config.serving.cpu_runtime, config.serving.cpu_precision, threads=2)
    det = config.models.detector
    return net, {"runs_on": net.description, "min_score": LOW_SCORE,
                 "iou_threshold": float(det.iou_threshold), "max_detections": int(det.max_detections),
                 "onnx_sha256": hashlib.sha256(onnx.read_bytes()).hexdigest()}


def _cache_key(scene: seqs.Scene, size: tuple[int, int], about: dict[str, Any]) -> str:
    source = Path(seqs.__file__).read_bytes()
    text = json.dumps({"scene": scene.name, "size": size, "about": about, "jpeg": JPEG_QUALITY}, sort_keys=True)
    return hashlib.sha256(source + text.encode()).hexdigest()[:16]


def _jpeg(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` through a JPEG round trip (a video's compression)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise MMWError(f"tracking benchmark: JPEG encoding of a {rgb.shape[1]}x{rgb.shape[0]} frame failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def frames(scene: seqs.Scene, size: tuple[int, int]) -> Iterator[tuple[float, np.ndarray, list[seqs.Truth]]]:
    """(t, compressed frame, ground truth) of every rendered frame."""
    for t in seqs.sample_times(scene, seqs.RENDER_FPS):
        rgb, truth = seqs.frame_and_truth(scene, t, size)
        yield t, _jpeg(rgb), truth


def detect(scene: seqs.Scene, size: tuple[int, int], cache_dir: Path | None = CACHE_DIR,
           detector: tuple[Any, dict[str, Any]] | None = None) -> list[list[dict[str, Any]]]:
    """The detector's detections (box, score, class_id, class_name) of every rendered frame, cached."""
    from mmw.config import load_config
    from mmw.processing.detection import postprocess_detections
    from mmw.processing.images import detector_input
    from mmw.processing.labels import coco_name

    net, about = detector or open_detector()
    name = f"{scene.name}_{size[0]}x{size[1]}_{_cache_key(scene, size, about)}.json"
    path = None if cache_dir is None else cache_dir / name
    if path is not None and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    det = load_config().models.detector
    out = []
    for _, rgb, _ in frames(scene, size):
        boxes, scores = net.run(None, {"images": detector_input(rgb)[None]})
        found = postprocess_detections(boxes[0], scores[0], rgb.shape[:2], LOW_SCORE, det.iou_threshold,
                                       det.max_detections)
        out.append([{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4), "class_id": int(c),
                     "class_name": coco_name(int(c))} for b, s, c in zip(found.boxes, found.scores, found.class_ids,
                                                                          strict=True)])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out), encoding="utf-8")
    return out


class _Scorer:
    """One motmetrics accumulator: the tracker's output against the ground truth, frame by frame."""

    def __init__(self) -> None:
        import motmetrics as mm

        self.acc = mm.MOTAccumulator(auto_id=True)
        self.track_ids: set[int] = set()
        self.identities: dict[str, int] = {}  # ground-truth names -> numbers (motmetrics wants numbers)

    def update(self, truth: Sequence[seqs.Truth], output: Sequence[Any]) -> None:
        from clients.analysis.tracking import iou

        objects = [g for g in truth if g.visible >= seqs.VISIBLE]
        dont_care = [g for g in truth if g.visible < seqs.VISIBLE]
        hyps = [d for d in output if d.track_id is not None]
        # a box on an object seen less than half, and on nothing seen, is neither right nor wrong
        hyps = [d for d in hyps if any(g.class_name == d.class_name and iou(g.box, d.box) >= MATCH_IOU for g in objects)
                or not any(g.class_name == d.class_name and iou(g.box, d.box) >= MATCH_IOU for g in dont_care)]
        self.track_ids.update(d.track_id for d in hyps)
        dist = np.full((len(objects), len(hyps)), np.nan)
        for i, g in enumerate(objects):
            for j, d in enumerate(hyps):
                overlap = iou(g.box, d.box)
                if g.class_name == d.class_name and overlap >= MATCH_IOU:
                    dist[i, j] = 1.0 - overlap
        names = [self.identities.setdefault(g.name, len(self.identities) + 1) for g in objects]
        self.acc.update(names, [d.track_id for d in hyps], dist)

    def row(self, scene: str, size: tuple[int, int], fps: float, tracker: str) -> Row:
        import motmetrics as mm

        metrics = ["mota", "idf1", "num_switches", "num_fragmentations", "num_unique_objects"]
        summary = mm.metrics.create().compute(self.acc, metrics=metrics, name="x")
        events = self.acc.mot_events
        switches = events[events["Type"] == "SWITCH"]["OId"].value_counts()
        return Row(scene, f"{size[0]}x{size[1]}", fps, tracker, float(summary["mota"].iloc[0]),
                   float(summary["idf1"].iloc[0]), int(summary["num_switches"].iloc[0]),
                   int(summary["num_fragmentations"].iloc[0]), int(summary["num_unique_objects"].iloc[0]),
                   int(switches.max()) if len(switches) else 0, len(self.track_ids))


def evaluate(scene: seqs.Scene, size: tuple[int, int], fps_list: Iterable[float],
             cache_dir: Path | None = CACHE_DIR, detector: tuple[Any, dict[str, Any]] | None = None) -> list[Row]:
    """Both trackers on ``scene`` at ``size``, sampled at each of ``fps_list``: one ``Row`` each."""
    from benchmarks.tracking_baseline import ObjectTracker as OldTracker
    from clients.analysis.tracking import ObjectTracker
    from clients.results import Detection, FrameResult, ImageResult
    from mmw.config import load_config

    display = float(load_config().models.detector.score_threshold)
    detections = detect(scene, size, cache_dir, detector)
    fps_list = list(fps_list)
    steps = {fps: round(seqs.RENDER_FPS / fps) for fps in fps_list}
    for fps in fps_list:
        seqs.sample_times(scene, fps)  # checks fps
    runs: dict[tuple[float, str], Any] = {}
    for fps in fps_list:
        runs[fps, "old"] = OldTracker(fps)
        runs[fps, "new"] = ObjectTracker(fps)
        runs[fps, "new+low"] = ObjectTracker(fps)
    scorers = {key: _Scorer() for key in runs}
    truths: dict[tuple[float, str], dict[int, list[seqs.Truth]]] = {key: {} for key in runs}

    def score(key: tuple[float, str], ready: list[FrameResult]) -> None:
        for frame in ready:
            shown = [d for d in frame.image.detections if d.score >= display]
            scorers[key].update(truths[key].pop(frame.index), shown)

    for k, (_, rgb, truth) in enumerate(frames(scene, size)):
        dets = [Detection(tuple(d["box"]), d["score"], d["class_id"], d["class_name"]) for d in detections[k]]
        for fps in fps_list:
            if k % steps[fps]:
                continue
            t = k / seqs.RENDER_FPS
            for name in TRACKERS:
                key = (fps, name)
                truths[key][k] = truth
                shown = ImageResult([d for d in dets if d.score >= display])  # what the server returns today
                if name == "old":
                    score(key, runs[key].push(FrameResult(k, t, shown)))
                elif name == "new":
                    score(key, runs[key].push(FrameResult(k, t, shown), rgb))
                else:
                    score(key, runs[key].push(FrameResult(k, t, ImageResult(dets)), rgb))
    for key, tracker in runs.items():
        score(key, tracker.finish())
    return [scorers[fps, name].row(scene.name, size, fps, name) for fps in fps_list for name in TRACKERS]


def run(scenes: Sequence[str], sizes: Sequence[tuple[int, int]], fps_list: Sequence[float],
        cache_dir: Path | None = CACHE_DIR) -> list[Row]:
    """Every scene at every size and sampling rate, both trackers."""
    unknown = [s for s in scenes if s not in seqs.SCENES]
    if unknown:
        raise InputError(f"tracking benchmark: expected scenes among {', '.join(seqs.SCENES)}, got {unknown}")
    detector = open_detector()
    return [row for name in scenes for size in sizes
            for row in evaluate(seqs.SCENES[name], size, fps_list, cache_dir, detector)]


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: one line per sequence x size x fps, the trackers side by side (MOTA IDF1 IDsw frag)."""
    cells = " | ".join(f"{t} MOTA | {t} IDF1 | {t} IDsw | {t} frag" for t in TRACKERS)
    head = f"| sequence | size | fps | ids | {cells} | new+low max IDsw/id | tracks {'/'.join(TRACKERS)} |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    by_key = {(r.scene, r.size, r.fps, r.tracker): r for r in rows}
    for scene, size, fps, tracker in list(by_key):
        if tracker != TRACKERS[0]:
            continue
        mine = [by_key[scene, size, fps, t] for t in TRACKERS]
        cells = " | ".join(f"{r.mota:.3f} | {r.idf1:.3f} | {r.id_switches} | {r.fragmentations}" for r in mine)
        lines.append(f"| {scene} | {size} | {fps:g} | {mine[0].identities} | {cells} | "
                     f"{mine[-1].max_switches_per_identity} | {'/'.join(str(r.tracks) for r in mine)} |")
    totals = []
    for tracker in TRACKERS:
        mine = [r for r in rows if r.tracker == tracker]
        totals.append(f"{np.mean([r.mota for r in mine]):.3f} | {np.mean([r.idf1 for r in mine]):.3f} | "
                      f"{sum(r.id_switches for r in mine)} | {sum(r.fragmentations for r in mine)}")
    worst = max((r.max_switches_per_identity for r in rows if r.tracker == TRACKERS[-1]), default=0)
    lines.append(f"| mean (IDsw, frag: total) | | | | {' | '.join(totals)} | {worst} | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", default=list(seqs.SCENES), choices=list(seqs.SCENES))
    parser.add_argument("--sizes", nargs="+", default=[f"{w}x{h}" for w, h in SIZES], metavar="WxH")
    parser.add_argument("--fps", nargs="+", type=float, default=list(FPS))
    parser.add_argument("--no-cache", action="store_true",
                        help="run the detector again (do not read or write the cache)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    start = time.perf_counter()
    rows = run(args.scenes, sizes, args.fps, None if args.no_cache else CACHE_DIR)  # type: ignore[arg-type]
    print(table(rows))
    print(f"\n{len(rows) // len(TRACKERS)} sequences x rates in {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
