"""Ask a running Triton over HTTP whether it and its models are ready (stdlib only, proxies bypassed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmw.errors import ServerError

# Never send requests to the local server through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ModelState:
    """One row of Triton's repository index."""

    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, ... ('' when Triton does not say)
    reason: str = ""


def request(
    url: str, method: str = "GET", body: bytes | None = None, timeout_s: float = 2.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes] | None:
    """(status, body) of one request, or None when nothing answers."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def server_ready(base_url: str, timeout_s: float = 2.0) -> bool:
    """``GET /v2/health/ready`` answers 200."""
    result = request(f"{base_url}/v2/health/ready", timeout_s=timeout_s)
    return result is not None and result[0] == 200


def server_live(base_url: str, timeout_s: float = 2.0) -> bool:
    """``GET /v2/health/live`` answers 200."""
    result = request(f"{base_url}/v2/health/live", timeout_s=timeout_s)
    return result is not None and result[0] == 200


def model_ready(base_url: str, name: str, timeout_s: float = 2.0) -> bool:
    """``GET /v2/models/<name>/ready`` answers 200."""
    result = request(f"{base_url}/v2/models/{urllib.parse.quote(name, safe='')}/ready", timeout_s=timeout_s)
    return result is not None and result[0] == 200


def repository_index(base_url: str, timeout_s: float = 5.0,
                     headers: Mapping[str, str] | None = None) -> list[ModelState] | None:
    """``POST /v2/repository/index``: every model Triton knows and its state (None if it does not answer).

    The index is a model-repository API: with restricted APIs it needs ``headers`` carrying the admin key.
    """
    result = request(f"{base_url}/v2/repository/index", method="POST", body=b"{}", timeout_s=timeout_s,
                     headers=headers)
    if result is None or result[0] != 200:
        return None
    try:
        rows = json.loads(result[1])
    except ValueError:
        return None
    return [ModelState(name=str(r.get("name", "")), version=str(r.get("version", "")),
                       state=str(r.get("state", "")), reason=str(r.get("reason", "")))
            for r in rows if isinstance(r, dict)]


def index_refused(base_url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 2.0) -> bool:
    """True when the repository index answers 403: its APIs are restricted and ``headers`` lack the key."""
    result = request(f"{base_url}/v2/repository/index", method="POST", body=b"{}", timeout_s=timeout_s,
                     headers=headers)
    return result is not None and result[0] == 403


def models_ready(base_url: str, names: Sequence[str], repository: object,
                 error: type[ServerError] = ServerError, headers: Mapping[str, str] | None = None) -> bool:
    """True when every model in ``names`` is ready; raise ``error`` for a name the repository does not have."""
    missing = [n for n in names if not model_ready(base_url, n)]
    if not missing:
        return True
    index = repository_index(base_url, headers=headers)
    if index is not None:
        known = sorted({m.name for m in index})
        absent = [n for n in missing if n not in known]
        if absent:
            raise error(f"model {', '.join(absent)} is not in the model repository {repository}: expected it to be "
                        f"served; the repository has: {', '.join(known) or 'no models'}")
    return False
