"""Empty batches (B = 0) behave as in nn.Conv2d / nn.Linear: an empty output, forward and backward, and a zero
gradient for every parameter (as nn.Conv2d gives its weight); also through torchvision's Mask R-CNN, whose mask
head runs on B = 0 when an image has no detections."""

import pytest
import torch
import torch.nn as nn

from freqdyn import (
    CondConv2d,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FDLinearQwen,
    ODConv2d,
    convert,
)
from helpers import CONV_CASES, IDS, make_conv
from zoo import ZOO

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


def _flat(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _empty(value):
    """The same inputs with a batch of 0 (tensors nested in lists and tuples too)."""
    if isinstance(value, torch.Tensor):
        return value[:0]
    return type(value)(_empty(v) for v in value) if isinstance(value, list | tuple) else value


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("training", [True, False])
def test_every_zoo_layer_takes_an_empty_batch(name, training):
    build, inputs = ZOO[name]
    module = build().train(training)
    args = inputs()
    expected = [t.shape[1:] for t in _flat(module(*args))]  # every output of the example batch, less the batch
    outs = _flat(module(*_empty(args)))
    assert [t.shape[1:] for t in outs] == expected and all(t.shape[0] == 0 for t in outs)
    if any(p.requires_grad for p in module.parameters()):
        module.zero_grad()
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
