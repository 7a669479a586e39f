import pytest
import torch
import torch.nn as nn

mmengine = pytest.importorskip("mmengine")

from mmengine.registry import MODELS, Registry  # noqa: E402

from freqdyn import DynamicConv2d, FDConv, FreqFusionFPN  # noqa: E402
from freqdyn.integrations import mmengine as fm  # noqa: E402


def test_registration_is_idempotent_and_visible_from_a_child_registry():
    assert fm.register() == []  # the import already registered everything
    child = Registry("model", parent=MODELS, scope="mmdet_like")
    conv = child.build(dict(type="FDConv", in_channels=32, out_channels=64, kernel_size=3, padding=1, kernel_num=8))
    assert isinstance(conv, FDConv) and conv.kernel_num == 8


def test_conv_cfg_contract_of_build_conv_layer():
    # what mmcv's build_conv_layer does with conv_cfg=dict(type=..., **extra)
    cfg = dict(type="DynamicConv2d", num_experts=3)
    layer_cls = MODELS.get(cfg.pop("type"))
    layer = layer_cls(16, 32, 3, stride=2, padding=1, dilation=1, groups=1, bias=False, **cfg)
    assert isinstance(layer, DynamicConv2d) and layer.bias is None and layer.stride == (2, 2)
    assert callable(layer.init_weights)  # ConvModule then skips its own kaiming init
    assert layer(torch.randn(1, 16, 9, 9)).shape == (1, 32, 5, 5)


def test_neck_builds_from_config():
    neck = MODELS.build(dict(type="FreqFusionFPN", in_channels=[16, 32], out_channels=16))
    assert isinstance(neck, FreqFusionFPN)
    outs = neck([torch.randn(1, 16, 16, 16), torch.randn(1, 32, 8, 8)])
    assert [o.shape for o in outs] == [(1, 16, 16, 16), (1, 16, 8, 8)]
    assert isinstance(neck.lateral_convs[0], nn.Conv2d)
