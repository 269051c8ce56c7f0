"""Security defaults: the launcher warns when Triton or the app would listen beyond loopback (pure, fast)."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

import clients
from launcher import cli, local_server
from launcher.exposure import exposure_warning, is_loopback
from launcher.server_args import ADMIN_KEY_ENV


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts_get_no_warning(host: str) -> None:
    assert is_loopback(host)
    assert exposure_warning("Triton", host, "server.host") is None


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.20", "10.0.0.5", "myhost.example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)
    message = exposure_warning("Triton", host, "server.host")
    assert message is not None
    assert "no authentication" in message and "server.host" in message and "127.0.0.1" in message


def test_all_interfaces_named_as_such() -> None:
    message = exposure_warning("Triton", "0.0.0.0", "server.host")
    assert message is not None and message.startswith("Triton listens on every interface (server.host: '0.0.0.0')")


class _Stop(Exception):
    """Raised by the stand-ins so nothing is started or bound."""


def _config(tmp_path: Path, server_host: str, app_host: str) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(textwrap.dedent(f"""
        server:
          host: "{server_host}"
          state_dir: {tmp_path / "state"}
        app:
          host: "{app_host}"
    """))
    return cfg


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_run_warns_before_starting_triton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], host: str, warned: bool) -> None:
    def fake_start(config: object, models: object, timeout_s: object = None, options: object = None) -> None:
        raise _Stop

    monkeypatch.setattr(local_server, "start", fake_start)
    monkeypatch.setenv(ADMIN_KEY_ENV, "k3y")  # off loopback the admin APIs are restricted and need a key
    with pytest.raises(_Stop):
        cli._cmd_run(cli.load_config(_config(tmp_path, host, "127.0.0.1")),
                     cli.build_parser().parse_args(["run", "--no-write-repository"]))
    err = capsys.readouterr().err
    line = "launcher: warning: Triton listens on every interface (server.host: '0.0.0.0')"
    assert (line in err) is warned
    if warned:
        assert "no authentication" in err and "need the admin key" in err


def test_run_off_loopback_without_a_key_is_refused_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fake_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may start without the admin key")

    monkeypatch.setattr(local_server, "start", fake_start)
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    cfg = _config(tmp_path, "0.0.0.0", "127.0.0.1")
    assert cli.main(["--config", str(cfg), "run", "--no-write-repository"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, "one line"
    assert err.startswith("launcher: error: server.host '0.0.0.0' is not a loopback address, so Triton's "
                          "model-repository, shared-memory, trace and logging APIs must be restricted")
    assert ADMIN_KEY_ENV in err and "server.admin_key_file" in err
    # restrict_apis: never is the explicit way out: the old warning, nothing restricted.
    cfg.write_text(cfg.read_text().replace("server:\n", "server:\n  restrict_apis: never\n", 1))
    monkeypatch.setattr(local_server, "start", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        cli._cmd_run(cli.load_config(cfg), cli.build_parser().parse_args(["run", "--no-write-repository"]))
    err = capsys.readouterr().err
    assert "and has no authentication" in err and "admin key" not in err


@pytest.mark.parametrize(("app_host", "argv", "expected"), [
    ("0.0.0.0", [], "launcher: warning: the app listens on every interface (app.host: '0.0.0.0')"),
    ("127.0.0.1", ["--host", "0.0.0.0"], "launcher: warning: the app listens on every interface (--host: '0.0.0.0')"),
    ("127.0.0.1", [], None),
])
def test_app_warns_before_binding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  app_host: str, argv: list[str], expected: str | None) -> None:
    def fake_launch(*args: object, **kwargs: object) -> None:
        raise _Stop

    fake = types.SimpleNamespace(triton_warning=lambda config: None, launch_app=fake_launch)
    monkeypatch.setitem(sys.modules, "clients.app", fake)  # no gradio import, nothing bound
    monkeypatch.setattr(clients, "app", fake, raising=False)
    with pytest.raises(_Stop):
        cli._cmd_app(cli.load_config(_config(tmp_path, "127.0.0.1", app_host)),
                     cli.build_parser().parse_args(["app", *argv]))
    err = capsys.readouterr().err
    if expected is None:
        assert "listens on" not in err
    else:
        assert expected in err
        assert "no authentication" in err
