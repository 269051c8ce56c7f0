"""Image-to-text captioners (BLIP, GIT) split into ONNX-exportable PyTorch modules.

Each captioner becomes three networks with one interface, whatever the architecture:

* ``encoder``: ``pixel_values`` -> ``memory`` (what the text attends to) and the per-layer
  ``static_keys``/``static_values`` the text decoder reads at every step: BLIP's cross-attention
  keys/values of the image embeddings, GIT's self-attention keys/values of the image tokens
  (image tokens attend only to each other, so they never change while text is generated).
* ``decoder`` (with KV cache): ``input_ids`` [B, T] (new tokens only) + static and past keys/values
  -> ``logits`` of the last position + ``present_keys``/``present_values`` (past + new). Each new
  token costs one step, not a re-run of the prefix.
* ``decoder_no_cache``: ``input_ids`` [B, T] (the whole prefix) + ``memory`` -> last ``logits``;
  what ``generate(use_cache=False)`` does, kept for the equality test and the benchmark.

The modules call the Hugging Face sub-modules (linear layers, layer norms, feed-forward blocks) of
the loaded model and write out only the attention with explicit key/value tensors, so the math is
the checkpoint's own and the ONNX graphs have plain tensor inputs (no Cache objects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Architecture = Literal["blip", "git"]
ARCHITECTURES: tuple[str, ...] = ("blip", "git")


@dataclass(frozen=True)
class CaptionerShape:
    """What the exported graphs' shapes depend on."""

    architecture: Architecture
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    memory_size: int        # width of ``memory``
    image_size: int
    vocab_size: int
    max_positions: int


def captioner_architecture(model: nn.Module) -> Architecture:
    """'blip' or 'git' for a loaded transformers model; ValueError for anything else."""
    name = type(model).__name__
    if name == "BlipForConditionalGeneration":
        return "blip"
    if name == "GitForCausalLM":
        return "git"
    raise ValueError(f"captioner: expected BlipForConditionalGeneration or GitForCausalLM, got {name}")


def captioner_shape(model: nn.Module) -> CaptionerShape:
    """Layer/head/size facts of a BLIP or GIT model."""
    arch = captioner_architecture(model)
    if arch == "blip":
        text, vision = model.config.text_config, model.config.vision_config
        memory_size = vision.hidden_size
    else:
        text, vision = model.config, model.config.vision_config
        memory_size = text.hidden_size
    return CaptionerShape(
        architecture=arch, num_layers=text.num_hidden_layers, num_heads=text.num_attention_heads,
        head_dim=text.hidden_size // text.num_attention_heads, hidden_size=text.hidden_size,
        memory_size=memory_size, image_size=vision.image_size, vocab_size=text.vocab_size,
        max_positions=text.max_position_embeddings,
    )


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, T, H*D] -> [B, H, T, D]."""
    b, t, _ = x.shape
    return x.view(b, t, num_heads, -1).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] -> [B, T, H*D]."""
    b, _, t, _ = x.shape
    return x.transpose(1, 2).contiguous().view(b, t, -1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention written as the HF BERT-style layers do (additive mask)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def _causal_mask(new: int | torch.Tensor, past: int | torch.Tensor, prefix: int | torch.Tensor,
                 dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [new, prefix + past + new]: new token i sees the prefix, the past and new tokens <= i."""
    rows = torch.arange(new).unsqueeze(1) + past + prefix
    cols = torch.arange(prefix + past + new).unsqueeze(0)
    return torch.where(cols <= rows, torch.tensor(0.0, dtype=dtype), torch.tensor(torch.finfo(dtype).min, dtype=dtype))


class _Embeddings(nn.Module):
    """Word + position embeddings (positions continue after ``past`` tokens), then LayerNorm."""

    def __init__(self, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings

    def forward(self, input_ids: torch.Tensor, past: int | torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0) + past
        return e.LayerNorm(e.word_embeddings(input_ids) + e.position_embeddings(positions))


def _keys_values(sa: nn.Module, h: torch.Tensor, num_heads: int, past_k: torch.Tensor | None,
                 past_v: torch.Tensor | None, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention keys/values of ``h``, after layer ``i``'s past ones when there are any."""
    k, v = _heads(sa.key(h), num_heads), _heads(sa.value(h), num_heads)
    if past_k is not None:
        k, v = torch.cat([past_k[:, i], k], 2), torch.cat([past_v[:, i], v], 2)  # type: ignore[index]
    return k, v


class _CachedText(nn.Module):
    """A text transformer run over new tokens with explicit past keys/values (the shared decoding loop)."""

    layers: nn.ModuleList
    embed: _Embeddings
    num_heads: int

    def prefix_tokens(self, static_k: torch.Tensor) -> int | torch.Tensor:
        """Tokens before the text that the causal mask lets every text token see."""
        return 0

    def layer(self, i: int, layer: nn.Module, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor, static_k: torch.Tensor, static_v: torch.Tensor) -> torch.Tensor:
        """The rest of layer ``i`` once its queries and (past + new) keys/values are known."""
        raise NotImplementedError

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states of the last position [B, 1, D] -> logits [B, 1, V]."""
        raise NotImplementedError

    def run(self, input_ids: torch.Tensor, static_k: torch.Tensor, static_v: torch.Tensor,
            past_k: torch.Tensor | None, past_v: torch.Tensor | None) -> tuple[torch.Tensor, list, list]:
        past = 0 if past_k is None else past_k.shape[3]
        h = self.embed(input_ids, past)
        mask = _causal_mask(input_ids.shape[1], past, self.prefix_tokens(static_k), h.dtype)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            sa = layer.attention.self
            k, v = _keys_values(sa, h, self.num_heads, past_k, past_v, i)
            new_k.append(k)
            new_v.append(v)
            h = self.layer(i, layer, h, _heads(sa.query(h), self.num_heads), k, v, mask, static_k, static_v)
        return self.head(h[:, -1:, :])[:, 0, :], new_k, new_v


class _BlipText(_CachedText):
    """BLIP's text decoder with explicit keys/values (self-attention past, cross-attention static)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.decoder = model.text_decoder
        self.layers = model.text_decoder.bert.encoder.layer
        self.embed = _Embeddings(model.text_decoder.bert.embeddings)
        self.num_heads = model.config.text_config.num_attention_heads

    def static_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = [_heads(layer.crossattention.self.key(memory), self.num_heads) for layer in self.layers]
        values = [_heads(layer.crossattention.self.value(memory), self.num_heads) for layer in self.layers]
        return torch.stack(keys, 1), torch.stack(values, 1)

    def layer(self, i: int, layer: nn.Module, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor, static_k: torch.Tensor, static_v: torch.Tensor) -> torch.Tensor:
        a = layer.attention.output(_merge(_attend(q, k, v, mask)), h)
        c = _attend(_heads(layer.crossattention.self.query(a), self.num_heads), static_k[:, i], static_v[:, i], None)
        c = layer.crossattention.output(_merge(c), a)
        return layer.output(layer.intermediate(c), c)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder.cls(h)


class _GitText(_CachedText):
    """GIT's transformer with explicit keys/values: image tokens first (bidirectional), then text (causal)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.layers = model.git.encoder.layer
        self.embed = _Embeddings(model.git.embeddings)
        self.num_heads = model.config.num_attention_heads

    def memory(self, pixel_values: torch.Tensor) -> torch.Tensor:
        git = self.model.git
        return git.visual_projection(git.image_encoder(pixel_values).last_hidden_state)

    def static_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, keys, values = memory, [], []
        for i, layer in enumerate(self.layers):
            sa = layer.attention.self
            k, v = _keys_values(sa, h, self.num_heads, None, None, i)
            keys.append(k)
            values.append(v)
            a = layer.attention.output(_merge(_attend(_heads(sa.query(h), self.num_heads), k, v, None)), h)
            h = layer.output(layer.intermediate(a), a)
        return torch.stack(keys, 1), torch.stack(values, 1)

    def prefix_tokens(self, static_k: torch.Tensor) -> int | torch.Tensor:
        return static_k.shape[3]  # the image tokens

    def layer(self, i: int, layer: nn.Module, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor, static_k: torch.Tensor, static_v: torch.Tensor) -> torch.Tensor:
        keys, values = torch.cat([static_k[:, i], k], 2), torch.cat([static_v[:, i], v], 2)
        a = layer.attention.output(_merge(_attend(q, keys, values, mask)), h)
        return layer.output(layer.intermediate(a), a)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.output(h)


def _text(model: nn.Module) -> _BlipText | _GitText:
    return _BlipText(model) if captioner_architecture(model) == "blip" else _GitText(model)


class CaptionEncoder(nn.Module):
    """pixel_values [B, 3, S, S] -> memory [B, M, D], static_keys/static_values [B, L, H, M', Dh]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.text = _text(model)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(self.text, _BlipText):
            memory = self.model.vision_model(pixel_values).last_hidden_state
        else:
            memory = self.text.memory(pixel_values)
        keys, values = self.text.static_kv(memory)
        return memory, keys, values


class CaptionDecoder(nn.Module):
    """One decoding step with a KV cache: new ``input_ids`` + static and past keys/values -> logits, present."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text = _text(model)

    def forward(self, input_ids: torch.Tensor, static_keys: torch.Tensor, static_values: torch.Tensor,
                past_keys: torch.Tensor, past_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, k, v = self.text.run(input_ids, static_keys, static_values, past_keys, past_values)
        return logits, torch.stack(k, 1), torch.stack(v, 1)


class CaptionDecoderNoCache(nn.Module):
    """The whole prefix every step (no cache): ``input_ids`` [B, T] + ``memory`` -> logits of the last position."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text = _text(model)

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        static_k, static_v = self.text.static_kv(memory)
        logits, _, _ = self.text.run(input_ids, static_k, static_v, None, None)
        return logits
