"""UniConvNet as timm models: ``timm.create_model("uniconvnet_t", features_only=True)`` after importing this module.

    import freqdyn.integrations.timm            # registers uniconvnet_a ... uniconvnet_xl in timm's registry
    backbone = timm.create_model("uniconvnet_t", features_only=True, out_indices=(1, 2, 3))
    model = timm.create_model("uniconvnet_a", num_classes=10, drop_path_rate=0.05)

The models are built by timm's own ``build_model_with_cfg``; ``features_only`` uses timm's feature getter over
:meth:`~freqdyn.models.UniConvNet.forward_intermediates`. Nothing is downloaded: ``pretrained=True`` is refused
(timm has no weights to fetch) with a message that says where the authors' weights are (:data:`WEIGHTS`); load a
downloaded file with ``pretrained=True, pretrained_cfg_overlay=dict(file=path)`` (their ``{'model': ...}`` files load
as they are, and another ``num_classes`` drops their head) or ``model.load_state_dict(sd)`` (their keys load
strictly).
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..models import SCALES, UniConvNet, scale_args

__all__: list[str] = []
default_cfgs = generate_default_cfgs(
    {
        f"uniconvnet_{scale}": {
            "num_classes": 1000,
            "input_size": (3, 224, 224),
            "crop_pct": 0.875,
            "interpolation": "bicubic",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "first_conv": "downsample_layers.0.0",
            "classifier": "head",
        }
        for scale in SCALES
    }
)


WEIGHTS = (
    "the authors' ImageNet weights are files such as uniconvnet_t_1k_224_ema.pth (uniconvnet_a_1k_224.pth, "
    "uniconvnet_l_22k_224.pth: the names are in their README, github.com/ai-paperwithcode/UniConvNet) on "
    "Hugging Face (ai-modelwithcode/UniConvNet) and Baidu"
)


def _create(scale: str, pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    given = {**(kwargs.get("pretrained_cfg") or {}), **(kwargs.get("pretrained_cfg_overlay") or {})}
    if pretrained and not any(given.get(key) for key in ("file", "url", "hf_hub_id")):
        raise RuntimeError(
            f"timm has no download for uniconvnet_{scale}: {WEIGHTS}. Download one, then "
            f"timm.create_model('uniconvnet_{scale}', pretrained=True, "
            "pretrained_cfg_overlay=dict(file='path/to/the.pth')) (their keys load as they are, "
            "another num_classes drops their head)"
        )
    return build_model_with_cfg(
        UniConvNet,
        f"uniconvnet_{scale}",
        pretrained,
        feature_cfg={"out_indices": (0, 1, 2, 3), "feature_cls": "getter"},
        **{**scale_args(scale), **kwargs},
    )


def _entrypoint(scale: str):
    def create(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
        return _create(scale, pretrained, **kwargs)

    create.__name__ = create.__qualname__ = f"uniconvnet_{scale}"
    create.__module__ = __name__
    create.__doc__ = f"UniConvNet-{scale.upper()} (freqdyn.models.SCALES['{scale}'])."
    return create


for _scale in SCALES:
    register_model(_entrypoint(_scale))
