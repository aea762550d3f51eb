"""Both VQ-VAE stages through the CLI: train, evaluate, export, load in a fresh process with equal
outputs, sample, and resume after a SIGKILL bit for bit on the CPU; FashionMNIST for 200 steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import vaezoo

from .conftest import REAL_DATA
from .test_export import OUTPUTS, outputs_fresh_and_here
from .test_resume import (
    assert_same_results,
    killed_at_first_checkpoint_then_resumed,
)

#: Small widths, EMA and early restarts (so buffers and the random draws of restarts are exercised);
#: 1024 synthetic images at batch 64: 16 steps per epoch.
FIRST = ("vq-vae", "--dataset", "synthetic", "--device", "cpu", "--batch-size", "64", "--epochs", "2",
         "-o", "hidden_channels=16", "-o", "residual_channels=8", "-o", "latent_dim=8", "-o", "codebook_size=32",
         "-o", "ema=true", "-o", "restart_after=3", "--lr", "0.002")
PRIOR = ("vq-vae-prior", "--device", "cpu", "--batch-size", "64", "--epochs", "2",
         "-o", "prior_channels=16", "-o", "prior_layers=2")


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """(vq-vae run, prior run on it), trained in this process."""
    from vaezoo.cli import main

    folder = tmp_path_factory.mktemp("vq")
    for args in ((*FIRST, "--out", str(folder / "first")), (*PRIOR, "--parent", str(folder / "first"),
                                                             "--out", str(folder / "prior"))):
        try:
            main(["train", *args])
        except SystemExit as exc:
            assert not exc.code, f"training {args[0]} failed ({exc.code})"
    return folder / "first", folder / "prior"


@pytest.mark.slow
def test_the_first_stage_logs_and_reports_its_codebook_and_refuses_prior_samples(stages, tmp_path, cli, refused):
    first, _ = stages
    records = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        train = record["train"]
        assert 1 <= train["codebook_perplexity"] <= 32 and 0 < train["codebook_usage"] <= 1
        assert train["kl"] == pytest.approx(64 * math.log(32)) and "commitment" in train
        assert "codebook" not in train  # EMA moves the codes, not a loss
    assert (first / "reconstructions.png").is_file() and not (first / "samples.png").exists()
    result = vaezoo.evaluate(first, importance_samples=1, device="cpu", out=tmp_path / "eval.json")
    measures = result["structure_measures"]
    assert 1 <= measures["codebook_perplexity"] <= measures["codes_used"] <= 32
    assert measures["recon_bits_per_dim"] == pytest.approx(result["recon"] / (1024 * math.log(2)))
    assert "nll" in result["not_applicable"] and "nll" not in result
    refused("sample", str(first), "--out", str(tmp_path / "s.png"), "--device", "cpu",
            words=("vq-vae-prior --parent",))


@pytest.mark.slow
def test_the_prior_stage_is_a_true_bound_and_draws_real_samples(stages, tmp_path, cli, refused):
    first, prior = stages
    parent_eval = vaezoo.evaluate(first, importance_samples=1, device="cpu", save=False)
    result = vaezoo.evaluate(prior, importance_samples=1, device="cpu", save=False)
    assert result["recon"] == parent_eval["recon"]  # the parent's decoder, frozen
    assert result["neg_elbo"] == pytest.approx(result["recon"] + result["kl"])
    model = vaezoo.load(prior)
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    x = load_synthetic().test.float() / 255
    with torch.no_grad():
        by_hand = -model.pixelcnn.log_prob(model.parent.codes(x)).mean()
    assert result["kl"] == pytest.approx(float(by_hand), rel=1e-5)
    assert result["structure_measures"]["prior_bits_per_code"] == pytest.approx(result["kl"] / 64 / math.log(2),
                                                                                rel=1e-5)
    assert (prior / "samples.png").is_file() and (prior / "parent.safetensors").is_file()
    out = tmp_path / "samples.png"
    assert cli("sample", str(prior), "--out", str(out), "--n", "9", "--device", "cpu").code == 0 and out.is_file()
    refused("train", *PRIOR, "--parent", str(prior), "--out", str(tmp_path / "again"),
            words=("needs a parent model with discrete-codes",))


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1], ids=["vq-vae", "vq-vae-prior"])
def test_export_loads_in_a_fresh_process_with_equal_outputs(stages, stage, tmp_path):
    run = stages[stage]
    exported = vaezoo.export(run, tmp_path / "model.safetensors")
    fresh, here = outputs_fresh_and_here(OUTPUTS, exported, run, tmp_path)
    assert sorted(fresh) == sorted(here) and ("samples" in fresh) == (stage == 1)
    for key, value in fresh.items():
        assert torch.equal(value, here[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1], ids=["vq-vae", "vq-vae-prior"])
def test_a_killed_run_resumes_bit_for_bit(stages, stage, tmp_path, cli):
    """SIGKILL in epoch 2 (after mid-epoch checkpoints), resume: the uninterrupted run's weights,
    codebook buffers and metrics."""
    reference = stages[stage]
    args = FIRST if stage == 0 else (*PRIOR, "--parent", str(stages[0]))
    run = tmp_path / "run"
    killed_at_first_checkpoint_then_resumed(cli, run, *args)
    assert_same_results(run, reference)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"FashionMNIST IDX files not found in {REAL_DATA}")
def test_both_stages_train_200_steps_on_fashion_mnist(tmp_path, cli):
    first, prior = tmp_path / "first", tmp_path / "prior"
    data = ("--data-dir", str(REAL_DATA), "--device", "cpu", "--max-steps", "200")
    assert cli("train", "vq-vae", *data, "--out", str(first)).code == 0
    assert cli("train", "vq-vae-prior", *data, "--batch-size", "32", "--parent", str(first), "--out", str(prior)).code == 0
    [record] = [json.loads(line) for line in (prior / "metrics.jsonl").read_text().splitlines()]
    values = [v for split in ("train", "test") for v in record[split].values() if isinstance(v, float)]
    assert values and all(math.isfinite(v) for v in values)
    parent = json.loads((first / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(math.isfinite(v) for v in parent["train"].values())
    # the prior has learnt something about the codes: fewer nats than the uniform prior's log K per position
    assert record["test"]["kl"] < parent["test"]["kl"] and record["test"]["recon"] == parent["test"]["recon"]


@pytest.mark.slow
def test_processes_under_torchrun_keep_one_codebook(tmp_path):
    """EMA statistics are summed over the processes (a step equals one on the union batch) and restarts
    take rank 0's encoder outputs, so every process holds the same codebook."""
    from safetensors.torch import load_file

    from .distributed_codebook_step import codebook, grid, union_batches
    from .test_distributed import torchrun

    script = Path(__file__).with_name("distributed_codebook_step.py")
    with torchrun(tmp_path, str(script), str(tmp_path), module=False) as proc:
        code = proc.wait(300)
    assert code == 0, Path(f"{proc.logs}.err").read_text()
    states = {name: [load_file(tmp_path / f"{name}-{rank}.safetensors") for rank in range(2)]
              for name in ("ema", "restarts")}
    for name, (rank0, rank1) in states.items():
        assert all(torch.equal(rank0[key], rank1[key]) for key in rank0), name
    alone = codebook(restart_after=0)
    _, batches = union_batches()
    for batch in batches:
        alone(grid(batch))
    for key, value in alone.state_dict().items():
        torch.testing.assert_close(states["ema"][0][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # each process drew other positions of other rows: equal codebooks mean rank 0's restarts were taken
    assert not torch.equal(states["restarts"][0]["vectors"], states["ema"][0]["vectors"])
