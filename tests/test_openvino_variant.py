"""The openvino variant (Triton's own openvino backend, CPU only): generated to folders, parsed back, compared
with the cpu variant, and loaded the way the backend loads it.

What the backend accepts is taken from triton-inference-server/openvino_backend ``src/openvino.cc`` (main at
db19304; the same parsing since 24.x): ``ParseParameters`` and ``ParseParameterHelper`` for the parameter
names and values, ``ReadModel`` for ``<version>/model.xml``, ``ValidateInputs``/``ValidateOutputs`` for the
shapes, ``ov::set_batch(model, max_batch_size)`` and ``ENABLE_BATCH_PADDING`` for the batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmw.config import Config, build
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.errors import ModelSpecError
from mmw.network_runtimes import GATE_FILE
from mmw.repository import (
    check_openvino_models,
    check_repository,
    missing_openvino_models,
    openvino_gates,
    parse_config,
    repository_target,
    to_model_config,
    write_repository,
)
from mmw.specs import NETWORKS, REFERENCE_CORES, repository_specs
from tests.conftest import ROOT

KIND_CPU = 2  # ModelInstanceGroup.Kind.KIND_CPU

# --- what src/openvino.cc accepts ------------------------------------------------------------------------

_NUMBER = str.isdigit
#: ParseParameterHelper: the device parameters (values compared lower-cased) ...
_DEVICE_PARAMETERS = {
    "INFERENCE_NUM_THREADS": _NUMBER,
    "COMPILATION_NUM_THREADS": _NUMBER,
    "HINT_BF16": lambda v: v == "yes",
    "NUM_STREAMS": lambda v: v in ("auto", "numa") or v.isdigit(),
    "PERFORMANCE_HINT": lambda v: v in ("latency", "throughput", "cumulative_throughput"),
}
#: ... and ParseParameters: the model's switches (only "yes" turns one on) and strings.
_MODEL_PARAMETERS = {"SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS", "TARGET_DEVICE",
                     "CPU_EXTENSION_PATH"}


def _parsed(root: Path) -> dict:
    return {p.parent.name: parse_config(p.read_text()) for p in sorted(root.glob("*/config.pbtxt"))}


def _parameters(model) -> dict[str, str]:
    return {k: v.string_value for k, v in model.parameters.items()}


# --- fake CPU repositories: tiny IR pairs with the networks' interfaces, and gate records ---------------

def _tiny_ir(xml: Path, network: str, scale: float) -> None:
    """An IR with the network's input and output names and shapes: every output is ``scale`` x mean(images)."""
    import openvino as ov
    import openvino.opset13 as ops

    spec = NETWORKS[network]
    x = ops.parameter([-1, *spec.inputs[0].dims], np.float32, name=spec.inputs[0].name)
    mean = ops.reduce_mean(x, ops.constant(np.arange(1, 1 + len(spec.inputs[0].dims), dtype=np.int64)), False)
    results = []
    for t in spec.outputs:
        out = ops.multiply(ops.reshape(mean, ops.constant(np.array([-1] + [1] * len(t.dims), np.int64)), False),
                           ops.constant(np.full((1, *t.dims), scale, np.float32)))
        out.output(0).get_tensor().set_names({t.name})
        results.append(out)
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model(results, [x], network), str(xml), compress_to_fp16=False)


def _fake_ir(xml: Path, text: str) -> None:
    """A stand-in IR pair for copy tests (never loaded)."""
    xml.parent.mkdir(parents=True, exist_ok=True)
    xml.write_text(f"<net name='{text}'/>\n")
    xml.with_suffix(".bin").write_bytes(text.encode() * 3)


def _source(tmp_path: Path, gate: dict | None = None, int8: bool = True, real: bool = False) -> Path:
    """A CPU repository with each network's f32 IR (and int8 IR), and the gate record ``gate`` when given."""
    source = tmp_path / "source"
    for name in NETWORKS:
        folder = source / name / "1"
        if real:
            _tiny_ir(folder / "model.xml", name, 2.0)
            if int8:
                _tiny_ir(folder / "model.int8.xml", name, 3.0)
        else:
            _fake_ir(folder / "model.xml", f"{name}-f32")
            if int8:
                _fake_ir(folder / "model.int8.xml", f"{name}-int8")
        if gate is not None:
            (folder / GATE_FILE).write_text(json.dumps({"precisions": gate}))
    return source


# --- generated, parsed back, compared with the cpu variant ---------------------------------------------

CONFIGS = {
    "default": {},
    "batch 4, queue 2 ms": {"serving": {"max_batch_size": 4, "max_queue_delay_us": 2000}},
    "top-3 labels, no warmup": {"models": {"labeller": {"top_k": 3}}, "serving": {"warmup": False}},
    "onnxruntime python models": {"serving": {"cpu_runtime": "onnxruntime"}},
}


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_variant_written_parsed_back_and_like_the_cpu_variant(tmp_path: Path, overrides: dict) -> None:
    """Same models, ensembles, inputs, outputs and python models as the cpu variant; the networks on openvino."""
    config = build(Config, overrides)
    source = _source(tmp_path)
    write_repository(config, tmp_path / "cpu", "cpu", cores=REFERENCE_CORES)
    write_repository(config, tmp_path / "ov", "openvino", cores=REFERENCE_CORES, source=source)
    cpu, ov = _parsed(tmp_path / "cpu"), _parsed(tmp_path / "ov")
    assert set(ov) == set(cpu)
    for name in (ENSEMBLE_NAME, RAW_ENSEMBLE_NAME):
        assert ov[name] == cpu[name]  # same steps, tensor names, dtypes and dims: clients never change
    python = [name for name, model in ov.items() if model.backend == "python"]
    assert sorted(python) == sorted(n for n, m in cpu.items() if m.backend == "python" and n not in NETWORKS)
    for name in python:
        assert ov[name] == cpu[name]  # the python models exactly as the cpu variant's
        assert (tmp_path / "ov" / name / "1" / "model.py").read_bytes() == (
            tmp_path / "cpu" / name / "1" / "model.py").read_bytes()
    for name in NETWORKS:
        net, ref = ov[name], cpu[name]
        assert net.backend == "openvino" and not net.platform and not net.default_model_filename
        assert [g.kind for g in net.instance_group] == [KIND_CPU]
        assert net.instance_group[0].count == ref.instance_group[0].count
        assert list(net.input) == list(ref.input) and list(net.output) == list(ref.output)
        assert net.max_batch_size == ref.max_batch_size == config.serving.max_batch_size
        assert net.dynamic_batching == ref.dynamic_batching
        assert list(net.model_warmup) == list(ref.model_warmup)
        assert not (tmp_path / "ov" / name / "1" / "model.py").exists()
        assert (tmp_path / "ov" / name / "1" / "model.xml").read_text() == f"<net name='{name}-f32'/>\n"
    # every config parses back into exactly its spec
    specs = repository_specs(config, "openvino", cores=REFERENCE_CORES, gates=openvino_gates(source))
    assert sorted(s.name for s in specs) == sorted(ov)
    for spec in specs:
        assert ov[spec.name] == to_model_config(spec), spec.name
    assert write_repository(config, tmp_path / "ov", "openvino", cores=REFERENCE_CORES, source=source) == []


def test_neural_caption_specs_match_the_cpu_variant() -> None:
    """With a neural captioner too (no files written: that needs an exported checkpoint)."""
    config = build(Config, {"models": {"caption": {"model": "some/checkpoint"}}})
    cpu = {s.name: to_model_config(s) for s in repository_specs(config, "cpu", cores=8)}
    ov = {s.name: to_model_config(s) for s in repository_specs(config, "openvino", cores=8)}
    assert {n: m for n, m in ov.items() if n not in NETWORKS} == {n: m for n, m in cpu.items() if n not in NETWORKS}


@pytest.mark.parametrize(
    ("cores", "serving", "detector", "labeller"),
    [
        # (instances = instance_group count = NUM_STREAMS, INFERENCE_NUM_THREADS = instances x planned threads)
        (2, {}, (1, 2), (1, 2)),
        (8, {}, (2, 8), (1, 4)),
        (8, {"instances": 3, "onnx_threads": 2}, (3, 6), (3, 6)),
    ],
    ids=["2 cores", "8 cores", "8 cores, 3 instances x 2 threads"],
)
def test_parameters_follow_the_serving_plan(tmp_path: Path, cores: int, serving: dict, detector: tuple,
                                            labeller: tuple) -> None:
    config = build(Config, {"serving": serving})
    write_repository(config, tmp_path / "cpu", "cpu", cores=cores)
    write_repository(config, tmp_path / "ov", "openvino", cores=cores, source=_source(tmp_path))
    cpu, ov = _parsed(tmp_path / "cpu"), _parsed(tmp_path / "ov")
    for name, (instances, threads) in (("detector", detector), ("labeller", labeller)):
        assert ov[name].instance_group[0].count == instances == cpu[name].instance_group[0].count
        assert int(cpu[name].parameters["threads"].string_value) * instances == threads
        assert _parameters(ov[name]) == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": str(instances),
                                         "INFERENCE_NUM_THREADS": str(threads), "ENABLE_BATCH_PADDING": "YES"}
        assert f"{instances} instance(s) on as many streams" in (tmp_path / "ov" / name / "config.pbtxt").read_text()


def test_every_parameter_is_one_the_backend_parses_with_a_value_it_accepts() -> None:
    for precision in ("auto", "f32", "bf16", "int8"):
        config = build(Config, {"serving": {"cpu_precision": precision}})
        for cores in (1, 2, 8, 64):
            gates = {n: {"int8": {"passed": True}, "bf16": {"passed": True}} for n in NETWORKS}
            for spec in repository_specs(config, "openvino", cores=cores, gates=gates):
                if spec.backend != "openvino":
                    continue
                for key, value in spec.parameters:
                    if key in _DEVICE_PARAMETERS:
                        assert _DEVICE_PARAMETERS[key](value.lower()), (key, value)
                    else:
                        assert key in _MODEL_PARAMETERS, key
                        assert value.lower() == "yes", (key, value)  # the switches we use are all on


# --- precision: HINT_BF16 and which IR is served --------------------------------------------------------

@pytest.mark.parametrize(
    ("precision", "gate", "ir", "hint", "said"),
    [
        ("auto", None, "f32", False, "f32 IR, precision auto: OpenVINO's CPU plugin infers bf16 on CPUs with native"),
        ("f32", {"bf16": {"passed": True}}, "f32", False, "f32 asked for: OpenVINO's CPU plugin infers bf16"),
        ("bf16", None, "f32", True, "f32 IR with HINT_BF16 YES"),
        ("bf16", {"bf16": {"passed": True}}, "f32", True, "f32 IR with HINT_BF16 YES"),
        ("bf16", {"bf16": {"passed": False, "detail": "97% of boxes"}}, "f32", False,
         "bf16 asked for, but bf16 failed the fidelity gate (97% of boxes): no HINT_BF16"),
        ("int8", {"int8": {"passed": True}}, "int8", False, "int8 IR (NNCF, passed the fidelity gate)"),
        ("int8", {"int8": {"passed": False, "detail": "89% of boxes"}}, "f32", False,
         "int8 asked for, but int8 failed the fidelity gate (89% of boxes): serving the f32 IR"),
        ("int8", None, "f32", False,
         "int8 asked for, but int8 has no record of the fidelity gate of `make engines`: serving the f32 IR"),
    ],
    ids=["auto", "f32", "bf16-ungated", "bf16", "bf16-failed", "int8", "int8-failed", "int8-ungated"],
)
def test_precision_picks_the_hint_and_the_ir(tmp_path: Path, precision: str, gate: dict | None, ir: str,
                                            hint: bool, said: str) -> None:
    config = build(Config, {"serving": {"cpu_precision": precision}})
    source = _source(tmp_path, gate)
    write_repository(config, tmp_path / "ov", cores=REFERENCE_CORES, variant="openvino", source=source)
    for name in NETWORKS:
        text = (tmp_path / "ov" / name / "config.pbtxt").read_text()
        params = _parameters(parse_config(text))
        assert ("HINT_BF16" in params) == hint and params.get("HINT_BF16", "YES") == "YES"
        assert said in text.splitlines()[1]  # the description comment
        if precision in ("auto", "f32"):
            assert "this backend has no parameter that forces f32" in text
        served = source / name / "1" / ("model.int8.xml" if ir == "int8" else "model.xml")
        target = tmp_path / "ov" / name / "1"
        assert (target / "model.xml").read_bytes() == served.read_bytes()
        assert (target / "model.bin").read_bytes() == served.with_suffix(".bin").read_bytes()
        assert sorted(p.name for p in target.iterdir()) == ["model.bin", "model.xml"]


def test_switching_precision_recopies_the_ir(tmp_path: Path) -> None:
    source = _source(tmp_path, {"int8": {"passed": True}})
    root = tmp_path / "ov"
    f32 = build(Config, {"serving": {"cpu_precision": "f32"}})
    int8 = build(Config, {"serving": {"cpu_precision": "int8"}})
    write_repository(f32, root, "openvino", cores=REFERENCE_CORES, source=source)
    changed = write_repository(int8, root, "openvino", cores=REFERENCE_CORES, source=source)
    assert {root / n / "1" / "model.xml" for n in NETWORKS} <= set(changed)
    assert (root / "detector" / "1" / "model.bin").read_bytes() == b"detector-int8" * 3
    write_repository(f32, root, "openvino", cores=REFERENCE_CORES, source=source)
    assert (root / "detector" / "1" / "model.bin").read_bytes() == b"detector-f32" * 3


# --- without the IR: configs anyway, and what `make engines` must produce ------------------------------

def test_missing_ir_writes_the_configs_and_says_what_to_build(tmp_path: Path) -> None:
    config = build(Config, {"serving": {"cpu_precision": "int8"}})
    source = _source(tmp_path, {"int8": {"passed": True}})
    root = tmp_path / "ov"
    write_repository(config, root, "openvino", cores=REFERENCE_CORES, source=source)
    assert missing_openvino_models(root, source) == []
    check_openvino_models(root, source)
    (source / "labeller" / "1" / "model.int8.bin").unlink()  # the IR picked is gone: the stale copy goes too
    changed = write_repository(config, root, "openvino", cores=REFERENCE_CORES, source=source)
    assert set(changed) == {root / "labeller" / "1" / "model.xml", root / "labeller" / "1" / "model.bin"}
    lines = missing_openvino_models(root, source)
    assert lines == [f"labeller: model.xml and model.bin missing in {root / 'labeller' / '1'}: `make engines` saves "
                     f"the network's OpenVINO IR as {source / 'labeller' / '1' / 'model.xml'} + model.bin "
                     "(model.int8.xml + .bin for serving.cpu_precision: int8), then rerun `make repository-openvino`"]
    with pytest.raises(ModelSpecError, match=r"labeller: model\.xml and model\.bin missing"):
        check_openvino_models(root, source)
    empty = tmp_path / "empty"
    write_repository(Config(), tmp_path / "bare", "openvino", cores=REFERENCE_CORES, source=empty)
    assert len(missing_openvino_models(tmp_path / "bare", empty)) == len(NETWORKS)
    assert (tmp_path / "bare" / "detector" / "config.pbtxt").is_file()


# --- where it is written: defaults, the CLI, the Makefile, check_repository ----------------------------

def test_variant_and_root_defaults(tmp_path: Path) -> None:
    config = build(Config, {"engines": {"openvino_repository": str(tmp_path / "ov"),
                                        "gpu_repository": str(tmp_path / "gpu")}})
    assert repository_target(config, None, "openvino") == (tmp_path / "ov", "openvino")
    assert repository_target(config, tmp_path / "ov") == (tmp_path / "ov", "openvino")
    assert repository_target(config, tmp_path / "gpu") == (tmp_path / "gpu", "gpu")
    assert repository_target(config, None, "gpu") == (tmp_path / "gpu", "gpu")
    assert repository_target(config) == (config.path(config.server.model_repository), "cpu")
    assert repository_target(config, tmp_path / "other") == (tmp_path / "other", "cpu")
    with pytest.raises(ModelSpecError, match="expected one of"):
        repository_target(config, None, "npu")
    assert Config().engines.openvino_repository == "model_repository_openvino"
    assert "/model_repository_openvino/" in (ROOT / ".gitignore").read_text().splitlines()


def test_export_repository_cli_writes_the_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m export repository --variant openvino``: engines.openvino_repository, IR from the CPU repository."""
    import mmw.repository
    from export.__main__ import main

    source = _source(tmp_path)
    monkeypatch.setattr(mmw.repository, "CPU_REPOSITORY", source)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"engines": {"openvino_repository": str(tmp_path / "ov")}}))
    assert main(["--config", str(config_file), "repository", "--variant", "openvino", "--cores", "2"]) == 0
    out = capsys.readouterr()
    assert "repository files rewritten" in out.out and not out.err
    assert {n: m.backend for n, m in _parsed(tmp_path / "ov").items() if n in NETWORKS} == dict.fromkeys(
        NETWORKS, "openvino")
    (tmp_path / "ov" / "detector" / "1" / "model.xml").unlink()
    assert main(["--config", str(config_file), "repository", "--root", str(tmp_path / "ov"), "--cores", "2"]) == 0
    out = capsys.readouterr()  # the copy is restored: nothing missing
    assert out.out.strip() == "1 repository files rewritten" and not out.err
    monkeypatch.setattr(mmw.repository, "CPU_REPOSITORY", tmp_path / "nothing")
    assert main(["--config", str(config_file), "repository", "--variant", "openvino", "--cores", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[:2] for line in err] == [["export", " warning"]] * 2
    assert "detector: model.xml and model.bin missing" in err[0] and "`make engines` saves" in err[0]


def test_makefile_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "repository-openvino" in makefile.split(".PHONY:", 1)[1].split("\n\n", 1)[0]
    assert "repository-openvino: install\n\t$(PY) -m export repository --variant openvino\n" in makefile


def test_check_repository_still_checks_the_cpu_variant(tmp_path: Path) -> None:
    config = Config()
    write_repository(config, tmp_path / "cpu", "cpu", cores=REFERENCE_CORES)
    write_repository(config, tmp_path / "ov", "openvino", cores=REFERENCE_CORES, source=_source(tmp_path))
    check_repository(config, tmp_path / "cpu", cores=REFERENCE_CORES)
    with pytest.raises(ModelSpecError, match=r"detector/config\.pbtxt: differs from its spec"):
        check_repository(config, tmp_path / "ov", cores=REFERENCE_CORES)


# --- loaded the way the backend loads it (OpenVINO's Python API in place of its C++ one) ---------------

def _backend_property(key: str, value: str) -> tuple[str, object]:
    """ParseParameterHelper: one parameter -> the OpenVINO property it sets (raises on what it rejects)."""
    v = value.lower()
    assert _DEVICE_PARAMETERS[key](v), f"the backend rejects {key}={value}"
    if key in ("INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS"):
        return key, int(v)
    if key == "HINT_BF16":
        return "INFERENCE_PRECISION_HINT", "bf16"
    return key, int(v) if v.isdigit() else v.upper()


def _load_like_the_backend(model_dir: Path, cfg):
    """ModelState/ModelInstanceState of src/openvino.cc for one model: read, validate, batch, configure, compile."""
    import openvino as ov

    params = _parameters(cfg)
    core = ov.Core()
    model = core.read_model(str(model_dir / "1" / (cfg.default_model_filename or "model.xml")))
    types = {1: ov.Type.boolean, 8: ov.Type.i32, 9: ov.Type.i64, 11: ov.Type.f32}  # TYPE_BOOL/INT32/INT64/FP32
    ppp = ov.preprocess.PrePostProcessor(model)
    assert len(model.inputs) == len(cfg.input)
    for io in cfg.input:
        shape = next(p for p in model.inputs if io.name in p.get_names()).get_partial_shape()
        assert len(shape) == 1 + len(io.dims)  # CompareDimsSupported, batch axis first
        assert all(shape[i + 1].is_dynamic or shape[i + 1].get_length() == d for i, d in enumerate(io.dims))
        ppp.input(io.name).tensor().set_element_type(types[io.data_type]).set_layout(ov.Layout("N..."))
    model = ppp.build()
    ov.set_batch(model, cfg.max_batch_size)
    ppp = ov.preprocess.PrePostProcessor(model)
    for io in cfg.output:
        shape = next(p for p in model.outputs if io.name in p.get_names()).get_partial_shape()
        assert [d.get_length() for d in shape] == [cfg.max_batch_size, *io.dims]  # compare_exact
        ppp.output(io.name).tensor().set_element_type(types[io.data_type])
    model = ppp.build()
    for key in ("INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS", "PERFORMANCE_HINT"):
        if key in params:
            core.set_property("CPU", dict([_backend_property(key, params[key])]))
    auto_batching = cfg.max_batch_size != 0 and params.get("SKIP_OV_DYNAMIC_BATCHSIZE", "").lower() != "yes"
    return core.compile_model(model, "CPU", {"ALLOW_AUTO_BATCHING": auto_batching})


def _infer_padded(compiled, cfg, images: np.ndarray) -> list[np.ndarray]:
    """ProcessRequests with ENABLE_BATCH_PADDING: zero rows up to max_batch_size, the real rows' outputs back."""
    assert _parameters(cfg).get("ENABLE_BATCH_PADDING", "").lower() == "yes" or len(images) == cfg.max_batch_size
    padded = np.zeros((cfg.max_batch_size, *images.shape[1:]), np.float32)
    padded[: len(images)] = images
    request = compiled.create_infer_request()
    request.infer({cfg.input[0].name: padded})
    return [request.get_tensor(o.name).data[: len(images)].copy() for o in cfg.output]


@pytest.mark.parametrize("cores", [2, 8])
def test_generated_models_load_and_run_as_the_backend_runs_them(tmp_path: Path, cores: int) -> None:
    """Tiny IRs with the networks' interfaces: the configs' shapes, parameters and padding work in OpenVINO."""
    pytest.importorskip("openvino")
    config = build(Config, {"serving": {"cpu_precision": "int8"}})
    source = _source(tmp_path, {"int8": {"passed": True}}, real=True)
    root = tmp_path / "ov"
    write_repository(config, root, "openvino", cores=cores, source=source)
    parsed = _parsed(root)
    rng = np.random.default_rng(0)
    for name, spec in NETWORKS.items():
        cfg = parsed[name]
        compiled = _load_like_the_backend(root / name, cfg)
        params = _parameters(cfg)
        streams = int(params["NUM_STREAMS"])
        assert streams == cfg.instance_group[0].count
        threads = int(params["INFERENCE_NUM_THREADS"])
        if cores <= (os.cpu_count() or 1):  # planned for this host: as many streams as instances, the threads
            assert compiled.get_property("NUM_STREAMS") == streams
            assert compiled.get_property("INFERENCE_NUM_THREADS") == threads
        else:  # planned for a bigger host: OpenVINO caps streams and threads at the cores it finds
            assert 1 <= compiled.get_property("NUM_STREAMS") <= streams
            assert 1 <= compiled.get_property("INFERENCE_NUM_THREADS") <= threads
        assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
        images = rng.uniform(0, 255, (3, *spec.inputs[0].dims)).astype(np.float32)
        outputs = _infer_padded(compiled, cfg, images)
        expected = 3.0 * images.reshape(3, -1).mean(axis=1)  # the int8 stand-in (scale 3) is the one served
        for out, t in zip(outputs, spec.outputs, strict=True):
            assert out.shape == (3, *t.dims)
            np.testing.assert_allclose(out.reshape(3, -1), np.repeat(expected[:, None], out[0].size, 1), rtol=1e-3)


@pytest.mark.integration
@pytest.mark.parametrize("network", list(NETWORKS))
def test_real_ir_loads_as_the_backend_loads_it(tmp_path: Path, network: str) -> None:
    """The IR `make engines` saved in model_repository/: loaded and padded as the backend does, same outputs."""
    ov = pytest.importorskip("openvino")
    onnx = ROOT / "model_repository" / network / "1" / "model.onnx"
    xml = onnx.with_suffix(".xml")
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        pytest.skip(f"{xml} not built (run `make engines`)")
    source = tmp_path / "source" / network / "1"
    source.mkdir(parents=True)
    for file in (xml, xml.with_suffix(".bin")):  # the source is linked; the variant gets its own copy
        (source / file.name).symlink_to(file)
    config = build(Config, {"serving": {"max_batch_size": 4}})
    write_repository(config, tmp_path / "ov", "openvino", cores=REFERENCE_CORES, source=tmp_path / "source")
    cfg = _parsed(tmp_path / "ov")[network]
    compiled = _load_like_the_backend(tmp_path / "ov" / network, cfg)
    spec = NETWORKS[network]
    images = np.random.default_rng(1).uniform(0, 255, (2, *spec.inputs[0].dims)).astype(np.float32)
    reference = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = reference(images)
    precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    for out, t in zip(_infer_padded(compiled, cfg, images), spec.outputs, strict=True):
        assert out.shape == (2, *t.dims)
        if "float32" in precision or "f32" in precision:  # bf16 on a CPU with native bf16: the gate's business
            np.testing.assert_allclose(out, expected[t.name], atol=spec.atol, rtol=spec.rtol)
