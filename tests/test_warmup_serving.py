"""Model warmup on the real tritonserver: `launcher run` reports ready only after every network instance ran its
warmup samples (Triton marks a model loaded, and opens its endpoints, only after warmup)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from mmw.config import load_config
from mmw.contract import ENSEMBLE_NAME
from mmw.repository import parse_config
from mmw.specs import NETWORKS
from tests.conftest import ROOT, free_ports, jpeg, photo

pytestmark = pytest.mark.serving


def test_launcher_run_is_ready_only_after_warmup(engines: dict[str, Path], tmp_path: Path) -> None:
    http, grpc, metrics = free_ports(3)
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"server": {"http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                                                 "state_dir": str(state), "log_verbose": 1}}))
    launcher = str(Path(sys.executable).with_name("launcher"))
    env = {**os.environ, "PATH": f"{Path(launcher).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        run = subprocess.run([launcher, "--config", str(config), "run", "--timeout", "300"], capture_output=True,
                             text=True, timeout=400, env=env)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[0].startswith("captions: template"), run.stdout
        assert run.stdout.splitlines()[-1].startswith("tritonserver ready"), run.stdout
        lines = (state / "tritonserver.log").read_text(errors="replace").splitlines()

        def first(pattern: str) -> int:
            return next(i for i, line in enumerate(lines) if re.search(pattern, line))

        opened = first(r"Started HTTPService")
        for name in NETWORKS:
            cfg = parse_config((ROOT / "model_repository" / name / "config.pbtxt").read_text())
            samples = [w.name for w in cfg.model_warmup]
            assert samples == ["zeros_batch_1", f"zeros_batch_{load_config().serving.max_batch_size}"]
            ran = [(i, m.group(1), m.group(2)) for i, line in enumerate(lines)
                   if (m := re.search(rf"model '{name}' instance (\S+) is running warmup sample '(\S+)'", line))]
            instances = {inst for _, inst, _ in ran}
            assert len(instances) == cfg.instance_group[0].count  # every instance warms up
            assert sorted(s for _, _, s in ran) == sorted(samples * len(instances))
            loaded = first(rf"successfully loaded '{name}'")
            assert max(i for i, _, _ in ran) < loaded < opened  # warmup, then READY, then the endpoints

        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        data = np.array([[jpeg(photo("astronaut"))]], dtype=object)
        inp = httpclient.InferInput("IMAGE", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        result = client.infer(ENSEMBLE_NAME, [inp])
        assert result.as_numpy("NUM_DETECTIONS")[0, 0] > 0
    finally:
        subprocess.run([launcher, "--config", str(config), "stop"], capture_output=True, timeout=120, env=env)
