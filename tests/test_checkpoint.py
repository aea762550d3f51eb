"""Optimizer state through a checkpoint: the restored optimizer steps exactly like the one never saved."""

from __future__ import annotations

import pytest
import torch

from vaezoo.storage.checkpoint import optimizer_tensors, restore_optimizer


def adam_steps(layout: torch.memory_format, save_after: int | None) -> torch.Tensor:
    """Three fused Adam steps on a 4-d parameter in `layout`, optionally through a checkpoint."""
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(8, 3, 4, 4).contiguous(memory_format=layout))
    optimizer = torch.optim.Adam([param], lr=0.1, weight_decay=0.02, fused=True)
    gradients = torch.randn(3, 8, 3, 4, 4)
    for step, gradient in enumerate(gradients):
        param.grad = gradient.contiguous(memory_format=layout)
        optimizer.step()
        if step == save_after:
            tensors, meta = optimizer_tensors(optimizer, "optimizer.model/")
            optimizer = torch.optim.Adam([param], lr=0.1, weight_decay=0.02, fused=True)
            restore_optimizer(optimizer, "optimizer.model/", tensors, meta)
    return param.detach().clone()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_restored_adam_continues_exactly(layout):
    assert torch.equal(adam_steps(layout, save_after=0), adam_steps(layout, save_after=None))


def test_restored_state_takes_its_parameters_layout():
    """The failure this guards against: contiguous state next to a channels_last parameter."""
    param = torch.nn.Parameter(torch.randn(8, 3, 4, 4).contiguous(memory_format=torch.channels_last))
    optimizer = torch.optim.Adam([param], fused=True)
    param.grad = torch.ones_like(param)
    optimizer.step()
    tensors, meta = optimizer_tensors(optimizer, "o/")
    assert all(t.is_contiguous() for t in tensors.values())  # the file holds plain contiguous tensors
    restore_optimizer(optimizer, "o/", tensors, meta)
    state = optimizer.state[param]
    assert state["exp_avg"].stride() == state["exp_avg_sq"].stride() == param.stride()
