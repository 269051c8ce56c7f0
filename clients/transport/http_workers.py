"""Worker threads for HTTP requests: tritonclient's HTTP client runs on gevent and must stay in its thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import tritonclient.http as httpclient


class HttpWorkers:
    """Threads that each own one HTTP client and run queued requests; ``submit`` returns a future."""

    def __init__(self, url: str, count: int, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[Any], Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"scene-http-{i}", daemon=True) for i in range(count)]
        for t in self._threads:
            t.start()

    def submit(self, job: Callable[[Any], Any], future: Future[Any] | None = None) -> Future[Any]:
        """Run ``job(client)`` in a worker; the future (``future``, or a new one) holds its result or exception."""
        future = Future() if future is None else future
        self._jobs.put((future, job))
        return future

    def _run(self) -> None:
        client = None
        try:
            while (item := self._jobs.get()) is not None:
                future, job = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if client is None:
                        client = httpclient.InferenceServerClient(
                            self._url, connection_timeout=self._timeout_s, network_timeout=self._timeout_s
                        )
                    future.set_result(job(client))
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)  # a refused connection is retried by the next request
        finally:
            if client is not None:
                client.close()

    def close(self) -> None:
        """Stop the threads once the queued requests are done (waits up to 5 s each)."""
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=5.0)
