"""Random-weight BLIP and GIT checkpoints built from their configs: for tests and the benchmark.

No download: the configs are written here, the tokenizer is a small WordPiece vocabulary written
to ``vocab.txt``, and ``preprocessor_config.json`` is the architecture's usual image processor.
``tiny`` models (2 layers, width 32, 32-pixel images) test exact decoding in seconds; ``base``
models have the real base-size dimensions (BLIP base, GIT base) for realistic timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

Size = Literal["tiny", "base"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
PAD, UNK, CLS, SEP, MASK, DEC = range(6)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_WORDS = ("a an the of on in with and near two three man woman dog cat car street table cup people red blue green "
          "white black small large sitting standing walking holding bowl kitchen room grass sky tree water road "
          "building window chair food plate bike horse bird boat train sign group close up view").split()


def _vocab(size: int) -> list[str]:
    words = list(SPECIAL) + list(_WORDS)
    words += [f"##{w[:3]}" for w in _WORDS if len(words) < size]
    words += [f"w{i}" for i in range(size - len(words))]
    return words[:size]


def _dims(size: Size) -> dict:
    if size == "tiny":
        return dict(vocab=64, hidden=32, layers=2, heads=4, ffn=64, image=32, patch=8, v_hidden=32, v_layers=2,
                    v_heads=4, v_ffn=64, init=0.5, positions=64)
    return dict(vocab=30524, hidden=768, layers=12, heads=12, ffn=3072, image=384, patch=16, v_hidden=768,
                v_layers=12, v_heads=12, v_ffn=3072, init=0.02, positions=512)


def build_tiny_captioner(architecture: Literal["blip", "git"], folder: Path, size: Size = "tiny",
                         seed: int = 0) -> Path:
    """Write a random-weight checkpoint (model, tokenizer, image processor) to ``folder``; return it."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        GitConfig,
        GitForCausalLM,
    )

    d = _dims(size)
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vision = dict(hidden_size=d["v_hidden"], num_hidden_layers=d["v_layers"], num_attention_heads=d["v_heads"],
                  intermediate_size=d["v_ffn"], image_size=d["image"], patch_size=d["patch"],
                  initializer_range=d["init"])
    text = dict(vocab_size=d["vocab"], hidden_size=d["hidden"], num_hidden_layers=d["layers"],
                num_attention_heads=d["heads"], intermediate_size=d["ffn"], max_position_embeddings=d["positions"],
                initializer_range=d["init"])
    if architecture == "blip":
        config = BlipConfig(text_config=dict(text, encoder_hidden_size=d["v_hidden"], bos_token_id=DEC,
                                             eos_token_id=SEP, sep_token_id=SEP, pad_token_id=PAD),
                            vision_config=vision, initializer_range=d["init"])
        model = BlipForConditionalGeneration(config)
        processor = {"image_processor_type": "BlipImageProcessor", "do_resize": True, "resample": 3,
                     "size": {"height": d["image"], "width": d["image"]}, "do_rescale": True,
                     "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
                     "do_convert_rgb": True}
    else:
        config = GitConfig(vision_config=vision, **text, bos_token_id=CLS, eos_token_id=SEP, pad_token_id=PAD)
        model = GitForCausalLM(config)
        processor = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "resample": 3,
                     "size": {"shortest_edge": d["image"]}, "do_center_crop": True,
                     "crop_size": {"height": d["image"], "width": d["image"]}, "do_rescale": True,
                     "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
                     "do_convert_rgb": True}
    model.eval().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(_vocab(d["vocab"])) + "\n", encoding="utf-8")
    vocab = {word: i for i, word in enumerate(_vocab(d["vocab"]))}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    if architecture == "blip":
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")
    return folder
