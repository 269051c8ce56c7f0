"""TensorRT plan provenance: real files (fake plan bytes, real provenance JSON, the real ONNX's sha256) checked
against injected environments, and `launcher run` refusing a foreign plan before it starts Triton."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launcher import cli
from mmw import engine_provenance
from mmw.config import Config
from mmw.engine_provenance import (
    EngineEnvironment,
    GpuInfo,
    PlanProvenance,
    check_plan,
    check_repository_plans,
    provenance_path,
    query_gpus,
    sha256_file,
    write_provenance,
)
from mmw.errors import EngineError
from mmw.repository import write_repository
from tests.conftest import ROOT, free_ports

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
BUILT = EngineEnvironment("10.5.0.18", (H100,))


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project root with the real labeller ONNX and a GPU repository (tensorrt_plan) whose labeller has a plan."""
    onnx = tmp_path / "model_repository" / "labeller" / "1" / "model.onnx"
    onnx.parent.mkdir(parents=True)
    source = ROOT / "model_repository" / "labeller" / "1" / "model.onnx"
    if not source.is_file():
        pytest.skip("the labeller ONNX is not built (make engines)")
    shutil.copyfile(source, onnx)
    gpu = tmp_path / "model_repository_gpu"
    write_repository(Config(), gpu, "gpu", "tensorrt")
    detector_onnx = ROOT / "model_repository" / "detector" / "1" / "model.onnx"  # by absolute path: not copied
    for name, source_onnx, size in (("labeller", "model_repository/labeller/1/model.onnx", 224),
                                    ("detector", str(detector_onnx), 300)):
        plan = gpu / name / "1" / "model.plan"
        plan.write_bytes(b"not a real plan: the check reads only its sha256 " + name.encode())
        write_provenance(plan, PlanProvenance(
            network=name, tensorrt_version=BUILT.tensorrt_version or "", gpu_name=H100.name,
            compute_capability=H100.compute_capability, precision="fp16",
            profile={"images": [[b, size, size, 3] for b in (1, 4, 8)]}, workspace_mb=1024, onnx=source_onnx,
            onnx_sha256=sha256_file(tmp_path / source_onnx), plan_sha256=sha256_file(plan),
            built_at="2026-11-25T00:00:00+00:00", build_s=42.0,
        ))
    return tmp_path


def _plan(project: Path) -> Path:
    return project / "model_repository_gpu" / "labeller" / "1" / "model.plan"


def test_matching_environment_passes(project: Path) -> None:
    record = check_plan(_plan(project), BUILT, project)
    assert record.precision == "fp16" and record.onnx_sha256 == sha256_file(
        project / "model_repository" / "labeller" / "1" / "model.onnx")
    assert json.loads(provenance_path(_plan(project)).read_text())["gpu_name"] == H100.name
    assert [r.network for r in check_repository_plans(project / "model_repository_gpu", lambda: BUILT, project)] == [
        "detector", "labeller"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (EngineEnvironment("10.5.0.18", (GpuInfo("NVIDIA H100 PCIe", "9.0"),)),
         r"built for GPU NVIDIA H100 80GB HBM3 \(compute capability 9\.0\), this machine has NVIDIA H100 PCIe "
         r"\(compute capability 9\.0\)"),
        (EngineEnvironment("10.5.0.18", (GpuInfo("NVIDIA A100-SXM4-40GB", "8.0"),)),
         r"built for compute capability 9\.0 \(NVIDIA H100 80GB HBM3\), this machine has NVIDIA A100-SXM4-40GB "
         r"\(compute capability 8\.0\)"),
        (EngineEnvironment("10.5.0.18", (H100, GpuInfo("NVIDIA L4", "8.9"))),
         r"built for compute capability 9\.0 .*this machine has .*NVIDIA L4 \(compute capability 8\.9\)"),
        (EngineEnvironment("10.7.0.23", (H100,)), r"built with TensorRT 10\.5\.0\.18, this machine has TensorRT 10\.7"),
        (EngineEnvironment(None, (H100,), tensorrt_missing="the tensorrt package is not installed"),
         r"this machine has no TensorRT \(the tensorrt package is not installed\); install tensorrt==10\.5\.0\.18"),
        (EngineEnvironment("10.5.0.18", (), gpus_missing="nvidia-smi not found"),
         r"this machine has no NVIDIA GPU \(nvidia-smi not found\)"),
    ],
    ids=["other-gpu", "other-compute-capability", "one-of-two-gpus-differs", "other-tensorrt", "no-tensorrt",
         "no-gpu"],
)
def test_other_environment_is_refused_saying_which(project: Path, env: EngineEnvironment, message: str) -> None:
    with pytest.raises(EngineError, match=message) as info:
        check_plan(_plan(project), env, project)
    assert str(info.value).startswith("model_repository_gpu/labeller/1/model.plan: ")
    assert "\n" not in str(info.value)
    if env.gpus:
        assert "make engines" in str(info.value)


def test_changed_onnx_is_refused(project: Path) -> None:
    onnx = project / "model_repository" / "labeller" / "1" / "model.onnx"
    with onnx.open("ab") as f:
        f.write(b"\0")  # a re-export that differs by one byte
    with pytest.raises(EngineError, match=r"built from model_repository/labeller/1/model\.onnx with sha256 "
                                          r"[0-9a-f]{12}\.\.\., that file now has sha256 [0-9a-f]{12}\.\.\. "
                                          r"\(the network was re-exported\); rebuild .*`make engines`"):
        check_plan(_plan(project), BUILT, project)
    onnx.unlink()
    with pytest.raises(EngineError, match=r"built from model_repository/labeller/1/model\.onnx, which is missing"):
        check_plan(_plan(project), BUILT, project)


def test_plan_without_provenance_is_refused(project: Path) -> None:
    provenance_path(_plan(project)).unlink()
    with pytest.raises(EngineError, match=r"labeller/1/model\.plan: no provenance record model\.plan\.json beside "
                                          r"it, .*`make engines`"):
        check_repository_plans(project / "model_repository_gpu", lambda: BUILT, project)


def test_replaced_plan_or_broken_record_is_refused(project: Path) -> None:
    plan = _plan(project)
    plan.write_bytes(b"another plan copied over this one")
    with pytest.raises(EngineError, match="not the one its provenance record describes"):
        check_plan(plan, BUILT, project)
    provenance_path(plan).write_text("{\"network\": 1}")
    with pytest.raises(EngineError, match=r"model\.plan\.json: not a valid provenance record"):
        check_plan(plan, BUILT, project)


def test_record_round_trip_and_records_from_before_polygraphy(project: Path) -> None:
    """What is written reads back equal; a record without ``polygraphy_version`` (older builds) still reads."""
    plan = _plan(project)
    record = dataclasses.replace(engine_provenance.read_provenance(plan, project), polygraphy_version="0.53.6")
    write_provenance(plan, record)
    assert engine_provenance.read_provenance(plan, project) == record
    assert json.loads(provenance_path(plan).read_text())["polygraphy_version"] == "0.53.6"
    older = json.loads(provenance_path(plan).read_text())
    del older["polygraphy_version"]
    provenance_path(plan).write_text(json.dumps(older))
    assert engine_provenance.read_provenance(plan, project) == dataclasses.replace(record, polygraphy_version="")
    assert check_plan(plan, BUILT, project).polygraphy_version == ""  # serving does not depend on the builder


def test_tensorrt_model_without_plan_is_refused(project: Path) -> None:
    _plan(project).unlink()
    with pytest.raises(EngineError, match=r"labeller: a tensorrt_plan model without a plan \(.*/labeller/"
                                          r"<version>/model\.plan\); build it with `make engines` on a machine "
                                          r"with an NVIDIA GPU"):
        check_repository_plans(project / "model_repository_gpu", lambda: BUILT, project)


def test_repository_without_plans_probes_nothing() -> None:
    def never() -> EngineEnvironment:
        raise AssertionError("the environment must not be probed for a repository without plans")

    assert check_repository_plans(ROOT / "model_repository", never) == []


@pytest.mark.parametrize(
    ("run", "gpus", "reason"),
    [
        (lambda *a, **k: subprocess.CompletedProcess(a, 0, "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA L4, 8.9\n", ""),
         (H100, GpuInfo("NVIDIA L4", "8.9")), ""),
        (lambda *a, **k: subprocess.CompletedProcess(a, 9, "", "NVIDIA-SMI has failed because it couldn't "
                                                     "communicate with the NVIDIA driver.\n"), (),
         "nvidia-smi exited 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."),
        (lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("nvidia-smi")), (), "nvidia-smi not found"),
    ],
    ids=["two-gpus", "driver-down", "no-nvidia-smi"],
)
def test_gpu_query_reads_nvidia_smi(run, gpus: tuple, reason: str) -> None:
    assert query_gpus(run) == (gpus, reason)


def _launcher_config(project: Path, tmp_path: Path, **server: object) -> Path:
    http, grpc, metrics = free_ports(3)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics, "state_dir": str(tmp_path / "state"),
                   "model_repository": str(project / "model_repository_gpu"), **server},
        "engines": {"gpu_repository": str(project / "model_repository_gpu")},
    }))
    return path


@pytest.mark.parametrize("mode", ["local", "docker"])
def test_launcher_run_refuses_a_foreign_plan_before_starting_triton(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        mode: str) -> None:
    """`launcher run` regenerates the GPU variant (engines.gpu_repository), checks the plan, refuses in one line."""
    other = EngineEnvironment("10.5.0.18", (GpuInfo("NVIDIA A100-SXM4-40GB", "8.0"),))
    monkeypatch.setattr(engine_provenance, "current_environment", lambda: other)
    config = _launcher_config(project, tmp_path)
    assert cli.main(["--config", str(config), "run", "--mode", mode, "--timeout", "30"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    detector_plan = project / "model_repository_gpu" / "detector" / "1" / "model.plan"
    assert err.startswith(f"launcher: error: {detector_plan}: built for compute capability 9.0 (NVIDIA H100 "
                          "80GB HBM3), this machine has NVIDIA A100-SXM4-40GB (compute capability 8.0); rebuild the "
                          "plans on this machine with `make engines`")
    state = tmp_path / "state"
    assert not any(state.glob("tritonserver*")) and not (state / "triton-container.json").exists()
    cfg = (project / "model_repository_gpu" / "labeller" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in cfg  # the launcher wrote the GPU variant, not the CPU one


def test_launcher_command_refuses_here(project: Path, tmp_path: Path) -> None:
    """The installed `launcher` command on this machine's real environment (no TensorRT / GPU here: refused)."""
    config = _launcher_config(project, tmp_path)
    launcher = Path(sys.executable).with_name("launcher")
    env = {**os.environ, "PATH": f"{launcher.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(launcher), "--config", str(config), "run", "--timeout", "30"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("launcher: error: "), done.stderr
    real = engine_provenance.current_environment()
    if real.tensorrt_version is None:
        assert "built with TensorRT 10.5.0.18, this machine has no TensorRT" in lines[0]
    elif dataclasses.replace(real, tensorrt_missing="", gpus_missing="") != BUILT:
        assert "model.plan: " in lines[0]
    assert not any((tmp_path / "state").glob("tritonserver*"))
