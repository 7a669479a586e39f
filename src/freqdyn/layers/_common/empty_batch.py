"""Empty batches (B = 0): the output ``nn.Conv2d`` / ``nn.Linear`` give, with a zero gradient for every parameter.

Detectors run heads on B = 0 (Mask R-CNN's mask head on an image without detections). ``nn.Conv2d`` then
returns an empty output and gives its weight a zero gradient; a dynamic layer must do the same for its
attention parameters too, or DDP (which expects every rank to reduce the same parameters) stalls.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def tie_to_parameters(out: Tensor, module: nn.Module) -> Tensor:
    """``out`` (empty) joined to every trainable parameter of ``module`` with a factor 0: zero gradients."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params or not torch.is_grad_enabled():
        return out
    return out + torch.stack([p.sum().to(out.dtype) for p in params]).sum() * 0
