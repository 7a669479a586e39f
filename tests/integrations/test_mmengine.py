import pytest
import torch
import torch.nn as nn

mmengine = pytest.importorskip("mmengine")

from mmengine.registry import MODELS, Registry  # noqa: E402

from freqdyn import DynamicConv2d, FDConv, FreqFusionFPN  # noqa: E402
from freqdyn.integrations import mmengine as fm  # noqa: E402
from helpers import GOLDEN  # noqa: E402


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


def _backbone_pair():
    from mmengine.model import BaseModule

    class Backbone(BaseModule):
        def __init__(self, conv_type, init_cfg=None):
            super().__init__(init_cfg=init_cfg)
            conv = MODELS.get(conv_type) if conv_type != "Conv2d" else nn.Conv2d
            extra = dict(kernel_num=8) if conv_type == "FDConv" else {}
            self.stem = nn.Conv2d(3, 24, 3, padding=1)
            self.layer = nn.Sequential(
                conv(24, 32, 3, padding=1, **extra), nn.BatchNorm2d(32), nn.ReLU(), conv(32, 32, 1, **extra)
            )

        def forward(self, x):
            return self.layer(self.stem(x))

    return Backbone


@pytest.mark.parametrize("conv_type", ["FDConv", "DynamicConv2d", "ODConv2d"])
def test_plain_checkpoint_loads_through_load_checkpoint_and_init_cfg(conv_type, tmp_path):
    from mmengine.runner import load_checkpoint

    backbone = _backbone_pair()
    torch.manual_seed(0)
    plain = backbone("Conv2d").eval()
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": plain.state_dict()}, path)
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        expected = plain(x)
    loaded = backbone(conv_type)
    load_checkpoint(loaded, str(path), map_location="cpu", strict=False)  # mmdet/mmseg load_from
    pretrained = backbone(conv_type, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    pretrained.init_weights()  # mmengine init_cfg=dict(type="Pretrained")
    for model in (loaded, pretrained):
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), expected, rtol=1e-5, atol=1e-5)


def test_missing_attention_keys_are_summarised_in_one_line(tmp_path):
    """mmengine lists every key a checkpoint lacks; a plain checkpoint cannot hold the dynamic layers' attention
    parameters, so those are one freqdyn line (with their counts), while other missing keys stay listed."""
    import logging

    from mmengine.runner import load_checkpoint

    backbone = _backbone_pair()
    plain = backbone("Conv2d").state_dict()
    plain.pop("stem.bias")  # a genuinely missing key
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": plain}, path)
    lines: list[str] = []
    logger = logging.getLogger("test_missing_attention_keys")
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    model = backbone("FDConv")
    load_checkpoint(model, str(path), map_location="cpu", strict=False, logger=logger)
    text = "\n".join(lines)
    attention = [key for key in fm.attention_keys(model) if "num_batches_tracked" not in key]  # mmengine skips those
    assert len(attention) > 20 and text.count("KSM_") + text.count("FBM.") == 1  # the one example
    assert f"freqdyn: {len(attention)} attention parameter(s) of 2 dynamic layer(s)" in text
    assert "missing keys in source state_dict: stem.bias" in text
    with pytest.raises(RuntimeError, match="KSM_Global"):  # strict loading still refuses a plain checkpoint
        load_checkpoint(backbone("FDConv"), str(path), map_location="cpu", strict=True)


class _Toy(mmengine.model.BaseModel):
    """A one-FDConv model whose loss mmengine's Runner can train."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = FDConv(16, 16, 3, padding=1, kernel_num=4)

    def forward(self, inputs, labels=None, mode="tensor"):
        out = self.conv(inputs).mean((1, 2, 3))
        return {"loss": ((out - labels) ** 2).mean()} if mode == "loss" else out


class _Data(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(16, 8, 8, generator=g), labels=torch.randn((), generator=g))


def _runner(work_dir, epochs: int, **kwargs):
    from mmengine.runner import Runner

    loader = dict(
        dataset=_Data(),
        sampler=dict(type="DefaultSampler", shuffle=False),
        batch_size=4,
        collate_fn=dict(type="default_collate"),
    )
    return Runner(
        model=_Toy(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        default_hooks=dict(logger=None),
        **kwargs,
    )


def test_runner_resume_and_load_from_work_with_weights_only_loading(tmp_path, monkeypatch):
    """torch >= 2.6 loads weights-only by default; an mmengine checkpoint holds HistoryBuffer and numpy data, which
    the integration allow-lists: resume=True continues the run, load_from loads the weights, without
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD. getattr (HistoryBuffer's pickled methods) is allowed in mmengine's loads only."""
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    first = _runner(tmp_path, 1)
    first.train()
    saved = tmp_path / "epoch_1.pth"
    with pytest.raises(Exception, match="getattr"):
        torch.load(saved)  # a plain weights-only load still refuses getattr
    resumed = _runner(tmp_path, 2, resume=True)
    resumed.train()
    assert resumed.train_loop.epoch == 2 and resumed.train_loop.iter == 4
    trained = torch.load(tmp_path / "epoch_2.pth", weights_only=False)["state_dict"]
    fresh = _runner(tmp_path / "again", 1, load_from=str(tmp_path / "epoch_2.pth"))
    fresh.load_or_resume()
    for key, value in trained.items():
        torch.testing.assert_close(fresh.model.state_dict()[key], value, rtol=0, atol=0)


def test_kw_resnet_backbone_builds_from_config_and_loads_the_authors_checkpoint(tmp_path):
    pytest.importorskip("torchvision")

    golden = torch.load(GOLDEN / "kernelwarehouse.pt", weights_only=True)
    torch.manual_seed(0)
    theirs = {
        k: torch.randn(tuple(v.tolist())) if v.numel() else torch.tensor(0)
        for k, v in golden["keys_kw1x_resnet18"].items()
    }  # the authors' kw1x_resnet18, classifier included
    theirs = {k: t.long().abs() if k.endswith("num_batches_tracked") else t for k, t in theirs.items()}
    path = tmp_path / "kw1x_resnet18.pth"
    torch.save({"state_dict": theirs}, path)  # their main.py saves it under "model": rename the key for mmengine
    child = Registry("model", parent=MODELS, scope="kw_like")
    backbone = child.build(
        dict(
            type="KWResNet",
            depth=18,
            cell_num_ratio=1,
            out_indices=(1, 3),
            init_cfg=dict(type="Pretrained", checkpoint=str(path)),
        )
    )
    backbone.init_weights()
    state = backbone.state_dict()
    loaded = [k for k in theirs if k in state]
    assert len(loaded) == len(theirs) - 2 and all(torch.equal(state[k], theirs[k]) for k in loaded)  # all but fc
    outs = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 8), (1, 512, 2, 2)]
    with pytest.raises(ValueError, match="depth"):
        child.build(dict(type="KWResNet", depth=20))
