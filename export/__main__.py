"""``python -m export``: build the ONNX networks (``engines``), the repository configs (``repository``), and
compare what is served with the source models (``fidelity``)."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

from mmw.cli_args import positive_int
from mmw.config import PROJECT_ROOT, load_config
from mmw.errors import MMWError
from mmw.processing.captions import NEURAL_CAPTIONS_HINT
from mmw.repository import check_repository, missing_openvino_models, repository_target, write_repository
from mmw.specs import DETECTOR, GPU_BACKENDS, LABELLER, VARIANTS


def build_engines(config_path: str | None, force: bool) -> list[str]:
    """Export both networks into the model repository, convert and gate them for OpenVINO; with an NVIDIA GPU
    and TensorRT, also the GPU plans."""
    from export import efficientnet_lite, ssd_mobilenet_v2
    from export.onnx_export import build_network
    from export.openvino_ir import build_openvino
    from export.tensorrt_engines import build_plans

    config = load_config(config_path)
    repo = config.path(config.server.model_repository)

    def quiet_lite0():  # the package prints "Loaded pretrained weights"
        with contextlib.redirect_stdout(io.StringIO()):
            return efficientnet_lite.load_efficientnet_lite0()

    jobs = [
        (DETECTOR, ssd_mobilenet_v2.load_ssd_mobilenet_v2, ssd_mobilenet_v2.frozen_graph_paths()[0],
         ssd_mobilenet_v2.example_input),
        (LABELLER, quiet_lite0, efficientnet_lite.lite0_weights_path(), efficientnet_lite.example_input),
    ]
    lines = []
    for spec, load, weights, make_input in jobs:
        path = repo / spec.name / "1" / "model.onnx"
        outcome = build_network(spec, load, weights, make_input, path, PROJECT_ROOT, force)
        lines.append(f"{spec.name}: {path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path}: "
                     f"{outcome}")
    lines += build_caption_model(config, repo, force)
    lines += build_openvino(config, repo, force, say=lambda line: print(line, file=sys.stderr, flush=True))
    changed = write_repository(config, repo)
    lines.append(f"repository configs: {len(changed)} rewritten" if changed else "repository configs: up to date")
    lines += build_plans(config, repo, force)
    return lines


def build_caption_model(config, repo: Path, force: bool) -> list[str]:
    """Export the configured captioning checkpoint, or say in one line that captions stay template ones."""
    cap = config.models.caption
    if not cap.neural:
        return [f"captioner: none configured (models.caption.model is empty), captions are template ones; "
                f"{NEURAL_CAPTIONS_HINT}"]
    from export.captioner_onnx import build_captioner

    return build_captioner(cap.model, repo / "caption" / "1", PROJECT_ROOT, force)


def report_fidelity(config_path: str | None, captions: bool, out: Path | None) -> int:
    """Print the fidelity table (progress on stderr); 1 when a check fails."""
    import dataclasses
    import json

    from export.fidelity import fidelity_checks, format_table

    config = load_config(config_path)
    checks = fidelity_checks(config.path(config.server.model_repository), captions,
                             progress=lambda step: print(f"fidelity: {step} ...", file=sys.stderr, flush=True),
                             runtime=config.serving.cpu_runtime, precision=config.serving.cpu_precision)
    print(format_table(checks))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([dataclasses.asdict(c) for c in checks], indent=2) + "\n", encoding="utf-8")
    failed = [c.check for c in checks if not c.passed]
    if failed:
        print(f"export: error: {len(failed)} fidelity check(s) failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--config", help="config.yaml to use (default: config/config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    engines = sub.add_parser("engines", help="export and validate the ONNX networks, write the repository configs")
    engines.add_argument("--force", action="store_true", help="rebuild even when up to date")
    repository = sub.add_parser("repository", help="regenerate every config.pbtxt from the specs and config.yaml")
    repository.add_argument("--root", type=Path,
                            help="repository folder (default: the variant's: server.model_repository for cpu, "
                                 "engines.gpu_repository for gpu, engines.openvino_repository for openvino)")
    repository.add_argument("--variant", choices=VARIANTS,
                            help="cpu, gpu, or openvino (Triton's openvino backend, CPU only); default: gpu when "
                                 "--root is engines.gpu_repository, openvino when it is engines.openvino_repository, "
                                 "else cpu")
    repository.add_argument("--gpu-backend", choices=GPU_BACKENDS,
                            help="what serves the networks in the gpu variant (default: engines.gpu_backend)")
    repository.add_argument("--cores", type=positive_int, help="plan instances for this many cores (default: here)")
    sub.add_parser("check", help="fail when a committed config.pbtxt drifted from its spec")
    fidelity = sub.add_parser("fidelity", help="compare what is served with the source models; print the table")
    fidelity.add_argument("--no-captions", action="store_true", help="skip the tiny BLIP/GIT caption checks")
    fidelity.add_argument("--out", type=Path, help="also write the checks as JSON here")
    args = parser.parse_args(argv)
    try:
        if args.command == "engines":
            for line in build_engines(args.config, args.force):
                print(line, flush=True)
        elif args.command == "repository":
            config = load_config(args.config)
            root, variant = repository_target(config, args.root, args.variant)
            changed = write_repository(config, root, variant, args.gpu_backend, args.cores)
            print(f"{len(changed)} repository files rewritten" if changed else "all repository files up to date")
            if variant == "openvino":  # configs are written without the IR; say what is still to build
                for line in missing_openvino_models(root):
                    print(f"export: warning: {line}", file=sys.stderr)
        elif args.command == "fidelity":
            return report_fidelity(args.config, not args.no_captions, args.out)
        else:
            check_repository(load_config(args.config))
            print("model repository configs match their specs")
    except MMWError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
