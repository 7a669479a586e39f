"""No layer's forward or backward syncs the host (Tensor.item, nonzero, a tensor's truth value): CUDA graphs and
torch.compile capture them whole. Deterministic on the CPU: the profiler lists every aten call, syncing ones too."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from freqdyn.tools.op_count import step
from zoo import ZOO

SYNCS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero"}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_first_and_later_calls_never_sync_the_host(name, training):
    make, inputs = ZOO[name]
    args = [a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in inputs()]  # backward reaches them too
    run = step(make(), args, training)
    for _ in range(2):  # the first call (FDConv's saturation check ran there) and a later one
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        assert not {e.name for e in prof.events()} & SYNCS
