"""Restricted APIs, server side: off loopback (or with ``server.restrict_apis: always``) ``launcher run`` passes
``--http-restricted-api`` / ``--grpc-restricted-protocol`` for model-repository, shared-memory, trace and logging,
with the key from ``MMW_TRITON_ADMIN_KEY`` or ``server.admin_key_file``; without a key it refuses to start.

The real test starts the Triton 2.51 binary through the launcher on a tiny python-backend repository and checks
the refusals and the header over HTTP and gRPC, that inference needs no header, and that the key never reaches
the record file.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from launcher import admin_key, cli, local_server, run_spec
from launcher.admin_key import redact, restriction
from launcher.server_args import (
    ADMIN_KEY_ENV,
    GRPC_HEADER_PREFIX,
    RESTRICTED_APIS,
    RESTRICTED_HEADER,
    RestrictedApi,
    container_args,
    local_args,
)
from launcher.state_dir import ServerPaths, server_paths
from launcher.triton_binary import TritonInstall, find_triton
from mmw.config import Config, build
from mmw.errors import ConfigError, ServerError
from tests.conftest import free_ports
from tests.test_launcher import ADD_ONE, make_repository

KEY = "k3y-for-the-test"


def _config(**server: object) -> Config:
    return build(Config, {"server": server})


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    return monkeypatch


# ---------------------------------------------------------------- pure: when, and which key


@pytest.mark.parametrize(("host", "setting", "restricted"), [
    ("127.0.0.1", "auto", False), ("localhost", "auto", False), ("::1", "auto", False),
    ("0.0.0.0", "auto", True), ("10.0.0.5", "auto", True), ("", "auto", True),
    ("127.0.0.1", "always", True), ("0.0.0.0", "never", False),
])
def test_restricted_off_loopback_or_always(no_key_env: pytest.MonkeyPatch, host: str, setting: str,
                                           restricted: bool) -> None:
    no_key_env.setenv(ADMIN_KEY_ENV, KEY)
    got = restriction(_config(host=host, restrict_apis=setting))
    assert (got is not None) is restricted
    if got is not None:
        assert got == RestrictedApi(header=RESTRICTED_HEADER, key=KEY) and got.apis == RESTRICTED_APIS


def test_no_key_refuses_naming_both_ways_to_set_it(no_key_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        restriction(_config(host="0.0.0.0"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("server.host '0.0.0.0' is not a loopback address, so Triton's model-repository, "
                              "shared-memory, trace and logging APIs must be restricted, and no admin key is set")
    assert ADMIN_KEY_ENV in message and "server.admin_key_file" in message
    with pytest.raises(ConfigError, match=r"^server\.restrict_apis is always, so .* no admin key is set"):
        restriction(_config(restrict_apis="always"))
    assert restriction(_config()) is None, "loopback needs no key"
    with pytest.raises(ConfigError, match=r"^server\.restrict_apis: expected one of 'auto', 'always', 'never'"):
        _config(restrict_apis="sometimes")


def test_the_key_from_a_file_and_the_env_var_wins(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "admin.key"
    key_file.write_text(f"  {KEY}\n")
    config = _config(host="0.0.0.0", admin_key_file=str(key_file))
    assert restriction(config) == RestrictedApi(header=RESTRICTED_HEADER, key=KEY)
    no_key_env.setenv(ADMIN_KEY_ENV, "from-env")
    assert restriction(config) == RestrictedApi(header=RESTRICTED_HEADER, key="from-env")
    no_key_env.delenv(ADMIN_KEY_ENV)
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match=r"^server\.admin_key_file: .*admin\.key is empty"):
        restriction(config)
    with pytest.raises(ConfigError, match=r"^server\.admin_key_file: cannot read .*missing\.key"):
        restriction(_config(host="0.0.0.0", admin_key_file=str(tmp_path / "missing.key")))
    key_file.write_text("a,b")
    with pytest.raises(ConfigError, match=r"admin key \(MMW_TRITON_ADMIN_KEY or server\.admin_key_file\): "
                                          r"restricted API key: expected a non-empty value without spaces"):
        restriction(config)
    assert admin_key.probe_headers(_config(admin_key_file=str(tmp_path / "missing.key"))) == {}, "status never fails"


def test_both_launcher_modes_pass_server_args_with_the_restriction(monkeypatch: pytest.MonkeyPatch) -> None:
    restricted = RestrictedApi(header=RESTRICTED_HEADER, key=KEY)
    config = _config(host="10.0.0.5", http_port=9000, grpc_port=9001, metrics_port=9002)
    install = TritonInstall(root=Path("/t"), binary=Path("/t/bin/tritonserver"), lib_dir=Path("/t/lib"),
                            python_backend=Path("/t/be"), stubs_dir=Path("/t/stubs"))
    paths = ServerPaths(state_dir=Path("/s"), pid_file=Path("/s/pid"), log_file=Path("/s/log"),
                        backend_dir=Path("/s/backends"), model_repository=Path("/repo"))
    monkeypatch.setattr(local_server, "supported_flags", lambda _install: frozenset({"--metrics-address"}))
    local = local_server.build_command(install, config, paths, restricted)
    assert local == [str(install.binary), *local_args(config, model_repository="/repo", backend_directory="/s/backends",
                                                     metrics_address=True, restricted=restricted)]
    assert local[-2:] == restricted.args()
    assert run_spec.triton_command(config, restricted=restricted) == ["tritonserver",
                                                                     *container_args(config, restricted=restricted)]
    assert local_server.build_command(install, config, paths)[-1] == "--exit-on-error=true", "none: no flags"
    shown = redact(local, restricted)
    assert KEY not in " ".join(shown)
    assert f"--http-restricted-api={','.join(RESTRICTED_APIS)}:{RESTRICTED_HEADER}=<redacted>" in shown
    assert redact(local, None) == local


# ---------------------------------------------------------------- real tritonserver


def _status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, headers=headers or {},
                                     method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.serving
def test_restricted_apis_refuse_without_the_header_and_inference_stays_open(
        tmp_path: Path, no_key_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        find_triton()
    except ServerError as exc:
        pytest.skip(f"tritonserver not installed: {exc}")
    http, grpc, metrics = free_ports(3)
    repo = make_repository(tmp_path / "repo", {"add1": ADD_ONE})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"server:\n  http_port: {http}\n  grpc_port: {grpc}\n  metrics_port: {metrics}\n"
                   f"  model_repository: {repo}\n  state_dir: {tmp_path / 'state'}\n  exit_timeout_s: 5\n"
                   "  restrict_apis: always\n")
    base = ["--config", str(cfg)]
    run = [*base, "run", "--no-write-repository", "--wait-for", "add1", "--timeout", "60"]
    assert cli.main(run) == 1
    assert "no admin key is set" in capsys.readouterr().err
    no_key_env.setenv(ADMIN_KEY_ENV, KEY)
    assert cli.main(run) == 0, capsys.readouterr().err
    capsys.readouterr()
    config = cli.load_config(cfg)
    try:
        pid_file = server_paths(config).pid_file
        saved = pid_file.read_text()
        assert KEY not in saved, "the key stays out of the state dir"
        record = json.loads(saved)
        assert record["restricted_apis"] == list(RESTRICTED_APIS)
        assert f"--grpc-restricted-protocol={','.join(RESTRICTED_APIS)}:{RESTRICTED_HEADER}=<redacted>" in \
            record["argv"]

        base_url = f"http://127.0.0.1:{http}"
        header = {RESTRICTED_HEADER: KEY}
        assert _status(f"{base_url}/v2/repository/index", "POST") == 403
        assert _status(f"{base_url}/v2/repository/index", "POST", {RESTRICTED_HEADER: "wrong"}) == 403
        assert _status(f"{base_url}/v2/repository/index", "POST", header) == 200
        assert _status(f"{base_url}/v2/systemsharedmemory/status") == 403
        assert _status(f"{base_url}/v2/systemsharedmemory/status", headers=header) == 200
        assert _status(f"{base_url}/v2/systemsharedmemory/region/x/register", "POST") == 403
        assert _status(f"{base_url}/v2/logging") == 403 and _status(f"{base_url}/v2/logging", headers=header) == 200
        assert _status(f"{base_url}/v2/trace/setting") == 403
        assert _status(f"{base_url}/v2/health/ready") == 200 and _status(f"{base_url}/v2/models/add1") == 200

        grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        try:
            with pytest.raises(InferenceServerException, match=f"expecting header '{GRPC_HEADER_PREFIX}"
                                                                f"{RESTRICTED_HEADER}'"):
                grpc_client.get_model_repository_index()
            with pytest.raises(InferenceServerException, match="expecting header"):
                grpc_client.get_system_shared_memory_status()
            index = grpc_client.get_model_repository_index(headers={f"{GRPC_HEADER_PREFIX}{RESTRICTED_HEADER}": KEY})
            assert [m.name for m in index.models] == ["add1"]
            x = grpcclient.InferInput("INPUT0", [3], "INT32")
            x.set_data_from_numpy(np.array([1, 2, 41], dtype=np.int32))
            assert grpc_client.infer("add1", [x]).as_numpy("OUTPUT0").tolist() == [2, 3, 42], "no header needed"
        finally:
            grpc_client.close()
        http_client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        try:
            x = httpclient.InferInput("INPUT0", [3], "INT32")
            x.set_data_from_numpy(np.array([5, 6, 7], dtype=np.int32))
            assert http_client.infer("add1", [x]).as_numpy("OUTPUT0").tolist() == [6, 7, 8]
        finally:
            http_client.close()

        assert cli.main([*base, "status"]) == 0
        status = capsys.readouterr().out
        assert "model add1 v1: READY" in status, "the launcher's own probe sends the key"
        assert (f"restricted APIs (header {RESTRICTED_HEADER}): model-repository, shared-memory, trace, logging"
                in status)
        no_key_env.delenv(ADMIN_KEY_ENV)
        assert cli.main([*base, "status"]) == 0
        assert "models: unknown (the repository index needs the admin key" in capsys.readouterr().out
    finally:
        assert cli.main([*base, "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
