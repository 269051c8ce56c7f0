"""Corpus: many videos analysed at once, on a local process pool or a Ray cluster (``python -m clients corpus``).

``inputs`` (files, folders, globs, lists, URLs -> sources, and a results folder each), ``index``
(``corpus.json``: per video status, frames, duration, error, timings), ``worker`` (one video in a worker:
``analyse_one``, resuming its checkpoint), ``runners`` (``LocalPool`` and ``RayCluster`` behind
``CorpusRunner``), ``job`` (plan what is left, run it, keep the index), ``command`` (the CLI and its bars).
"""

from clients.corpus.index import INDEX_FILE, CorpusIndex, VideoEntry, read_index
from clients.corpus.inputs import collect_videos, folder_names
from clients.corpus.job import CorpusPlan, CorpusReport, CorpusSettings, plan_corpus, run_corpus
from clients.corpus.runners import RUNNERS, CorpusRunner, LocalPool, RayCluster, open_runner
from clients.corpus.worker import ProgressEvent, VideoJob, VideoOutcome, analyse_one

__all__ = ["INDEX_FILE", "RUNNERS", "CorpusIndex", "CorpusPlan", "CorpusReport", "CorpusRunner", "CorpusSettings",
           "LocalPool", "ProgressEvent", "RayCluster", "VideoEntry", "VideoJob", "VideoOutcome", "analyse_one",
           "collect_videos", "folder_names", "open_runner", "plan_corpus", "read_index", "run_corpus"]
