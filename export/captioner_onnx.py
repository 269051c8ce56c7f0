"""BLIP / GIT checkpoint -> ONNX encoder, KV-cache decoder and no-cache decoder, each validated.

``build_captioner`` loads the checkpoint named by ``models.caption.model`` (a local folder or a
Hugging Face hub id), exports the three networks declared by ``mmw.specs.captioner_networks``,
checks every ONNX against PyTorch with the listed tolerance, and writes ``captioner.json`` (how to
decode) and ``tokenizer.json`` beside them. An unchanged checkpoint is not exported twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from export.captioner_torch import (
    CaptionDecoder,
    CaptionDecoderNoCache,
    CaptionEncoder,
    captioner_architecture,
    captioner_shape,
)
from mmw.captioner import (
    DECODER_FILE,
    DECODER_NO_CACHE_FILE,
    ENCODER_FILE,
    META_FILE,
    TOKENIZER_FILE,
)
from mmw.engine_provenance import sha256_file
from mmw.errors import CaptionerError, ExportValidationError
from mmw.onnx_runtime import create_session
from mmw.processing.caption_images import PixelSettings
from mmw.processing.captions import NEURAL_CAPTIONS_DOC, caption_source_name
from mmw.specs import NetworkSpec, captioner_networks

SETTING = "models.caption.model"
_CODE_FILES = ("export/captioner_onnx.py", "export/captioner_torch.py", "mmw/specs.py")
# generate() settings the numpy search does not implement; a checkpoint setting one is reported.
_UNSUPPORTED = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": None,
                "do_sample": False, "num_beam_groups": 1, "diversity_penalty": 0.0, "bad_words_ids": None,
                "forced_bos_token_id": None, "forced_eos_token_id": None, "suppress_tokens": None,
                "begin_suppress_tokens": None, "encoder_repetition_penalty": 1.0}


def load_captioner(source: str) -> tuple[torch.nn.Module, object, dict]:
    """(model, tokenizer, image processor dict) of a BLIP or GIT checkpoint folder or hub id.

    Raises CaptionerError naming ``models.caption.model`` when it cannot be loaded (no such folder,
    hub unreachable, not BLIP/GIT) instead of a stack trace.
    """
    from transformers import AutoConfig, AutoTokenizer, BlipForConditionalGeneration, GitForCausalLM
    from transformers.utils import cached_file

    where = f"{SETTING} = {source!r}"
    local = Path(source).expanduser()
    if (source.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").is_file():
        raise CaptionerError(f"{where}: no checkpoint there (expected a folder with config.json); "
                             f"see {NEURAL_CAPTIONS_DOC}")
    name = str(local) if local.exists() else source
    try:
        with _quiet():
            config = AutoConfig.from_pretrained(name)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaptionerError(
            f"{where}: cannot be loaded ({reason[:200]}); on a machine with internet run "
            f"`huggingface-cli download {source} --local-dir checkpoints/{source.split('/')[-1]}` and set {SETTING} "
            f"to that folder; see {NEURAL_CAPTIONS_DOC}") from None
    classes = {"blip": BlipForConditionalGeneration, "git": GitForCausalLM}
    if config.model_type not in classes:
        raise CaptionerError(f"{where}: model_type {config.model_type!r} is not a supported captioner; "
                             f"supported: {sorted(classes)}")
    try:
        with _quiet():
            model = classes[config.model_type].from_pretrained(name, attn_implementation="eager").eval()
            tokenizer = AutoTokenizer.from_pretrained(name)
            processor = json.loads(Path(cached_file(name, "preprocessor_config.json")).read_text(encoding="utf-8"))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaptionerError(f"{where}: checkpoint incomplete ({reason[:200]}); it needs the weights, "
                             f"the tokenizer and preprocessor_config.json") from None
    return model, tokenizer, processor


@contextlib.contextmanager
def _quiet():
    """transformers' warnings and progress output stay out of `make engines`' lines."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
            yield
    finally:
        logging.disable(logging.NOTSET)
        hf_logging.set_verbosity(level)


def decoding_facts(model: torch.nn.Module) -> dict:
    """Prompt, end/pad tokens and search defaults exactly as ``model.generate()`` uses them."""
    gen = model.generation_config
    if captioner_architecture(model) == "blip":
        text = model.config.text_config
        prompt, eos, pad = [text.bos_token_id], text.sep_token_id, text.pad_token_id
    else:
        prompt = [gen.bos_token_id if gen.bos_token_id is not None else model.config.bos_token_id]
        eos = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id
        pad = gen.pad_token_id if gen.pad_token_id is not None else model.config.pad_token_id
    if isinstance(eos, list):
        if len(eos) != 1:
            raise CaptionerError(f"{SETTING}: one end-of-sequence token expected, the checkpoint has {eos}")
        eos = eos[0]
    ignored = {k: getattr(gen, k, None) for k, default in _UNSUPPORTED.items()
               if getattr(gen, k, None) not in (default, None)}
    return {"prompt_ids": prompt, "eos_token_id": int(eos), "pad_token_id": int(pad if pad is not None else eos),
            "length_penalty": float(gen.length_penalty if gen.length_penalty is not None else 1.0),
            "early_stopping": gen.early_stopping if gen.early_stopping is not None else False,
            "ignored_generation_settings": {k: repr(v) for k, v in ignored.items()}}


def captioner_specs(model: torch.nn.Module, memory_tokens: int, source: str) -> tuple[NetworkSpec, ...]:
    s = captioner_shape(model)
    return captioner_networks(s.num_layers, s.num_heads, s.head_dim, memory_tokens, s.memory_size,
                              s.image_size, s.image_size, s.vocab_size, source)


def _export(module: torch.nn.Module, spec: NetworkSpec, args: tuple, path: Path) -> None:
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(tmp), input_names=[t.name for t in spec.inputs],
                          output_names=[t.name for t in spec.outputs], dynamic_axes=spec.dynamic_axes(),
                          opset_version=spec.opset, dynamo=False, do_constant_folding=True)
    tmp.replace(path)


def _validate(module: torch.nn.Module, spec: NetworkSpec, path: Path, cases: list[tuple]) -> float:
    """Worst |ONNX - PyTorch| over ``cases``; ExportValidationError beyond atol + rtol * |ref|."""
    session = create_session(path, threads=2)
    worst = 0.0
    for args in cases:
        with torch.no_grad():
            ref = module(*args)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = session.run(None, {t.name: a.numpy() for t, a in zip(spec.inputs, args, strict=True)})
        for t, r, g in zip(spec.outputs, ref, got, strict=True):
            r = r.numpy()
            if g.shape != r.shape:
                raise ExportValidationError(f"{spec.name}.{t.name}: ONNX shape {g.shape}, PyTorch {r.shape}")
            diff = np.abs(g - r)
            worst = max(worst, float(diff.max(initial=0.0)))
            bad = diff > spec.atol + spec.rtol * np.abs(r)
            if bad.any():
                raise ExportValidationError(
                    f"{spec.name}.{t.name}: ONNX differs from PyTorch at {int(bad.sum())} values; max |diff| "
                    f"{diff.max():.3g}, allowed atol {spec.atol} + rtol {spec.rtol} * |ref|")
    return worst


def _checkpoint_fingerprint(model_dir: Path | None, source: str, root: Path) -> str:
    h = hashlib.sha256(source.encode())
    if model_dir is not None:
        for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    h.update(torch.__version__.encode())
    for rel in _CODE_FILES:
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def _model_dir(source: str) -> Path | None:
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    try:
        from transformers.utils import cached_file

        return Path(cached_file(source, "config.json")).parent
    except Exception:
        return None


def build_captioner(source: str, out_dir: Path, root: Path, force: bool = False,
                    display_name: str | None = None) -> list[str]:
    """Export, validate and describe the captioner in ``out_dir``; returns what happened, one line each."""
    stamp_path = out_dir / "captioner.onnx.json"
    model_dir = _model_dir(source)
    fp = _checkpoint_fingerprint(model_dir, source, root) if model_dir is not None else ""
    if not force and fp and stamp_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(stamp_path.read_text(encoding="utf-8")).get("fingerprint") == fp:
                return [f"captioner {source}: up to date"]
    model, tokenizer, processor = load_captioner(source)
    if model_dir is None:  # first load from the hub: fingerprint what it downloaded
        model_dir = _model_dir(source)
        fp = _checkpoint_fingerprint(model_dir, source, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = captioner_shape(model)
    pixels = PixelSettings.from_processor_config(processor)
    encoder, decoder, no_cache = CaptionEncoder(model).eval(), CaptionDecoder(model).eval(), \
        CaptionDecoderNoCache(model).eval()
    torch.manual_seed(0)
    px = [torch.randn(n, 3, pixels.height, pixels.width) for n in (2, 1, 3)]
    with torch.no_grad():
        memory, keys, values = encoder(px[0])
    specs = captioner_specs(model, memory.shape[1], source)
    lines = []

    def ids(batch: int, tokens: int) -> torch.Tensor:
        return torch.randint(0, shape.vocab_size, (batch, tokens))

    def past(batch: int, tokens: int) -> torch.Tensor:
        return torch.randn(batch, shape.num_layers, shape.num_heads, tokens, shape.head_dim)

    jobs = [
        (encoder, specs[0], ENCODER_FILE, (px[0],), [(p,) for p in px]),
        (decoder, specs[1], DECODER_FILE, (ids(2, 1), keys, values, past(2, 2), past(2, 2)),
         [(ids(2, 1), keys, values, past(2, 0), past(2, 0)), (ids(2, 1), keys, values, past(2, 5), past(2, 5)),
          (ids(2, 3), keys, values, past(2, 2), past(2, 2))]),
        (no_cache, specs[2], DECODER_NO_CACHE_FILE, (ids(2, 3), memory),
         [(ids(2, 1), memory), (ids(2, 6), memory)]),
    ]
    worst = {}
    for module, spec, file, example, cases in jobs:
        _export(module, spec, example, out_dir / file)
        worst[spec.name] = _validate(module, spec, out_dir / file, cases)
        lines.append(f"captioner {spec.name}: {file} exported and validated "
                     f"(max |ONNX - PyTorch| {worst[spec.name]:.2g}; atol {spec.atol})")
    facts = decoding_facts(model)
    tokenizer.backend_tokenizer.save(str(out_dir / TOKENIZER_FILE))
    meta = {
        "name": display_name or caption_source_name(source),
        "source": source, "architecture": shape.architecture, **facts,
        "num_layers": shape.num_layers, "num_heads": shape.num_heads, "head_dim": shape.head_dim,
        "memory_tokens": int(memory.shape[1]), "vocab_size": shape.vocab_size, "pixels": asdict(pixels),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    stamp = {"source": source, "fingerprint": fp, "torch": torch.__version__, "max_abs_diff": worst,
             "onnx_sha256": {f: sha256_file(out_dir / f) for f in (ENCODER_FILE, DECODER_FILE, DECODER_NO_CACHE_FILE)}}
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    if facts["ignored_generation_settings"]:
        lines.append(f"captioner: the checkpoint's generation settings {facts['ignored_generation_settings']} are "
                     "not applied by the served search (greedy/beam with length_penalty and early_stopping only)")
    return lines
