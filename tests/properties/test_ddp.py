"""A DistributedDataParallel training step (gloo, 2 CPU processes) through every dynamic layer."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from freqdyn import CondConv2d, DynamicConv2d, FDConv, KWConv2d, ODConv2d

pytestmark = pytest.mark.slow  # a quick run: python -m pytest -m 'not slow'

WORLD = 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        DynamicConv2d.from_conv(nn.Conv2d(8, 24, 3, padding=1), num_experts=3, temperature=1.0),
        nn.BatchNorm2d(24),
        nn.ReLU(),
        ODConv2d(24, 24, 3, padding=1, groups=24),
        nn.ReLU(),
        CondConv2d(24, 32, 1, num_experts=2),
        nn.ReLU(),
        FDConv(32, 32, 3, padding=1, kernel_num=4),
        nn.ReLU(),
        KWConv2d.standalone(32, 32, 3, padding=1, cell_num_ratio=2),  # its warehouse, temperature and statistics
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 3),
    )


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        gen = torch.Generator().manual_seed(rank)
        for _ in range(2):  # a second step fails if the first left a parameter without a gradient
            x, y = torch.randn(4, 8, 12, 12, generator=gen), torch.randint(0, 3, (4,), generator=gen)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        gathered = [torch.empty_like(grads) for _ in range(WORLD)]
        dist.all_gather(gathered, grads)
        if rank == 0:
            queue.put(
                (
                    gathered[0].abs().sum().item(),
                    (gathered[0] - gathered[1]).abs().max().item(),
                    sum(p.grad is None for p in model.parameters()),
                )
            )
        dist.barrier()  # both ranks done before either tears down (gloo can abort a rank whose peer left first)
        del model, optimizer  # DDP's reducer holds the process group
    finally:
        dist.destroy_process_group()
    # Exit now: at interpreter shutdown gloo's threads can still be joinable, and their C++ destructors then abort
    # the process ("terminate called without an active exception", seen once in CI after a passing step).
    queue.close()
    queue.join_thread()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_ddp_step_gradients_equal_across_ranks():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_worker, args=(_free_port(), queue), nprocs=WORLD, start_method="spawn", join=True)
    grad_norm, max_diff, missing = queue.get(timeout=60)
    assert missing == 0 and grad_norm > 0
    assert max_diff == 0.0
