"""``python -m clients corpus`` on a local process pool: inputs, the index, resuming, isolated failures.

The Ray cluster's tests (two nodes, two servers, a node removed mid-run) are in test_clients_corpus_ray.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clients.corpus import (
    INDEX_FILE,
    CorpusIndex,
    CorpusSettings,
    LocalPool,
    VideoEntry,
    collect_videos,
    folder_names,
    plan_corpus,
    read_index,
    run_corpus,
)
from clients.media.sample_video import make_sample_video
from clients.outputs.selection import OutputSelection
from clients.pipeline import analyse_video
from clients.results import VideoResults, read_results
from clients.transport import ClientSettings, SceneClient
from mmw.config import Config
from mmw.errors import InputError, ServerUnavailable
from tests.conftest import ROOT, free_ports, serving

FPS = 2.0
VIDEO_FILES = {"results.json", "annotated.mp4", "detections.coco.json", "captions.srt", "captions.vtt", "tracks.csv"}


def bad_videos(folder: Path) -> dict[str, Path]:
    """A corrupt video (an MP4 header, then noise) and an empty one."""
    folder.mkdir(parents=True, exist_ok=True)
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(4000))
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    return {"corrupt": corrupt, "empty": empty}


def same_results(a: VideoResults, b: VideoResults) -> None:
    """Assert the same frames, detections, track ids, captions, tracks and scenes (boxes to the pixel)."""
    assert [(f.index, f.timestamp_s) for f in a.frames] == [(f.index, f.timestamp_s) for f in b.frames]
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.image.caption == fb.image.caption
        assert [(d.class_name, d.track_id) for d in fa.image.detections] == \
            [(d.class_name, d.track_id) for d in fb.image.detections]
        boxes_a = np.array([d.box for d in fa.image.detections], dtype=float).reshape(-1, 4)
        boxes_b = np.array([d.box for d in fb.image.detections], dtype=float).reshape(-1, 4)
        np.testing.assert_allclose(boxes_a, boxes_b, atol=0.02)
    assert [(t.track_id, t.class_name, t.first_seen_s, t.last_seen_s) for t in a.tracks] == \
        [(t.track_id, t.class_name, t.first_seen_s, t.last_seen_s) for t in b.tracks]
    assert [(s.start_s, s.end_s, s.caption) for s in a.scenes] == [(s.start_s, s.end_s, s.caption) for s in b.scenes]
    assert a.complete and b.complete


def reference_results(video: Path, out_dir: Path, settings: ClientSettings) -> VideoResults:
    """What one process (``clients video``) makes of ``video``."""
    with SceneClient.from_settings(settings) as client:
        return analyse_video(video, out_dir, client, fps=FPS, batch_size=4).results


# --- inputs, folder names, outputs, the index: no server -------------------------------------------------


def test_collect_videos_expands_folders_globs_lists_and_keeps_order(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.mp4", "a/deep/y.MKV", "a/notes.txt.bak", "b.mov", "c.webm"):
        (tmp_path / name).write_bytes(b"v")
    listing = tmp_path / "list.txt"
    listing.write_text("# my clips\nb.mov\n\n  c.webm  # the last one\nmissing.mp4\nhttps://example.org/v.mp4\n")
    cases = [
        ([str(tmp_path / "a")], ["a/deep/y.MKV", "a/x.mp4"]),
        ([str(tmp_path / "*.mov")], ["b.mov"]),
        ([str(tmp_path / "**" / "*.mp4")], ["a/x.mp4"]),
        ([str(listing)], ["b.mov", "c.webm", "missing.mp4", "https://example.org/v.mp4"]),
        ([f"@{listing}"], ["b.mov", "c.webm", "missing.mp4", "https://example.org/v.mp4"]),
        ([str(tmp_path / "b.mov"), str(tmp_path / "*.mov"), str(tmp_path / "c.webm")], ["b.mov", "c.webm"]),
    ]
    for inputs, expected in cases:
        got = [s if "://" in s else str(Path(s).relative_to(tmp_path)) for s in collect_videos(inputs)]
        assert got == expected, inputs


@pytest.mark.parametrize(("inputs", "message"), [
    ([], "expected at least one input"),
    (["{tmp}/*.avi"], "matched no file"),
    (["{tmp}/empty_dir"], "holds no video"),
])
def test_collect_videos_refuses_inputs_that_name_nothing(tmp_path: Path, inputs: list[str], message: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match=message):
        collect_videos([i.format(tmp=tmp_path) for i in inputs])


def test_folder_names_number_collisions_and_keep_known_folders() -> None:
    sources = ["/a/clip.mp4", "/b/clip.mp4", "/c/clip.mkv", "https://h/x/My Clip.mp4?sig=1", "/d/.mp4"]
    assert folder_names(sources) == {"/a/clip.mp4": "clip", "/b/clip.mp4": "clip-2", "/c/clip.mkv": "clip-3",
                                     "https://h/x/My Clip.mp4?sig=1": "My_Clip", "/d/.mp4": "mp4"}
    assert folder_names(["/b/clip.mp4", "/a/clip.mp4"], {"/a/clip.mp4": "clip"}) == \
        {"/a/clip.mp4": "clip", "/b/clip.mp4": "clip-2"}


@pytest.mark.parametrize(("text", "names", "mp4", "exports"), [
    ("all", "results,coco,srt,vtt,csv,mp4", True, 4),
    ("results", "results", False, 0),
    ("srt, MP4", "results,srt,mp4", True, 1),
    ("coco,csv", "results,coco,csv", False, 2),
])
def test_output_selection_parses_lists(text: str, names: str, mp4: bool, exports: int) -> None:
    selection = OutputSelection.parse(text)
    assert (str(selection), selection.annotated_video, len(selection.export_files)) == (names, mp4, exports)


def test_output_selection_names_the_valid_outputs() -> None:
    with pytest.raises(InputError, match=r"unknown gif.*results,coco,srt,vtt,csv,mp4"):
        OutputSelection.parse("results,gif")
    assert OutputSelection.parse("all").covers(OutputSelection.parse("srt"))
    assert not OutputSelection.parse("srt").covers(OutputSelection.parse("mp4"))


def test_index_round_trip_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    index = CorpusIndex(fps=2.0, videos=[VideoEntry(source="/v/a.mp4", folder="a", status="failed", error="bad")])
    index.write(tmp_path)
    assert read_index(tmp_path) == index
    (tmp_path / INDEX_FILE).write_text(json.dumps({"fps": 2.0, "videos": [{"source": "x"}]}))
    with pytest.raises(InputError, match=r"expected a corpus index.*videos.0.folder"):
        read_index(tmp_path)


def test_plan_skips_finished_videos_and_retries_changed_failures(tmp_path: Path) -> None:
    video = tmp_path / "in" / "bad.mp4"
    video.parent.mkdir()
    video.write_bytes(b"x")
    out = tmp_path / "out"
    settings = CorpusSettings(fps=FPS, batch_size=4)
    plan = plan_corpus([str(video)], out, settings)
    assert [e.folder for e in plan.todo] == ["bad"]
    entry = plan.todo[0]
    entry.status, entry.input_size, entry.input_mtime_ns = "failed", video.stat().st_size, video.stat().st_mtime_ns
    plan.index.write(out)
    assert plan_corpus([str(video)], out, settings).todo == []
    assert len(plan_corpus([str(video)], out, CorpusSettings(fps=FPS, batch_size=4, retry_failed=True)).todo) == 1
    video.write_bytes(b"xy")  # the file changed: tried again
    assert len(plan_corpus([str(video)], out, settings).todo) == 1
    with pytest.raises(InputError, match="sampled at 2 fps, expected 5 fps"):
        plan_corpus([str(video)], out, CorpusSettings(fps=5.0, batch_size=4))


def test_urls_are_copied_once_with_fsspec_and_a_bad_one_is_a_clear_error(tmp_path: Path) -> None:
    from clients.corpus.inputs import fetch_url

    video = tmp_path / "remote.mp4"
    video.write_bytes(b"not really a video")
    local = fetch_url(video.as_uri(), tmp_path / "cache")
    assert local.read_bytes() == video.read_bytes() and local.suffix == ".mp4"
    video.write_bytes(b"changed")
    assert fetch_url(video.as_uri(), tmp_path / "cache").read_bytes() == b"not really a video"  # kept for reruns
    with pytest.raises(InputError, match="cannot download it"):
        fetch_url((tmp_path / "gone.mp4").as_uri(), tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.part"))


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:{port}", "nothing answers there"),
    ("nonsense", "expected auto, local, HOST:PORT or ray://HOST:PORT"),
])
def test_a_ray_address_that_cannot_work_is_one_clear_error_at_once(address: str, message: str) -> None:
    pytest.importorskip("ray", reason="the corpus on Ray needs ray (the Makefile installs it)")
    from clients.corpus import RayCluster

    with pytest.raises(InputError, match=message):
        RayCluster(ClientSettings(urls=("127.0.0.1:8001",)), address.format(port=free_ports(1)[0]))


# --- against the session's server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpus-in")
    videos = {f"clip{i}": make_sample_video(folder / f"clip{i}.mp4", seconds=3 + i, fps=10) for i in range(3)}
    return {**videos, **bad_videos(folder)}


def _corpus_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clients", "corpus", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_corpus_cli_completes_good_videos_records_bad_ones_and_a_rerun_does_nothing(
        triton: Config, corpus_videos: dict[str, Path], tmp_path: Path) -> None:
    url = f"127.0.0.1:{triton.server.grpc_port}"
    listing = tmp_path / "videos.txt"
    listing.write_text("\n".join(str(p) for p in corpus_videos.values()) + "\n")
    out = tmp_path / "out"
    done = _corpus_cli(str(listing), "--out", str(out), "--url", url, "--workers", "2", "--fps", str(FPS))
    assert done.returncode == 0, done.stderr
    index = read_index(out)
    assert index is not None
    status = {e.folder: e.status for e in index.videos}
    assert status == {"clip0": "done", "clip1": "done", "clip2": "done", "corrupt": "failed", "empty": "failed"}
    for entry in index.videos:
        if entry.status == "done":
            assert {p.name for p in (out / entry.folder).iterdir()} == VIDEO_FILES  # the layout of `clients video`
            results = read_results(out / entry.folder / "results.json")
            assert isinstance(results, VideoResults) and results.complete
            assert entry.frames == len(results.frames) > 0 and entry.wall_s and entry.duration_s
        else:
            assert entry.error and "\n" not in entry.error and entry.folder in done.stdout
    assert "not a readable video" in index.entry(str(corpus_videos["corrupt"])).error  # type: ignore[union-attr]
    assert "is empty" in index.entry(str(corpus_videos["empty"])).error  # type: ignore[union-attr]
    assert "corpus: 3 done, 2 failed, 0 left" in done.stdout and index.runs[-1].runner == "local pool, 2 workers"

    before = (out / INDEX_FILE).read_bytes()
    again = _corpus_cli(str(listing), "--out", str(out), "--url", url, "--fps", str(FPS))
    assert again.returncode == 0, again.stderr
    assert "nothing to do: all 5 videos are finished, 3 done (2 failed: rerun with --retry-failed" in again.stdout
    assert (out / INDEX_FILE).read_bytes() == before


def test_outputs_leave_out_what_a_batch_user_does_not_want(triton: Config, corpus_videos: dict[str, Path],
                                                           tmp_path: Path) -> None:
    url = f"127.0.0.1:{triton.server.grpc_port}"
    out = tmp_path / "out"
    done = _corpus_cli(str(corpus_videos["clip0"]), "--out", str(out), "--url", url, "--outputs", "results,srt")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (out / "clip0").iterdir()} == {"results.json", "captions.srt"}
    # asking for more than a finished video has: it is analysed again, with everything
    again = _corpus_cli(str(corpus_videos["clip0"]), "--out", str(out), "--url", url)
    assert again.returncode == 0 and "1 done" in again.stdout, again.stderr
    assert {p.name for p in (out / "clip0").iterdir()} == VIDEO_FILES


def test_a_killed_worker_s_video_is_retried_and_resumes_without_losing_a_frame(
        triton: Config, tmp_path: Path) -> None:
    video = make_sample_video(tmp_path / "long.mp4", seconds=16, fps=10)
    # HTTP: a gRPC client killed mid-request can crash tritonserver 2.51 (server#7368, docs/troubleshooting.md)
    settings = ClientSettings(urls=(f"127.0.0.1:{triton.server.http_port}",), protocol="http")
    reference = reference_results(video, tmp_path / "reference", settings)
    out = tmp_path / "out"
    corpus = CorpusSettings(fps=FPS, batch_size=4, checkpoint_s=0)
    killed: list[int] = []

    def kill_mid_video(event: object) -> None:
        if not killed and 8 <= event.done < event.total:  # type: ignore[attr-defined]
            os.kill(event.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            killed.append(event.pid)  # type: ignore[attr-defined]

    report = run_corpus(plan_corpus([str(video)], out, corpus), out, LocalPool(settings, workers=1), corpus,
                        on_event=kill_mid_video)
    assert killed, "the worker finished before it could be killed"
    (outcome,) = report.outcomes
    # resumed from the last checkpoint before the kill (a batch or so behind it: ids are final a frame late)
    assert outcome.status == "done" and 0 < outcome.resumed_frames < 32 and str(killed[0]) not in outcome.worker
    resumed = read_results(out / "long" / "results.json")
    assert isinstance(resumed, VideoResults)
    same_results(resumed, reference)


@pytest.mark.serving
def test_an_unreachable_server_stops_the_job_with_the_index_written_and_a_rerun_resumes(
        engines: dict[str, Path], corpus_videos: dict[str, Path], tmp_path: Path) -> None:
    from launcher.local_server import start_server, stop_server
    from mmw.contract import ENSEMBLE_NAME

    good = [str(corpus_videos[f"clip{i}"]) for i in range(3)]
    out = tmp_path / "out"
    corpus = CorpusSettings(fps=FPS, batch_size=4, checkpoint_s=0)
    with serving(tmp_path / "state") as config:
        settings = ClientSettings(urls=(f"127.0.0.1:{config.server.grpc_port}",), retry_s=1.0)

        def stop_after_the_first(entry: VideoEntry, outcome: object) -> None:
            if entry.status == "done":
                stop_server(config)

        with pytest.raises(ServerUnavailable, match=r"Stopped the corpus with 1 videos done and 2 left.*rerun"):
            run_corpus(plan_corpus(good, out, corpus), out, LocalPool(settings, workers=1), corpus,
                       on_outcome=stop_after_the_first)
        index = read_index(out)
        assert index is not None and index.counts()["done"] == 1 and index.runs[-1].stopped == "server unreachable"
        start_server(config, [ENSEMBLE_NAME], timeout_s=300)
        report = run_corpus(plan_corpus(good, out, corpus), out, LocalPool(settings, workers=1), corpus)
        assert len(report.outcomes) == 2 and report.index.counts()["done"] == 3


def test_no_server_at_all_is_one_clear_line_before_any_work(corpus_videos: dict[str, Path], tmp_path: Path) -> None:
    port = free_ports(1)[0]
    done = _corpus_cli(str(corpus_videos["clip0"]), "--out", str(tmp_path / "out"), "--url", f"127.0.0.1:{port}",
                       timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("clients: error:") and f"127.0.0.1:{port}" in line
    assert not (tmp_path / "out" / "clip0").exists()


def test_sigterm_writes_every_video_in_flight_and_a_rerun_resumes_them(triton: Config, tmp_path: Path) -> None:
    videos = [make_sample_video(tmp_path / f"long{i}.mp4", seconds=20, fps=10) for i in range(2)]
    out = tmp_path / "out"
    args = [sys.executable, "-m", "clients", "corpus", *map(str, videos), "--out", str(out), "--workers", "2",
            "--protocol", "http", "--url", f"127.0.0.1:{triton.server.http_port}", "--checkpoint", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not all((out / f"long{i}" / "results.json").is_file() for i in range(2)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command" in stderr
    index = read_index(out)
    assert index is not None and index.runs[-1].stopped == "interrupted"
    assert {e.status for e in index.videos} == {"partial"}
    partial = [read_results(out / e.folder / "results.json") for e in index.videos]
    assert all(isinstance(r, VideoResults) and not r.complete and r.frames for r in partial)
    again = _corpus_cli(*args[4:])
    assert again.returncode == 0, again.stderr
    index = read_index(out)
    assert index is not None and {e.status for e in index.videos} == {"done"}
    assert all(e.resumed_frames > 0 for e in index.videos)


class ScriptedRunner:
    """A ``CorpusRunner`` whose workers say ``done`` without writing anything (nodes that share no disk)."""

    description = "scripted"
    workers = 2

    def __init__(self) -> None:
        self.jobs: list[object] = []

    def submit(self, job: object) -> None:
        self.jobs.append(job)

    def in_flight(self) -> int:
        return len(self.jobs)

    def wait(self, timeout_s: float) -> list[tuple[object, object]]:
        from clients.corpus import VideoOutcome

        done, self.jobs = self.jobs, []
        return [(job, VideoOutcome(job.source, "done", frames=3, worker="node b pid 7")) for job in done]  # type: ignore[attr-defined]

    def events(self) -> list[object]:
        return []

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_video_done_where_the_driver_cannot_see_its_results_is_failed_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = CorpusSettings(fps=FPS, batch_size=4)
    report = run_corpus(plan_corpus(["/videos/a.mp4"], out, settings), out, ScriptedRunner(), settings)  # type: ignore[arg-type]
    (entry,) = report.index.videos
    assert entry.status == "failed"
    assert entry.error is not None and "node b pid 7 finished it" in entry.error and "shares" in entry.error
    assert read_index(out) == report.index
