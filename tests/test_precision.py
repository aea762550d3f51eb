"""Mixed precision: the networks under autocast, the objective in float32, within a stated tolerance of
float32 on a fixed batch; the float16 gradient scaler's logic (CPU-side); config.json and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.data import as_float
from vaezoo.errors import UsageError, WeightsError
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.training.precision import Precision, check_precision, to_float32

from .test_resume import assert_same_results

CPU = torch.device("cpu")
# The tolerance docs/precision.md states for bf16 against float32, per image, on one batch.
LOSS_RTOL = 1e-3
KL_ATOL = 1e-3
GRAD_RTOL = 1e-2


def test_check_precision_refuses_what_the_device_cannot_do():
    assert check_precision("bf16", CPU) == "bf16" and check_precision("32", CPU) == "32"
    with pytest.raises(UsageError, match="--precision 16 needs a CUDA device.*use --precision bf16"):
        check_precision("16", CPU)
    with pytest.raises(UsageError, match="unknown precision 'fp16'. Did you mean: bf16, 16\\?"):
        check_precision("fp16", CPU)


def test_to_float32_casts_distributions_without_touching_the_original():
    mu, logvar = torch.randn(3, 2).bfloat16(), torch.randn(3, 2).bfloat16()
    q = DiagonalGaussian(mu, logvar)
    cast = to_float32(q)
    assert cast.mu.dtype == cast.logvar.dtype == torch.float32 and q.mu.dtype == torch.bfloat16
    assert torch.equal(cast.mu, mu.float())
    normal = torch.distributions.Independent(torch.distributions.Normal(mu, logvar.exp()), 1)
    cast = to_float32(normal)
    assert cast.base_dist.loc.dtype == torch.float32 and cast.log_prob(torch.zeros(3, 2)).dtype == torch.float32
    assert to_float32((mu, {"a": mu}))[1]["a"].dtype == torch.float32
    assert to_float32(torch.ones(2, dtype=torch.long)).dtype == torch.long


def one_batch(precision: str, model, objective, x):
    """Terms and flattened gradients of one training forward and backward on `x`, same noise every time."""
    model.zero_grad()
    runner = Precision(precision, x.device)
    with runner.applied(model):
        torch.manual_seed(1)
        terms = objective(model, x, 0)
    terms["loss"].backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return {key: value.detach() for key, value in terms.items()}, grads


@pytest.fixture
def conv_fashion(build_variant, synthetic):
    torch.manual_seed(0)
    model, objective = build_variant("conv-fashion")
    return model, objective, as_float(synthetic.test[:64])


def test_bf16_on_the_cpu_is_within_the_stated_tolerance_of_float32(conv_fashion):
    model, objective, x = conv_fashion
    reference, reference_grads = one_batch("32", model, objective, x)
    terms, grads = one_batch("bf16", model, objective, x)
    assert all(value.dtype == torch.float32 for value in terms.values())  # the objective ran in float32
    for key in ("loss", "neg_elbo", "recon"):
        assert terms[key].item() == pytest.approx(reference[key].item(), rel=LOSS_RTOL)
        assert terms[key].item() != reference[key].item()  # the networks did run in bfloat16
    assert (terms["kl_per_dim"] - reference["kl_per_dim"]).abs().max() < KL_ATOL
    assert (grads - reference_grads).norm() / reference_grads.norm() < GRAD_RTOL
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_float32_reductions_matter(conv_fashion):
    """The same reconstruction term summed in bfloat16 misses the tolerance: why the objective stays float32."""
    model, _, x = conv_fashion
    with torch.no_grad():
        logits = model.decoder(model.encoder(x).mean)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)
    exact = bce.sum(-1)
    in_bf16 = bce.bfloat16().sum(-1).float()
    assert ((in_bf16 - exact).abs() / exact).max() > LOSS_RTOL


def test_autocast_covers_the_networks_and_leaves_the_model_as_it_was(conv_fashion):
    model, objective, x = conv_fashion
    seen = []
    layer = next(m for m in model.encoder.modules() if isinstance(m, nn.Linear))
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    keys = list(model.state_dict())
    with Precision("bf16", CPU).applied(model):
        assert "forward" in vars(model.encoder)
        objective(model, x, 0)
    handle.remove()
    assert seen == [torch.bfloat16]
    assert "forward" not in vars(model.encoder) and "forward" not in vars(model.decoder)
    assert list(model.state_dict()) == keys


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)


def test_float16_gradient_scaler_skips_overflowing_steps_and_its_state_round_trips():
    """The CUDA float16 path's logic, run on the CPU (where the CLI refuses float16)."""
    module = Tiny()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1)
    precision = Precision("16", CPU)
    before = module.layer.weight.detach().clone()
    loss = module.layer(torch.ones(1, 4)).sum()
    scaled = precision.scaled({"loss": loss, "recon": loss})
    assert set(scaled) == {"loss"} and scaled["loss"].item() == pytest.approx(loss.item() * 2.0**16)
    scaled["loss"].backward()
    module.layer.weight.grad[0, 0] = float("inf")  # an overflowing gradient: the step is skipped
    precision.step({"model": optimizer})
    assert torch.equal(module.layer.weight, before)
    state = json.loads(json.dumps(precision.state()))
    assert state["scale"] == 2.0**15  # backed off
    restored = Precision("16", CPU)
    restored.load(state, "checkpoint")
    assert restored.state() == state
    for damaged in ({**state, "scale": -1.0}, {**state, "_growth_tracker": "0"}, {"scale": 1.0}, [1]):
        with pytest.raises(WeightsError, match="gradient scaler"):
            Precision("16", CPU).load(damaged, "checkpoint")
    assert Precision("bf16", CPU).state() is None


def train_float16_on_cpu(run: Path, epochs: int) -> None:
    """Training with the float16 path end to end on the CPU, through the loop (the CLI would refuse)."""
    from rich.console import Console
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    from vaezoo.registry import get_registry
    from vaezoo.storage.runs import RunDir
    from vaezoo.training.loop import TrainSetup
    from vaezoo.training.loop import train as train_loop

    registry = get_registry()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve({"batch_size": 512, "epochs": epochs, "latent_dim": 2})
    setup = TrainSetup(spec, hp, load_synthetic(), CPU, precision="16")
    folder = RunDir.create(run) if not run.exists() else RunDir(run)
    train_loop(setup, folder, registry, Console(quiet=True), resume_run=run.joinpath("config.json").exists())


@pytest.mark.slow  # float16 is emulated on most CPUs: about 8x slower than float32
def test_float16_resume_restores_the_gradient_scaler(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_float16_on_cpu(full, 2)
    train_float16_on_cpu(cut, 1)
    from safetensors import safe_open

    with safe_open(str(cut / "checkpoints" / "epoch-0001.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["grad_scaler"])["scale"] < 2.0**16  # backed off: state worth keeping
    config = json.loads((cut / "config.json").read_text())
    config["hparams"]["epochs"] = 2
    (cut / "config.json").write_text(json.dumps(config))
    train_float16_on_cpu(cut, 2)
    assert_same_results(cut, full)


BF16_RUN = ("train", "conv-fashion", "--dataset", "synthetic", "-o", "latent_dim=2", "--device", "cpu",
            "--precision", "bf16")


def test_bf16_is_recorded_and_resume_reads_it(tmp_path, cli, refused):
    from vaezoo.registry import get_registry
    from vaezoo.storage.runs import RunDir
    from vaezoo.training.resume import stored_run

    run = tmp_path / "run"
    result = cli(*BF16_RUN, "--batch-size", "64", "--max-steps", "1", "--out", str(run))
    assert result.code == 0, result.err
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16"
    assert stored_run(RunDir(run), get_registry()).precision == "bf16"
    refused("train", "--resume", str(run), "--precision", "32", words=("--precision", "cannot be given"), code=2)


@pytest.mark.slow  # bfloat16 is emulated on CPUs without AVX512-BF16 or AMX: about 8x slower than float32
def test_bf16_resume_is_bit_for_bit(tmp_path, cli):
    args = (*BF16_RUN, "--batch-size", "512", "--epochs", "2")
    assert cli(*args, "--out", str(tmp_path / "full")).code == 0
    cut = Path(shutil.copytree(tmp_path / "full", tmp_path / "cut"))
    (cut / "checkpoints" / "epoch-0002.safetensors").unlink()
    (cut / "model.safetensors").unlink()
    result = cli("train", "--resume", str(cut), "--device", "cpu")
    assert result.code == 0, result.err
    assert_same_results(cut, tmp_path / "full")  # resumed in bf16 too


def test_float16_on_the_cpu_is_refused_before_anything_is_written(tmp_path, refused):
    refused("train", "conv-fashion", "--dataset", "synthetic", "--device", "cpu", "--precision", "16",
            "--out", str(tmp_path / "run"), words=("--precision 16 needs a CUDA device",), code=2)
    assert not (tmp_path / "run").exists()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_on_cuda_is_within_the_stated_tolerance(conv_fashion, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model, objective, x = conv_fashion
    model, objective, x = model.cuda(), objective.cuda(), x.cuda()
    reference, reference_grads = one_batch("32", model, objective, x)
    terms, grads = one_batch(precision, model, objective, x)
    for key in ("loss", "neg_elbo", "recon"):
        assert terms[key].item() == pytest.approx(reference[key].item(), rel=LOSS_RTOL)
    assert (terms["kl_per_dim"] - reference["kl_per_dim"]).abs().max() < KL_ATOL
    assert (grads - reference_grads).norm() / reference_grads.norm() < GRAD_RTOL


@pytest.mark.cuda
@needs_cuda
def test_float16_trains_on_cuda_and_checkpoints_its_scaler(tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "-o", "latent_dim=2", "--device", "cuda",
                 "--precision", "16", "--batch-size", "256", "--epochs", "2", "--out", str(run))
    assert result.code == 0, result.err
    assert json.loads((run / "config.json").read_text())["precision"] == "16"
    from safetensors import safe_open

    with safe_open(str(run / "checkpoints" / "epoch-0002.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["grad_scaler"])["scale"] > 0


def test_a_model_without_networks_to_cover_is_refused():
    with pytest.raises(UsageError, match="no encoder or decoder network"):
        with Precision("bf16", CPU).applied(Tiny()):
            pass
    with Precision("32", CPU).applied(Tiny()):  # float32 needs no networks
        pass
