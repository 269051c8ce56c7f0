"""Where the videos of a corpus run: a local process pool, or a Ray cluster.

Both are a ``CorpusRunner``: ``submit`` a ``VideoJob``, ``wait`` for outcomes, drain ``events``
(progress), ``stop`` the videos in progress (each writes its results so far) and ``close``. The job loop
(``clients.corpus.job``) only ever talks to that interface; ``open_runner`` picks one from ``RUNNERS``.

- ``LocalPool``: ``concurrent.futures.ProcessPoolExecutor`` (spawned processes). A worker process that
  dies (killed, out of memory) breaks the pool: a new pool is made and the videos it had are submitted
  again, up to ``attempts`` times each; each one resumes from its checkpoint.
- ``RayCluster``: one Ray task per video (``num_cpus=1``, spread over the nodes). Ray retries a task whose
  worker or node is lost (``max_retries = attempts - 1``) on another node, where it resumes from its
  checkpoint: every node must see the output folder (a shared filesystem). Progress comes back through a
  ``ray.util.queue.Queue`` actor kept on the driver's node.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue as stdlib_queue
import signal
import socket
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from clients.corpus.worker import ProgressEvent, VideoJob, VideoOutcome, analyse_one, init_pool_worker
from clients.pipeline import one_line
from clients.transport import ClientSettings
from mmw.errors import InputError

_MAX_LOCAL_WORKERS = 8


class CorpusRunner(Protocol):
    """What the job loop needs of a place to run videos."""

    description: str  # for people and for corpus.json's run record
    workers: int  # videos it runs at once

    def submit(self, job: VideoJob) -> None: ...

    def in_flight(self) -> int: ...

    def wait(self, timeout_s: float) -> list[tuple[VideoJob, VideoOutcome]]: ...

    def events(self) -> list[ProgressEvent]: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _lost(job: VideoJob, why: str) -> VideoOutcome:
    return VideoOutcome(job.source, "partial", error=why)


class LocalPool:
    """Videos on worker processes of this machine."""

    def __init__(self, settings: ClientSettings, workers: int = 0, attempts: int = 3) -> None:
        self.settings = settings
        self.workers = workers or min(os.cpu_count() or 1, _MAX_LOCAL_WORKERS)
        self.attempts = attempts
        self.description = f"local pool, {_plural(self.workers, 'worker')}"
        self._context = multiprocessing.get_context("spawn")
        self._queue = self._context.Queue()
        self._executor = self._new_executor()
        self._futures: dict[Future[VideoOutcome], tuple[VideoJob, int, ProcessPoolExecutor]] = {}
        self._pids: set[int] = set()
        self._stopping = False

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._context, initializer=init_pool_worker,
                                   initargs=(self._queue,))

    def _submit(self, job: VideoJob, attempt: int) -> None:
        future = self._executor.submit(analyse_one, job, self.settings)
        self._futures[future] = (job, attempt, self._executor)

    def submit(self, job: VideoJob) -> None:
        self._submit(job, 1)

    def in_flight(self) -> int:
        return len(self._futures)

    def wait(self, timeout_s: float) -> list[tuple[VideoJob, VideoOutcome]]:
        done, _ = wait_futures(list(self._futures), timeout=timeout_s, return_when=FIRST_COMPLETED)
        finished = []
        for future in done:
            job, attempt, executor = self._futures.pop(future)
            try:
                finished.append((job, future.result()))
            except BrokenProcessPool:
                if self._stopping:  # the workers were told to stop: nothing is tried again
                    finished.append((job, _lost(job, "stopped")))
                    continue
                if executor is self._executor:  # the first to notice makes a new pool
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
                if attempt < self.attempts:
                    self._submit(job, attempt + 1)
                else:
                    finished.append((job, _lost(job, f"its worker process was lost {attempt} times")))
            except BaseException as exc:  # KeyboardInterrupt from a stopped worker, a pickling error
                finished.append((job, _lost(job, f"stopped: {type(exc).__name__} {one_line(exc)}".strip())))
        return finished

    def events(self) -> list[ProgressEvent]:
        events = []
        with contextlib.suppress(stdlib_queue.Empty, OSError, ValueError):
            while len(events) < 10_000:
                events.append(self._queue.get_nowait())
        self._pids.update(e.pid for e in events)
        return events

    def stop(self) -> None:
        """SIGTERM to every worker: a busy one writes its video's results so far, an idle one exits."""
        self._stopping = True
        for pid in self._pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._queue.close()


def _check_reachable(address: str) -> None:
    """InputError at once when ``HOST:PORT`` takes no connection (Ray itself would retry for minutes)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return
    except ValueError:
        raise InputError(f"--ray {address}: expected auto, local, HOST:PORT or ray://HOST:PORT") from None
    except OSError as exc:
        raise InputError(f"--ray {address}: nothing answers there ({exc.strerror or exc}); start the cluster "
                         "(`ray start --head`) or give its address") from None


class RayCluster:
    """Videos as Ray tasks on a cluster (``auto``: the one ``ray start`` set up; ``local``: a new one here)."""

    def __init__(self, settings: ClientSettings, address: str, workers: int = 0, attempts: int = 3) -> None:
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise InputError("--ray: needs Ray (pip install 'ray==2.60.0'); without --ray the corpus runs on a "
                             "local process pool") from None
        self._ray = ray
        self.settings = settings
        self._owns = not ray.is_initialized()
        if self._owns:
            _check_reachable(address)
            try:
                ray.init(address=None if address == "local" else address, logging_level=logging.WARNING,
                         configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"--ray {address}: cannot connect to a Ray cluster there ({one_line(exc)}); "
                                 "expected auto (after `ray start --head`), HOST:PORT, ray://HOST:PORT or local") \
                    from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.workers = workers or max(1, cpus)
        self.description = f"ray at {address}, {_plural(nodes, 'node')}, {_plural(cpus, 'CPU')}"
        options: dict[str, Any] = {"num_cpus": 0}
        with contextlib.suppress(Exception):  # keep the progress queue where the driver is, not on a node that goes
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=True)
        self._queue = Queue(actor_options=options)
        self._task = ray.remote(analyse_one).options(num_cpus=1, max_retries=max(0, attempts - 1),
                                                     retry_exceptions=False, scheduling_strategy="SPREAD")
        self._refs: dict[Any, VideoJob] = {}

    def submit(self, job: VideoJob) -> None:
        self._refs[self._task.remote(job, self.settings, self._queue)] = job

    def in_flight(self) -> int:
        return len(self._refs)

    def wait(self, timeout_s: float) -> list[tuple[VideoJob, VideoOutcome]]:
        ray = self._ray
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout_s)
        if ready:
            more, _ = ray.wait([r for r in self._refs if r not in ready], num_returns=len(self._refs) - 1, timeout=0)
            ready += more
        finished = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                finished.append((job, ray.get(ref)))
            except ray.exceptions.RayError as exc:  # worker or node lost more often than max_retries, cancelled
                finished.append((job, _lost(job, f"lost on Ray: {type(exc).__name__}")))
        return finished

    def events(self) -> list[ProgressEvent]:
        with contextlib.suppress(Exception):
            size = self._queue.qsize()
            if size:
                return list(self._queue.get_nowait_batch(size))
        return []

    def stop(self) -> None:
        """Cancel the tasks: a running one gets KeyboardInterrupt and writes its results so far."""
        for ref in list(self._refs):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._queue.shutdown()
        if self._owns:
            self._ray.shutdown()


#: Runners by name; ``open_runner`` is the one place that picks.
RUNNERS: dict[str, Callable[..., CorpusRunner]] = {"local": LocalPool, "ray": RayCluster}


def open_runner(settings: ClientSettings, ray_address: str = "", workers: int = 0, attempts: int = 3) -> CorpusRunner:
    """``RayCluster`` at ``ray_address`` (auto, HOST:PORT, ray://..., local), or a ``LocalPool`` when it is empty."""
    if workers < 0:
        raise InputError(f"--workers: expected >= 0 (0: one per CPU), got {workers}")
    if ray_address:
        return RUNNERS["ray"](settings, ray_address, workers=workers, attempts=attempts)
    return RUNNERS["local"](settings, workers=workers, attempts=attempts)
