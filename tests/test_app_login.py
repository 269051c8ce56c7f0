"""The app's login (``app.auth_env``/``app.auth_file``, Gradio's ``auth=``) and its refusal to bind off loopback
without one; the login is driven in headless Chromium. Screenshots land in ``artifacts/``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from mmw.config import AppConfig, Config, build
from mmw.errors import ConfigError
from tests.conftest import ROOT, free_ports

gr = pytest.importorskip("gradio", reason="the app needs gradio: pip install -e '.[app]'")

from clients.app import launch_app  # noqa: E402
from clients.app.auth import check_exposure, load_auth  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ARTIFACTS = ROOT / "artifacts"
TIMEOUT_MS = 60_000
ENV = "MMW_TEST_APP_AUTH"


def _config(tmp_path: Path, **app: Any) -> Config:
    """No Triton on these ports: the page says so and still loads."""
    http, grpc, metrics, port = free_ports(4)
    config = build(Config, {"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics}})
    return dataclasses.replace(config, app=AppConfig(port=port, out_dir=str(tmp_path / "runs"), **app))


def test_login_comes_from_the_env_var_before_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "users"
    users.write_text("# the app's users\nalice:s3cret:with:colons\n\nbob:pw\n", encoding="utf-8")
    config = _config(tmp_path, auth_env=ENV, auth_file=str(users))
    monkeypatch.delenv(ENV, raising=False)
    assert load_auth(config) == [("alice", "s3cret:with:colons"), ("bob", "pw")]
    monkeypatch.setenv(ENV, "carol:one, dave:two")
    assert load_auth(config) == [("carol", "one"), ("dave", "two")]
    monkeypatch.setenv(ENV, "nopassword")
    with pytest.raises(ConfigError, match="expected user:password"):
        load_auth(config)
    monkeypatch.delenv(ENV)
    assert load_auth(_config(tmp_path, auth_env=ENV)) is None
    with pytest.raises(ConfigError, match="cannot read"):
        load_auth(_config(tmp_path, auth_env=ENV, auth_file=str(tmp_path / "missing")))


def test_no_login_binds_only_loopback_unless_insecure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_exposure("127.0.0.1", None, insecure=False)
    check_exposure("localhost", None, insecure=False)
    check_exposure("::1", None, insecure=False)
    check_exposure("0.0.0.0", [("a", "b")], insecure=False)
    check_exposure("0.0.0.0", None, insecure=True)
    with pytest.raises(ConfigError, match="--insecure"):
        check_exposure("0.0.0.0", None, insecure=False)
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match="no login"):
        launch_app(_config(tmp_path, auth_env=ENV), host="0.0.0.0")


def test_launcher_app_refuses_a_public_address_without_a_login_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from launcher import cli

    monkeypatch.delenv("MMW_APP_AUTH", raising=False)
    config = tmp_path / "config.yaml"
    http, grpc, metrics, port = free_ports(4)
    config.write_text(f"server: {{http_port: {http}, grpc_port: {grpc}, metrics_port: {metrics}}}\n"
                      f"app: {{port: {port}, out_dir: {tmp_path / 'runs'}}}\n", encoding="utf-8")
    assert cli.main(["--config", str(config), "app", "--host", "0.0.0.0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "--insecure" in err[-1] and err[-1].startswith("launcher: error:")


def _screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_browser_logs_in_and_a_wrong_password_is_refused(browser: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "alice:correct-horse")
    demo, url = launch_app(_config(tmp_path, auth_env=ENV))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        pg = context.new_page()
        pg.goto(url)
        username = pg.get_by_label("username", exact=False)
        username.wait_for()
        assert pg.locator("#status").count() == 0, "the app shows before the login"
        _screenshot(pg, "app_login.png")
        username.fill("alice")
        pg.get_by_label("password", exact=False).fill("wrong")
        pg.get_by_role("button", name="Login").click()
        pg.get_by_text("Incorrect", exact=False).first.wait_for()
        assert pg.locator("#status").count() == 0
        _screenshot(pg, "app_login_refused.png")
        username.fill("alice")
        pg.get_by_label("password", exact=False).fill("correct-horse")
        pg.get_by_role("button", name="Login").click()
        pg.locator("#status").wait_for()
        pg.locator("#status").get_by_text("not reachable", exact=False).first.wait_for()
        _screenshot(pg, "app_logged_in.png")
        anonymous = browser.new_context()  # no session cookie: the app's config (and API) stay closed
        try:
            assert anonymous.request.get(f"{url}/config").status == 401
        finally:
            anonymous.close()
    finally:
        context.close()
        demo.close()
