"""The launcher against a real tritonserver, on a tiny python-backend model repository in tmp_path.

Ports 18000-18010 only (other suites use 8000-8002 and 9000-9010). Every server a test starts is
killed by PID afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import launcher
from launcher import cli, docker_server, local_server, triton_log
from launcher.devcontainer.doctor import NEEDS
from launcher.local_server import server_paths, server_status, start_server, stop_server
from launcher.processes import is_tritonserver, shm_regions
from launcher.records import ContainerRecord, ServerRecord, write_record
from launcher.registry import BACKENDS, active_backend, backend_for
from launcher.report import VIEWS, stop_message
from launcher.triton_binary import find_triton, prepare_backend_dir
from mmw.config import Config, ServerConfig, build
from mmw.errors import ConfigError, ServerError

ADD_ONE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (x + 1).astype(np.int32))]))
        return responses
"""

BROKEN = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("deliberate failure for the test")

    def execute(self, requests):
        return []
"""

# The stub's interpreter does not see the venv: the models add MMW_PYTHONPATH to sys.path first.
PRELUDE = """
import os
import sys

sys.path[:0] = [p for p in os.environ.get("MMW_PYTHONPATH", "").split(os.pathsep) if p]
"""

CONFIG_PBTXT = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


def make_repository(root: Path, models: dict[str, str]) -> Path:
    """A model repository with one python model per entry (name -> model.py body)."""
    for name, body in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(textwrap.dedent(CONFIG_PBTXT.format(name=name)))
        (root / name / "1" / "model.py").write_text(PRELUDE + body)
    return root


def make_config(tmp_path: Path, first_port: int, models: dict[str, str] | None = None, **server: object) -> Config:
    repo = make_repository(tmp_path / "repo", models if models is not None else {"add1": ADD_ONE})
    settings = {
        "http_port": first_port, "grpc_port": first_port + 1, "metrics_port": first_port + 2,
        "model_repository": str(repo), "state_dir": str(tmp_path / "state"),
        "startup_timeout_s": 60.0, "exit_timeout_s": 5,
    }
    settings.update(server)
    return build(Config, {"server": settings})


def _kill(pid: int) -> None:
    if is_tritonserver(pid):
        os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


@pytest.fixture(autouse=True)
def kill_leftover_servers() -> Iterator[None]:
    """Kill (by PID) every tritonserver a test started and left running."""
    try:
        find_triton()
    except ServerError as exc:
        pytest.skip(f"tritonserver not installed: {exc}")
    before = set(local_server._CHILDREN)
    try:
        yield
    finally:
        for pid in set(local_server._CHILDREN) - before:
            _kill(pid)
            local_server._CHILDREN.pop(pid, None)


def _gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.serving
def test_lifecycle_start_status_infer_logs_stop(tmp_path: Path) -> None:
    import tritonclient.http as httpclient

    config = make_config(tmp_path, 18000)
    paths = server_paths(config)
    record = start_server(config, ["add1"])
    assert record.http_url == "http://127.0.0.1:18000"
    saved = json.loads(paths.pid_file.read_text())
    assert saved["pid"] == record.pid and saved["http_port"] == 18000 and saved["binary"].endswith("tritonserver")
    assert is_tritonserver(record.pid)

    st = server_status(config)
    assert st.running and st.server_ready and st.pid == record.pid
    assert st.ready_models == ("add1",)
    assert st.uptime_s is not None and st.uptime_s >= 0

    client = httpclient.InferenceServerClient(url="127.0.0.1:18000")
    try:
        x = httpclient.InferInput("INPUT0", [3], "INT32")
        x.set_data_from_numpy(np.array([1, 2, 41], dtype=np.int32))
        result = client.infer("add1", [x])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [2, 3, 42])
    finally:
        client.close()

    assert any("successfully loaded 'add1'" in line for line in local_server.read_log(config, 200))
    assert len(local_server.read_log(config, 3)) == 3

    assert local_server.wait_ready(config, ["add1"], timeout_s=10) == record, "the recorded server is ready"

    with pytest.raises(ServerError, match=r"already runs.*launcher stop"):
        start_server(config, ["add1"])
    assert is_tritonserver(record.pid), "a refused second start must leave the first server alone"

    result = stop_server(config)
    assert result.stopped and not result.forced and result.pid == record.pid
    assert not paths.pid_file.exists()
    assert _gone(record.pid)
    assert not server_status(config).running
    assert "no server running" in stop_message(stop_server(config))
    with pytest.raises(ServerError, match=r"no tritonserver recorded in .*tritonserver\.pid"):
        local_server.wait_ready(config, ["add1"])


@pytest.mark.serving
def test_port_in_use_is_refused_naming_the_port(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18008)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 18009))
        sock.listen()
        with pytest.raises(ServerError, match=r"18009 \(server\.grpc_port\) already in use"):
            start_server(config, ["add1"])
    assert not server_paths(config).pid_file.exists()


@pytest.mark.serving
def test_model_that_fails_to_load_reports_tritons_reason(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18003, {"add1": ADD_ONE, "broken": BROKEN})
    started = set(local_server._CHILDREN)
    with pytest.raises(ServerError) as info:
        start_server(config, ["add1", "broken"])
    message = str(info.value)
    assert "broken" in message and "deliberate failure for the test" in message
    assert "model.py" in message and "exited with code" in message
    assert not server_paths(config).pid_file.exists()
    for pid in set(local_server._CHILDREN) - started:
        assert _gone(pid)


@pytest.mark.serving
def test_missing_model_py_fails_fast_and_frees_shared_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, 18003, {"add1": ADD_ONE, "nofile": ADD_ONE})
    (tmp_path / "repo" / "nofile" / "1" / "model.py").unlink()  # Triton 2.51 hangs on this instead of failing
    mapped: set[Path] = set()

    def spy(pid: int) -> set[Path]:
        mapped.update(regions := shm_regions(pid))
        return regions

    monkeypatch.setattr(local_server, "shm_regions", spy)
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"cannot finish loading .*Python model file not found in .*nofile"):
        start_server(config, ["add1"])
    assert time.monotonic() - t0 < 30
    assert mapped, "the server mapped python backend shared memory"
    assert not [r for r in mapped if r.exists()], "the regions the stopped server leaked are removed"
    stubs = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _stub_of(pid, tmp_path)]
    assert stubs == [], "the stub of the model that did load (add1) is stopped with its server"


def _stub_of(pid: int, tmp_path: Path) -> bool:
    """Whether ``pid`` is a python backend stub of the server started under ``tmp_path``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[0].endswith(b"triton_python_backend_stub") and str(tmp_path).encode() in argv[0]


@pytest.mark.serving
def test_startup_timeout_names_the_model_and_stops_the_server(tmp_path: Path) -> None:
    slow = ADD_ONE + "\n    def initialize(self, args):\n        import time\n        time.sleep(60)\n"
    config = make_config(tmp_path, 18003, {"slow": slow}, exit_timeout_s=1)
    started = set(local_server._CHILDREN)
    with pytest.raises(ServerError, match=r"not ready after 2 s: .*still loading: slow\. Stopped it"):
        start_server(config, ["slow"], timeout_s=2)
    assert not server_paths(config).pid_file.exists()
    for pid in set(local_server._CHILDREN) - started:
        assert _gone(pid)


@pytest.mark.serving
def test_unknown_model_name_fails_fast_and_stops_the_server(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18006)
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"model nope is not in the model repository .* has: add1"):
        start_server(config, ["nope"])
    assert time.monotonic() - t0 < 30
    assert not server_paths(config).pid_file.exists()


@pytest.mark.serving
def test_stale_pid_file_is_reported_and_cleaned(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18000)
    paths = server_paths(config)
    dead = subprocess.Popen(["true"])
    dead.wait()
    # Also a live process that is not tritonserver (a recycled PID): it must never be signalled.
    for pid in (dead.pid, os.getpid()):
        write_record(paths.pid_file, ServerRecord(
            pid=pid, host="127.0.0.1", http_port=18000, grpc_port=18001, metrics_port=18002, started_at=time.time(),
            model_repository="x", binary="tritonserver", log_path=str(paths.log_file)))
        st = server_status(config)
        assert not st.running and st.stale_pid == pid
        assert paths.pid_file.exists(), "status changes nothing"
        result = stop_server(config)
        assert result.stale and not result.stopped and "stale" in stop_message(result)
        assert not paths.pid_file.exists()


def test_backend_dir_is_prepared_once_and_missing_stub_is_explained(tmp_path: Path) -> None:
    install = find_triton()
    dest = prepare_backend_dir(install, tmp_path / "backends")
    stub = dest / "python" / "triton_python_backend_stub"
    assert stub.is_file() and os.access(stub, os.X_OK)
    assert (dest / "python" / "libtriton_python.so").is_file()
    mtime = stub.stat().st_mtime_ns
    prepare_backend_dir(install, dest)
    assert stub.stat().st_mtime_ns == mtime, "an up-to-date backend dir is left as it is"
    with pytest.raises(ServerError, match=r"no python backend stub for Python 2\.7.*stubs exist for Python .*3\.11"):
        prepare_backend_dir(install, tmp_path / "other", python_version="2.7")


def test_status_reports_ports_taken_by_a_foreign_process(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18008)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 18010))
        sock.listen()
        st = server_status(config)
    assert not st.running and st.busy_ports == ("18010 (metrics_port)",)


def test_follow_yields_the_tail_then_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "tritonserver.log"
    log.write_text("one\ntwo\nthree\n")
    lines = triton_log.follow(log, lines=2, poll_s=0.01)
    assert [next(lines), next(lines)] == ["two", "three"]
    with log.open("a") as f:
        f.write("four\nfi")
    assert next(lines) == "four"
    with log.open("a") as f:
        f.write("ve\n")
    assert next(lines) == "five"
    lines.close()


def test_explain_failure_keeps_the_reason_and_drops_cuda_noise() -> None:
    log = "\n".join([
        'E1125 02:35:36.760761 3640 server.cc:241] "CudaDriverHelper has not been initialized."',
        "Error: Failed to initialize NVML",
        'E1125 02:35:36.753015 3640 model_lifecycle.cc:642] "failed to load \'m\' version 1: Internal: '
        'ValueError: bad shape\\n\\nAt:\\n  <frozen importlib._bootstrap>(241): x\\n  /r/m/1/model.py(7): f\\n"',
        "error: creating server: Internal - failed to load all models",
    ])
    text = triton_log.explain_failure(log)
    assert text == ("model 'm' (version 1) failed to load: Internal: ValueError: bad shape (at /r/m/1/model.py(7): f); "
                    "Triton: creating server: Internal - failed to load all models")


@pytest.mark.serving
def test_cli_run_status_logs_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repository(tmp_path / "repo", {"add1": ADD_ONE})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(textwrap.dedent(f"""
        server:
          http_port: 18000
          grpc_port: 18001
          metrics_port: 18002
          model_repository: {repo}
          state_dir: {tmp_path / "state"}
          exit_timeout_s: 5
    """))
    base = ["--config", str(cfg)]
    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1", "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "http://127.0.0.1:18000" in out and "127.0.0.1:18001" in out

    assert cli.main([*base, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("running: pid") and "add1" in out and "READY" in out

    assert cli.main([*base, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ready_models"] == ["add1"]

    assert cli.main([*base, "logs", "-n", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1"]) == 1
    assert capsys.readouterr().err.startswith("launcher: error: a tritonserver started by launcher already runs")

    first_pid = json.loads((tmp_path / "state" / "tritonserver.pid").read_text())["pid"]
    assert cli.main([*base, "run", "--restart", "--no-write-repository", "--wait-for", "add1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"tritonserver (pid {first_pid}) stopped") and out[1].startswith("tritonserver ready")
    assert json.loads((tmp_path / "state" / "tritonserver.pid").read_text())["pid"] != first_pid

    assert cli.main([*base, "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert cli.main([*base, "status"]) == 0
    assert capsys.readouterr().out.startswith("not running")


def test_cli_errors_are_one_line_and_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(tmp_path / "missing.yaml"), "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("launcher: error: config file") and err.count("\n") == 1
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["run", "--timeout", "-3"]) == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"server:\n  state_dir: {tmp_path / 'state'}\n")
    assert cli.main(["--config", str(cfg), "logs"]) == 1
    assert "no server log" in capsys.readouterr().err


def test_one_backend_per_server_mode_in_one_registry(tmp_path: Path) -> None:
    modes = typing.get_args(typing.get_type_hints(ServerConfig)["mode"])
    assert tuple(BACKENDS) == modes == ("local", "docker")
    assert BACKENDS["local"] is local_server and BACKENDS["docker"] is docker_server
    assert set(VIEWS) == set(NEEDS) == set(BACKENDS), "every backend prints and is checked by the doctor"
    with pytest.raises(ConfigError, match=r"^server\.mode: expected one of 'local', 'docker', got 'k8s'$"):
        backend_for("k8s")
    sources = [p for p in Path(launcher.__file__).parent.rglob("*.py") if re.search(r"\bmode\s*[!=]=", p.read_text())]
    assert not sources, "commands look their backend up in launcher.registry instead of comparing modes"


def test_commands_act_on_the_backend_the_state_dir_records(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18000)
    docker_config = make_config(tmp_path / "d", 18000, mode="docker")
    assert active_backend(config) is local_server and active_backend(docker_config) is docker_server
    state = server_paths(config).state_dir
    write_record(ContainerRecord.path(state), ContainerRecord(
        container_id="c" * 64, name="mmw-triton", image="i:t", image_id="sha256:x", pinned=True, host="127.0.0.1",
        http_port=18000, grpc_port=18001, metrics_port=18002, started_at=time.time(), model_repository="r",
        docker_host="", gpus="", network="bridge", log_path=str(state / "triton-container.log")))
    assert active_backend(config) is docker_server, "a recorded container wins over server.mode: local"
    with pytest.raises(ConfigError, match=r"a Triton container started by launcher is recorded \(mmw-triton, "):
        start_server(config, ["add1"])
