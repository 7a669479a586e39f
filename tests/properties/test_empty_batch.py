"""Empty batches (B = 0) behave as in nn.Conv2d / nn.Linear: an empty output, forward and backward, and a zero
gradient for every parameter (as nn.Conv2d gives its weight); also through torchvision's Mask R-CNN, whose mask
head runs on B = 0 when an image has no detections."""

import pytest
import torch
import torch.nn as nn

from freqdyn import (
    MRFA,
    CondConv2d,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FDLinearQwen,
    FreqFusion,
    FreqFusionFPN,
    FrequencyBandModulation,
    ODConv2d,
    UniConvNetBlock,
    convert,
)
from helpers import CONV_CASES, IDS, make_conv

CONVS = {
    "fdconv": lambda conv: FDConv.from_conv(conv, kernel_num=4),
    "fdconv-feature": lambda conv: FDConv.from_conv(conv, kernel_num=4, aggregation="feature"),
    "dyconv": DynamicConv2d.from_conv,
    "condconv": CondConv2d.from_conv,
    "odconv": ODConv2d.from_conv,
}


def assert_zero_gradients(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None and not p.grad.any(), name


@pytest.mark.parametrize("kind", sorted(CONVS))
@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False])
def test_conv_empty_batch_matches_conv2d(kind, case, training):
    conv = make_conv(case).train(training)
    layer = CONVS[kind](conv).train(training)
    x = torch.randn(0, case[0], case[9], case[10], requires_grad=True)
    out, expected = layer(x), conv(x)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert_zero_gradients(layer)


@pytest.mark.parametrize("cls", [FDLinear, FDLinearQwen])
@pytest.mark.parametrize("shape", [(0, 24), (0, 5, 24), (3, 0, 24)])
def test_fdlinear_empty_input_matches_linear(shape, cls):
    linear = nn.Linear(24, 40)
    layer = cls.from_linear(linear, kernel_num=4)
    x = torch.randn(shape, requires_grad=True)
    out = layer(x)
    assert out.shape == linear(x).shape
    out.sum().backward()
    assert_zero_gradients(layer)


MODULES = {
    "freqfusion": (
        lambda: FreqFusion(16, 24, compressed_channels=16, feature_resample=True),
        lambda b: (torch.randn(b, 16, 8, 10), torch.randn(b, 24, 4, 5)),
    ),
    "freqfusion-odd": (
        lambda: FreqFusion(16, 24, compressed_channels=16, semi_conv=False, hamming_window=False),
        lambda b: (torch.randn(b, 16, 9, 11), torch.randn(b, 24, 5, 6)),
    ),
    "fpn": (
        lambda: FreqFusionFPN([8, 16, 16], 16, num_outs=4),
        lambda b: ([torch.randn(b, 8, 16, 16), torch.randn(b, 16, 8, 8), torch.randn(b, 16, 4, 4)],),
    ),
    "fbm": (lambda: FrequencyBandModulation(16, spatial_group=2), lambda b: (torch.randn(b, 16, 9, 10),)),
    "mrfa": (lambda: MRFA(16), lambda b: (torch.randn(b, 16, 9, 9),)),
    "uniconvnet-block": (lambda: UniConvNetBlock(16, drop_path=0.1), lambda b: (torch.randn(b, 16, 9, 9),)),
}


def _flat(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("training", [True, False])
def test_modules_take_an_empty_batch(name, training):
    build, inputs = MODULES[name]
    module = build().train(training)
    expected = [t.shape[1:] for t in _flat(module(*inputs(2)))]  # every output of a batch of 2, less the batch
    module.zero_grad()
    outs = _flat(module(*inputs(0)))
    assert [t.shape[1:] for t in outs] == expected and all(t.shape[0] == 0 for t in outs)
    sum(t.sum() for t in outs).backward()


@pytest.mark.parametrize("kind", ["fdconv", "dyconv", "condconv", "odconv"])
def test_mask_rcnn_mask_head_with_no_detections(kind):
    """torchvision runs the mask head on B = 0 when nothing is detected (inference) and when no proposal is
    positive (training on an image without objects)."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, box_score_thresh=1.0
    )  # no score reaches 1: no detections
    report = convert(model.roi_heads.mask_head, kind, **({"kernel_num": 8} if kind == "fdconv" else {}))
    assert len(report.replaced) == 4
    image = torch.rand(3, 64, 64)
    with torch.no_grad():
        (result,) = model.eval()([image])
    assert result["masks"].shape == (0, 1, 64, 64)
    target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 64, 64, dtype=torch.uint8),
    }
    losses = model.train()([image], [target])
    sum(losses.values()).backward()
    assert_zero_gradients(model.roi_heads.mask_head)
