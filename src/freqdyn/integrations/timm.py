"""UniConvNet as timm models: ``timm.create_model("uniconvnet_t", features_only=True)`` after importing this module.

    import freqdyn.integrations.timm            # registers uniconvnet_a ... uniconvnet_xl in timm's registry
    backbone = timm.create_model("uniconvnet_t", features_only=True, out_indices=(1, 2, 3))
    model = timm.create_model("uniconvnet_a", num_classes=10, drop_path_rate=0.05)

The models are built by timm's own ``build_model_with_cfg``; ``features_only`` uses timm's feature getter over
:meth:`~freqdyn.models.UniConvNet.forward_intermediates`. Nothing is downloaded: ``pretrained=True`` is refused
(timm has no weights to fetch); load the authors' released state_dicts with ``model.load_state_dict(sd)`` (their
keys load strictly) or ``pretrained_cfg_overlay=dict(file=path)``.
"""
from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..models import SCALES, UniConvNet, scale_args

__all__: list[str] = []
default_cfgs = generate_default_cfgs({
    f"uniconvnet_{scale}": {"num_classes": 1000, "input_size": (3, 224, 224), "crop_pct": 0.875,
                            "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                            "first_conv": "downsample_layers.0.0", "classifier": "head"}
    for scale in SCALES
})


def _create(scale: str, pretrained: bool = False, **kwargs: Any) -> UniConvNet:
    return build_model_with_cfg(UniConvNet, f"uniconvnet_{scale}", pretrained,
                                feature_cfg={"out_indices": (0, 1, 2, 3), "feature_cls": "getter"},
                                **{**scale_args(scale), **kwargs})


def _entrypoint(scale: str):
    def create(pretrained: bool = False, **kwargs: Any) -> UniConvNet:
        return _create(scale, pretrained, **kwargs)

    create.__name__ = create.__qualname__ = f"uniconvnet_{scale}"
    create.__module__ = __name__
    create.__doc__ = f"UniConvNet-{scale.upper()} (freqdyn.models.SCALES['{scale}'])."
    return create


for _scale in SCALES:
    register_model(_entrypoint(_scale))
