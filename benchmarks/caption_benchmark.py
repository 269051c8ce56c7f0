"""Neural captioner benchmark (``make bench-captions``): base-size BLIP with random weights, no download.

1. Per-caption latency of the exported decoder with the KV cache vs without it (the whole prefix
   and the cross-attention keys/values recomputed every step), 20 tokens each (the end token is
   disabled so every caption is exactly 20 tokens), encoder time reported apart.
2. Captions/s through Triton (the ``caption`` model, called directly with frames and no detections)
   at 1 and 4 requests in flight vs the same decode loop in-process (``mmw.captioner.neural_captions``
   on the same sessions, one image per call for 1 in flight, four per call for 4).

Prints a table and ratios against the targets; writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 20
TARGETS = {"uncached / cached (s per caption)": 3.0, "served / in-process (captions/s, 1 in flight)": 0.9,
           "served / in-process (captions/s, 4 in flight)": 0.9}


def random_frames(n: int) -> np.ndarray:
    """``n`` random 640x480 RGB frames (what the caption step gets as FRAME)."""
    return np.random.default_rng(0).integers(0, 256, (n, 480, 640, 3), dtype=np.uint8)


def caption_inputs(frames: np.ndarray) -> dict[str, np.ndarray]:
    n = len(frames)
    return {"FRAME": frames, "BOXES": np.zeros((n, 1, 4), np.float32), "SCORES": np.zeros((n, 1), np.float32),
            "NUM_DETECTIONS": np.zeros((n, 1), np.int32), "IMAGE_SIZE": np.tile([[480, 640]], (n, 1)).astype(np.int32),
            "IMAGE_OK": np.ones((n, 1), bool)}


def decoder_latency(captioner, pixels: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds per caption: encoder, cached decode, uncached decode (best of ``repeats``)."""
    settings = captioner.settings(1, TOKENS)
    t = time.perf_counter()
    memory, keys, values = captioner.encode(pixels)
    encoder = (time.perf_counter() - t) / len(pixels)
    timings = {}
    for name, cache in (("cached", True), ("uncached", False)):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            tokens = captioner.generate_from(memory, keys, values, settings, use_cache=cache)
            best = min(best, (time.perf_counter() - t) / len(pixels))
            assert all(len(x) == TOKENS for x in tokens), "the end token is disabled: every caption is 20 tokens"
        timings[name] = best
    return {"encoder": encoder, **timings}


def throughput(call, requests: list, in_flight: int) -> float:
    """Captions/s for ``requests`` (each a list of images) with ``in_flight`` at once."""
    t = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        images = sum(len(r) for r in pool.map(call, requests))
    return images / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8, help="images per throughput run")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    parser.add_argument("--work", type=Path, help="folder for the checkpoint and ONNX files (default: a temp dir)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from export.captioner_onnx import build_captioner
    from export.tiny_captioners import build_tiny_captioner
    from mmw.captioner import DenseSettings, OnnxCaptioner, neural_captions
    from mmw.processing.caption_images import pixel_values
    from tests.conftest import serving

    work = args.work or Path(tempfile.mkdtemp(prefix="mmw-caption-bench-"))
    checkpoint = work / "blip-base-random"
    if not (checkpoint / "config.json").is_file():
        print("building a base-size BLIP checkpoint with random weights ...", flush=True)
        build_tiny_captioner("blip", checkpoint, size="base")
    repo = work / "model_repository"
    if not repo.exists():
        shutil.copytree(ROOT / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__", "*.plan"))
    print("exporting ...", flush=True)
    for line in build_captioner(str(checkpoint), repo / "caption" / "1", ROOT):
        print("  " + line, flush=True)

    captioner = OnnxCaptioner(repo / "caption" / "1", threads=2)
    captioner.meta = dataclasses.replace(captioner.meta, eos_token_id=-1)  # exactly TOKENS tokens per caption
    frames = random_frames(args.images)
    pixels = pixel_values(list(frames[:2]), captioner.meta.pixels)
    print(f"decoder latency at {TOKENS} tokens ...", flush=True)
    latency = decoder_latency(captioner, pixels, repeats=2)

    search, dense = captioner.settings(1, TOKENS), DenseSettings(top_k=0)

    def in_process(images: list) -> list:
        neural_captions(captioner, np.stack(images), *[caption_inputs(np.stack(images))[k] for k in (
            "BOXES", "SCORES", "NUM_DETECTIONS", "IMAGE_SIZE", "IMAGE_OK")], search, dense, "bench")
        return images

    singles = [[f] for f in frames]
    fours = [list(frames[i:i + 4]) for i in range(0, len(frames), 4)]
    in_process([frames[0]])  # warm
    local = {1: throughput(in_process, singles, 1), 4: throughput(in_process, fours, 1)}

    import tritonclient.grpc as grpcclient

    models = {"caption": {"model": str(checkpoint), "max_new_tokens": TOKENS, "dense_top_k": 0}}
    served = {}
    with serving(work / "state", models=models, model_repository=str(repo)) as config:
        client_url = f"127.0.0.1:{config.server.grpc_port}"

        def served_call(images: list) -> list:
            client = grpcclient.InferenceServerClient(client_url)
            inputs = []
            for name, array in caption_inputs(np.stack(images)).items():
                dtype = {"uint8": "UINT8", "float32": "FP32", "int32": "INT32", "bool": "BOOL"}[array.dtype.name]
                tensor = grpcclient.InferInput(name, list(array.shape), dtype)
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            client.infer("caption", inputs)
            return images

        served_call([frames[0]])  # warm
        served = {1: throughput(served_call, singles, 1), 4: throughput(served_call, singles, 4)}

    ratios = {"uncached / cached (s per caption)": latency["uncached"] / latency["cached"],
              "served / in-process (captions/s, 1 in flight)": served[1] / local[1],
              "served / in-process (captions/s, 4 in flight)": served[4] / local[4]}
    print(f"\nper caption ({TOKENS} tokens): encoder {latency['encoder']:.3f} s, decode with KV cache "
          f"{latency['cached']:.3f} s, without {latency['uncached']:.3f} s")
    print(f"captions/s   in-process: 1 at a time {local[1]:.2f}, 4 per call {local[4]:.2f}")
    print(f"captions/s   Triton:     1 in flight {served[1]:.2f}, 4 in flight {served[4]:.2f}")
    for name, value in ratios.items():
        print(f"{name:48s} {value:6.2f}  (target >= {TARGETS[name]})  {'ok' if value >= TARGETS[name] else 'MISSED'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"latency_s": latency, "in_process": local, "served": served,
                                        "ratios": ratios, "targets": TARGETS, "tokens": TOKENS}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
