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


class NaNWindow(BetaELBO):
    """beta-ELBO whose reconstruction (and so the loss) is NaN for WINDOW[1] steps from step WINDOW[0] (counted
    from 0): a stand-in for a diverging model."""

    WINDOW = (BAD_STEP, 1)

    def forward(self, model, x, step):
        terms = super().forward(model, x, step)
        start, length = self.WINDOW
        if start <= step < start + length:
            for key in ("recon", "neg_elbo", "loss"):
                terms[key] = terms[key] * math.nan
        return terms


class _Plugin:
    @hookimpl
    def register_objectives(self, register):
        register("nan-window", f"{__name__}:NaNWindow", "NaN reconstruction for a window of steps (tests)")

    @hookimpl
    def register_variants(self, register):
        from vaezoo.registry import get_registry

        reference = get_registry().variant("conv-fashion")
        register(VariantSpec("nan-once", "conv-fashion whose loss is NaN at step 3", reference.parts,
                             "nan-window", reference.params))


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


@pytest.mark.parametrize("bad, stops", [(20, True), (19, False)])
def test_skipping_gives_up_after_twenty_bad_batches_in_a_row(nan_registry, refused, cli, tmp_path, monkeypatch,
                                                              one_thread, bad, stops):
    monkeypatch.setattr(NaNWindow, "WINDOW", (2, bad))
    args = ("train", "nan-once", "--dataset", "synthetic", "--batch-size", "32", "--max-steps", "24",
            "--skip-nonfinite", "--device", "cpu", "-o", "latent_dim=2", "--out", str(tmp_path / "run"))
    if stops:
        refused(*args, code=3, words=("20 batches in a row had a non-finite loss",
                                      "last at step 22 (epoch 1, batch 22)", "no checkpoint had been written yet"))
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    else:
        result = cli(*args)
        assert result.code == 0, result.err
        assert result.err.count("batch skipped") == 19
        [record] = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert record["skipped"] == 19 and record["step"] == 24 and math.isfinite(record["train"]["loss"])
