"""TensorRT plans through Polygraphy.

Everywhere: the real Polygraphy loader chain built from the network specs (lazily: nothing is parsed, built or
written) and the arguments each loader holds (every input's profile shapes, precision flags, workspace, timing
cache, calibrator batches and cache); wrong arguments refused with one EngineError before any TensorRT work;
parity through Polygraphy's Comparator (on onnxruntime runners); the provenance and up-to-date steps; the
no-GPU skip line. On an NVIDIA GPU with ``pip install tensorrt`` (marked ``gpu``): real fp16, fp32 and int8
builds, ``run_plan``, fp32 plans equal to their ONNX within the spec's tolerance (Polygraphy's Comparator),
fp16 plans equal after the shared postprocessing within the listed fp16 tolerance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polygraphy
import pytest
from polygraphy.backend.common import SaveBytes
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

from export import tensorrt_engines
from export.tensorrt_engines import (
    build_plan_from_onnx,
    build_plans,
    compare_plan_with_onnx,
    no_tensorrt_reason,
    plan_is_current,
    record_plan,
    run_plan,
)
from export.trt.calibration import CalibratorFromBatches
from export.trt.loaders import (
    BuilderConfigFromSettings,
    check_onnx_inputs,
    plan_build_from_spec,
    profile_from_spec,
    profile_record,
)
from export.trt.parity import compare_runners
from mmw.config import Config, build
from mmw.contract import TensorSpec
from mmw.engine_provenance import GpuInfo, check_plan, current_environment, read_provenance, tensorrt_version
from mmw.errors import ConfigError, EngineError, ExportValidationError
from mmw.onnx_runtime import create_session
from mmw.processing.classification import top_k
from mmw.processing.detection import postprocess_detections
from mmw.processing.images import detector_input, labeller_input
from mmw.processing.nms import box_iou
from mmw.specs import DETECTOR, LABELLER, NetworkSpec, captioner_networks
from tests.conftest import PHOTOS, ROOT, photo

# fp16 tolerance of TensorRT vs ONNX (onnxruntime, fp32), after the shared postprocessing
MIN_IOU = 0.9  # every matched box
SCORE = 0.5  # detections compared: above this score ...
SCORE_MARGIN = 0.05  # ... by this margin (a box at 0.51 may fall under 0.5 in fp16)
# labeller: the top-1 scene label is the same. fp32 plans: every output within the spec's atol/rtol.

REASON = no_tensorrt_reason()
SKIP_REASON = f"needs an NVIDIA GPU and the tensorrt package (none on this machine: {REASON})"
gpu_only = pytest.mark.skipif(REASON is not None, reason=SKIP_REASON)
NO_TENSORRT = tensorrt_version()[0] is None
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
MAX_BATCH = Config().serving.max_batch_size
#: Polygraphy's CreateConfig precision flags each engines.precision must set, and no others.
FLAGS = {"fp32": {"fp16": False, "int8": False}, "fp16": {"fp16": True, "int8": False},
         "int8": {"fp16": True, "int8": True}}


def onnx_with_inputs(path: Path, inputs: dict[str, tuple[str, tuple[int | str, ...]]]) -> Path:
    """A small ONNX whose declared inputs are ``{name: (dtype, shape)}``; each passes through an Identity."""
    import onnx
    from onnx import helper

    types = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [f"{name}_out"]) for name in inputs], "interface",
        [helper.make_tensor_value_info(name, types[dtype], shape) for name, (dtype, shape) in inputs.items()],
        [helper.make_tensor_value_info(f"{name}_out", types[dtype], shape) for name, (dtype, shape) in inputs.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def spec_onnx(spec: NetworkSpec, path: Path) -> Path:
    """An ONNX with the spec's interface: its inputs, batch first and dynamic."""
    return onnx_with_inputs(path, {t.name: (t.dtype, ("batch", *t.dims)) for t in spec.inputs})


def test_no_gpu_means_one_skip_line(tmp_path: Path) -> None:
    if REASON is None:
        pytest.skip("this machine has an NVIDIA GPU and TensorRT: the plans are built (see the gpu tests)")
    config = build(Config, {"engines": {"gpu_repository": str(tmp_path / "gpu")}})
    lines = build_plans(config, ROOT / "model_repository")
    assert lines == [f"TensorRT plans: skipped ({REASON})"] and "\n" not in lines[0]
    assert not (tmp_path / "gpu").exists()


def test_skip_reason_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((), "nvidia-smi not found"))
    assert no_tensorrt_reason() == "no NVIDIA GPU: nvidia-smi not found"
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((GpuInfo("NVIDIA L4", "8.9"),), ""))
    monkeypatch.setattr(tensorrt_engines, "tensorrt_version", lambda: (None, "the tensorrt package is not installed"))
    assert no_tensorrt_reason() == "no TensorRT: the tensorrt package is not installed; pip install tensorrt"


# --- the Polygraphy chain, constructed (no TensorRT, no GPU) ---------------------------------------------------


@pytest.mark.parametrize("precision", ["fp16", "fp32", "int8"])
@pytest.mark.parametrize("spec", [DETECTOR, LABELLER], ids=lambda s: s.name)
def test_chain_from_the_spec_holds_every_setting_and_does_nothing_yet(
        spec: NetworkSpec, precision: str, tmp_path: Path) -> None:
    onnx = spec_onnx(spec, tmp_path / "model.onnx")
    settings = dataclasses.replace(Config().engines, precision=precision, workspace_mb=768)
    cache = tmp_path / "tensorrt" / "timing.cache"
    chain = plan_build_from_spec(spec, onnx, tmp_path / "repo" / "model.plan.tmp", settings, MAX_BATCH, cache)

    assert isinstance(chain.network, NetworkFromOnnxPath) and chain.network.path == str(onnx)
    create = chain.config.create_config
    assert isinstance(create, CreateConfig)
    [profile] = create.profiles
    declared = spec.trt_profile(MAX_BATCH)
    assert list(profile) == [t.name for t in spec.inputs] == list(declared)
    for name, (lo, opt, hi) in declared.items():
        assert tuple(profile[name]) == (lo, opt, hi) == ((1, *lo[1:]), (MAX_BATCH // 2, *lo[1:]), (MAX_BATCH, *lo[1:]))
    assert {"fp16": create.fp16, "int8": create.int8} == FLAGS[precision]
    assert not (create.tf32 or create.bf16 or create.fp8)  # fp32 is real fp32 (Polygraphy turns TF32 off)
    assert chain.config.workspace_bytes == 768 << 20
    assert create.memory_pool_limits is None  # a trt.MemoryPoolType key: filled in when the config is created
    assert create.timing_cache_path == str(cache) and chain.engine_bytes.timing_cache_path == str(cache)
    # composed: the save step saves what the build step builds from this network with this config
    assert isinstance(chain.engine_bytes, EngineBytesFromNetwork) and isinstance(chain.save, SaveBytes)
    assert chain.engine_bytes._network is chain.network and chain.engine_bytes._config is chain.config
    assert chain.save._bytes is chain.engine_bytes and chain.save._path == str(chain.path)

    calibrator = chain.config.calibrator
    if precision != "int8":
        assert calibrator is None and create.calibrator is None
    else:
        assert isinstance(calibrator, CalibratorFromBatches) and create.calibrator is None  # made on the call
        assert calibrator.cache == tmp_path / "repo" / f"{spec.name}.int8-calibration.cache"
        batches = list(calibrator.data_loader)
        opt = declared["images"][1]
        assert len(batches) == -(-len(PHOTOS) // opt[0])  # every photo, in full opt-shaped batches
        for batch in batches:
            assert list(batch) == ["images"] and batch["images"].dtype == np.float32
            assert batch["images"].shape == opt  # Polygraphy checks calibration data against the opt shapes
        prepare = detector_input if spec is DETECTOR else labeller_input
        first, last = prepare(photo(PHOTOS[0])), prepare(photo(PHOTOS[-1]))
        assert np.array_equal(batches[0]["images"][0], first) and np.array_equal(batches[-1]["images"][0], last)
        assert np.array_equal(batches[-1]["images"][1], first)  # the last batch wraps around
        assert 0 <= first.min() and first.max() <= 256  # pixel values (bicubic may overshoot a little)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # nothing parsed, built or written yet


def test_the_shipped_onnx_fit_their_specs_profiles(engines: dict[str, Path]) -> None:
    for spec in (DETECTOR, LABELLER):
        check_onnx_inputs(spec, engines[spec.name], profile_from_spec(spec, MAX_BATCH))


@pytest.mark.skipif(not NO_TENSORRT, reason="tensorrt is installed here: calling the chain builds for real")
def test_calling_the_chain_is_where_tensorrt_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((H100,), ""))
    onnx = spec_onnx(LABELLER, tmp_path / "model.onnx")
    plan = tmp_path / "repo" / "labeller" / "1" / "model.plan"
    with pytest.raises(EngineError, match=r"^labeller: TensorRT could not build a plan from .*model\.onnx: Module: "
                                          r"'tensorrt' is required but could not be imported.*; pip install tensorrt$"):
        build_plan_from_onnx(LABELLER, onnx, plan, Config().engines, MAX_BATCH, tmp_path / "cache" / "timing.cache")
    assert not plan.exists() and not plan.with_name("model.plan.tmp").exists() and not plan.with_name(
        "model.plan.json").exists()
    with pytest.raises(EngineError, match=r"model\.plan: TensorRT cannot run it: .*; pip install tensorrt"):
        plan.parent.mkdir(parents=True, exist_ok=True)
        plan.write_bytes(b"not a plan")
        run_plan(plan, {"images": np.zeros((1, 224, 224, 3), np.float32)})
    with pytest.raises(EngineError, match=r"^labeller: running labeller-tensorrt and labeller-onnxruntime failed: "
                                          r"Module: 'tensorrt'"):
        compare_plan_with_onnx(LABELLER, plan, onnx, [{"images": np.zeros((1, 224, 224, 3), np.float32)}])


# --- wrong arguments: refused before any TensorRT or GPU work ---------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"pixels": ("float32", ("batch", 224, 224, 3))},
         r"^labeller: ONNX .*model\.onnx has inputs \['pixels'\], the spec declares \['images'\] and the profile "
         r"shapes \['images'\]; re-export with `make engines`$"),
        ({"images": ("float32", ("batch", 224, 224))},
         r"^labeller: profile shape \[1, 224, 224, 3\] for 'images' has rank 4, the ONNX input \['batch', 224, 224\] "
         r"has rank 3$"),
        ({"images": ("float32", ("batch", 300, 300, 3))},
         r"^labeller: profile shape \[1, 224, 224, 3\] for 'images' does not fit the ONNX input "
         r"\['batch', 300, 300, 3\] \(axis 1 is fixed at 300\)$"),
        ({"images": ("int64", ("batch", 224, 224, 3))}, r"^labeller: ONNX input 'images' is int64, the spec declares "
                                                        r"float32$"),
        ({"images": ("float32", ("batch", 224, 224, 3)), "scale": ("float32", ("batch", 1))},
         r"has inputs \['images', 'scale'\], the spec declares \['images'\]"),
    ],
    ids=["input-name", "rank", "fixed-dim", "dtype", "extra-input"],
)
def test_onnx_that_does_not_fit_the_spec_is_refused(inputs: dict, message: str, tmp_path: Path) -> None:
    onnx = onnx_with_inputs(tmp_path / "model.onnx", inputs)
    with pytest.raises(EngineError, match=message):
        plan_build_from_spec(LABELLER, onnx, tmp_path / "model.plan", Config().engines, MAX_BATCH,
                             tmp_path / "timing.cache")


def test_wrong_settings_are_refused(tmp_path: Path) -> None:
    onnx = spec_onnx(LABELLER, tmp_path / "model.onnx")
    with pytest.raises(ConfigError, match=r"^engines\.precision: expected one of 'fp16', 'fp32', 'int8', got 'int4'"):
        build(Config, {"engines": {"precision": "int4"}})  # config.yaml is refused first ...
    profile = profile_from_spec(LABELLER, MAX_BATCH)
    with pytest.raises(EngineError, match=r"^engines\.precision: expected one of fp16, fp32, int8, got 'int4'$"):
        BuilderConfigFromSettings(profile, "int4", 1 << 30, tmp_path / "timing.cache")  # ... and the chain too
    calibrator = CalibratorFromBatches([], tmp_path / "int8.cache")
    with pytest.raises(EngineError, match=r"a calibrator is needed for int8 and only for int8, got one"):
        BuilderConfigFromSettings(profile, "fp16", 1 << 30, tmp_path / "timing.cache", calibrator)
    with pytest.raises(EngineError, match=r"a calibrator is needed for int8 and only for int8, got none"):
        BuilderConfigFromSettings(profile, "int8", 1 << 30, tmp_path / "timing.cache")
    with pytest.raises(EngineError, match=r"engines\.workspace_mb: expected at least 1 MiB"):
        BuilderConfigFromSettings(profile, "fp32", 4096, tmp_path / "timing.cache")
    backwards = Profile().add("images", (4, 224, 224, 3), (1, 224, 224, 3), (8, 224, 224, 3))
    with pytest.raises(EngineError, match=r"expected 1 <= min <= opt <= max on every axis, got min \[4, 224, 224, 3\]"):
        check_onnx_inputs(LABELLER, onnx, backwards)
    decoder = captioner_networks(2, 2, 4, 3, 8, 32, 32, 50)[1]
    with pytest.raises(EngineError, match=r"^caption_decoder: inputs \['input_ids', 'past_keys', 'past_values'\] have "
                                          r"variable dims besides the batch"):
        profile_from_spec(decoder, MAX_BATCH)
    with pytest.raises(EngineError, match=r"^labeller: ONNX .*absent\.onnx not found; `make engines` exports it first"):
        build_plan_from_onnx(LABELLER, tmp_path / "absent.onnx", tmp_path / "model.plan", Config().engines, MAX_BATCH,
                             tmp_path / "timing.cache")
    with pytest.raises(EngineError, match=r"absent\.plan: no such plan; build it with `make engines`"):
        run_plan(tmp_path / "absent.plan", {"images": np.zeros((1, 224, 224, 3), np.float32)})


# --- parity through Polygraphy's Comparator ---------------------------------------------------------------------

TINY = NetworkSpec("tiny", inputs=(TensorSpec("images", "float32", (4,)),),
                   outputs=(TensorSpec("logits", "float32", (4,)),), atol=1e-3, rtol=1e-3)


def offset_onnx(path: Path, offset: float) -> Path:
    """``logits = images + offset``: a network whose difference from the identity is known exactly."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "offset"], ["logits"])], "offset",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("offset", onnx.TensorProto.FLOAT, [1], [offset])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_parity_through_polygraphy_uses_the_spec_tolerance_and_lists_every_failure(tmp_path: Path) -> None:
    def runner(offset: float, name: str) -> OnnxrtRunner:
        return OnnxrtRunner(SessionFromOnnx(str(offset_onnx(tmp_path / f"{name}.onnx", offset))), name=name)

    rng = np.random.default_rng(0)
    feeds = [{"images": rng.uniform(1, 2, (2, 4)).astype(np.float32)} for _ in range(3)]
    [near] = compare_runners(TINY, runner(5e-4, "near"), runner(0.0, "reference"), feeds)
    assert near.name == "logits" and near.passed and 4e-4 < near.max_absdiff < 6e-4 and near.atol == TINY.atol
    with pytest.raises(ExportValidationError, match=r"^tiny: far differs from reference beyond the tolerance on 3 "
                                                    r"feed\(s\): logits: max abs diff 0\.05 \(atol 0\.001\), max rel "
                                                    r"diff 0\.0[2-5]\d* \(rtol 0\.001\)$"):
        compare_runners(TINY, runner(0.05, "far"), runner(0.0, "reference"), feeds)
    [loose] = compare_runners(TINY, runner(0.05, "far"), runner(0.0, "reference"), feeds, atol=0.1)  # caller's wins
    assert loose.passed and loose.atol == 0.1 and loose.rtol == TINY.rtol
    renamed = dataclasses.replace(TINY, outputs=(TensorSpec("scores", "float32", (4,)),))
    with pytest.raises(ExportValidationError, match=r"^tiny: near gives outputs \['logits'\], the spec declares "
                                                    r"\['scores'\]$"):
        compare_runners(renamed, runner(5e-4, "near"), runner(0.0, "reference"), feeds)


# --- our steps around the chain: provenance and the up-to-date check ----------------------------------------------


def test_record_and_up_to_date_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((H100,), ""))
    monkeypatch.setattr(tensorrt_engines, "tensorrt_version", lambda: ("10.5.0.18", ""))
    onnx = spec_onnx(LABELLER, tmp_path / "model.onnx")
    plan = tmp_path / "gpu" / "labeller" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan bytes as TensorRT wrote them")
    settings = Config().engines
    profile = profile_record(profile_from_spec(LABELLER, MAX_BATCH))
    record = record_plan(LABELLER, onnx, plan, settings, profile, 12.34)
    assert read_provenance(plan) == record
    assert (record.gpu_name, record.compute_capability, record.tensorrt_version) == (H100.name, "9.0", "10.5.0.18")
    assert record.polygraphy_version == polygraphy.__version__ and record.build_s == 12.3
    assert record.profile == {"images": [[1, 224, 224, 3], [4, 224, 224, 3], [8, 224, 224, 3]]}
    assert plan_is_current(plan, onnx, settings, profile)
    assert build_plan_from_onnx(LABELLER, onnx, plan, settings, MAX_BATCH, tmp_path / "timing.cache") == "up to date"

    assert not plan_is_current(plan, onnx, dataclasses.replace(settings, workspace_mb=2048), profile)
    assert not plan_is_current(plan, onnx, dataclasses.replace(settings, precision="fp32"), profile)
    assert not plan_is_current(plan, onnx, settings, profile_record(profile_from_spec(LABELLER, 16)))
    monkeypatch.setattr(tensorrt_engines.polygraphy, "__version__", "0.49.0")
    assert not plan_is_current(plan, onnx, settings, profile)  # another Polygraphy configures builds differently
    monkeypatch.undo()
    monkeypatch.setattr(tensorrt_engines, "query_gpus", lambda: ((GpuInfo("NVIDIA L4", "8.9"),), ""))
    monkeypatch.setattr(tensorrt_engines, "tensorrt_version", lambda: ("10.5.0.18", ""))
    assert not plan_is_current(plan, onnx, settings, profile)


# --- on an NVIDIA GPU with TensorRT ------------------------------------------------------------------------------


def _build(root: Path, engines: dict[str, Path], precision: str) -> dict[str, Path]:
    if REASON is not None:
        pytest.skip(SKIP_REASON)
    config = Config()
    settings = dataclasses.replace(config.engines, precision=precision)
    out = {}
    for spec in (DETECTOR, LABELLER):
        plan = root / spec.name / "1" / "model.plan"
        outcome = build_plan_from_onnx(spec, engines[spec.name], plan, settings, config.serving.max_batch_size,
                                       root / "timing.cache")
        assert outcome.startswith("built in ") and f"({precision}, TensorRT " in outcome, outcome
        out[spec.name] = plan
    return out


@pytest.fixture(scope="module")
def plans(engines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plans built from the shipped ONNX with the default settings (fp16), timing cache in tmp."""
    return _build(tmp_path_factory.mktemp("plans"), engines, "fp16")


@pytest.fixture(scope="module")
def fp32_plans(engines: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _build(tmp_path_factory.mktemp("fp32_plans"), engines, "fp32")


@pytest.mark.gpu
@gpu_only
def test_plans_carry_provenance_and_rebuild_is_a_no_op(plans: dict[str, Path], engines: dict[str, Path]) -> None:
    env = current_environment()
    config = Config()
    for name, plan in plans.items():
        record = check_plan(plan, env)  # this machine, this TensorRT, the ONNX on disk
        assert record.precision == "fp16" and record.workspace_mb == config.engines.workspace_mb
        assert record.profile == {"images": [list(s) for s in
                                             (DETECTOR if name == "detector" else LABELLER).trt_profile(8)["images"]]}
        assert read_provenance(plan).tensorrt_version == env.tensorrt_version
        assert record.polygraphy_version == polygraphy.__version__
    assert (plans["detector"].parent.parent.parent / "timing.cache").stat().st_size > 0
    before = plans["labeller"].stat().st_mtime_ns
    again = build_plan_from_onnx(LABELLER, engines["labeller"], plans["labeller"], config.engines, 8,
                                 plans["labeller"].parent.parent.parent / "timing.cache")
    assert again == "up to date" and plans["labeller"].stat().st_mtime_ns == before


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("name", PHOTOS)
def test_detector_plan_matches_onnx(name: str, plans: dict[str, Path], engines: dict[str, Path]) -> None:
    """Same classes and IoU >= 0.9 for every box clearly above the score threshold, both ways."""
    rgb = photo(name)
    x = detector_input(rgb)[None]
    onnx = create_session(engines["detector"]).run(None, {"images": x})
    trt = run_plan(plans["detector"], {"images": x})
    ref = postprocess_detections(onnx[0][0], onnx[1][0], rgb.shape[:2], SCORE, 0.6, 100)
    got = postprocess_detections(trt["box_encodings"][0], trt["class_scores"][0], rgb.shape[:2], SCORE, 0.6, 100)
    for a, b in ((ref, got), (got, ref)):
        for i in np.flatnonzero(a.scores >= SCORE + SCORE_MARGIN):
            same_class = b.class_ids == a.class_ids[i]
            assert same_class.any(), (name, a.class_ids[i])
            assert box_iou(a.boxes[i : i + 1], b.boxes[same_class]).max() >= MIN_IOU


@pytest.mark.gpu
@gpu_only
def test_labeller_plan_top1_equals_onnx(plans: dict[str, Path], engines: dict[str, Path]) -> None:
    x = np.stack([labeller_input(photo(n)) for n in PHOTOS])
    onnx = create_session(engines["labeller"]).run(None, {"images": x})[0]
    trt = run_plan(plans["labeller"], {"images": x})["logits"]
    assert trt.shape == (len(PHOTOS), 1000)
    assert top_k(trt, 1)[0][:, 0].tolist() == top_k(onnx, 1)[0][:, 0].tolist()


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("spec", [DETECTOR, LABELLER], ids=lambda s: s.name)
def test_fp32_plan_equals_onnx_within_the_spec_tolerance(spec: NetworkSpec, fp32_plans: dict[str, Path],
                                                         engines: dict[str, Path]) -> None:
    """Polygraphy's Comparator: TrtRunner vs onnxruntime on the photos (batch 5 and 1), element-wise atol/rtol."""
    prepare = detector_input if spec is DETECTOR else labeller_input
    x = np.stack([prepare(photo(n)) for n in PHOTOS])
    report = compare_plan_with_onnx(spec, fp32_plans[spec.name], engines[spec.name], [{"images": x},
                                                                                      {"images": x[:1]}])
    assert sorted(r.name for r in report) == sorted(t.name for t in spec.outputs)
    assert all(r.passed and (r.atol, r.rtol) == (spec.atol, spec.rtol) for r in report), report


@pytest.mark.gpu
@gpu_only
def test_int8_plan_calibrates_on_the_photos(engines: dict[str, Path], tmp_path: Path) -> None:
    """int8 with Polygraphy's Calibrator over the shared preprocessing; the scale table is kept for the next build."""
    plan = tmp_path / "labeller" / "1" / "model.plan"
    settings = dataclasses.replace(Config().engines, precision="int8")
    outcome = build_plan_from_onnx(LABELLER, engines["labeller"], plan, settings, MAX_BATCH, tmp_path / "timing.cache")
    assert outcome.startswith("built in ") and "(int8, TensorRT " in outcome, outcome
    cache = plan.with_name("labeller.int8-calibration.cache")
    assert cache.stat().st_size > 0 and read_provenance(plan).precision == "int8"
    logits = run_plan(plan, {"images": np.stack([labeller_input(photo(n)) for n in PHOTOS])})["logits"]
    assert logits.shape == (len(PHOTOS), 1000) and np.isfinite(logits).all()
    again = build_plan_from_onnx(LABELLER, engines["labeller"], plan, settings, MAX_BATCH, tmp_path / "timing.cache",
                                 force=True)  # reads the cached table instead of calibrating
    assert again.startswith("built in ") and cache.stat().st_size > 0

