"""Docker mode, ``launcher shell`` (``tao_ws``) and ``launcher doctor`` against a real Docker engine.

A session fixture starts its own ``dockerd`` (vfs storage, no bridge, no iptables, its own data root, exec
root and unix socket under /tmp) and stops it by PID at the end. No registry is reachable, so the test image
is imported from a busybox-static rootfs; a small ``tritonserver`` script in it stands in for Triton (it honours
the launcher's flags, prints what it sees and serves /v2/health/ready from the mounted repository with busybox
httpd). Containers run on the host network (ports 18200-18212, replicas 18220-18225). Pure unit tests cover the
mounts-file parser and the run-spec builders.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

docker = pytest.importorskip("docker", reason="the Docker SDK is not installed (pip install 'docker>=7.1')")

from launcher import cli, docker_server  # noqa: E402
from launcher.container_site import pip_command, site_dir  # noqa: E402
from launcher.devcontainer.mounts_file import load_mounts_file, parse_mounts  # noqa: E402
from launcher.devcontainer.shell_spec import (  # noqa: E402
    ShellOptions,
    parse_env,
    parse_port,
    parse_ulimit,
    parse_volume,
    shell_spec,
)
from launcher.images import load_manifest, manifest_entry  # noqa: E402
from launcher.run_spec import parse_gpus, parse_size, triton_spec  # noqa: E402
from mmw.config import PROJECT_ROOT, Config, build  # noqa: E402
from mmw.errors import ConfigError, DockerError  # noqa: E402

ROOT = PROJECT_ROOT
TRITON_IMAGE = ("mmw-test/tritonserver", "test")
DEV_IMAGE = ("mmw-test/dev", "test")
LABEL_FILTER = {"label": "mmw.launcher=1"}

FAKE_TRITONSERVER = r"""#!/bin/sh
# Stands in for tritonserver: honours the launcher's flags, reports what it sees, serves <repository>/www.
repo=/models port=8000 addr=0.0.0.0
for a in "$@"; do
  case "$a" in
    --model-repository=*) repo="${a#*=}" ;;
    --http-port=*) port="${a#*=}" ;;
    --http-address=*) addr="${a#*=}" ;;
  esac
done
echo "argv: $*"
echo "MMW_PYTHONPATH=$MMW_PYTHONPATH EXTRA=$EXTRA"
echo "uid=$(id -u) nofile=$(ulimit -n) stack=$(ulimit -s) shm_kb=$(df -k /dev/shm | tail -n 1 | awk '{print $2}')"
if touch "$repo/.probe" 2>/dev/null; then echo "repository writable"; else echo "repository read-only"; fi
[ -f /opt/mmw/mmw/__init__.py ] && echo "mmw package mounted"
if [ -f "$repo/fail.txt" ]; then cat "$repo/fail.txt"; exit 3; fi
[ -f "$repo/delay.txt" ] && sleep "$(cat "$repo/delay.txt")"
httpd -f -p "$addr:$port" -h "$repo/www" &
pid=$!
trap 'echo "SIGTERM: exiting"; kill $pid; exit 0' TERM
wait $pid
"""


# ---------------------------------------------------------------- the Docker engine


@dataclass
class Engine:
    """A running dockerd of this session."""

    url: str
    root: Path
    client: docker.DockerClient
    triton_id: str


def _rootfs_tar() -> bytes:
    """A busybox-static root filesystem with /usr/bin/tritonserver (the stand-in) as a tar."""
    busybox = shutil.which("busybox")
    assert busybox is not None
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "usr", "usr/bin", "etc", "proc", "sys", "dev", "root", "workspace"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", Path(busybox).read_bytes())
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        add_file("usr/bin/tritonserver", FAKE_TRITONSERVER.encode())
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        add_file("etc/group", b"root:x:0:\n", 0o644)
    return buf.getvalue()


def _mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == str(root) or point.startswith(f"{root}/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _kill_pid_file(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(path.read_text().strip()), signal.SIGKILL)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """A private dockerd (stopped by PID at the end) with the busybox test images imported."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which("busybox") is None:
        pytest.skip("needs dockerd and busybox: apt-get install docker.io busybox-static")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root here (rootless dockerd is not set up)")
    root = Path(tempfile.mkdtemp(prefix="mmwd", dir="/tmp"))
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [dockerd, "--storage-driver", "vfs", "--iptables=false", "--ip-masq=false", "--bridge=none",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "-H", f"unix://{sock}",
         "--pidfile", str(root / "docker.pid"), "--exec-opt", "native.cgroupdriver=cgroupfs"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"unix://{sock}"
    client = None
    try:
        deadline = time.monotonic() + 30
        while client is None:
            if proc.poll() is not None:
                pytest.skip(f"dockerd exited with code {proc.returncode}: "
                            f"{(root / 'dockerd.log').read_text(errors='replace')[-1500:]}")
            if time.monotonic() > deadline:
                pytest.skip(f"dockerd not ready in 30 s: {(root / 'dockerd.log').read_text(errors='replace')[-1500:]}")
            if sock.exists():
                with contextlib.suppress(docker.errors.DockerException):
                    client = docker.DockerClient(base_url=url, timeout=30)
                    client.ping()
                    continue
                client = None
            time.sleep(0.1)
        result = client.api.import_image_from_data(_rootfs_tar(), repository=TRITON_IMAGE[0], tag=TRITON_IMAGE[1],
                                                   changes=['CMD ["/bin/sh"]'])
        image = client.images.get(":".join(TRITON_IMAGE))
        assert image.id in str(result)
        image.tag(*DEV_IMAGE)
        yield Engine(url=url, root=root, client=client, triton_id=image.id)
    finally:
        if client is not None:
            with contextlib.suppress(docker.errors.DockerException):
                for c in client.containers.list(all=True):
                    c.remove(force=True)
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        _kill_pid_file(root / "exec" / "containerd" / "containerd.pid")
        log.close()
        for point in _mounts_under(root):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(engine: Engine) -> Iterator[docker.DockerClient]:
    """The engine's client; afterwards no container made by the launcher may be left over."""
    yield engine.client
    left = engine.client.containers.list(all=True, filters=LABEL_FILTER)
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def _manifest(tmp_path: Path, triton_id: str | None, dev_id: str | None = None) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({
        "triton": {"image": TRITON_IMAGE[0], "tag": TRITON_IMAGE[1], "digest": None, "id": triton_id},
        "dev": {"image": DEV_IMAGE[0], "tag": DEV_IMAGE[1], "digest": None, "id": dev_id},
        "release": {"image": "mmw-test/release", "tag": "0", "digest": None, "id": None},
    }))
    return path


def _repository(tmp_path: Path, **files: str) -> Path:
    repo = tmp_path / "repo"
    for rel in ("www/v2/health/ready", "www/v2/models/add1/ready"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("ok\n")
    for name, text in files.items():
        (repo / name.replace("_", ".")).write_text(text)
    return repo


def _config_file(tmp_path: Path, engine: Engine, first_port: int, manifest: Path, **docker_settings: object) -> Path:
    repo = tmp_path / "repo"
    if not repo.exists():
        _repository(tmp_path)
    settings = {
        "host": engine.url, "manifest": str(manifest), "gpus": "", "shm_size": "96m",
        "ulimits": {"nofile": 4096, "stack": 16777216}, "env": {"EXTRA": "from-config"},
        "container_name": f"mmw-test-{first_port}", "network": "host", "container_python": "",
    }
    settings.update(docker_settings)
    cfg = {
        "server": {"mode": "docker", "http_port": first_port, "grpc_port": first_port + 1,
                   "metrics_port": first_port + 2, "model_repository": str(repo),
                   "state_dir": str(tmp_path / "state"), "startup_timeout_s": 20.0, "exit_timeout_s": 5},
        "docker": settings,
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


# ---------------------------------------------------------------- pure: mounts file


SEED_MOUNTS = {
    "Mounts": [{"source": "/data/experiments", "destination": "/workspace/tao-experiments"},
               {"source": "specs", "destination": "/workspace/tao-experiments/specs", "read_only": True}],
    "Envs": [{"variable": "CUDA_VISIBLE_DEVICES", "value": "0"}, {"variable": "N", "value": 3}],
    "DockerOptions": {"user": "1000:1000", "shm_size": "16G", "ulimits": {"memlock": -1, "stack": 67108864,
                                                                          "nofile": "1024:2048"},
                      "ports": {"8888": 8888, "9000/udp": "9001"}, "network": "host", "privileged": False,
                      "tty": False},
}


def test_mounts_file_parses_the_seed_format_and_extras(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "mounts.json"
    path.parent.mkdir()
    path.write_text(json.dumps(SEED_MOUNTS))
    mf = load_mounts_file(path)
    assert [(m.source, m.destination, m.read_only) for m in mf.mounts] == [
        ("/data/experiments", "/workspace/tao-experiments", False),
        (str(tmp_path / "cfg" / "specs"), "/workspace/tao-experiments/specs", True)]
    assert mf.envs == (("CUDA_VISIBLE_DEVICES", "0"), ("N", "3"))
    o = mf.options
    assert (o.user, o.shm_size, o.network, o.privileged, o.tty) == ("1000:1000", "16G", "host", False, False)
    assert [(u.name, u.soft, u.hard) for u in o.ulimits] == [("memlock", -1, -1), ("stack", 67108864, 67108864),
                                                             ("nofile", 1024, 2048)]
    assert o.ports == (("8888/tcp", 8888), ("9000/udp", 9001))
    assert parse_mounts({"Envs": {"A": "b"}}).envs == (("A", "b"),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Mount": []}, "Mount: unknown key; allowed keys: DockerOptions, Envs, Mounts"),
        ({"Mounts": [{"source": "/a", "destination": "/b", "readonly": True}]},
         r"Mounts\[0\]\.readonly: unknown key; allowed keys under .*Mounts\[0\]: destination, read_only, source"),
        ({"Mounts": [{"source": "/a"}]}, r"Mounts\[0\]\.destination: missing"),
        ({"Mounts": [{"source": "/a", "destination": "b"}]}, "expected an absolute path in the container"),
        ({"Mounts": {"source": "/a"}}, "Mounts: expected a list"),
        ({"DockerOptions": {"shm": "1G"}},
         "DockerOptions.shm: unknown key; allowed keys under .*: network, ports, privileged, shm_size, tty, "
         "ulimits, user"),
        ({"DockerOptions": {"ulimits": {"memlok": -1}}}, "unknown limit 'memlok'; allowed: as, core, cpu"),
        ({"DockerOptions": {"ulimits": {"nofile": "lots"}}}, r"ulimits\.nofile: expected an integer"),
        ({"DockerOptions": {"ulimits": {"nofile": "4096:1024"}}}, "soft limit 4096 is above the hard limit 1024"),
        ({"DockerOptions": {"shm_size": "16 gigs"}}, "shm_size: expected a size such as 16G"),
        ({"DockerOptions": {"ports": {"http": 80}}}, "expected a container port such as 8888"),
        ({"DockerOptions": {"tty": "yes"}}, "DockerOptions.tty: expected true or false, got str"),
        ({"Envs": [{"name": "A", "value": "b"}]}, r"Envs\[0\]\.name: unknown key; allowed keys under .*: value, "
                                                 "variable"),
        ({"Envs": {"1A": "b"}}, "expected variable names of letters"),
        ([1, 2], "expected an object with DockerOptions, Envs, Mounts, got list"),
    ],
)
def test_mounts_file_errors_name_the_key_and_list_the_allowed_ones(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mounts(data, Path("/home/u/.tao_mounts.json"))


def test_mounts_file_default_may_be_absent_a_named_one_may_not(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_mounts_file(None).path is None
    (tmp_path / ".tao_mounts.json").write_text('{"Mounts": [{"source": "~/d", "destination": "/d"}],}')
    with pytest.raises(ConfigError, match=r"\.tao_mounts\.json: not valid JSON .*trailing commas"):
        load_mounts_file(None)
    (tmp_path / ".tao_mounts.json").write_text('{"Mounts": [{"source": "~/d", "destination": "/d"}]}')
    assert load_mounts_file(None).mounts[0].source == str(tmp_path / "d")
    with pytest.raises(ConfigError, match=r"mounts file .*nope\.json: not found"):
        load_mounts_file(tmp_path / "nope.json")


# ---------------------------------------------------------------- pure: run specs


def test_shell_spec_command_line_overrides_the_mounts_file(tmp_path: Path) -> None:
    mf = parse_mounts(SEED_MOUNTS, tmp_path / "m.json")
    opts = ShellOptions(
        image="sha256:abc", command=("python", "-V"), gpus="0,2", volumes=("rel:/workspace/tao-experiments:ro",
                                                                           "/x:/x"),
        env=("CUDA_VISIBLE_DEVICES=1", "HOMEISH"), tty=True, shm_size="1g", run_as_user=True, host_user="1001:1002",
        ulimits=("nofile=4096", "core=0"), ports=("127.0.0.1:8890:8888",), project_root="/src/mmw",
        host_env={"HOMEISH": "/home/me"}, cwd=str(tmp_path))
    spec = shell_spec(opts, mf)
    kw = spec.kwargs
    assert kw["image"] == "sha256:abc" and kw["command"] == ["python", "-V"]
    assert kw["labels"] == {"mmw.launcher": "1", "mmw.role": "shell"}
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in kw["mounts"]] == [
        ("/src/mmw", "/workspace/mmw", False),
        (str(tmp_path / "rel"), "/workspace/tao-experiments", True),  # --volume replaced the file's mount
        (str(tmp_path / "specs"), "/workspace/tao-experiments/specs", True),
        ("/x", "/x", False)]
    assert kw["environment"] == {"PYTHONPATH": "/workspace/mmw", "CUDA_VISIBLE_DEVICES": "1", "N": "3",
                                 "HOMEISH": "/home/me"}
    assert kw["user"] == "1001:1002" and kw["working_dir"] == "/workspace/mmw"
    assert kw["shm_size"] == 1024**3
    assert {u["Name"]: (u["Soft"], u["Hard"]) for u in kw["ulimits"]} == {
        "memlock": (-1, -1), "stack": (67108864, 67108864), "nofile": (4096, 4096), "core": (0, 0)}
    assert kw["ports"] == {"8888/tcp": ("127.0.0.1", 8890), "9000/udp": 9001}
    assert kw["network_mode"] == "host" and "privileged" not in kw
    assert kw["tty"] is False, "DockerOptions.tty: false wins over a terminal"
    assert kw["device_requests"] == [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "2"],
                                      "Capabilities": [["gpu"]], "Options": {}}]
    assert len(spec.warnings) == 1 and "not published" in spec.warnings[0]

    plain = shell_spec(ShellOptions(image="img", gpus="all"))
    assert plain.kwargs["device_requests"][0]["Count"] == -1 and plain.kwargs["command"] is None
    assert plain.kwargs["shm_size"] == 16 * 1024**3 and "user" not in plain.kwargs
    assert any("runs as root" in w and "--run_as_user" in w for w in plain.warnings)
    assert "device_requests" not in shell_spec(ShellOptions(image="img", gpus="none")).kwargs
    assert not shell_spec(ShellOptions(image="img", image_user="dev")).warnings


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_gpus("gpu0"), "expected 'all', 'none' or comma-separated GPU indices"),
        (lambda: parse_size("16 G"), "expected a size such as 16G"),
        (lambda: parse_ulimit("nofile"), "expected NAME=soft\\[:hard\\]"),
        (lambda: parse_ulimit("files=1"), "unknown limit 'files'"),
        (lambda: parse_volume("/only"), "expected HOST_PATH:CONTAINER_PATH"),
        (lambda: parse_volume("/a:rel"), "expected an absolute container path"),
        (lambda: parse_env("1X=2", {}), "expected VAR=value"),
        (lambda: parse_env("UNSET_HERE", {}), "UNSET_HERE is unset"),
        (lambda: parse_port("80:http"), "expected a container port"),
        (lambda: parse_port("x:80"), "expected \\[IP:\\]HOST_PORT:CONTAINER_PORT"),
    ],
)
def test_option_parsers_explain_bad_values(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        call()


def test_parsers_accept_docker_syntax() -> None:
    assert parse_size("512m") == 512 * 1024**2 and parse_size("1.5g") == int(1.5 * 1024**3)
    assert parse_size("4096") == 4096
    assert (parse_ulimit("stack=67108864").soft, parse_ulimit("nofile=1024:2048").hard) == (67108864, 2048)
    assert parse_port("8889:8888") == ("8888/tcp", 8889) and parse_port("8888") == ("8888/tcp", 8888)
    assert parse_env("A=b=c", {}) == ("A", "b=c")
    assert parse_volume("/a:/b:ro").read_only and not parse_volume("/a:/b").read_only


def test_triton_spec_for_the_ngc_and_the_release_image(tmp_path: Path) -> None:
    config = build(Config, {"server": {"mode": "docker", "http_port": 9100, "grpc_port": 9101, "metrics_port": 9102},
                            "docker": {"gpus": "1,3", "env": {"CUDA_MODULE_LOADING": "LAZY"}}})
    spec = triton_spec(config, "sha256:x", model_repository=Path("/r/model_repository"), mmw_package=Path("/r/mmw"),
                       site_dir=Path("/s/site"), state_dir=Path("/r/.triton"))
    kw = spec.kwargs
    assert kw["name"] == "mmw-triton" and kw["image"] == "sha256:x"
    assert kw["labels"] == {"mmw.launcher": "1", "mmw.role": "triton", "mmw.state_dir": "/r/.triton"}
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in kw["mounts"]] == [
        ("/r/model_repository", "/models", True), ("/r/mmw", "/opt/mmw/mmw", True), ("/s/site", "/opt/mmw/site", True)]
    assert kw["environment"] == {"MMW_PYTHONPATH": "/opt/mmw:/opt/mmw/site", "CUDA_MODULE_LOADING": "LAZY"}
    assert kw["ports"] == {"8000/tcp": ("127.0.0.1", 9100), "8001/tcp": ("127.0.0.1", 9101),
                           "8002/tcp": ("127.0.0.1", 9102)}
    assert kw["command"][:5] == ["tritonserver", "--model-repository=/models", "--http-port=8000", "--grpc-port=8001",
                                 "--metrics-port=8002"]
    assert "--strict-readiness=true" in kw["command"] and not any("address" in a for a in kw["command"])
    assert kw["shm_size"] == 1024**3
    assert {u["Name"]: u["Soft"] for u in kw["ulimits"]} == {"memlock": -1, "stack": 67108864}
    assert kw["device_requests"] == [{"Driver": "", "Count": 0, "DeviceIDs": ["1", "3"], "Capabilities": [["gpu"]],
                                      "Options": {}}]

    release = build(Config, {"server": {"http_port": 9100, "grpc_port": 9101, "metrics_port": 9102},
                             "docker": {"image_kind": "release", "network": "host", "gpus": "all"}})
    kw = triton_spec(release, "sha256:y", model_repository=Path("/r"), mmw_package=Path("/m")).kwargs
    assert kw["mounts"] == [] and kw["environment"] == {} and "ports" not in kw and kw["network_mode"] == "host"
    assert "--http-port=9100" in kw["command"] and "--http-address=127.0.0.1" in kw["command"]
    assert kw["device_requests"][0]["Count"] == -1


@pytest.mark.parametrize(
    ("docker_settings", "message"),
    [
        ({"gpus": "first"}, "docker.gpus: expected 'all', '' \\(no GPUs\\) or comma-separated GPU indices"),
        ({"ulimits": {"memlok": -1}}, "docker.ulimits.memlok: unknown limit; allowed: as, core"),
        ({"ulimits": {"stack": "big"}}, "docker.ulimits.stack: expected an integer, got str"),
        ({"env": {"A": 1}}, "docker.env.A: expected a string, got int"),
        ({"shm_size": "lots"}, "docker.shm_size: expected a size such as 1g"),
        ({"network": "overlay"}, "docker.network: expected one of 'bridge', 'host', got 'overlay'"),
        ({"image_kind": "custom"}, "docker.image_kind: expected one of 'ngc', 'release'"),
        ({"container_name": "-x"}, "docker.container_name: expected"),
        ({"container_python": "py3"}, "docker.container_python: expected a Python version"),
        ({"registry": "x"}, "docker.registry: unknown setting; allowed keys under docker: allow_unpinned, "),
    ],
)
def test_docker_settings_name_the_field(docker_settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(Config, {"docker": docker_settings})


def test_manifest_is_validated_and_the_repository_one_is_unpinned_not_invented(tmp_path: Path) -> None:
    shipped = load_manifest(ROOT / "docker" / "manifest.json")
    assert shipped["triton"].ref == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert all(e.digest is None or e.digest.startswith("sha256:") for e in shipped.values())
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"triton": {"image": "a", "tag": "b", "digest": "sha256:short"}}))
    with pytest.raises(ConfigError, match=r"triton\.digest: expected null or 'sha256:' and 64 hex digits"):
        load_manifest(bad)
    bad.write_text(json.dumps({"triton": {"image": "a", "tag": "b", "sha": None}}))
    with pytest.raises(ConfigError, match=r"triton\.sha: unknown key; allowed keys: image, tag, digest, id"):
        load_manifest(bad)
    pinned = _manifest(tmp_path, "sha256:" + "a" * 64)
    assert manifest_entry(pinned, "triton").pinned
    assert not manifest_entry(pinned, "triton", tag="other").pinned, "another tag than the pinned one is unpinned"


def test_container_site_is_installed_for_the_images_python() -> None:
    cmd = pip_command(Path("/s/site"), "3.10", "amd64")
    assert cmd[:3] == [sys.executable, "-m", "pip"] and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.10" and cmd[cmd.index("--target") + 1] == "/s/site"
    assert "manylinux_2_28_x86_64" in cmd and cmd[-1].endswith("docker/requirements-triton.txt")
    assert site_dir(Path("/st"), "3.10", "x86_64") == Path("/st/container-site-py3.10-x86_64")
    reqs = (ROOT / "docker" / "requirements-triton.txt").read_text()
    for pkg in ("numpy>=1.24,<2", "opencv-python-headless>=4.8,<4.12", "pillow", "pyyaml", "onnxruntime",
                "openvino==2026.4.1"):
        assert pkg in reqs


# ---------------------------------------------------------------- real engine: launcher shell / tao_ws


def _shell_config(tmp_path: Path, engine: Engine, dev_id: str | None = None, **docker_settings: object) -> Path:
    settings = {"host": engine.url, "manifest": str(_manifest(tmp_path, None, dev_id)), "gpus": ""}
    settings.update(docker_settings)
    path = tmp_path / "shell.yaml"
    path.write_text(json.dumps({"docker": settings, "server": {"state_dir": str(tmp_path / "state")}}))
    return path


def test_shell_runs_a_command_with_every_option(engine: Engine, client: docker.DockerClient, tmp_path: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    data_in, data_out = tmp_path / "in", tmp_path / "out"
    data_in.mkdir()
    data_out.mkdir(mode=0o777)
    data_out.chmod(0o777)
    (data_in / "hello.txt").write_text("hello from the host\n")
    mounts = tmp_path / "mounts.json"
    mounts.write_text(json.dumps({
        "Mounts": [{"source": str(data_in), "destination": "/data/in", "read_only": True}],
        "Envs": [{"variable": "FILEVAR", "value": "from-file"}, {"variable": "FOO", "value": "file"}],
        "DockerOptions": {"user": "1234:1234", "shm_size": "32m", "ulimits": {"nofile": 1024, "stack": 67108864}},
    }))
    script = ('echo "uid=$(id -u):$(id -g) pwd=$(pwd)"; cat /data/in/hello.txt; '
              'echo "FOO=$FOO FILEVAR=$FILEVAR PYTHONPATH=$PYTHONPATH"; '
              'echo "nofile=$(ulimit -n)/$(ulimit -Hn) stack=$(ulimit -s)"; '
              'echo "shm_kb=$(df -k /dev/shm | tail -n 1 | awk \'{print $2}\')"; '
              'touch /data/in/x 2>/dev/null || echo "in: read-only"; ls pyproject.toml; '
              'echo written > /data/out/result.txt; echo "to stderr" >&2; exit 7')
    cfg = _shell_config(tmp_path, engine)
    rc = cli.main(["--config", str(cfg), "shell", "--tag", "test", "--mounts_file", str(mounts), "--no-tty",
                   "--volume", f"{data_out}:/data/out", "--env", "FOO=cli", "--shm_size", "64m",
                   "--ulimit", "nofile=2048:4096", "--port", "18299:18299", "--", "sh", "-c", script])
    out, err = capfd.readouterr()
    assert rc == 7, err
    assert "uid=1234:1234 pwd=/workspace/mmw" in out
    assert "hello from the host" in out
    assert "FOO=cli FILEVAR=from-file PYTHONPATH=/workspace/mmw" in out
    assert "nofile=2048/4096 stack=65536" in out  # --ulimit beat the file's nofile; stack (KiB) from the file
    assert "shm_kb=65536" in out  # --shm_size 64m beat the file's 32m
    assert "in: read-only" in out and "pyproject.toml" in out
    assert "to stderr" in err and "to stderr" not in out
    assert (data_out / "result.txt").read_text() == "written\n"
    assert "runs as root" not in err


def test_shell_is_interactive_on_a_terminal_and_tao_ws_is_an_alias(engine: Engine, client: docker.DockerClient,
                                                                    tmp_path: Path) -> None:
    cfg = _shell_config(tmp_path, engine, dev_id=engine.triton_id)
    code = "import sys; from launcher.cli import tao_ws_main; sys.exit(tao_ws_main())"
    pid, fd = pty.fork()
    if pid == 0:  # the child: tao_ws on a terminal, no command -> the image's shell
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-c", code, "--config", str(cfg), "--run_as_user"])
    output = b""
    try:
        deadline = time.monotonic() + 30
        sent = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and (b"# " in output or b"$ " in output):
                os.write(fd, b"[ -t 0 ] && echo TTY-$((6*7)); echo uid=$(id -u); exit 5\r")
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = output.decode(errors="replace")
    assert sent, text
    assert "TTY-42" in text and f"uid={os.getuid()}" in text
    assert os.waitstatus_to_exitcode(status) == 5, text
    assert "runs as root" in text, "--run_as_user as root (this test runs as root) still warns"


def test_shell_forwards_stdin_without_a_tty(engine: Engine, client: docker.DockerClient, tmp_path: Path) -> None:
    cfg = _shell_config(tmp_path, engine, dev_id=engine.triton_id)
    proc = subprocess.run([sys.executable, "-m", "launcher", "--config", str(cfg), "shell", "--", "sh", "-c",
                           "tr a-z A-Z; echo done"], input=b"piped through\n", capture_output=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"PIPED THROUGH\ndone\n"
    assert b"runs as root" in proc.stderr


def test_shell_gpu_request_reaches_the_api_and_fails_clearly(engine: Engine, client: docker.DockerClient,
                                                             tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = shell_spec(ShellOptions(image=engine.triton_id, command=("true",), gpus="0,1", tty=False,
                                   stdin_open=False))
    from launcher.docker_client import create_container, start_container

    container = create_container(client, spec.kwargs, "test", "--gpus none")
    assert container.attrs["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]], "Options": {}}]
    with pytest.raises(DockerError, match=r"GPUs were requested but the Docker daemon cannot provide them "
                                          r"\(could not select device driver .*nvidia-ctk runtime configure"):
        start_container(container, "test", "--gpus none")
    assert not client.containers.list(all=True, filters=LABEL_FILTER), "a container that cannot start is removed"

    cfg = _shell_config(tmp_path, engine, dev_id=engine.triton_id, gpus="all")
    assert cli.main(["--config", str(cfg), "shell", "--no-tty", "--", "true"]) == 1
    err = capsys.readouterr().err
    assert "GPUs were requested" in err and "pass --gpus none" in err and err.count("\n") <= 2


def test_shell_explains_missing_unpinned_images_refused_limits_and_an_unreachable_daemon(
        engine: Engine, client: docker.DockerClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _shell_config(tmp_path, engine)
    base = ["--config", str(cfg), "shell", "--no-tty"]
    assert cli.main([*base, "--", "true"]) == 1
    assert "mmw-test/dev:test is not pinned" in capsys.readouterr().err

    assert cli.main([*base, "--tag", "absent", "--", "true"]) == 1
    err = capsys.readouterr().err
    assert "image mmw-test/dev:absent is not on this Docker host" in err and "docker load -i image.tar" in err

    assert cli.main([*base, "--tag", "test", "--ulimit", "memlock=-1", "--", "true"]) == 1
    assert "this host refuses ulimit memlock" in capsys.readouterr().err

    mounts = tmp_path / "m.json"
    mounts.write_text(json.dumps({"Mounts": [{"source": str(tmp_path / "gone"), "destination": "/g"}]}))
    assert cli.main([*base, "--tag", "test", "--mounts_file", str(mounts), "--", "true"]) == 1
    assert f"Mounts source {tmp_path / 'gone'} does not exist" in capsys.readouterr().err

    unreachable = _shell_config(tmp_path, engine, host="unix:///tmp/mmwd-none/docker.sock")
    assert cli.main(["--config", str(unreachable), "shell", "--", "true"]) == 1
    err = capsys.readouterr().err
    assert "Docker daemon not reachable at unix:///tmp/mmwd-none/docker.sock" in err and "DOCKER_HOST" in err


# ---------------------------------------------------------------- real engine: Triton in a container


def test_docker_mode_run_status_logs_stop(engine: Engine, client: docker.DockerClient, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _repository(tmp_path, delay_txt="0.7")
    cfg = _config_file(tmp_path, engine, 18200, _manifest(tmp_path, engine.triton_id))
    base = ["--config", str(cfg)]
    t0 = time.monotonic()
    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1", "--timeout", "30"]) == 0, \
        capsys.readouterr().err
    assert time.monotonic() - t0 >= 0.7, "waited for readiness"
    out = capsys.readouterr().out
    assert "tritonserver ready in container mmw-test-18200" in out and "pinned" in out
    assert "HTTP http://127.0.0.1:18200" in out

    record = json.loads((tmp_path / "state" / "triton-container.json").read_text())
    container = client.containers.get(record["container_id"])
    assert container.labels["mmw.launcher"] == "1" and container.status == "running"
    assert container.image.id == engine.triton_id

    assert cli.main([*base, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("running: container mmw-test-18200") and "server ready" in out
    assert cli.main([*base, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["mode"] == "docker" and status["running"] and status["server_ready"]
    assert status["container_id"] == record["container_id"] and status["pinned"]

    assert cli.main([*base, "logs", "-n", "20"]) == 0
    logs = capsys.readouterr().out
    assert "--model-repository=/models --http-port=18200 --grpc-port=18201 --metrics-port=18202" in logs
    assert "--http-address=127.0.0.1" in logs and "--exit-timeout-secs=5" in logs
    assert "MMW_PYTHONPATH=/opt/mmw EXTRA=from-config" in logs
    assert "uid=0 nofile=4096 stack=16384 shm_kb=98304" in logs
    assert "repository read-only" in logs and "mmw package mounted" in logs

    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1"]) == 1
    assert "already runs (mmw-test-18200" in capsys.readouterr().err
    assert cli.main([*base, "run", "--mode", "local", "--no-write-repository"]) == 1
    assert "a Triton container started by launcher is recorded" in capsys.readouterr().err

    assert cli.main([*base, "stop"]) == 0
    out = capsys.readouterr().out
    assert "stopped and removed" in out and "killed" not in out, "SIGTERM was enough"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(record["container_id"])
    assert not (tmp_path / "state" / "triton-container.json").exists()
    assert "SIGTERM: exiting" in (tmp_path / "state" / "triton-container.log").read_text()
    assert cli.main([*base, "status"]) == 0
    assert capsys.readouterr().out.startswith("not running (docker mode")
    assert cli.main([*base, "logs", "-n", "1"]) == 0
    assert "SIGTERM: exiting" in capsys.readouterr().out, "the saved log outlives the container"
    assert cli.main([*base, "stop"]) == 0
    assert "no server running" in capsys.readouterr().out


def test_docker_mode_replicas_run_status_logs_stop(engine: Engine, client: docker.DockerClient, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--replicas 2``: containers <name> and <name>-1 on ports +0 and +3, each recorded in its own state dir."""
    _repository(tmp_path)
    cfg = _config_file(tmp_path, engine, 18220, _manifest(tmp_path, engine.triton_id))
    base = ["--config", str(cfg)]
    assert cli.main([*base, "run", "--no-write-repository", "--wait-for", "add1", "--replicas", "2",
                     "--timeout", "30"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("replica 0: tritonserver ready in container mmw-test-18220 (")
    assert out[1].startswith("replica 1: tritonserver ready in container mmw-test-18220-1 (")
    assert "HTTP http://127.0.0.1:18223" in out[1]
    assert out[2] == "2 replicas ready; gRPC endpoints (client.urls): 127.0.0.1:18221, 127.0.0.1:18224"
    state = tmp_path / "state"
    ids = [json.loads((d / "triton-container.json").read_text())["container_id"]
           for d in (state, state / "replica-1")]
    assert [client.containers.get(i).name for i in ids] == ["mmw-test-18220", "mmw-test-18220-1"]
    assert all(client.containers.get(i).status == "running" for i in ids)

    assert cli.main([*base, "status"]) == 0
    status = capsys.readouterr().out
    assert "replica 0: running: container mmw-test-18220 (" in status
    assert "replica 1: running: container mmw-test-18220-1 (" in status and "HTTP http://127.0.0.1:18223" in status
    assert cli.main([*base, "logs", "-n", "20", "--replica", "1"]) == 0
    assert "--http-port=18223 --grpc-port=18224 --metrics-port=18225" in capsys.readouterr().out
    assert cli.main([*base, "logs", "-n", "1"]) == 0
    assert [line.split("]")[0] for line in capsys.readouterr().out.splitlines()] == ["[replica 0", "[replica 1"]

    assert cli.main([*base, "stop"]) == 0
    stopped = capsys.readouterr().out.splitlines()
    assert stopped[0].startswith("replica 0: tritonserver container mmw-test-18220 (")
    assert stopped[1].startswith("replica 1: tritonserver container mmw-test-18220-1 (")
    assert all("stopped and removed" in line for line in stopped)
    for container_id in ids:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(container_id)


def test_docker_mode_reports_why_the_server_exited_and_cleans_up(engine: Engine, client: docker.DockerClient,
                                                                 tmp_path: Path) -> None:
    _repository(tmp_path, fail_txt="error: creating server: Internal - failed to load all models\n")
    config = _load(_config_file(tmp_path, engine, 18203, _manifest(tmp_path, engine.triton_id)))
    with pytest.raises(DockerError, match=r"exited with code 3 before it was ready: Triton: creating server: "
                                          r"Internal - failed to load all models\. Its log is saved"):
        docker_server.start(config, ["add1"])
    assert not (tmp_path / "state" / "triton-container.json").exists()
    assert "failed to load all models" in (tmp_path / "state" / "triton-container.log").read_text()


def test_docker_mode_timeout_gpus_pins_and_docker_host(engine: Engine, client: docker.DockerClient, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _manifest(tmp_path, engine.triton_id)
    _repository(tmp_path, delay_txt="30")
    config = _load(_config_file(tmp_path, engine, 18206, manifest))
    t0 = time.monotonic()
    with pytest.raises(DockerError, match=r"not ready after 1\.5 s at http://127\.0\.0\.1:18206: its HTTP endpoint "
                                          r"does not answer\. Removed it"):
        docker_server.start(config, ["add1"], timeout_s=1.5)
    assert time.monotonic() - t0 < 15

    gpu = _load(_config_file(tmp_path, engine, 18206, manifest, gpus="0"))
    with pytest.raises(DockerError, match=r"GPUs were requested .*set docker\.gpus: \"\" \(or `launcher run --mode "
                                          r"docker --gpus none`\)"):
        docker_server.start(gpu, ["add1"])

    unpinned = _load(_config_file(tmp_path, engine, 18206, _manifest(tmp_path, None)))
    with pytest.raises(DockerError, match=r"mmw-test/tritonserver:test is not pinned: .*docker/build\.sh --pin triton"):
        docker_server.start(unpinned, ["add1"])
    wrong = _load(_config_file(tmp_path, engine, 18206, _manifest(tmp_path, "sha256:" + "0" * 64)))
    with pytest.raises(DockerError, match=r"local image mmw-test/tritonserver:test is sha256:.* but .* pins sha256:0+"):
        docker_server.start(wrong, ["add1"])
    missing = _load(_config_file(tmp_path, engine, 18206, manifest, tag="24.10-py3", allow_unpinned=True))
    with pytest.raises(DockerError, match=r"image mmw-test/tritonserver:24\.10-py3 is not on this Docker host; pull "
                                          r"it .*offline: .*docker load -i image\.tar"):
        docker_server.start(missing, ["add1"])

    # docker.host "" -> DOCKER_HOST; build.sh --pin records the local image's ID in the manifest.
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    (tmp_path / "repo" / "delay.txt").unlink()
    pin_me = _manifest(tmp_path, None)
    env = {**os.environ, "MMW_MANIFEST": str(pin_me), "DOCKER_HOST": engine.url}
    proc = subprocess.run(["bash", str(ROOT / "docker" / "build.sh"), "--pin", "triton"], env=env,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "docker CLI is not installed" in proc.stderr:
        pytest.skip("no docker CLI for build.sh")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(pin_me.read_text())["triton"]["id"] == engine.triton_id
    via_env = _load(_config_file(tmp_path, engine, 18209, pin_me, host=""))
    record = docker_server.start(via_env, ["add1"])
    try:
        assert record.pinned and record.docker_host == ""
        assert docker_server.status(via_env).server_ready
        assert docker_server.wait_ready(via_env, ["add1"], timeout_s=10) == record
    finally:
        assert docker_server.stop(via_env).stopped
    with pytest.raises(DockerError, match=r"no tritonserver container recorded in .*triton-container\.json"):
        docker_server.wait_ready(via_env, ["add1"])


def _load(path: Path) -> Config:
    from mmw.config import load_config

    return load_config(path)


# ---------------------------------------------------------------- doctor


def test_doctor_says_what_is_missing_with_the_fix(engine: Engine, client: docker.DockerClient, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path, engine.triton_id)
    cfg = _config_file(tmp_path, engine, 18210, manifest)
    mounts = tmp_path / "mounts.json"
    mounts.write_text(json.dumps({"Mounts": [{"source": str(tmp_path), "destination": "/t"}]}))
    base = ["--config", str(cfg), "doctor", "--mounts_file", str(mounts)]
    assert cli.main([*base, "--gpus", "none"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    for line in ("ok       python", "ok       Docker daemon", "API 1.4", "ok       Triton image", "pinned",
                 "ok       ports free", "all sources present", "everything this mode needs is here"):
        assert line in out
    assert "NVIDIA" not in out

    assert cli.main([*base, "--gpus", "all"]) == (0 if Path("/proc/driver/nvidia/version").exists() else 1)
    out = capsys.readouterr().out
    if not Path("/proc/driver/nvidia/version").exists():
        assert "missing  NVIDIA driver" in out and "fix: install the NVIDIA driver" in out
        assert "required item(s) missing: NVIDIA driver" in out

    assert cli.main(["--config", str(_config_file(tmp_path, engine, 18210, manifest,
                                                  host="unix:///tmp/mmwd-none/docker.sock")),
                     "doctor", "--gpus", "none", "--mounts_file", str(mounts)]) == 1
    assert "missing  Docker daemon" in capsys.readouterr().out

    assert cli.main(["--config", str(cfg), "doctor", "--mode", "local", "--mounts_file", str(mounts)]) in (0, 1)
    out = capsys.readouterr().out
    assert "tritonserver (local mode)" in out and "Docker daemon" not in out


def test_dev_and_release_dockerfiles_take_a_base_build_arg() -> None:
    for path in (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "release" / "Dockerfile"):
        text = path.read_text()
        assert "ARG BASE_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3" in text and "FROM ${BASE_IMAGE}" in text
    release = (ROOT / "docker" / "release" / "Dockerfile").read_text()
    assert "requirements-triton.txt" in release and "wheels/" in release
    assert "COPY model_repository/ /models/" in release
    for script in ("build.sh", "release/deploy.sh"):
        proc = subprocess.run(["bash", "-n", str(ROOT / "docker" / script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
