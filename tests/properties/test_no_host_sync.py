"""No layer's forward or backward syncs the host (Tensor.item, nonzero, a tensor's truth value): CUDA graphs and
torch.compile capture them whole. Deterministic on the CPU: the profiler lists every aten call, syncing ones too."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from freqdyn import (
    MRFA,
    CondConv2d,
    DCNv3,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FDLinearQwen,
    FreqFusion,
    ODConv2d,
    UniConvNetBlock,
)
from freqdyn.tools.op_count import step

SYNCS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero"}
LAYERS = {
    "fdconv": (lambda: FDConv(16, 16, 3, padding=1, kernel_num=4), [(2, 16, 8, 8)]),
    "fdlinear": (lambda: FDLinear(16, 16, kernel_num=4), [(2, 5, 16)]),
    "fdlinear_qwen": (lambda: FDLinearQwen(16, 16), [(2, 5, 16)]),
    "odconv": (lambda: ODConv2d(16, 16, 3, padding=1), [(2, 16, 8, 8)]),
    "dyconv": (lambda: DynamicConv2d(16, 16, 3, padding=1), [(2, 16, 8, 8)]),
    "condconv": (lambda: CondConv2d(16, 16, 3, padding=1), [(2, 16, 8, 8)]),
    "freqfusion": (lambda: FreqFusion(16, 16), [(2, 16, 16, 16), (2, 16, 8, 8)]),
    "mrfa": (lambda: MRFA(16), [(2, 16, 8, 8)]),
    "uniconvnet_block": (lambda: UniConvNetBlock(16), [(2, 16, 8, 8)]),
    "dcnv3": (lambda: DCNv3(16), [(2, 8, 8, 16)]),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_first_and_later_calls_never_sync_the_host(name, training):
    make, shapes = LAYERS[name]
    run = step(make(), [torch.randn(s) for s in shapes], training)
    for _ in range(2):  # the first call (FDConv's saturation check ran there) and a later one
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        assert not {e.name for e in prof.events()} & SYNCS
