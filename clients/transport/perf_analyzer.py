"""Run Triton's own ``perf_analyzer`` against the ensemble, unchanged.

The binary comes with the ``tritonclient==2.41.1`` wheel. It needs ``libb64.so.0d`` and
``libcudart.so.12``, which the ``nvidia-pytriton`` wheel ships under mangled names in
``nvidia_pytriton.libs/``; :func:`perf_analyzer_env` links them under their real names.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mmw.contract import IMAGE
from mmw.errors import MMWError

_LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


def perf_analyzer_binary() -> Path:
    """The perf_analyzer executable installed beside this Python."""
    found = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    path = Path(found)
    if not path.is_file():
        raise MMWError("perf_analyzer: not found; it comes with tritonclient==2.41.1 (`make install`)")
    return path


def _pytriton_libs() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MMWError("perf_analyzer: its libraries come from nvidia-pytriton==0.7.0, not installed (`make install`)")
    return Path(next(iter(spec.submodule_search_locations))).parent / "nvidia_pytriton.libs"


def perf_analyzer_env(lib_dir: Path) -> dict[str, str]:
    """Environment in which perf_analyzer finds its shared libraries (links made in ``lib_dir``)."""
    source = _pytriton_libs()
    lib_dir.mkdir(parents=True, exist_ok=True)
    for name, pattern in _LIBRARIES.items():
        matches = sorted(source.glob(pattern))
        if not matches:
            raise MMWError(f"perf_analyzer: expected {pattern} in {source}, found none")
        link = lib_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(matches[0])
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def write_input_data(images: Sequence[bytes], path: Path, input_name: str = IMAGE.name) -> Path:
    """perf_analyzer ``--input-data`` JSON: one entry per image, BYTES as b64 of (uint32 LE length + bytes)."""
    entries = [
        {input_name: {"b64": base64.b64encode(struct.pack("<I", len(data)) + data).decode(), "shape": [1]}}
        for data in images
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": entries}), encoding="utf-8")
    return path


def perf_analyzer_command(
    model: str,
    url: str,
    protocol: str,
    input_data: Path,
    concurrency: str,
    measurement_ms: int,
    csv: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The perf_analyzer command line, as a user would type it."""
    cmd = [
        str(perf_analyzer_binary()),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "--input-data",
        str(input_data),
        "--concurrency-range",
        concurrency,
        "--measurement-interval",
        str(measurement_ms),
        "-b",
        "1",
    ]
    if csv is not None:
        cmd += ["-f", str(csv)]
    return cmd + list(extra)


def run_perf_analyzer(cmd: list[str], lib_dir: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run it; raise with its own output when it fails."""
    try:
        done = subprocess.run(
            cmd, env=perf_analyzer_env(lib_dir), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise MMWError(f"perf_analyzer: did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise MMWError(f"perf_analyzer failed (exit {done.returncode}): " + " | ".join(tail))
    return done
