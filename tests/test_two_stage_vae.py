"""The two-stage VAE: its image-space bound written out from the parts, learning gamma, and sampling
through both stages from a finished run."""

from __future__ import annotations

import json

import pytest
import torch

import vaezoo
from vaezoo.data import as_float


@pytest.fixture(scope="module")
def second_stage(small_run, tmp_path_factory):
    from vaezoo.cli import main

    out = tmp_path_factory.mktemp("two") / "stage"
    try:
        main(["train", "two-stage-vae", "--parent", str(small_run), "--dataset", "synthetic", "--epochs", "3",
              "--batch-size", "128", "-o", "width=64", "-o", "lr=3e-3", "--device", "cpu", "--out", str(out)])
    except SystemExit as exc:
        assert not exc.code
    return out


def test_groups_sum_to_the_image_space_bound(second_stage, synthetic):
    """recon1 + [log q1(z1|x) - log p2(z1|u)] + KL(q2 || N(0, I)), written out from the two stages' parts."""
    model = vaezoo.load(second_stage)
    x = as_float(synthetic.test[:16])
    torch.manual_seed(0)
    out = model(x)
    torch.manual_seed(0)
    parent = model.parent
    q1 = parent.encoder(x)
    z1 = q1.rsample()
    recon = -parent.likelihood.log_prob(x, parent.decoder(z1))
    mu, logvar = model.encoder(z1).chunk(2, -1)
    u = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    gamma = model.log_gamma.exp()
    log_p2 = (-0.5 * (torch.log(2 * torch.pi * gamma) + (z1 - model.decoder(u)) ** 2 / gamma)).sum(-1)
    kl2 = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)
    torch.testing.assert_close(out.recon, recon)
    torch.testing.assert_close(out.kl, q1.log_prob(z1) - log_p2 + kl2, rtol=1e-5, atol=1e-4)
    assert not out.kl_exact  # the first group's term is a one-sample estimate


def test_gamma_is_learnt_and_only_the_second_stage_trains(second_stage, small_run):
    model = vaezoo.load(second_stage)
    records = [json.loads(line) for line in (second_stage / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train"]["gamma"] < 1.0  # from 1 towards the codes' residual variance
    assert records[-1]["train"]["loss"] < records[0]["train"]["loss"]
    parent = vaezoo.load(small_run)
    for key, value in parent.state_dict().items():
        assert torch.equal(model.state_dict()[f"parent.{key}"], value)


def test_samples_go_through_both_stages(second_stage):
    model = vaezoo.load(second_stage)
    torch.manual_seed(1)
    images = model.sample(6)
    torch.manual_seed(1)
    u = torch.randn(6, model.decoder[-1].out_features)
    expected = model.parent.decode_representation(model.decoder(u))
    torch.testing.assert_close(images, expected)
    assert images.shape == (6, 1, 32, 32) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_evaluation_reports_the_bound_as_an_estimate(second_stage, cli):
    result = cli("evaluate", str(second_stage), "--device", "cpu", "--out", str(second_stage / "e.json"))
    assert result.code == 0, result.err
    measured = json.loads((second_stage / "e.json").read_text())
    assert measured["kl_estimated"] and "nll" in measured["not_applicable"]
    assert measured["kl_per_group"] and len(measured["kl_per_group"]) == 2


def test_a_region_it_cannot_count_is_reported_beside_the_other_measures(second_stage, synthetic):
    """The second stage's image likelihood is inside its first stage: no per-pixel terms to count a region
    with. Evaluation still measures the rest (the bench used to lose the whole cell), and says why."""
    whole = vaezoo.evaluate(second_stage, importance_samples=1, device="cpu", save=False)
    measured = vaezoo.evaluate(second_stage, importance_samples=1, device="cpu", save=False, region=(2, 30, 2, 30))
    assert "per-pixel" in measured["not_applicable"]["region"] and "region" not in measured
    assert measured["neg_elbo"] == whole["neg_elbo"] and measured["kl"] == whole["kl"]
