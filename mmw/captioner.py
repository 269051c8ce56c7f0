"""A neural captioner exported by ``make engines``, run with onnxruntime: encode, search, detokenize.

The folder (``model_repository/captioner/1``) holds ``captioner.json`` (what was exported and how
to decode), ``encoder.onnx``, ``decoder.onnx`` (KV cache), ``decoder_no_cache.onnx`` and
``tokenizer.json``. The Triton python model, the in-process benchmark and the tests all use this
class, so what is served is exactly what is measured and tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmw.errors import CaptionerError
from mmw.network_runtimes import NetworkRunner, PrecisionChoice, open_network, served_precision
from mmw.processing.caption_decoding import SearchSettings, search
from mmw.processing.caption_images import PixelSettings

META_FILE = "captioner.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
DECODER_NO_CACHE_FILE = "decoder_no_cache.onnx"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class CaptionerMeta:
    """What ``captioner.json`` records about an exported captioner."""

    name: str
    architecture: str
    prompt_ids: tuple[int, ...]
    eos_token_id: int
    pad_token_id: int
    length_penalty: float
    early_stopping: bool | str
    num_layers: int
    num_heads: int
    head_dim: int
    pixels: PixelSettings

    @classmethod
    def read(cls, folder: Path) -> CaptionerMeta:
        path = folder / META_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(name=d["name"], architecture=d["architecture"], prompt_ids=tuple(d["prompt_ids"]),
                       eos_token_id=int(d["eos_token_id"]), pad_token_id=int(d["pad_token_id"]),
                       length_penalty=float(d["length_penalty"]), early_stopping=d["early_stopping"],
                       num_layers=int(d["num_layers"]), num_heads=int(d["num_heads"]), head_dim=int(d["head_dim"]),
                       pixels=PixelSettings(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in d["pixels"].items()}))
        except FileNotFoundError:
            raise CaptionerError(f"{path}: not found; run `make engines` with models.caption.model set") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CaptionerError(f"{path}: unreadable ({exc!r}); rerun `make engines`") from None


class _CachedSession:
    """Decoder with a KV cache: feeds only the new tokens, keeps past keys/values per row."""

    def __init__(self, decoder, static_keys: np.ndarray, static_values: np.ndarray, meta: CaptionerMeta) -> None:
        self.decoder, self.static_keys, self.static_values = decoder, static_keys, static_values
        empty = (len(static_keys), meta.num_layers, meta.num_heads, 0, meta.head_dim)
        self.past_keys = np.zeros(empty, dtype=np.float32)
        self.past_values = np.zeros(empty, dtype=np.float32)

    def step(self, sequences: np.ndarray, new_tokens: int) -> np.ndarray:
        logits, self.past_keys, self.past_values = self.decoder.run(None, {
            "input_ids": np.ascontiguousarray(sequences[:, -new_tokens:]), "static_keys": self.static_keys,
            "static_values": self.static_values, "past_keys": self.past_keys, "past_values": self.past_values,
        })
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        # Beams only ever move within their own image, whose static keys/values they share.
        self.past_keys, self.past_values = self.past_keys[rows], self.past_values[rows]


class _UncachedSession:
    """Decoder without a cache: the whole prefix every step."""

    def __init__(self, decoder, memory: np.ndarray) -> None:
        self.decoder, self.memory = decoder, memory

    def step(self, sequences: np.ndarray, new_tokens: int) -> np.ndarray:
        (logits,) = self.decoder.run(None, {"input_ids": sequences, "memory": self.memory})
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        pass  # nothing cached; beams share their image's memory


class OnnxCaptioner:
    """Captions pixel values with the exported encoder and decoder, on OpenVINO or onnxruntime.

    The three networks share one precision (:func:`mmw.network_runtimes.served_precision` of the folder):
    the fidelity gate of ``make engines`` compares the tokens of the whole captioner.
    """

    def __init__(self, folder: str | Path, threads: int = 1, encoder_batch: int = 8, runtime: str = "onnxruntime",
                 precision: str = "f32", choice: PrecisionChoice | None = None) -> None:
        """``choice`` skips the gate record (what the gate itself uses)."""
        self.folder = Path(folder)
        self.meta = CaptionerMeta.read(self.folder)
        self.threads, self.runtime, self.encoder_batch = threads, runtime, max(1, encoder_batch)
        if choice is None:
            choice = (served_precision(self.folder, precision, quantizable=False) if runtime == "openvino"
                      else PrecisionChoice("f32"))
        self.choice = choice
        self.note = self.choice.note
        self.encoder = self._open(ENCODER_FILE)
        self.decoder = self._open(DECODER_FILE)
        self.description = f"captioner: {self.encoder.description}"
        self._decoder_no_cache = None
        self._tokenizer = None

    def _open(self, file: str) -> NetworkRunner:
        runner, _ = open_network(self.folder / file, self.runtime, threads=self.threads, choice=self.choice)
        return runner

    @property
    def decoder_no_cache(self):
        if self._decoder_no_cache is None:
            self._decoder_no_cache = self._open(DECODER_NO_CACHE_FILE)
        return self._decoder_no_cache

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """pixel values [N, 3, h, w] -> memory, static keys, static values (in chunks of ``encoder_batch``)."""
        parts = [self.encoder.run(None, {"pixel_values": pixels[i:i + self.encoder_batch]})
                 for i in range(0, len(pixels), self.encoder_batch)]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]

    def settings(self, num_beams: int, max_new_tokens: int) -> SearchSettings:
        """Search settings: the request's beams and length, the checkpoint's length penalty and early stopping."""
        return SearchSettings(max_new_tokens=max_new_tokens, num_beams=num_beams,
                              length_penalty=self.meta.length_penalty, early_stopping=self.meta.early_stopping)

    def generate(self, pixels: np.ndarray, settings: SearchSettings, use_cache: bool = True) -> list[list[int]]:
        """Token ids per image (after the prompt, up to and including the end-of-sequence token)."""
        if len(pixels) == 0:
            return []
        memory, keys, values = self.encode(pixels)
        return self.generate_from(memory, keys, values, settings, use_cache)

    def generate_from(self, memory: np.ndarray, keys: np.ndarray, values: np.ndarray, settings: SearchSettings,
                      use_cache: bool = True) -> list[list[int]]:
        """Search from encoder outputs (rows repeated per beam here)."""
        k = settings.num_beams
        if use_cache:
            session = _CachedSession(self.decoder, np.repeat(keys, k, 0), np.repeat(values, k, 0), self.meta)
        else:
            session = _UncachedSession(self.decoder_no_cache, np.repeat(memory, k, 0))
        prompt = np.tile(np.asarray(self.meta.prompt_ids, dtype=np.int64), (len(memory), 1))
        return search(session, prompt, settings, self.meta.eos_token_id, self.meta.pad_token_id)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        return self._tokenizer

    def text(self, tokens: list[int]) -> str:
        """Token ids -> caption text (special tokens dropped)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()


@dataclass(frozen=True)
class DenseSettings:
    """Which detections get a caption of their own."""

    top_k: int = 3
    min_score: float = 0.5
    min_size_px: float = 16.0


def _pad(rows: list[list[int]], width: int | None = None) -> np.ndarray:
    width = max([len(r) for r in rows] + [width or 1])
    out = np.full((len(rows), width), -1, np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def neural_captions(captioner: OnnxCaptioner, frames: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    num_detections: np.ndarray, image_size: np.ndarray, image_ok: np.ndarray | None,
                    settings: SearchSettings, dense: DenseSettings, source: str) -> dict[str, np.ndarray]:
    """A caption per image and per chosen detection, all decoded in one batch.

    ``frames`` are the decoded images uint8 [N, H, W, 3], zero-padded to the largest (IMAGE_SIZE gives
    each one's size): the frame caption sees the whole image and each dense caption the crop of the
    original image under its box. Returns CAPTION [N,1], CAPTION_SOURCE [N,1], CAPTION_TOKENS [N,L],
    DENSE_CAPTIONS [N,K], DENSE_BOX_INDEX [N,K] (index into BOXES; -1 pads) and DENSE_TOKENS [N,K,L]
    (-1 pads). An image whose IMAGE_OK is false gets empty captions and no dense captions.
    """
    from mmw.processing.caption_images import crop_box, dense_crop_indices, frames_of, pixel_values

    images = frames_of(frames, image_size)
    n = len(images)
    ok = np.ones(n, bool) if image_ok is None else np.asarray(image_ok, bool).reshape(n)
    crops, owners, box_index = [], [], []
    for i, image in enumerate(images):
        if not ok[i]:
            continue
        crops.append(image)
        owners.append(i)
        box_index.append(-1)
        for j in dense_crop_indices(boxes[i], scores[i], int(num_detections[i].reshape(-1)[0]), dense.top_k,
                                    dense.min_score, dense.min_size_px):
            crops.append(crop_box(image, boxes[i, j]))
            owners.append(i)
            box_index.append(int(j))
    tokens = captioner.generate(pixel_values(crops, captioner.meta.pixels), settings) if crops else []
    frame_tokens: list[list[int]] = [[] for _ in range(n)]
    per_image: list[list[tuple[int, list[int]]]] = [[] for _ in range(n)]
    for owner, j, t in zip(owners, box_index, tokens, strict=True):
        if j < 0:
            frame_tokens[owner] = t
        else:
            per_image[owner].append((j, t))
    k = max([len(p) for p in per_image] + [1])
    length = max([len(t) for t in tokens] + [1])
    dense_captions = np.full((n, k), b"", dtype=object)
    dense_index = np.full((n, k), -1, np.int32)
    dense_tokens = np.full((n, k, length), -1, np.int32)
    for i, items in enumerate(per_image):
        for slot, (j, t) in enumerate(items):
            dense_captions[i, slot] = captioner.text(t).encode()
            dense_index[i, slot] = j
            dense_tokens[i, slot, :len(t)] = t
    return {
        "CAPTION": np.array([[captioner.text(t).encode() if ok[i] else b""] for i, t in enumerate(frame_tokens)],
                            dtype=object).reshape(n, 1),
        "CAPTION_SOURCE": np.array([[source.encode() if ok[i] else b""] for i in range(n)], dtype=object).reshape(n, 1),
        "CAPTION_TOKENS": _pad(frame_tokens), "DENSE_CAPTIONS": dense_captions, "DENSE_BOX_INDEX": dense_index,
        "DENSE_TOKENS": dense_tokens,
    }
