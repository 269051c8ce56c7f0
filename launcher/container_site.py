"""The python models' packages for the stock NGC Triton image, installed on the host for the image's Python.

The NGC ``tritonserver`` image has Python (3.10 in 24.10) and numpy but not opencv, pillow or onnxruntime,
which the python models import. pip installs ``docker/requirements-triton.txt`` as binary wheels for that
Python and platform into ``<state_dir>/container-site-py3.10-x86_64`` (once; again when the requirements
change); the launcher mounts it read-only at /opt/mmw/site and puts it on MMW_PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mmw.config import PROJECT_ROOT
from mmw.errors import DockerError

REQUIREMENTS = PROJECT_ROOT / "docker" / "requirements-triton.txt"
STAMP = ".mmw-requirements.sha256"
PIP_TIMEOUT_S = 1800


def _arch(arch: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def site_dir(state_dir: Path, python_version: str, arch: str) -> Path:
    return state_dir / f"container-site-py{python_version}-{_arch(arch)}"


def pip_command(target: Path, python_version: str, arch: str, requirements: Path = REQUIREMENTS) -> list[str]:
    """``pip install --target`` of binary wheels for another Python/platform (glibc 2.17..2.35)."""
    machine = _arch(arch)
    platforms = [f"manylinux2014_{machine}"] + [f"manylinux_2_{minor}_{machine}" for minor in range(17, 36)]
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
           "--target", str(target), "--python-version", python_version, "--implementation", "cp",
           "--only-binary=:all:"]
    for platform in platforms:
        cmd += ["--platform", platform]
    return [*cmd, "-r", str(requirements)]


def _digest(requirements: Path, python_version: str, arch: str) -> str:
    try:
        text = requirements.read_bytes()
    except OSError as exc:
        raise DockerError(f"cannot read {requirements} ({exc}); expected the python models' requirements for the "
                          "Triton image") from None
    return hashlib.sha256(text + f"\n{python_version} {_arch(arch)}".encode()).hexdigest()


def is_prepared(target: Path, requirements: Path, python_version: str, arch: str) -> bool:
    stamp = target / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _digest(requirements, python_version, arch)


def prepare_site(state_dir: Path, python_version: str, arch: str, requirements: Path = REQUIREMENTS) -> Path:
    """Install the requirements for the image's Python into the state dir unless already there; return the dir."""
    target = site_dir(state_dir, python_version, arch)
    if is_prepared(target, requirements, python_version, arch):
        return target
    digest = _digest(requirements, python_version, arch)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = pip_command(tmp, python_version, arch, requirements)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DockerError(f"cannot install the python models' packages for the container ({exc})") from None
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise DockerError(
            f"pip could not install {requirements.name} for Python {python_version} ({_arch(arch)}) into {target}: "
            f"{tail}; expected PyPI (or a pip index in pip.conf) to be reachable once. Offline: copy that folder "
            "from a machine where `launcher run --mode docker` worked, use an image that has the packages "
            "(docker/Dockerfile, docker/release) and set docker.container_python: \"\"")
    (tmp / STAMP).write_text(digest + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
