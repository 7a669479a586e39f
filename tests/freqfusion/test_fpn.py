from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from freqdyn import FreqFusionFPN


def hamming_blur(x, k):
    w = torch.hamming_window(k, periodic=False, dtype=x.dtype)
    kernel = torch.outer(w, w) / torch.outer(w, w).sum()
    return F.conv2d(F.pad(x, [k // 2] * 4), kernel.expand(x.shape[1], 1, k, k), groups=x.shape[1])


PYRAMIDS = [[(32, 32), (16, 16), (8, 8), (4, 4)], [(25, 27), (13, 14), (7, 7), (4, 4)]]


@pytest.mark.parametrize("sizes", PYRAMIDS, ids=["even", "odd"])
def test_fpn_is_a_drop_in_for_torchvision_fpn(sizes):
    torchvision = pytest.importorskip("torchvision")
    channels = [8, 16, 24, 32]
    feats = OrderedDict((f"c{i}", torch.randn(2, c, *s)) for i, (c, s) in enumerate(zip(channels, sizes, strict=True)))
    plain = torchvision.ops.FeaturePyramidNetwork(channels, 32)
    ours = FreqFusionFPN(channels, 32)
    expected, out = plain(feats), ours(feats)
    assert isinstance(out, OrderedDict) and list(out) == list(expected)
    assert [t.shape for t in out.values()] == [t.shape for t in expected.values()]
    as_tuple = ours(list(feats.values()))
    assert isinstance(as_tuple, tuple) and all(torch.equal(a, b) for a, b in zip(as_tuple, out.values(), strict=True))


def test_fpn_with_neutral_fusion_is_a_fixed_filter_fpn():
    channels, sizes = [8, 16, 16], [(12, 14), (6, 7), (3, 4)]
    fpn = FreqFusionFPN(channels, 16).double()
    for fusion in fpn.fusions:
        fusion.neutralise_()
    feats = [torch.randn(1, c, *s, dtype=torch.float64) for c, s in zip(channels, sizes, strict=True)]
    laterals = [conv(x) for conv, x in zip(fpn.lateral_convs, feats, strict=True)]
    for i in (1, 0):
        up = hamming_blur(laterals[i + 1], 5).repeat_interleave(2, 2).repeat_interleave(2, 3)
        laterals[i] = 2 * laterals[i] - hamming_blur(laterals[i], 3) + up[..., : sizes[i][0], : sizes[i][1]]
    expected = [conv(x) for conv, x in zip(fpn.fpn_convs, laterals, strict=True)]
    for a, b in zip(fpn(feats), expected, strict=True):
        torch.testing.assert_close(a, b)


def test_fpn_rejects_bad_pyramids():
    fpn = FreqFusionFPN([8, 16], 16)
    with pytest.raises(ValueError, match="expected 2 feature maps"):
        fpn([torch.randn(1, 8, 8, 8)])
    with pytest.raises(ValueError, match="level 1"):
        fpn([torch.randn(1, 8, 8, 8), torch.randn(1, 12, 4, 4)])
    with pytest.raises(ValueError, match="not 2x"):
        fpn([torch.randn(1, 8, 8, 8), torch.randn(1, 16, 8, 8)])
    with pytest.raises(ValueError, match="at least two"):
        FreqFusionFPN([8], 16)


def _pyramid(channels=(8, 16, 24, 32), size=32):
    return [torch.randn(1, c, size >> i, size >> i) for i, c in enumerate(channels)]


def test_fpn_mmdet_extra_levels_by_max_pooling_and_by_convs():
    feats = _pyramid()
    pooled = FreqFusionFPN([8, 16, 24, 32], 16, num_outs=5, init_cfg=dict(type="Xavier", layer="Conv2d"))
    outs = pooled(feats)
    assert len(outs) == 5 and outs[4].shape == (1, 16, 2, 2)
    torch.testing.assert_close(outs[4], outs[3][..., ::2, ::2])  # mmdet: max_pool2d(kernel 1, stride 2)
    for mode, source in (("on_input", lambda o, f: f[-1]), ("on_output", lambda o, f: o[3])):
        convs = FreqFusionFPN([8, 16, 24, 32], 16, num_outs=6, add_extra_convs=mode, relu_before_extra_convs=True)
        outs = convs(feats)
        first, second = convs.extra_convs
        torch.testing.assert_close(outs[4], F.conv2d(source(outs, feats), first.weight, first.bias, 2, 1))
        torch.testing.assert_close(outs[5], F.conv2d(F.relu(outs[4]), second.weight, second.bias, 2, 1))
    started = FreqFusionFPN([8, 16, 24, 32], 16, start_level=1, num_outs=4)(feats)
    assert [o.shape[-1] for o in started] == [16, 8, 4, 2]


def test_fpn_builds_from_an_mmdet_neck_config():
    mm_registry = pytest.importorskip("mmengine.registry")
    import freqdyn.integrations.mmengine  # noqa: F401

    neck = mm_registry.MODELS.build(
        dict(
            type="FreqFusionFPN",
            in_channels=[8, 16, 24, 32],
            out_channels=16,
            start_level=0,
            add_extra_convs="on_input",
            num_outs=5,
            init_cfg=dict(type="Xavier", layer="Conv2d", distribution="uniform"),
        )
    )
    assert [o.shape[-1] for o in neck(_pyramid())] == [32, 16, 8, 4, 2]


def test_fpn_in_a_torchvision_faster_rcnn_training_step():
    pytest.importorskip("torchvision")
    from torchvision.models.detection import fasterrcnn_resnet50_fpn
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, min_size=96, max_size=96)
    model.backbone.fpn = FreqFusionFPN([256, 512, 1024, 2048], 256, extra_blocks=LastLevelMaxPool())
    images = [torch.rand(3, 96, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])}]
    losses = model.train()(images, targets)
    sum(losses.values()).backward()
    assert set(losses) >= {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert model.backbone.fpn.fpn_convs[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        (detections,) = model(images)
    assert set(detections) == {"boxes", "labels", "scores"}
