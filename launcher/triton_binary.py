"""Find the tritonserver binary shipped in the ``nvidia-pytriton`` wheel and prepare its python backend.

The wheel holds the server (``pytriton/tritonserver/bin/tritonserver``), its shared libraries
(``nvidia_pytriton.libs/``), the python backend without a stub (``backends/python/``) and one stub
per Python version (``python_backend_stubs/<major.minor>/``). Triton wants the stub next to
``libtriton_python.so``, so :func:`prepare_backend_dir` assembles a backend directory of its own.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mmw.config import PROJECT_ROOT
from mmw.errors import ServerError

INSTALL_HINT = "run `make install`, or `pip install --no-deps nvidia-pytriton==0.7.0` in the project's venv"
PYTHONPATH_ENV = "MMW_PYTHONPATH"
"""The python models prepend this (os.pathsep-separated) to sys.path: the stub ignores PYTHONPATH."""

STUB_NAME = "triton_python_backend_stub"
BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


@dataclass(frozen=True)
class TritonInstall:
    """Where the parts of the tritonserver installation are."""

    root: Path  # .../site-packages/pytriton/tritonserver
    binary: Path
    lib_dir: Path  # .../site-packages/nvidia_pytriton.libs
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stubs_dir: Path  # <major.minor>/triton_python_backend_stub

    def stub_versions(self) -> list[str]:
        """The Python versions a stub ships for, e.g. ``['3.8', '3.9', ..., '3.13']``."""
        if not self.stubs_dir.is_dir():
            return []
        found = [d.name for d in self.stubs_dir.iterdir() if (d / STUB_NAME).is_file()]
        return sorted(found, key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))


def _missing(what: str, path: Path) -> ServerError:
    return ServerError(f"tritonserver installation incomplete: expected {what} at {path}, it is missing; "
                       f"{INSTALL_HINT}")


def find_triton() -> TritonInstall:
    """Locate tritonserver, its libraries and the python backend in the installed ``nvidia-pytriton`` wheel."""
    spec = importlib.util.find_spec("pytriton")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ServerError(f"tritonserver not found: expected the Python package 'pytriton' (nvidia-pytriton), "
                          f"it is not installed in {sys.prefix}; {INSTALL_HINT}")
    package = Path(locations[0])
    root = package / "tritonserver"
    install = TritonInstall(
        root=root,
        binary=root / "bin" / "tritonserver",
        lib_dir=package.parent / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stubs_dir=root / "python_backend_stubs",
    )
    if not install.binary.is_file():
        raise _missing("the tritonserver binary", install.binary)
    if not os.access(install.binary, os.X_OK):
        raise ServerError(f"tritonserver at {install.binary} is not executable; run `chmod +x {install.binary}` "
                          f"or reinstall: {INSTALL_HINT}")
    if not install.lib_dir.is_dir():
        raise _missing("the tritonserver shared libraries directory", install.lib_dir)
    for name in BACKEND_FILES:
        if not (install.python_backend / name).is_file():
            raise _missing(f"the python backend file {name}", install.python_backend / name)
    return install


def stub_for(install: TritonInstall, version: str | None = None) -> Path:
    """The python backend stub for ``version`` (default: this interpreter's major.minor)."""
    version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.stubs_dir / version / STUB_NAME
    if not stub.is_file():
        have = ", ".join(install.stub_versions()) or "none"
        raise ServerError(f"no python backend stub for Python {version}: expected {stub}; stubs exist for Python "
                          f"{have}; run the launcher with one of those Python versions (recreate the venv), "
                          f"or {INSTALL_HINT}")
    return stub


def server_env(install: TritonInstall, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: its libraries on LD_LIBRARY_PATH and MMW_PYTHONPATH for the python models."""
    env = dict(os.environ if base is None else base)
    ld = [str(install.lib_dir)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    env[PYTHONPATH_ENV] = os.pathsep.join(python_path_for_models())
    return env


def python_path_for_models() -> list[str]:
    """Project root then the venv's site-packages: what the stub's embedded interpreter must see."""
    paths = [str(PROJECT_ROOT)] + [p for p in site.getsitepackages() if Path(p).is_dir()]
    return list(dict.fromkeys(paths))


def _check_stub_links(stub: Path, install: TritonInstall) -> None:
    """Fail clearly when the stub cannot load a library (typically libpython3.X from the OS)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return
    env = server_env(install)
    try:
        out = subprocess.run([ldd, str(stub)], capture_output=True, text=True, env=env, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return
    missing = re.findall(r"^\s*(\S+)\s+=>\s+not found", out, flags=re.MULTILINE)
    if missing:
        pkgs = [f"lib{m.group(1)}" for name in missing if (m := re.match(r"lib(python3\.\d+)\.so", name))]
        hint = f"install it with `apt-get install {' '.join(pkgs)}`" if pkgs else "install the package that provides it"
        raise ServerError(f"the python backend stub {stub} needs {', '.join(missing)}, which is not found on this "
                          f"system; {hint}")


def _copy_if_changed(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless it is there with the same size; atomic, so a loaded .so is never overwritten."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def prepare_backend_dir(install: TritonInstall, dest: Path, python_version: str | None = None) -> Path:
    """Assemble ``dest/python/`` (backend library, utils, stub) and return ``dest`` for ``--backend-directory``.

    Idempotent: files already there with the same size are kept.
    """
    stub = stub_for(install, python_version)
    _check_stub_links(stub, install)
    target = dest / "python"
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in BACKEND_FILES:
            _copy_if_changed(install.python_backend / name, target / name)
        _copy_if_changed(stub, target / STUB_NAME)
    except OSError as exc:
        raise ServerError(f"cannot prepare the python backend directory {target}: {exc}") from exc
    return dest


@functools.lru_cache(maxsize=8)
def supported_flags(install: TritonInstall) -> frozenset[str]:
    """The ``--flags`` that ``tritonserver --help`` lists (empty if it cannot be run)."""
    try:
        proc = subprocess.run([str(install.binary), "--help"], capture_output=True, text=True,
                              env=server_env(install), timeout=30)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(re.findall(r"^\s*(--[a-z0-9-]+)", proc.stdout + proc.stderr, flags=re.MULTILINE))
