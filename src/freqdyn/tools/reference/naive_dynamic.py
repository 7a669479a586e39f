"""Naive DY-Conv / CondConv / ODConv forward: the papers' formulas, one sample at a time.

The attentions are recomputed from the layer's parameters with explicit matrix products, the kernel is
summed expert by expert from the 5-D bank, and every sample gets its own ``F.conv2d``. It shares only the
parameters with the fast layers (no batch folding, no attention modules).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...layers._common.conv_args import explicit_padding
from ...layers.kernel_bank.cond_conv2d import CondConv2d
from ...layers.kernel_bank.dynamic_conv2d import DynamicConv2d
from ...layers.kernel_bank.expert_conv import ExpertConv2d
from ...layers.kernel_bank.odconv2d import ODConv2d
from .naive_norm import naive_attention_norm


def _matrix(conv_weight: Tensor) -> Tensor:
    return conv_weight.reshape(conv_weight.shape[0], -1)


def _attentions(layer: ExpertConv2d, pooled: Tensor) -> dict[str, Tensor]:
    """Attentions of the whole batch (B, I) -> dict of (B, n) tensors, from the papers' formulas."""
    att: Any = layer.attention  # each method's own attention module
    if isinstance(layer, DynamicConv2d):
        hidden = torch.relu(pooled @ _matrix(att.fc1.weight).t())
        logits = hidden @ _matrix(att.fc2.weight).t() + att.fc2.bias
        return {"kernel": torch.softmax(logits / att.temperature, dim=1)}
    if isinstance(layer, CondConv2d):
        return {"kernel": torch.sigmoid(pooled @ att.routing.weight.t() + att.routing.bias)}
    if isinstance(layer, ODConv2d):
        z = pooled @ _matrix(att.fc.weight).t()
        z = torch.relu(naive_attention_norm(att.bn, z))
        out = {}
        for name in ("channel", "filter", "spatial", "kernel"):
            head = getattr(att, f"{name}_fc")
            if head is None:
                continue
            logits = (z @ _matrix(head.weight).t() + head.bias) / att.temperature
            out[name] = torch.softmax(logits, dim=1) if name == "kernel" else torch.sigmoid(logits)
        if "kernel" not in out:
            out["kernel"] = pooled.new_ones(pooled.shape[0], 1)
        return out
    raise ValueError(f"no naive reference for {type(layer).__name__}")


def naive_expert_conv(layer: ExpertConv2d, x: Tensor) -> Tensor:
    """Reference output of a DynamicConv2d / CondConv2d / ODConv2d for x (B, I, H, W)."""
    att = _attentions(layer, x.mean(dim=(2, 3)))
    bank = layer.weight.reshape(layer.num_experts, *layer.kernel_shape)
    pads = explicit_padding(layer.padding, layer.kernel_size, layer.dilation)
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    outputs = []
    for b in range(x.shape[0]):
        kernel = torch.stack([att["kernel"][b, k] * bank[k] for k in range(layer.num_experts)]).sum(0)
        if "spatial" in att:
            kernel = kernel * att["spatial"][b].reshape(1, 1, *layer.kernel_size)
        xb = x[b : b + 1]
        if "channel" in att:
            xb = xb * att["channel"][b].reshape(1, -1, 1, 1)
        xb = F.pad(xb, pads, mode=mode)
        y = F.conv2d(xb, kernel, None, layer.stride, 0, layer.dilation, layer.groups)
        if "filter" in att:
            y = y * att["filter"][b].reshape(1, -1, 1, 1)
        if layer.bias is not None:
            y = y + (att["kernel"][b] @ layer.bias).reshape(1, -1, 1, 1)
        outputs.append(y)
    return torch.cat(outputs)
