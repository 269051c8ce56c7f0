"""The built wheel, installed into a fresh virtual environment, works outside the source checkout.

The fresh venv gets the wheel (``pip --python``, no dependencies) and sees the dependencies of the
project's venv through a ``.pth`` path (its editable install of the checkout is not activated that way).
Everything runs in an empty folder, so only the installed package and its packaged data are found.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from mmw.config import Config
from tests.conftest import ROOT, jpeg, photo, project_sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh venv's python, with the wheel built from this checkout installed."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"  # a copy: building in the checkout would leave build/ there
    for path in project_sources(""):
        (source / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, source / path.relative_to(ROOT))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "dist"), str(source)], check=True, timeout=600, capture_output=True)
    (wheel,) = (root / "dist").glob("multi_model_workflows-*.whl")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=600, capture_output=True)
    (root / "work").mkdir()
    return python


def _run(python: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    work = python.parent.parent.parent / "work"
    return subprocess.run([str(python), *args], cwd=work, capture_output=True, text=True, timeout=timeout)


def test_the_installed_package_is_not_the_checkout(installed: Path) -> None:
    done = _run(installed, "-c", "import mmw, clients, launcher, export; print(mmw.__file__, clients.__file__)")
    assert done.returncode == 0, done.stderr
    assert str(ROOT) not in done.stdout and "site-packages" in done.stdout


def test_it_finds_its_default_config_and_data(installed: Path) -> None:
    code = ("from mmw.config import load_config, PROJECT_ROOT; from mmw.processing.labels import coco_name, "
            "imagenet_short_name; from export.fidelity import resize_cases; c = load_config(); "
            "print(PROJECT_ROOT, c.server.http_port, coco_name(1), imagenet_short_name(281), "
            "all(x.bit_exact for x in resize_cases()))")
    done = _run(installed, "-c", code)
    assert done.returncode == 0, done.stderr
    root, port, person, cat, exact = done.stdout.split()
    assert Path(root).name == "work" and int(port) == Config().server.http_port
    assert (person, exact) == ("person", "True") and cat


def test_launcher_doctor_runs_from_the_install(installed: Path) -> None:
    launcher = installed.parent / "launcher"
    done = subprocess.run([str(launcher), "doctor"], cwd=installed.parent.parent.parent / "work",
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode in (0, 1), done.stderr  # 1: a check failed (no Docker here), said in one line each
    assert done.stdout.strip(), "doctor reports its checks"


@pytest.mark.serving
def test_clients_image_against_a_running_server_from_the_install(installed: Path, triton: Config,
                                                                 tmp_path: Path) -> None:
    image = tmp_path / "chelsea.jpg"
    image.write_bytes(jpeg(photo("chelsea")))
    out = tmp_path / "out"
    done = _run(installed, "-m", "clients", "image", str(image), "--out", str(out),
                "--url", f"127.0.0.1:{triton.server.grpc_port}")
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["images"][0]["detections"][0]["class_name"] == "cat"
