"""``launcher run --replicas N``: N tritonservers on one machine, each on its own port triple and state dir.

The layout is pure and unit-tested; the lifecycle runs real tritonservers on a tiny python-backend repository
(``tests/test_launcher.py``'s) on free loopback port blocks; one test serves the project's ensemble on two
replicas, measures what each costs in memory, and SIGKILLs one of them while it serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher import cli, local_server
from launcher.processes import is_tritonserver
from launcher.records import ServerRecord, read_record
from launcher.replicas import (
    PORT_STRIDE,
    LogLine,
    follow_logs,
    recorded_indices,
    replica_config,
    replica_ports,
    stop_replicas,
)
from launcher.state_dir import server_paths
from mmw.config import Config, build
from mmw.contract import ENSEMBLE_NAME
from mmw.errors import ConfigError
from tests.conftest import ROOT, process_group
from tests.test_launcher import ADD_ONE, make_repository

# ---------------------------------------------------------------- helpers


def free_block(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive loopback ports that were all free a moment ago."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(attempts):
        first = rng.randrange(20000, 60000 - count)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise AssertionError(f"no {count} consecutive free ports in {attempts} attempts")


def _config_file(tmp_path: Path, first_port: int, repo: Path, **server: object) -> Path:
    lines = {"http_port": first_port, "grpc_port": first_port + 1, "metrics_port": first_port + 2,
             "model_repository": str(repo), "state_dir": str(tmp_path / "state"), "exit_timeout_s": 5,
             "startup_timeout_s": 120, **server}
    path = tmp_path / "config.yaml"
    path.write_text("server:\n" + "".join(f"  {k}: {v}\n" for k, v in lines.items()))
    return path


def _gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.fixture(autouse=True)
def kill_leftover_servers() -> Iterator[None]:
    """Kill (by PID, with their process groups) the tritonservers a test started and left running."""
    before = set(local_server._CHILDREN)
    try:
        yield
    finally:
        for pid in set(local_server._CHILDREN) - before:
            if is_tritonserver(pid):
                os.killpg(pid, signal.SIGKILL)
            proc = local_server._CHILDREN.pop(pid)
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)


def _infer_add1(grpc_port: int) -> list[int]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        x = grpcclient.InferInput("INPUT0", [3], "INT32")
        x.set_data_from_numpy(np.array([1, 2, 41], dtype=np.int32))
        return client.infer("add1", [x], client_timeout=30).as_numpy("OUTPUT0").tolist()
    finally:
        client.close()


# ---------------------------------------------------------------- pure: the layout


def test_replica_i_adds_3i_to_each_port_and_keeps_its_state_in_replica_i() -> None:
    config = build(Config, {"server": {"state_dir": "/s", "http_port": 8000, "grpc_port": 8001, "metrics_port": 8002},
                            "docker": {"container_name": "mmw-triton"}})
    assert replica_config(config, 0) is config, "replica 0 is the single server, unchanged"
    r2 = replica_config(config, 2)
    assert (r2.server.http_port, r2.server.grpc_port, r2.server.metrics_port) == (8006, 8007, 8008)
    assert r2.server.state_dir == "/s/replica-2" and r2.docker.container_name == "mmw-triton-2"
    assert r2.server.host == config.server.host and r2.server.model_repository == config.server.model_repository
    assert server_paths(r2).pid_file == Path("/s/replica-2/tritonserver.pid")
    ports = replica_ports(config, 3)
    assert sorted(ports.values()) == list(range(8000, 8009)), "three replicas: nine distinct consecutive ports"
    assert ports["server.grpc_port"] == 8001 and ports["replica 1's grpc_port, server.grpc_port + 3"] == 8004
    assert replica_ports(config, 1) == {"server.http_port": 8000, "server.grpc_port": 8001,
                                        "server.metrics_port": 8002}
    assert PORT_STRIDE == 3


def test_a_layout_that_collides_or_passes_65535_is_refused_naming_both_ports() -> None:
    spread = build(Config, {"server": {"http_port": 8000, "grpc_port": 8003, "metrics_port": 8010}})
    replica_ports(spread, 1)
    with pytest.raises(ConfigError, match=r"^--replicas 2: replica 1's http_port, server\.http_port \+ 3 would be "
                                          r"port 8003, which is server\.grpc_port; give server\.http_port, grpc_port "
                                          r"and metrics_port consecutive ports"):
        replica_ports(spread, 2)
    high = build(Config, {"server": {"http_port": 65530, "grpc_port": 65531, "metrics_port": 65532}})
    with pytest.raises(ConfigError, match=r"replica 1's metrics_port, server\.metrics_port \+ 3 would be port 65535"
                                          r"|beyond 65535"):
        replica_ports(high, 3)
    with pytest.raises(ConfigError, match=r"^server\.replicas: expected a whole number >= 1, got 0$"):
        build(Config, {"server": {"replicas": 0}})


def test_cli_takes_replicas_and_logs_replica(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["run", "--replicas", "3"]).replicas == 3
    assert parser.parse_args(["logs", "--replica", "2"]).replica == 2
    assert cli.main(["run", "--replicas", "0"]) == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"server:\n  state_dir: {tmp_path / 'state'}\n")
    assert cli.main(["--config", str(cfg), "logs", "--replica", "1"]) == 1
    assert "--replica 1: expected one of the replicas of state dir" in capsys.readouterr().err
    cfg.write_text(f"server:\n  state_dir: {tmp_path / 'state'}\n  http_port: 8000\n  grpc_port: 8003\n")
    assert cli.main(["--config", str(cfg), "run", "--replicas", "2", "--no-write-repository"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("launcher: error: --replicas 2: replica 1's http_port") and err.count("\n") == 1


def test_follow_logs_interleaves_every_replicas_new_lines(tmp_path: Path) -> None:
    config = build(Config, {"server": {"state_dir": str(tmp_path / "state")}})
    logs = [server_paths(replica_config(config, i)).log_file for i in (0, 1)]
    for i, log in enumerate(logs):
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"old {i}\nlast {i}\n")
    lines = follow_logs(config, [0, 1], lines=1)
    try:
        first = {next(lines), next(lines)}
        assert first == {LogLine(0, "last 0"), LogLine(1, "last 1")}
        with logs[1].open("a") as f:
            f.write("new 1\n")
        assert next(lines) == LogLine(1, "new 1")
        with logs[0].open("a") as f:
            f.write("new 0\n")
        assert next(lines) == LogLine(0, "new 0")
    finally:
        lines.close()


# ---------------------------------------------------------------- real tritonservers, a tiny repository


@pytest.mark.serving
def test_three_replicas_run_status_logs_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = free_block(9)
    repo = make_repository(tmp_path / "repo", {"add1": ADD_ONE})
    base = ["--config", str(_config_file(tmp_path, first, repo))]
    t0 = time.monotonic()
    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1", "--replicas", "3"]) == 0, \
        capsys.readouterr().err
    elapsed = time.monotonic() - t0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    for i in range(3):
        assert out[i].startswith(f"replica {i}: tritonserver ready (pid ")
        assert f"HTTP http://127.0.0.1:{first + 3 * i}  gRPC 127.0.0.1:{first + 3 * i + 1}" in out[i]
    assert out[3] == (f"3 replicas ready; gRPC endpoints (client.urls): 127.0.0.1:{first + 1}, "
                      f"127.0.0.1:{first + 4}, 127.0.0.1:{first + 7}")
    state = tmp_path / "state"
    records = [read_record(d / "tritonserver.pid", ServerRecord)
               for d in (state, state / "replica-1", state / "replica-2")]
    assert all(r is not None and is_tritonserver(r.pid) for r in records)
    pids = [r.pid for r in records if r is not None]
    assert len(set(pids)) == 3
    assert (state / "replica-2" / "backends" / "python" / "triton_python_backend_stub").is_file(), "own backend dir"
    assert elapsed < 60, "started together, not one after another"
    for i in range(3):
        assert _infer_add1(first + 3 * i + 1) == [2, 3, 42]

    assert cli.main([*base, "status"]) == 0
    status = capsys.readouterr().out
    for i in range(3):
        assert f"replica {i}: running: pid {pids[i]}" in status
        assert f"HTTP http://127.0.0.1:{first + 3 * i}" in status
    assert status.count("model add1 v1: READY") == 3
    assert cli.main([*base, "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pid"] == pids[0] and data["http_port"] == first, "replica 0's fields stay where they were"
    assert [(r["replica"], r["pid"], r["http_port"], r["running"]) for r in data["replicas"]] == [
        (i, pids[i], first + 3 * i, True) for i in range(3)]

    assert cli.main([*base, "logs", "-n", "1"]) == 0
    logs = capsys.readouterr().out.splitlines()
    assert [line.split("]", 1)[0] for line in logs] == ["[replica 0", "[replica 1", "[replica 2"]
    assert cli.main([*base, "logs", "-n", "200", "--replica", "2"]) == 0
    only = capsys.readouterr().out
    assert f"Started GRPCInferenceService at 127.0.0.1:{first + 7}" in only and "[replica" not in only

    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1", "--replicas", "3"]) == 1
    assert "replica 0 of 3 already runs" in capsys.readouterr().err
    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1"]) == 1
    assert "replica 1 of an earlier `launcher run --replicas` still runs" in capsys.readouterr().err
    assert all(is_tritonserver(p) for p in pids), "refused runs leave every replica alone"

    t0 = time.monotonic()
    assert cli.main([*base, "stop"]) == 0
    stopped = capsys.readouterr().out.splitlines()
    assert [line.split(":", 1)[0] for line in stopped] == ["replica 0", "replica 1", "replica 2"]
    assert all(f"tritonserver (pid {pids[i]}) stopped" in stopped[i] for i in range(3))
    assert time.monotonic() - t0 < 15, "stopped together"
    assert all(_gone(p) for p in pids)
    assert not any((d / "tritonserver.pid").exists() for d in (state, state / "replica-1", state / "replica-2"))
    assert cli.main([*base, "status"]) == 0
    assert capsys.readouterr().out.startswith("not running (ports in config:")
    assert cli.main([*base, "logs", "-n", "1", "--replica", "1"]) == 0, "a stopped replica's log stays readable"


@pytest.mark.serving
def test_a_taken_port_of_any_replica_is_named_and_nothing_starts(tmp_path: Path) -> None:
    first = free_block(6)
    repo = make_repository(tmp_path / "repo", {"add1": ADD_ONE})
    config = cli.load_config(_config_file(tmp_path, first, repo))
    from launcher.replicas import start_replicas
    from mmw.errors import ServerError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", first + 4))
        sock.listen()
        before = set(local_server._CHILDREN)
        with pytest.raises(ServerError, match=rf"^port {first + 4} \(replica 1's grpc_port, server\.grpc_port \+ 3\) "
                                              r"already in use on 127\.0\.0\.1"):
            start_replicas(config, 2, ["add1"])
        assert set(local_server._CHILDREN) == before, "nothing was started"


FAILS_ON_ONE_REPLICA = """
import os


class TritonPythonModel:
    def initialize(self, args):
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:  # the stub's parent: that replica's tritonserver
            if b"--http-port=FAILING_PORT" in f.read():
                raise RuntimeError("deliberate failure of one replica")

    def execute(self, requests):
        return []
"""


@pytest.mark.serving
def test_a_replica_that_fails_stops_the_others_and_says_which_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    first = free_block(9)
    failing = first + 3  # replica 1
    repo = make_repository(tmp_path / "repo", {"add1": ADD_ONE,
                                               "picky": FAILS_ON_ONE_REPLICA.replace("FAILING_PORT", str(failing))})
    base = ["--config", str(_config_file(tmp_path, first, repo))]
    started: list[int] = []
    real_start = local_server.start

    def spy(*args: object, **kwargs: object) -> ServerRecord:
        record = real_start(*args, **kwargs)  # type: ignore[arg-type]
        started.append(record.pid)
        return record

    monkeypatch.setattr(local_server, "start", spy)
    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1", "--replicas", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, "one line"
    assert err.startswith(f"launcher: error: replica 1 of 3 (http://127.0.0.1:{failing}) failed to start: "
                          "tritonserver exited with code 1 before it was ready: model 'picky'")
    assert "deliberate failure of one replica" in err
    assert err.rstrip().endswith("; stopped the 2 other replica(s) this run started")
    assert len(started) == 3 and all(_gone(p) for p in started), "every replica this run started is stopped"
    state = tmp_path / "state"
    assert not any((d / "tritonserver.pid").exists() for d in (state, state / "replica-1", state / "replica-2"))
    assert recorded_indices(cli.load_config(Path(base[1]))) == [0]


# ---------------------------------------------------------------- the project's ensemble on two replicas


def _memory(pgid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of every process of the group: tritonserver and its python backend stubs."""
    rss = pss = 0
    for pid in process_group(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
    return rss, pss


def _frames(grpc_port: int, count: int) -> int:
    import tritonclient.grpc as grpcclient

    from tests.conftest import jpeg, photo

    frames = np.array([[jpeg(photo(n))] for n in ("astronaut", "chelsea", "coffee", "astronaut")], dtype=object)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    done = 0
    try:
        for _ in range(count):
            inp = grpcclient.InferInput("IMAGE", list(frames.shape), "BYTES")
            inp.set_data_from_numpy(frames)
            try:
                client.infer(ENSEMBLE_NAME, [inp], client_timeout=30)
            except Exception:
                return done
            done += 1
    finally:
        client.close()
    return done


@pytest.mark.serving
def test_two_replicas_of_the_ensemble_their_memory_and_one_crashing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Both serve; each costs tritonserver + stubs in memory (printed); SIGKILL replica 1 while it serves:
    ``status`` shows it crashed, ``stop`` cleans its leftovers and stops replica 0, whose stubs and regions the
    cleanup of replica 1 never touched."""
    if not (ROOT / "model_repository" / "detector" / "1" / "model.onnx").is_file():
        pytest.skip("model_repository lacks the ONNX networks: run `make engines`")
    first = free_block(6)
    base = ["--config", str(_config_file(tmp_path, first, ROOT / "model_repository", startup_timeout_s=300))]
    assert cli.main([*base, "run", "--no-write-repository", "--replicas", "2"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    config = cli.load_config(Path(base[1]))
    r0, r1 = (read_record(server_paths(replica_config(config, i)).pid_file, ServerRecord) for i in (0, 1))
    assert r0 is not None and r1 is not None
    assert set(r0.shm_regions).isdisjoint(r1.shm_regions)
    for i in (0, 1):
        assert _frames(first + 3 * i + 1, 5) == 5
    (rss0, pss0), (rss1, pss1) = _memory(r0.pgid or r0.pid), _memory(r1.pgid or r1.pid)
    shm = sum(Path(r).stat().st_blocks * 512 for r in r0.shm_regions if Path(r).exists())
    stubs0 = len(process_group(r0.pid)) - 1

    answered: list[int] = []
    sender = threading.Thread(target=lambda: answered.append(_frames(first + 4, 200)))
    sender.start()
    time.sleep(4)
    os.kill(r1.pid, signal.SIGKILL)
    sender.join(timeout=60)
    local_server._CHILDREN.pop(r1.pid).wait(timeout=10)  # reaped, as init reaps a detached server
    time.sleep(3)
    left1 = process_group(r1.pid)
    group0 = sorted(process_group(r0.pid))

    assert cli.main([*base, "status"]) == 0
    status = capsys.readouterr().out
    assert "replica 0: running: pid" in status and "replica 1: not running" in status
    assert f"stale PID file {server_paths(replica_config(config, 1)).pid_file}" in status

    from launcher.backend import StopResult

    one: StopResult = local_server.stop(replica_config(config, 1))  # replica 1 alone, replica 0 keeps serving
    assert one.stale and (bool(one.cleaned) == bool(left1))
    assert process_group(r1.pid) == [] and not any(Path(r).exists() for r in r1.shm_regions)
    assert sorted(process_group(r0.pid)) == group0, "replica 0's server and stubs untouched"
    assert all(Path(r).exists() for r in r0.shm_regions), "replica 0's regions untouched"
    assert _frames(first + 1, 2) == 2, "replica 0 still serves"

    results = stop_replicas(config)
    assert [(i, r.stopped) for i, r in results] == [(0, True)]
    assert process_group(r0.pid) == []
    with capsys.disabled():
        print(textwrap.dedent(f"""
            per replica (project ensemble, idle after 5 requests of 4 frames): tritonserver + {stubs0} stubs
              replica 0: RSS {rss0 / 2**20:.0f} MiB, PSS {pss0 / 2**20:.0f} MiB; replica 1: RSS {rss1 / 2**20:.0f} MiB,
              PSS {pss1 / 2**20:.0f} MiB; python backend shm {shm / 2**20:.0f} MiB
            replica 1 SIGKILLed after {answered[0] if answered else '?'} requests: {len(left1)} stub(s) left, cleaned:
              {one.cleaned.summary() if one.cleaned else 'nothing'}"""))
