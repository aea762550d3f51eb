"""On a CUDA device vaezoo computes what it computes on the CPU, and trains, resumes and evaluates there.

Every test marked `cuda` is skipped without a GPU (benchmarks/gpu_check.sh runs them on one). The
comparisons run under `exact_float32`: PyTorch's defaults let cuDNN round convolution inputs to TF32
(about 1e-3 relative), which would hide a real difference, and let it pick algorithms that add in a
different order on every call. `test_default_precision_stays_within_a_percent` checks what a run
with the defaults gets. Where two devices are compared, the noise eps is drawn by the CPU generator
on both (`cpu_noise`), so they see the same numbers.
"""

from __future__ import annotations

import copy
import json
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import vaezoo
from vaezoo.cli import main
from vaezoo.evaluation.measures import importance_log_likelihood
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.training import loop as training
from vaezoo.training import rng

from .conftest import SMALL_RUN
from .test_resume import assert_same_results, results
from .test_weight_decay import LR, _batches, _setup, _train_with_penalty_in_loss

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
RTOL = 1e-4  # CPU against CUDA: different kernels, so float32 rounding differs
CUDA_RUN = tuple("cuda" if arg == "cpu" else arg for arg in SMALL_RUN)  # 2 epochs of 2 steps, on the GPU
STOP_AT = 3  # the interrupted run stops after this step: mid-way through epoch 2
EXACT_FLAGS = ((torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False),
               (torch.backends.cudnn, "deterministic", True), (torch.backends.cudnn, "benchmark", False))


@contextmanager
def exact_float32():
    """Full float32 convolutions and matrix products, deterministic cuDNN algorithms; restored after."""
    saved = [getattr(owner, name) for owner, name, _ in EXACT_FLAGS]
    for owner, name, value in EXACT_FLAGS:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(EXACT_FLAGS, saved):
            setattr(owner, name, value)


@pytest.fixture
def exact():
    with exact_float32():
        yield


def _rsample_with_cpu_noise(self, sample_shape=()):
    """DiagonalGaussian.rsample, but eps comes from the CPU generator on every device."""
    shape = torch.Size(sample_shape) + self.mu.shape
    eps = torch.randn(shape, dtype=self.mu.dtype).to(self.mu.device)
    return self.mu + self.std * eps


@pytest.fixture
def cpu_noise(monkeypatch):
    monkeypatch.setattr(DiagonalGaussian, "rsample", _rsample_with_cpu_noise)


def assert_close_scaled(actual, expected, rtol: float = RTOL, what: str = "") -> None:
    """Close relative to the largest expected magnitude: entries near zero get the same absolute slack."""
    actual = torch.as_tensor(actual, dtype=torch.float64, device="cpu")
    expected = torch.as_tensor(expected, dtype=torch.float64, device="cpu")
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * float(expected.abs().max()), msg=what or None)


def _terms_and_gradients(model, objective, x, seed: int = 7):
    torch.manual_seed(seed)
    terms = objective(model, x, 0)
    model.zero_grad()
    terms["loss"].backward()
    return {k: v.detach().cpu() for k, v in terms.items()}, {n: p.grad.cpu() for n, p in model.named_parameters()}


def test_cpu_noise_is_the_models_own_noise(build_variant, synthetic, monkeypatch):
    """The fixture only moves where eps is drawn: on the CPU it gives exactly the model's own terms."""
    model, objective = build_variant("conv-fashion")
    x = synthetic.train[:16].float() / 255
    own, own_grads = _terms_and_gradients(model, objective, x)
    monkeypatch.setattr(DiagonalGaussian, "rsample", _rsample_with_cpu_noise)
    patched, patched_grads = _terms_and_gradients(model, objective, x)
    assert all(torch.equal(own[k], patched[k]) for k in own) and own.keys() == patched.keys()
    assert all(torch.equal(own_grads[n], patched_grads[n]) for n in own_grads)


@pytest.mark.cuda
@needs_cuda
def test_conv_fashion_terms_and_gradients_match_the_cpu(build_variant, synthetic, cpu_noise, exact):
    model, objective = build_variant("conv-fashion")
    x = synthetic.train[:64].float() / 255
    on_cpu, cpu_grads = _terms_and_gradients(model, objective, x)
    on_cuda, cuda_grads = _terms_and_gradients(copy.deepcopy(model).to(CUDA), objective, x.to(CUDA))
    assert set(on_cuda) == set(on_cpu) >= {"loss", "recon", "kl", "neg_elbo", "kl_per_dim"}
    for key in on_cpu:
        assert_close_scaled(on_cuda[key], on_cpu[key], what=key)
    assert all(g.abs().max() > 0 for g in cpu_grads.values())  # every parameter takes part
    for name in cpu_grads:
        assert_close_scaled(cuda_grads[name], cpu_grads[name], what=name)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory) -> Path:
    """A finished two-epoch synthetic run trained on the GPU by the CLI (under exact_float32)."""
    path = tmp_path_factory.mktemp("cuda") / "run"
    with exact_float32():
        try:
            main(["train", *CUDA_RUN, "--out", str(path)])
        except SystemExit as exc:
            assert not exc.code, f"training on CUDA failed ({exc.code})"
    return path


@pytest.mark.cuda
@needs_cuda
def test_cuda_run_loads_and_evaluates_alike_on_both_devices(cuda_run, cli, tmp_path, synthetic, cpu_noise, exact):
    assert json.loads((cuda_run / "config.json").read_text())["device"] == "cuda"
    on_cpu, on_cuda = vaezoo.load(cuda_run, device="cpu"), vaezoo.load(cuda_run, device="cuda")
    assert all(p.device == CPU for p in on_cpu.parameters())
    for (name, a), b in zip(on_cpu.state_dict().items(), on_cuda.state_dict().values()):
        assert torch.equal(a, b.cpu()), name
    x = synthetic.test[:32].float() / 255
    assert_close_scaled(on_cuda.reconstruct(x.to(CUDA)), on_cpu.reconstruct(x))

    measured = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        result = cli("evaluate", str(cuda_run), "--device", device, "-k", "8", "--out", str(out))
        assert result.code == 0, result.err
        measured[device] = json.loads(out.read_text())
    cpu, gpu = measured["cpu"], measured["cuda"]
    assert (cpu["device"], gpu["device"]) == ("cpu", "cuda:0")
    for key in ("neg_elbo", "recon", "kl", "kl_per_dim", "nll", "mse", "posterior_mean_variance"):
        assert_close_scaled(gpu[key], cpu[key], what=key)
    assert gpu["active_units"] == cpu["active_units"] and gpu["images"] == cpu["images"] == synthetic.test.shape[0]


def _leaves(value):
    """The numbers of a metrics record, in a fixed order."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield float(value)


def gaps(run: Path, reference: Path) -> tuple[float, float]:
    """Largest weight difference, and largest metric difference relative to max(|value|, 1)."""
    weights, records = results(run)
    ref_weights, ref_records = results(reference)
    assert weights.keys() == ref_weights.keys() and [r.keys() for r in records] == [r.keys() for r in ref_records]
    weight_gap = max((weights[k] - ref_weights[k]).abs().max().item() for k in weights)
    metric_gap = max(abs(a - b) / max(abs(b), 1.0) for a, b in zip(_leaves(records), _leaves(ref_records)))
    return weight_gap, metric_gap


def interrupted_then_resumed(run: Path, cli, monkeypatch) -> None:
    """CUDA_RUN stopped by SIGTERM after step STOP_AT (a mid-epoch checkpoint), then `train --resume`d."""
    step = training._Loop.step

    def step_then_signal(loop, x):
        terms = step(loop, x)
        if loop.state.step == STOP_AT:
            signal.raise_signal(signal.SIGTERM)  # handled before this returns: the loop stops after this step
        return terms

    with monkeypatch.context() as patch:
        patch.setattr(training._Loop, "step", step_then_signal)
        result = cli("train", *CUDA_RUN, "--out", str(run))
    assert result.code == 128 + signal.SIGTERM, result.err
    assert f"interrupted by SIGTERM at step {STOP_AT}" in result.err
    assert (run / "checkpoints" / f"step-{STOP_AT:08d}.safetensors").is_file()
    result = cli("train", "--resume", str(run), "--device", "cuda")
    assert result.code == 0, result.err


@pytest.mark.cuda
@needs_cuda
def test_resume_on_cuda_continues_like_the_uninterrupted_run(cuda_run, cli, tmp_path, monkeypatch, exact):
    """Close first (which says whether a state was lost), then bit for bit: with cuDNN's deterministic
    algorithms nothing on the GPU path depends on the order of additions."""
    run = tmp_path / "run"
    interrupted_then_resumed(run, cli, monkeypatch)
    weight_gap, metric_gap = gaps(run, cuda_run)
    assert weight_gap <= 1e-6 and metric_gap <= 1e-5, (weight_gap, metric_gap)
    assert_same_results(run, cuda_run)


@pytest.mark.cuda
@needs_cuda
def test_resume_check_notices_a_lost_cuda_generator(cuda_run, cli, tmp_path, monkeypatch, exact):
    """Resuming without the checkpoint's CUDA generator state would fail the tolerances above."""
    restore = rng.restore
    monkeypatch.setattr(rng, "restore", lambda tensors, meta, device, source: restore(
        {k: v for k, v in tensors.items() if k != rng.CUDA}, meta, device, source))
    run = tmp_path / "run"
    interrupted_then_resumed(run, cli, monkeypatch)
    weight_gap, metric_gap = gaps(run, cuda_run)
    assert weight_gap > 1e-6 or metric_gap > 1e-5, (weight_gap, metric_gap)


@pytest.mark.cuda
@needs_cuda
def test_fused_adam_weight_decay_matches_penalty_in_loss_on_cuda(synthetic, exact):
    """tests/test_weight_decay.py's check, on the GPU: fused CUDA Adam with weight decay 2 lambda."""
    model, objective = _setup(synthetic)
    model.to(CUDA)
    plain = copy.deepcopy(model)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = training.build_optimizers(model, objective, {"lr": LR})["model"]
    assert optimizer.defaults["fused"]
    batches = [x.to(CUDA) for x in _batches(synthetic)]
    for i, x in enumerate(batches):
        torch.manual_seed(100 + i)
        terms = objective(model, x, i)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    _train_with_penalty_in_loss(plain, batches)
    moved = max((p - s).abs().max().item() for p, s in zip(model.parameters(), start))
    assert moved > 1e-3  # the steps did something, so agreement below means something
    for (name, ours), theirs in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.cuda
@needs_cuda
def test_importance_sampled_bound_matches_the_cpu(build_variant, synthetic, cpu_noise, exact):
    model, _ = build_variant("conv-fashion")
    model.eval()
    x = synthetic.test[:32].float() / 255
    k = 300  # decoded in chunks of 4096 // 32 = 128 samples: 128 + 128 + 44
    torch.manual_seed(5)
    on_cpu = importance_log_likelihood(model, x, k)
    torch.manual_seed(5)
    on_cuda = importance_log_likelihood(copy.deepcopy(model).to(CUDA), x.to(CUDA), k)
    assert on_cuda.device.type == "cuda" and on_cpu.shape == (32,)
    assert_close_scaled(on_cuda, on_cpu)


@pytest.mark.cuda
@needs_cuda
def test_default_precision_stays_within_a_percent(build_variant, synthetic, cpu_noise):
    """What `vaezoo train --device cuda` computes with PyTorch's defaults (TF32 cuDNN convolutions)."""
    model, objective = build_variant("conv-fashion")
    x = synthetic.train[:64].float() / 255
    on_cpu, cpu_grads = _terms_and_gradients(model, objective, x)
    on_cuda, cuda_grads = _terms_and_gradients(copy.deepcopy(model).to(CUDA), objective, x.to(CUDA))
    for key in ("loss", "recon", "kl"):
        assert_close_scaled(on_cuda[key], on_cpu[key], rtol=1e-2, what=key)
    worst = max(float((cuda_grads[n] - g).norm() / g.norm()) for n, g in cpu_grads.items())
    assert worst < 5e-2, f"largest relative gradient error {worst:.2e}"
