"""config.yaml validation, and the repository's config.pbtxt files parsed back against their specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmw.config import DEFAULT_CONFIG_PATH, Config, build, load_config
from mmw.errors import ConfigError, ModelSpecError
from mmw.repository import check_repository, parse_config, render_config, to_model_config, write_repository
from mmw.specs import (
    DETECTOR,
    ENSEMBLE_NAME,
    LABELLER,
    REFERENCE_CORES,
    EnsembleStep,
    StepResources,
    TensorSpec,
    check_ensemble,
    repository_specs,
    serving_plan,
)
from tests.conftest import project_sources

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "model_repository"


def test_default_config_loads() -> None:
    config = load_config()
    assert config.server.host == "127.0.0.1"
    assert (config.server.http_port, config.server.grpc_port, config.server.metrics_port) == (8000, 8001, 8002)
    assert config.serving.max_batch_size >= 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"htp_port": 1}}, "server.htp_port: unknown setting; allowed keys under server: "),
        ({"serverr": {}}, "serverr: unknown setting; allowed keys: " + ", ".join(sorted(Config.__dataclass_fields__))),
        ({"server": {"http_port": "8000"}}, "server.http_port: expected an integer, got str"),
        ({"server": {"http_port": True}}, "server.http_port: expected an integer, got bool"),
        ({"server": {"http_port": 70000}}, r"server.http_port: expected a port in 1..65535, got 70000"),
        ({"server": {"grpc_port": 8000}}, "must differ"),
        ({"server": {"mode": "k8s"}}, "server.mode: expected one of 'local', 'docker', got 'k8s'"),
        ({"models": {"detector": {"score_threshold": 1.5}}},
         r"models.detector.score_threshold: expected a number in \[0, 1\]"),
        ({"models": {"detector": "x"}}, "models.detector: expected a mapping, got str"),
        ({"models": {"labeller": {"top_k": 0}}}, "models.labeller.top_k: expected 1..1000, got 0"),
        ({"client": {"protocol": "udp"}}, "client.protocol: expected one of 'grpc', 'http', got 'udp'"),
        ({"serving": {"instances": 0}}, "serving.instances: expected a positive number"),
        ({"serving": {"onnx_threads": "many"}}, "serving.onnx_threads: expected an integer or 'auto', got 'many'"),
    ],
)
def test_bad_settings_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(Config, data)


@pytest.mark.parametrize(
    ("text", "message"),
    [("server: [1, 2", "not valid YAML"), ("- a\n- b\n", "expected a mapping at the top level")],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_config_states_the_defaults() -> None:
    """config/config.yaml spells out exactly the models' defaults (what an installed package uses without one)."""
    assert load_config(DEFAULT_CONFIG_PATH) == Config()


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# nothing set\n")
    assert load_config(path) == Config()


def test_shipped_config_sets_every_key() -> None:
    """config.yaml documents every setting: loading it equals building from its full text."""
    import yaml

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert set(data) == set(Config.__dataclass_fields__)
    for section, value in data.items():
        assert set(value) == set(getattr(Config(), section).__dataclass_fields__), section


@pytest.mark.parametrize("spec", repository_specs(load_config(), cores=REFERENCE_CORES), ids=lambda s: s.name)
def test_committed_config_pbtxt_matches_spec(spec) -> None:
    text = (REPO / spec.name / "config.pbtxt").read_text()
    assert parse_config(text) == to_model_config(spec)


def test_check_repository_detects_drift(tmp_path: Path) -> None:
    config = load_config()
    root = tmp_path / "repo"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns("*.onnx", "*.json", "__pycache__"))
    check_repository(config, root, cores=REFERENCE_CORES)
    pbtxt = root / "detector" / "config.pbtxt"
    pbtxt.write_text(pbtxt.read_text().replace("max_batch_size: 8", "max_batch_size: 4"))
    with pytest.raises(ModelSpecError, match=r"detector/config\.pbtxt: differs from its spec"):
        check_repository(config, root, cores=REFERENCE_CORES)
    assert write_repository(config, root, cores=REFERENCE_CORES) == [pbtxt]
    check_repository(config, root, cores=REFERENCE_CORES)


def test_python_models_are_generated_from_their_spec(tmp_path: Path) -> None:
    """Every model.py is rendered from one template; a hand-edited one is drift, and a rewrite restores it."""
    config = load_config()
    root = tmp_path / "repo"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns("*.onnx", "*.json", "__pycache__"))
    python = [s for s in repository_specs(config, cores=REFERENCE_CORES) if s.backend == "python"]
    assert {s.name for s in python} == {"preprocess", "preprocess_frames", "detector", "labeller", "postprocess",
                                        "caption"}
    for spec in python:
        text = (root / spec.name / "1" / "model.py").read_text()
        module, cls = spec.python_class.split(":")
        assert f"from {module} import {cls} as TritonPythonModel" in text and "MMW_PYTHONPATH" in text
    model_py = root / "postprocess" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + "print('edited')\n")
    with pytest.raises(ModelSpecError, match=r"postprocess/1/model\.py: missing or differs from its spec"):
        check_repository(config, root, cores=REFERENCE_CORES)
    assert write_repository(config, root, cores=REFERENCE_CORES) == [model_py]
    check_repository(config, root, cores=REFERENCE_CORES)


def test_the_stub_path_shim_is_written_once() -> None:
    """Only the model.py template (mmw/repository.py) reads MMW_PYTHONPATH; model.py files are its output."""
    sources = [p for p in project_sources() if not p.is_relative_to(ROOT / "tests") and not p.is_relative_to(REPO)
               and "os.environ.get(\"MMW_PYTHONPATH\"" in p.read_text()]
    assert [str(p.relative_to(ROOT)) for p in sources] == ["mmw/repository.py"]


def test_config_yaml_values_reach_the_configs(tmp_path: Path) -> None:
    config = build(Config, {"models": {"detector": {"score_threshold": 0.55, "track_min_score": 0.15},
                                       "labeller": {"top_k": 3}},
                            "serving": {"instances": 3, "max_batch_size": 16}})
    specs = {s.name: s for s in repository_specs(config)}
    post = to_model_config(specs["postprocess"])
    assert post.parameters["score_threshold"].string_value == "0.15"  # the server returns down to the tracker's
    assert to_model_config(specs["caption"]).parameters["min_score"].string_value == "0.55"  # the caption shows
    assert list(to_model_config(specs[ENSEMBLE_NAME]).output[5].dims) == [3]  # LABELS [top_k]
    assert to_model_config(specs["detector"]).instance_group[0].count == 3
    assert all(to_model_config(s).max_batch_size == 16 for s in specs.values())


def test_gpu_variant_keeps_the_ensemble_interface() -> None:
    config = load_config()
    cpu = {s.name: to_model_config(s) for s in repository_specs(config, "cpu")}
    for backend, platform in (("onnxruntime", "onnxruntime_onnx"), ("tensorrt", "tensorrt_plan")):
        gpu = {s.name: to_model_config(s) for s in repository_specs(config, "gpu", backend)}
        assert gpu[ENSEMBLE_NAME] == cpu[ENSEMBLE_NAME]
        assert gpu["detector"].platform == platform and gpu["detector"].instance_group[0].kind == 1  # KIND_GPU
        assert list(gpu["detector"].input) == list(cpu["detector"].input)
        assert parse_config(render_config(next(s for s in repository_specs(config, "gpu", backend)
                                               if s.name == "labeller"))) == gpu["labeller"]
    with pytest.raises(ModelSpecError, match="expected one of"):
        repository_specs(config, "tpu")


def test_ensemble_check_catches_wiring_mistakes() -> None:
    specs = {s.name: s for s in repository_specs(load_config())}
    ensemble = specs[ENSEMBLE_NAME]
    broken = ensemble.__class__(**{**ensemble.__dict__, "steps": (
        EnsembleStep("detector", (("images", "DETECTOR_INPUT"),), ()), *ensemble.steps)})
    with pytest.raises(ModelSpecError, match="used by detector before it is produced"):
        check_ensemble(broken, specs)
    with pytest.raises(ModelSpecError, match="dtype 'float64' not allowed"):
        TensorSpec("x", "float64", (1,))


@pytest.mark.parametrize(
    ("cores", "serving", "detector", "labeller", "preprocess", "postprocess"),
    [
        # OpenVINO (the default runtime): half the instances, twice the threads.
        (1, {}, (1, 1), (1, 1), (1, 1), (1, 1)),
        (2, {}, (1, 2), (1, 2), (1, 1), (1, 1)),
        (4, {}, (2, 2), (1, 2), (2, 1), (1, 1)),
        (8, {}, (2, 4), (1, 4), (4, 1), (2, 1)),
        (16, {}, (2, 8), (1, 8), (4, 1), (2, 1)),
        (2, {"instances": 3}, (3, 1), (3, 1), (3, 1), (3, 1)),
        (8, {"onnx_threads": 1}, (2, 1), (1, 1), (4, 1), (2, 1)),
        # onnxruntime: one single-threaded detector instance per core, up to 4.
        (1, {"cpu_runtime": "onnxruntime"}, (1, 1), (1, 1), (1, 1), (1, 1)),
        (2, {"cpu_runtime": "onnxruntime"}, (2, 1), (1, 1), (1, 1), (1, 1)),
        (4, {"cpu_runtime": "onnxruntime"}, (4, 1), (2, 1), (2, 1), (1, 1)),
        (8, {"cpu_runtime": "onnxruntime"}, (4, 2), (2, 1), (4, 1), (2, 1)),
        (16, {"cpu_runtime": "onnxruntime"}, (4, 4), (2, 1), (4, 1), (2, 1)),
    ],
)
def test_serving_plan_from_core_count(cores: int, serving: dict, detector: tuple, labeller: tuple,
                                      preprocess: tuple, postprocess: tuple) -> None:
    plan = serving_plan(build(Config, {"serving": serving}).serving, cores)
    assert plan["detector"] == StepResources(*detector)
    assert plan["labeller"] == StepResources(*labeller)
    assert plan["preprocess"] == StepResources(*preprocess)
    assert plan["postprocess"] == StepResources(*postprocess)
    assert plan["caption"].instances == (serving.get("instances", 1))
    specs = {s.name: to_model_config(s) for s in repository_specs(build(Config, {"serving": serving}), cores=cores)}
    assert specs["detector"].instance_group[0].count == detector[0]
    assert specs["detector"].parameters["threads"].string_value == str(detector[1])


def test_one_spec_drives_onnx_names_axes_and_tensorrt_profiles() -> None:
    """The network spec names the ONNX tensors, their batch axes and the TensorRT profile shapes."""
    assert DETECTOR.dynamic_axes() == {"images": {0: "batch"}, "box_encodings": {0: "batch"},
                                       "class_scores": {0: "batch"}}
    assert DETECTOR.trt_profile(8) == {"images": ((1, 300, 300, 3), (4, 300, 300, 3), (8, 300, 300, 3))}
    assert LABELLER.trt_profile(1)["images"][1] == (1, 224, 224, 3)
    cpu = {s.name: to_model_config(s) for s in repository_specs(load_config(), cores=REFERENCE_CORES)}
    assert [t.name for t in cpu["detector"].output] == [t.name for t in DETECTOR.outputs]
    assert list(cpu["labeller"].input[0].dims) == list(LABELLER.inputs[0].dims)
