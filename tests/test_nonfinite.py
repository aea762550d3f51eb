"""A non-finite loss stops training naming the step and the term, keeping the last good checkpoint;
--skip-nonfinite skips the batch instead."""

from __future__ import annotations

import json
import math

import pytest
import torch
from vaezoo_plugins.standard.objectives import BetaELBO

from vaezoo import hookimpl
from vaezoo.training.nonfinite import Watch, describe
from vaezoo.variant import VariantSpec

from .conftest import snapshot

BAD_STEP = 2  # the objective sees steps from 0: the 3rd batch, "step 3" to the user


class NaNReconOnce(BetaELBO):
    """beta-ELBO whose reconstruction term is NaN on one step (a stand-in for a diverging model)."""

    def forward(self, model, x, step):
        terms = super().forward(model, x, step)
        if step == BAD_STEP:
            terms["recon"] = terms["recon"] * math.nan
            terms["neg_elbo"] = terms["recon"] + terms["kl"]
            terms["loss"] = terms["neg_elbo"]
        return terms


class _Plugin:
    @hookimpl
    def register_objectives(self, register):
        register("nan-recon-once", f"{__name__}:NaNReconOnce", "NaN reconstruction at one step (tests)")

    @hookimpl
    def register_variants(self, register):
        from vaezoo.registry import get_registry

        reference = get_registry().variant("conv-fashion")
        register(VariantSpec("nan-once", "conv-fashion whose loss is NaN at step 3", reference.parts,
                             "nan-recon-once", reference.params))


@pytest.fixture
def nan_registry(fresh_registry):
    fresh_registry.load_entry_points("none")
    fresh_registry.add_plugin(_Plugin(), "nan-once")
    return fresh_registry


def test_watch_reports_the_first_bad_step_and_its_terms():
    watch = Watch()
    finite = {"loss": torch.tensor(2.0), "recon": torch.tensor(1.5), "kl_per_dim": torch.ones(3)}
    for step in (1, 2):
        watch.observe(finite, step)
    assert watch.first() is None
    watch.observe({**finite, "kl_per_dim": torch.tensor([1.0, math.inf, 0.0]), "loss": torch.tensor(math.inf)}, 3)
    watch.observe({key: torch.full_like(value, math.nan) for key, value in finite.items()}, 4)
    step, values = watch.first()
    assert step == 3 and values["recon"] == 1.5
    assert describe(values) == "kl_per_dim=inf, loss=inf"


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(nan_registry, refused, cli, tmp_path):
    run = tmp_path / "run"
    args = ("nan-once", "--dataset", "synthetic", "--batch-size", "128", "--max-steps", "5", "--device", "cpu")
    result = refused("train", *args, "--checkpoint-every", "2", "--out", str(run), code=3,
                     words=("non-finite loss at step 3 (epoch 1, batch 3)", "recon=nan, neg_elbo=nan, loss=nan",
                            "the last good checkpoint is", "step-00000002.safetensors", "--skip-nonfinite"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002.safetensors"]
    assert not (run / "metrics.jsonl").exists() and not (run / "model.safetensors").exists()
    before = snapshot(run / "checkpoints")

    result = cli("train", "--resume", str(run), "--skip-nonfinite", "--device", "cpu")
    assert result.code == 0, result.err
    assert "non-finite recon=nan, neg_elbo=nan, loss=nan at step 3 (epoch 1, batch 3); batch skipped" in result.err
    [record] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 5 and record["skipped"] == 1 and math.isfinite(record["train"]["loss"])
    assert (run / "model.safetensors").exists()
    assert "step-00000002.safetensors" in before and not (run / "checkpoints" / "step-00000002.safetensors").exists()
