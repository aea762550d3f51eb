"""vaezoo.model.layers against the torch.nn layers they replace: same outputs, same gradients, on random inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.model.layers import ConvTranspose2d


def graph_ops(t: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind `t`: which kernels actually ran."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node.name() not in seen:
            seen.add(node.name())
            todo.extend(next_fn for next_fn, _ in node.next_functions)
    return seen


def twins(*args, **kwargs) -> tuple[nn.ConvTranspose2d, ConvTranspose2d]:
    torch.manual_seed(0)
    reference = nn.ConvTranspose2d(*args, **kwargs).double()
    torch.manual_seed(0)
    fast = ConvTranspose2d(*args, **kwargs).double()
    return reference, fast


def outputs_and_gradients(layer: nn.Module, x: torch.Tensor, upstream: torch.Tensor, **kwargs):
    x = x.clone().requires_grad_(True)
    y = layer(x, **kwargs)
    y.backward(upstream)
    return y, [x.grad] + [p.grad for p in layer.parameters()], graph_ops(y)


CASES = [  # in_channels, kernel, stride, padding, dilation, bias, input height x width
    (32, 4, 2, 1, 1, True, (16, 16)),  # the reference decoder's last layer
    (32, 4, 2, 1, 1, False, (16, 16)),
    (5, 3, 1, 0, 1, True, (7, 9)),
    (7, (3, 5), (2, 3), (1, 2), 1, True, (6, 4)),
    (4, 3, 2, 2, 2, True, (5, 5)),
    (1, 2, 2, 0, 1, True, (3, 3)),
]


@pytest.mark.parametrize("in_channels, kernel, stride, padding, dilation, bias, size", CASES)
def test_one_output_channel_matches_nn_convtranspose2d(in_channels, kernel, stride, padding, dilation, bias, size):
    reference, fast = twins(in_channels, 1, kernel, stride, padding, dilation=dilation, bias=bias)
    assert torch.equal(reference.weight, fast.weight)  # same initialisation, same parameters
    x = torch.randn(3, in_channels, *size, dtype=torch.float64)
    upstream = torch.randn_like(reference(x))
    y_ref, grads_ref, _ = outputs_and_gradients(reference, x, upstream)
    y, grads, ops = outputs_and_gradients(fast, x, upstream)
    assert "Col2ImBackward0" in ops and "ConvolutionBackward0" not in ops  # the fold path ran
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("in_channels, kernel, stride, padding, dilation, bias, size", CASES)
def test_without_gradients_the_overlap_add_matches_nn_convtranspose2d(in_channels, kernel, stride, padding, dilation,
                                                                      bias, size, layout, monkeypatch):
    """Evaluation's path (no gradients): one product for the batch, each tap added into place; F.fold does not run."""
    reference, fast = twins(in_channels, 1, kernel, stride, padding, dilation=dilation, bias=bias)
    x = torch.randn(3, in_channels, *size, dtype=torch.float64).contiguous(memory_format=layout)
    expected = reference(x)

    def no_fold(*args, **kwargs):
        raise AssertionError("F.fold ran without gradients")

    monkeypatch.setattr(F, "fold", no_fold)
    with torch.no_grad():
        y = fast(x)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


def magnitudes(x: torch.Tensor, upstream: torch.Tensor) -> list[torch.Tensor]:
    """For the output and each gradient, the sum of the absolute values of the terms it sums (float64).

    The layer is linear in its input, weight and upstream gradient, so running it on their absolute
    values sums |term| wherever it sums a term.
    """
    absolute, _ = twins(32, 1, 4, 2, 1)
    with torch.no_grad():
        for p in absolute.parameters():
            p.abs_()
    y, grads, _ = outputs_and_gradients(absolute, x.double().abs(), upstream.double().abs())
    return [y, *grads]


def test_float32_agrees_to_rounding():
    """Both PyTorch's float32 kernel and the fold path are within float32 rounding of the exact (float64) result.

    A float32 sum of n products t_i, summed pairwise or in blocks (as BLAS and oneDNN do, in an order
    that depends on the thread count), is within (log2(n) + 1) u sum|t_i| of the exact sum (u = 2^-24 the
    unit roundoff; the 1 for rounding each product; Higham, Accuracy and Stability, ch. 4); one more u
    for the weights rounded to float32. The largest sums here are the weight gradient's, n = 64 * 16 * 16
    terms. A tolerance relative to sum|t_i| holds for every thread count, and stays far below what a
    wrong index or a missing term would change (a term is about sum|t_i| / n).
    """
    x = torch.randn(64, 32, 16, 16, generator=torch.Generator().manual_seed(0))
    upstream = torch.randn(64, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    y_exact, grads_exact, _ = outputs_and_gradients(twins(32, 1, 4, 2, 1)[0], x.double(), upstream.double())
    exact = [y_exact.detach(), *grads_exact]
    reference, fast = twins(32, 1, 4, 2, 1)
    bound = [(math.log2(64 * 16 * 16) + 2) * 2.0**-24 * m for m in magnitudes(x, upstream)]
    for layer in (reference.float(), fast.float()):
        y, grads, _ = outputs_and_gradients(layer, x, upstream)
        for name, value, truth, tolerance in zip(("output", "input grad", "weight grad", "bias grad"),
                                                 [y, *grads], exact, bound, strict=True):
            error = (value.detach().double() - truth).abs()
            assert bool((error <= tolerance).all()), (type(layer).__module__, name, float((error / tolerance).max()))
            assert float(error.max()) < 1e-3 * float(truth.abs().max())  # the bound is tight enough to mean something


@pytest.mark.parametrize("args, kwargs, call", [
    ((32, 3, 4, 2, 1), {}, {}),                          # several output channels: PyTorch's kernel is faster
    ((4, 1, 3, 2, 1), {"output_padding": 1}, {}),
    ((4, 1, 3, 2, 1), {}, {"output_size": [10, 10]}),
    ((4, 2, 3, 1, 1), {"groups": 2}, {}),
])
def test_other_configurations_run_pytorchs_layer(args, kwargs, call):
    reference, fast = twins(*args, **kwargs)
    x = torch.randn(2, args[0], 5, 5, dtype=torch.float64)
    upstream = torch.randn_like(reference(x, **call))
    y_ref, grads_ref, _ = outputs_and_gradients(reference, x, upstream, **call)
    y, grads, ops = outputs_and_gradients(fast, x, upstream, **call)
    assert "Col2ImBackward0" not in ops
    assert torch.equal(y, y_ref)
    assert all(torch.equal(g, g_ref) for g, g_ref in zip(grads, grads_ref, strict=True))


def test_unbatched_input_and_state_dict():
    reference, fast = twins(6, 1, 4, 2, 1)
    x = torch.randn(6, 5, 5, dtype=torch.float64)
    assert torch.equal(fast(x), reference(x))
    assert fast.state_dict().keys() == reference.state_dict().keys()
    assert isinstance(fast, nn.ConvTranspose2d)
