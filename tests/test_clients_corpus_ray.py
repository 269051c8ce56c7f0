"""The corpus job on a real Ray cluster: two nodes on this machine, two real tritonservers, a node removed mid-run.

Ray runs on loopback only: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes every Ray process use 127.0.0.1
(Ray otherwise advertises the host's own address), and the servers listen on 127.0.0.1 too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.corpus import CorpusSettings, ProgressEvent, RayCluster, collect_videos, plan_corpus, run_corpus
from clients.media.sample_video import make_sample_video
from clients.results import VideoResults, read_results
from clients.transport import ClientSettings
from tests.conftest import ROOT, serving
from tests.test_clients_corpus import FPS, VIDEO_FILES, bad_videos, reference_results, same_results

ray = pytest.importorskip("ray", reason="the corpus on Ray needs ray (the Makefile installs it)")


@pytest.fixture(scope="module")
def ray_fleet(engines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two tritonservers and a two-node Ray cluster (one CPU each), all on 127.0.0.1; stopped at the end."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    with serving(tmp_path_factory.mktemp("ray-triton-1")) as first, \
            serving(tmp_path_factory.mktemp("ray-triton-2")) as second:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
        try:
            worker_node = cluster.add_node(num_cpus=1)
            yield {"cluster": cluster, "worker_node": worker_node, "servers": (first, second)}
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six videos: four good ones of 8 s, a corrupt one and an empty one."""
    folder = tmp_path_factory.mktemp("ray-corpus")
    for i in range(4):
        make_sample_video(folder / f"clip{i}.mp4", seconds=8, fps=10)
    bad_videos(folder)
    return folder


def test_removing_a_node_mid_run_still_gives_every_video_identical_to_one_process_and_a_rerun_does_nothing(
        ray_fleet: dict[str, Any], corpus: Path, tmp_path: Path) -> None:
    cluster, node = ray_fleet["cluster"], ray_fleet["worker_node"]
    # HTTP: the workers on the removed node die mid-request, and a gRPC client killed mid-request can crash
    # tritonserver 2.51 (server#7368, docs/troubleshooting.md)
    urls = tuple(f"127.0.0.1:{c.server.http_port}" for c in ray_fleet["servers"])
    settings = ClientSettings(urls=urls, protocol="http", retry_s=10.0)
    out = tmp_path / "out"
    options = CorpusSettings(fps=FPS, batch_size=4, checkpoint_s=0)
    sources = collect_videos([str(corpus)])
    removed: list[ProgressEvent] = []

    def remove_the_worker_node(event: ProgressEvent) -> None:
        if not removed and node.node_id[:6] in event.worker and 6 <= event.done < event.total:  # past a checkpoint
            cluster.remove_node(node)
            removed.append(event)

    runner = RayCluster(settings, cluster.address)
    assert runner.description == f"ray at {cluster.address}, 2 nodes, 2 CPUs"
    started = time.monotonic()
    report = run_corpus(plan_corpus(sources, out, options), out, runner, options, on_event=remove_the_worker_node)
    assert removed, "the worker node finished its video before it could be removed"
    counts = report.index.counts()
    assert counts == {"done": 4, "failed": 2, "partial": 0, "pending": 0}, report.index.videos
    moved = report.index.entry(removed[0].source)
    # resumed on the head node from the checkpoint the removed node wrote
    assert moved is not None and moved.resumed_frames > 0 and node.node_id[:6] not in (moved.worker or "")
    assert time.monotonic() - started < 240
    for entry in report.index.videos:
        if entry.status != "done":
            assert entry.error and entry.folder in ("corrupt", "empty")
            continue
        assert {p.name for p in (out / entry.folder).iterdir()} == VIDEO_FILES
        results = read_results(out / entry.folder / "results.json")
        assert isinstance(results, VideoResults)
        one = ClientSettings(urls=urls[:1], protocol="http")
        same_results(results, reference_results(Path(entry.source), tmp_path / "reference" / entry.folder, one))

    # the command line on the same cluster (one node left): --ray ADDRESS
    cli = subprocess.run([sys.executable, "-m", "clients", "corpus", str(corpus / "clip0.mp4"), "--out",
                          str(tmp_path / "cli"), "--ray", cluster.address, "--protocol", "http", "--url", urls[0]],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert f"on ray at {cluster.address}, 1 node, 1 CPU" in cli.stdout and "1 done, 0 failed" in cli.stdout

    again = plan_corpus(sources, out, options)
    assert again.todo == [] and again.skipped == {"done": 4, "failed": 2}
    shutil.rmtree(out / "clip3")  # a finished video whose folder went away is done again
    assert [e.folder for e in plan_corpus(sources, out, options).todo] == ["clip3"]
