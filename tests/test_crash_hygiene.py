"""Crash hygiene: what a SIGKILLed tritonserver leaves (python backend stubs, /dev/shm regions) is cleaned up by
``launcher run``/``stop`` and reported by ``status``; nothing the launcher did not start is touched.

Two layers. Fast and deterministic: a stand-in "server" process group (python processes whose argv[0] is the
state dir's stub binary, ignoring SIGTERM, mapping regions) exercises every identity check against decoys. Real:
the project's ensemble on the Triton 2.51 binary, SIGKILLed while a client loop sends frames, then reaped as
init would reap it; its busy stubs (detector, labeller) stay behind, as issue 16 observed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher import cli, local_server
from launcher.processes import SHM_DIR, clean_leftovers, find_leftovers, is_tritonserver, proc_start_ticks, stub_binary
from launcher.records import ServerRecord, read_record, write_record
from launcher.state_dir import server_paths
from mmw.config import Config, build
from mmw.contract import ENSEMBLE_NAME
from tests.conftest import ROOT, free_ports, jpeg, photo, process_group

REGION_PREFIX = "triton_python_backend_shm_region_"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(0.05)


def _region(tag: str, size: int = 1 << 16) -> Path:
    path = Path(SHM_DIR) / f"{REGION_PREFIX}{tag}-{uuid.uuid4()}"
    path.write_bytes(b"\1" * size)
    return path


@contextlib.contextmanager
def _decoys(tmp_path: Path, our_stub: Path) -> Iterator[dict[str, object]]:
    """Processes and a region that look like a server's leftovers but are not the launcher's: never touched.

    ``lookalike``: argv[0] a ``triton_python_backend_stub`` elsewhere; ``same_binary``: argv[0] exactly our
    state dir's stub, but its own session (not the server's process group). Both ignore SIGTERM like a stub.
    """
    other = tmp_path / "other-server" / "backends" / "python" / "triton_python_backend_stub"
    other.parent.mkdir(parents=True)
    other.write_text("")
    our_stub.parent.mkdir(parents=True, exist_ok=True)
    if not our_stub.exists():
        our_stub.write_text("")
    region = _region("decoy")
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    procs = {name: subprocess.Popen([str(argv0), "-c", code], executable=sys.executable, start_new_session=True)
             for name, argv0 in (("lookalike", other), ("same_binary", our_stub))}
    try:
        yield {"region": region, **procs}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=10)
        region.unlink(missing_ok=True)


# ---------------------------------------------------------------- fast: a stand-in server group

STAND_IN_STUB = textwrap.dedent("""
    import mmap, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a crashed server's stubs do
    arg = sys.argv[1] if len(sys.argv) > 1 else ""
    if arg.startswith("/"):
        f = open(arg, "r+b")
        m = mmap.mmap(f.fileno(), 0)
    time.sleep(300)
""")
FAKE_SERVER = textwrap.dedent("""
    import os, subprocess, sys, time
    stub, regions, in_group_other, code = sys.argv[1], sys.argv[2:4], sys.argv[4], sys.argv[5]
    # stub 1 maps its region (given as a path); stub 2 only names it, as the real stub's argv does
    subprocess.Popen([stub, "-c", code, regions[0]], executable=sys.executable)
    subprocess.Popen([stub, "-c", code, os.path.basename(regions[1])], executable=sys.executable)
    subprocess.Popen([in_group_other, "-c", code], executable=sys.executable)
    print("started", flush=True)
    time.sleep(300)
""")


def test_leftovers_are_exactly_the_stubs_of_the_recorded_group_and_their_regions(tmp_path: Path) -> None:
    backend_dir = tmp_path / "state" / "backends"
    stub = stub_binary(backend_dir)
    with _decoys(tmp_path, stub) as decoys:
        mapped, named = _region("mapped"), _region("named")
        in_group_other = tmp_path / "elsewhere" / "triton_python_backend_stub"
        in_group_other.parent.mkdir()
        in_group_other.write_text("")
        server = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(stub), str(mapped), str(named),
                                   str(in_group_other), STAND_IN_STUB], stdout=subprocess.PIPE, start_new_session=True)
        try:
            assert server.stdout is not None and server.stdout.readline() == b"started\n"
            _wait_for(lambda: len(process_group(server.pid)) == 4, 10, "the stand-in server and its 3 children run")
            children = sorted(p for p in process_group(server.pid) if p != server.pid)  # in start order: PIDs grow
            record = ServerRecord(pid=server.pid, pgid=server.pid, proc_start_ticks=proc_start_ticks(server.pid),
                                  host="127.0.0.1", http_port=1, grpc_port=2, metrics_port=3, started_at=time.time(),
                                  model_repository="r", binary="tritonserver", log_path="l")
            assert not is_tritonserver(server.pid), "a python process is no tritonserver: the record reads as dead"
            _wait_for(lambda: all(any(str(mapped) in ln for ln in Path(f"/proc/{p}/maps").read_text().splitlines())
                                  for p in children[:1]), 10, "stub 1 maps its region")
            found = find_leftovers(record, backend_dir)
            assert sorted(s.pid for s in found.stubs) == sorted(children[:2]), "only the group's stubs of our binary"
            assert set(found.regions) == {mapped, named}
            assert found.rss_bytes > 0 and found.region_bytes >= 2 * (1 << 16)
            assert found.summary().startswith("2 stub processes (") and ", 2 shm regions (" in found.summary()

            t0 = time.monotonic()
            cleaned = clean_leftovers(record, backend_dir, term_wait_s=0.5)
            assert time.monotonic() - t0 < 8, "SIGTERM is ignored, SIGKILL follows after a short wait"
            assert [s.pid for s in cleaned.stubs] == [s.pid for s in found.stubs] and cleaned.regions == found.regions
            _wait_for(lambda: not any(_alive(p) for p in children[:2]), 5, "the stubs are gone")
            assert not mapped.exists() and not named.exists()
            assert _alive(children[2]), "a process of the group that does not run our stub binary is left alone"
            assert _alive(server.pid), "the 'server' itself is not a leftover stub"
            assert decoys["region"].exists()  # type: ignore[union-attr]
            for name in ("lookalike", "same_binary"):
                assert decoys[name].poll() is None, f"decoy {name} untouched"  # type: ignore[union-attr]
            assert not find_leftovers(record, backend_dir), "nothing left to clean"
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
            mapped.unlink(missing_ok=True)
            named.unlink(missing_ok=True)


def test_recorded_regions_of_a_gone_server_are_removed_and_a_live_servers_never(tmp_path: Path) -> None:
    """The regions the record lists count only once the server is gone, and only python backend names."""
    paths = server_paths(build(Config, {"server": {"state_dir": str(tmp_path / "state")}}))
    region, foreign = _region("recorded"), tmp_path / f"{REGION_PREFIX}not-in-dev-shm"
    foreign.write_text("x")
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = ServerRecord(pid=dead.pid, host="127.0.0.1", http_port=1, grpc_port=2, metrics_port=3,
                          started_at=time.time(), model_repository="r", binary="tritonserver", log_path="l",
                          shm_regions=[str(region), str(foreign), "/etc/passwd"])
    try:
        found = find_leftovers(record, paths.backend_dir)
        assert found.regions == (region,) and not found.stubs
        clean_leftovers(record, paths.backend_dir)
        assert not region.exists() and foreign.exists() and Path("/etc/passwd").exists()
    finally:
        region.unlink(missing_ok=True)


# ---------------------------------------------------------------- real: SIGKILL the serving tritonserver


def _send_frames(grpc_port: int, stop: threading.Event, answered: list[int], errors: list[str]) -> None:
    """Send batches of 4 JPEG frames until ``stop``, the server fails, 300 requests or 120 s."""
    import tritonclient.grpc as grpcclient

    frames = np.array([[jpeg(photo(name))] for name in ("astronaut", "chelsea", "coffee", "astronaut")],
                      dtype=object)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    deadline = time.monotonic() + 120
    try:
        for _ in range(300):
            if stop.is_set() or time.monotonic() > deadline:
                return
            inp = grpcclient.InferInput("IMAGE", list(frames.shape), "BYTES")
            inp.set_data_from_numpy(frames)
            try:
                client.infer(ENSEMBLE_NAME, [inp], client_timeout=30)
            except Exception as exc:  # the server was killed: the loop ends
                errors.append(type(exc).__name__)
                return
            answered.append(1)
    finally:
        client.close()


def needs_networks() -> None:
    """The project's repository with its ONNX networks (``make engines``; ``make test`` builds them first)."""
    repository = ROOT / "model_repository"
    missing = [n for n in ("detector", "labeller") if not (repository / n / "1" / "model.onnx").is_file()]
    if missing:
        pytest.skip(f"model_repository lacks {', '.join(missing)}/1/model.onnx: run `make engines`")


@pytest.mark.serving
def test_sigkill_while_serving_then_run_cleans_up_after_the_crash(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    needs_networks()
    http, grpc, metrics = free_ports(3)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"server:\n  http_port: {http}\n  grpc_port: {grpc}\n  metrics_port: {metrics}\n"
                   f"  state_dir: {tmp_path / 'state'}\n  exit_timeout_s: 5\n  model_repository: "
                   f"{ROOT / 'model_repository'}\n")
    base = ["--config", str(cfg)]
    run = [*base, "run", "--no-write-repository", "--timeout", "300"]
    paths = server_paths(cli.load_config(cfg))
    with _decoys(tmp_path, stub_binary(paths.backend_dir)) as decoys:
        assert cli.main(run) == 0, capsys.readouterr().err
        capsys.readouterr()
        record = read_record(paths.pid_file, ServerRecord)
        assert record is not None and record.pgid == record.pid and len(record.shm_regions) >= 5
        stubs_before = [p for p in process_group(record.pgid) if p != record.pid]

        stop, answered, errors = threading.Event(), [], []
        senders = [threading.Thread(target=_send_frames, args=(grpc, stop, answered, errors)) for _ in range(3)]
        for t in senders:
            t.start()
        try:
            _wait_for(lambda: len(answered) >= 3, 120, "the server answers frames")
            os.kill(record.pid, signal.SIGKILL)  # mid-video: requests are in flight
        finally:
            stop.set()
            for t in senders:
                t.join(timeout=60)
        assert not any(t.is_alive() for t in senders)
        local_server._CHILDREN.pop(record.pid).wait(timeout=10)  # reaped, as init reaps a detached server
        time.sleep(3)  # stubs that notice their parent's death exit on their own by then
        left = process_group(record.pgid)
        capsys.readouterr()
        assert cli.main([*base, "status"]) == 0
        status = capsys.readouterr().out
        assert status.startswith("not running") and "stale PID file" in status
        if left:
            assert f"the crashed server (pid {record.pid}) left " in status and " stub process" in status
            assert "`launcher stop` (or `launcher run`) ends and removes them" in status
        still = process_group(record.pgid)
        assert set(still) <= set(left) and (still or not left), "status changes nothing"

        assert cli.main(run) == 0, capsys.readouterr().err
        out = capsys.readouterr().out.splitlines()
        summary = (f"after SIGKILL: {len(stubs_before)} stubs before, {len(left)} left, {len(answered)} requests "
                   f"answered; run said: {out[0]}")
        if left:
            assert out[0].startswith(f"cleaned up after a crashed server (pid {record.pid}): "), out
            assert " stub process" in out[0] and " shm region" in out[0] and out[1].startswith("tritonserver ready")
        assert process_group(record.pgid) == [], "no process of the old group is left"
        assert [r for r in record.shm_regions if Path(r).exists()] == [], "no stale region of the old server remains"
        for name in ("lookalike", "same_binary"):
            assert decoys[name].poll() is None, f"decoy {name} untouched"  # type: ignore[union-attr]
        assert decoys["region"].exists()  # type: ignore[union-attr]

        new = read_record(paths.pid_file, ServerRecord)
        assert new is not None and new.pid != record.pid and is_tritonserver(new.pid)
        assert cli.main([*base, "stop"]) == 0
        assert "stopped" in capsys.readouterr().out
        assert [r for r in new.shm_regions if Path(r).exists()] == [], "a clean stop leaves no region either"
    with capsys.disabled():
        print(f"\n{summary}")
    assert left, ("the crash left no stub behind this time, so the cleanup was not exercised (issue 16 saw 2-3; "
                  "their survival depends on timing)")


def test_stop_cleans_up_after_a_crashed_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``stop`` on a stale record ends the leftovers too, and says so on its one line (stand-in group)."""
    config = build(Config, {"server": {"state_dir": str(tmp_path / "state")}})
    paths = server_paths(config)
    stub = stub_binary(paths.backend_dir)
    stub.parent.mkdir(parents=True)
    stub.write_text("")
    region = _region("stop")
    leader = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time; subprocess.Popen([{str(stub)!r}, "
                               f"'-c', {STAND_IN_STUB!r}, {str(region)!r}], executable=sys.executable); "
                               "time.sleep(300)"], start_new_session=True)
    try:
        _wait_for(lambda: len(process_group(leader.pid)) == 2, 10, "the stand-in server and its stub run")
        stub_pid = next(p for p in process_group(leader.pid) if p != leader.pid)
        _wait_for(lambda: str(region) in Path(f"/proc/{stub_pid}/maps").read_text(), 10, "the stub maps its region")
        write_record(paths.pid_file, ServerRecord(
            pid=leader.pid, proc_start_ticks=proc_start_ticks(leader.pid), host="127.0.0.1",
            http_port=1, grpc_port=2, metrics_port=3, started_at=time.time(), model_repository="r",
            binary="tritonserver", log_path=str(paths.log_file)))
        # As an older launcher wrote it: no pgid, no regions (the group is the PID: it started a session leader).
        old = {k: v for k, v in json.loads(paths.pid_file.read_text()).items()
               if k not in ("pgid", "shm_regions", "restricted_apis")}
        paths.pid_file.write_text(json.dumps(old))
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
        assert cli.main(["--config", str(_yaml(tmp_path, config)), "stop"]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        assert out.startswith(f"no server running; removed a stale PID file (pid {leader.pid} is gone); cleaned up "
                              f"after a crashed server (pid {leader.pid}): 1 stub process (")
        assert "1 shm region (" in out
        assert not _alive(stub_pid) and not region.exists() and not paths.pid_file.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        region.unlink(missing_ok=True)


def _yaml(tmp_path: Path, config: Config) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"server:\n  state_dir: {config.server.state_dir}\n")
    return path

