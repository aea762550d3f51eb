"""`vaezoo bench`: cells trained and measured alike, resumable, summarised into a table that says
what it read, and protocol files checked like any untrusted input."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import pytest

from vaezoo.bench.protocol import Protocol
from vaezoo.bench.report import cells, summary, write_report
from vaezoo.bench.runner import CELL, run
from vaezoo.registry import get_registry

from .conftest import snapshot

TINY = Protocol(
    name="tiny", datasets={"grey": "synthetic"}, epochs=1, seeds=(0, 1), importance_samples=2,
    variants=("conv-fashion", "iwae"), overrides={"conv-fashion": {"batch_size": 256}, "iwae": {"batch_size": 256, "k": 2}},
    region=(2, 30, 2, 30), quality_dataset="grey", sample_images=64,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "out"
    run(TINY, out, get_registry(), device="cpu")
    return out


def test_every_cell_is_a_run_with_its_measures(bench):
    records = cells(bench)
    assert sorted((r["variant"], r["seed"]) for r in records) == [("conv-fashion", 0), ("conv-fashion", 1),
                                                                    ("iwae", 0), ("iwae", 1)]
    for record in records:
        folder = bench / record["run"]
        evaluation = json.loads((folder / "eval.json").read_text())
        assert record["evaluation"]["nll"] == evaluation["nll"] and evaluation["importance_samples"] == 2
        assert record["evaluation"]["region"]["values"] == 28 * 28
        assert record["weights_hash"].startswith("sha256:") and record["train_seconds"] > 0
        assert "not_applicable" in record["quality"]  # synthetic data has no labels to train a classifier on
        config = json.loads((folder / "config.json").read_text())
        assert config["seed"] == record["seed"] and config["hparams"]["epochs"] == 1
    assert json.loads((bench / "protocol.json").read_text())["name"] == "tiny"


def test_report_reads_the_cells_and_summarises_over_seeds(bench, tmp_path):
    text = write_report(bench, TINY, tmp_path / "results.md", hardware="test machine")
    nll = [r["evaluation"]["nll"] for r in cells(bench) if r["variant"] == "iwae"]
    expected = f"{statistics.fmean(nll):.2f} ± {statistics.stdev(nll):.2f}"
    row = next(line for line in text.splitlines() if line.startswith("| `iwae`"))
    assert expected in row
    assert "vaezoo train iwae --dataset synthetic --seed 1 -o epochs=1 -o batch_size=256 -o k=2" in text
    assert (tmp_path / "results.md").read_text() == text


def test_report_states_budget_hardware_and_orderings_with_their_spread(bench, tmp_path, cli):
    from vaezoo.bench.protocol import Ordering

    protocol = dataclasses_replace(TINY, orderings=(Ordering("iwae", "conv-fashion", "IWAE is tighter"),))
    result = cli("bench", str(_write(tmp_path, protocol)), "--out", str(bench), "--report-only", "--report",
                 str(tmp_path / "r.md"), "--hardware", "two cells at a time, one thread each")
    assert result.code == 0, result.err
    text = (tmp_path / "r.md").read_text()
    records = cells(bench)
    assert "two cells at a time, one thread each" in text
    assert f"{sum(r['train_seconds'] for r in records) / 3600:.2f} h of training" in text
    assert "Standard FID**: not computed" in text
    nll = {v: [r["evaluation"]["region"]["nll"] for r in records if r["variant"] == v] for v in ("iwae", "conv-fashion")}
    gap = statistics.fmean(nll["conv-fashion"]) - statistics.fmean(nll["iwae"])
    spread = statistics.stdev(nll["iwae"]) + statistics.stdev(nll["conv-fashion"])
    line = next(line for line in text.splitlines() if line.startswith("- IWAE is tighter"))
    assert ("does not hold" not in line) == (gap > 0)
    assert ("within the spread over seeds" in line) == (abs(gap) <= spread)
    assert f"add up to {spread:.2f}" in line


def test_sample_quality_is_scored_per_sampler(bench, tmp_path, monkeypatch):
    """Each sampler's scores are those of its own draw (the gmm fitted first), against the same test images."""
    import dataclasses
    import shutil

    import torch

    import vaezoo
    from vaezoo.bench import runner
    from vaezoo.data import as_float
    from vaezoo.evaluation import sample_quality as quality

    folder = Path(shutil.copytree(bench / "grey" / "conv-fashion" / "seed-0", tmp_path / "run"))
    torch.manual_seed(0)
    classifier = quality.FeatureClassifier((1, 32, 32), 10).eval()  # synthetic data has no labels to train one
    monkeypatch.setattr(runner, "load_or_train_classifier", lambda *args: classifier)
    protocol = dataclasses.replace(TINY, samplers=("prior", "gmm"))
    scores = runner.sample_quality(folder, protocol, tmp_path, get_registry(), seed=3, device="cpu")
    real = as_float(get_registry().load("dataset", "synthetic")(None).test[:64])
    assert (folder / "sampler-gmm.safetensors").is_file()
    for sampler in ("prior", "gmm"):
        drawn = vaezoo.draw(folder, 64, sampler=sampler, seed=3, device="cpu")
        assert scores[sampler] == quality.sample_quality(classifier, real, drawn)
    assert scores["prior"] != scores["gmm"]
    report = write_report(bench, protocol, tmp_path / "r.md")
    assert "### Sample quality by sampler" in report


def test_summary_formats():
    assert summary([1.0, 3.0]) == "2.000 ± 1.414"
    assert summary([250.0, None]) == "250.00"
    assert summary([None]) == "-"
    assert summary([6, 9], digits=1) == "7.5 ± 2.1"


def test_resume_finishes_only_what_is_missing(bench, tmp_path, cli):
    import shutil

    out = Path(shutil.copytree(bench, tmp_path / "copy"))
    missing = out / "grey" / "iwae" / "seed-1"
    shutil.rmtree(missing)
    untouched = {path: snapshot(path) for path in (out / "grey" / "conv-fashion",)}
    refused = cli("bench", str(_write(tmp_path, TINY)), "--out", str(out), "--report", str(tmp_path / "r.md"),
                  "--device", "cpu")
    assert refused.code == 2 and "--resume" in refused.err
    result = cli("bench", str(_write(tmp_path, TINY)), "--out", str(out), "--resume", "--report",
                 str(tmp_path / "r.md"), "--device", "cpu")
    assert result.code == 0, result.err
    assert (missing / CELL).is_file()
    assert all(snapshot(path) == before for path, before in untouched.items())


def test_protocol_files_are_checked(tmp_path, refused):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY.to_dict(), "epoch": 3}))
    refused("bench", str(bad), "--out", str(tmp_path / "o"), words=("unknown protocol keys epoch",))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**TINY.to_dict(), "epochs": "3"}))
    refused("bench", str(wrong), "--out", str(tmp_path / "o"), words=("wrong types",))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**TINY.to_dict(), "variants": ["conv-fashon"]}))
    refused("bench", str(unknown), "--out", str(tmp_path / "o"), words=("unknown variant 'conv-fashon'",))
    assert not (tmp_path / "o").exists()


def test_protocols_are_registered_and_carry_the_literatures_numbers(tmp_path, refused):
    from vaezoo.bench.protocol import Ordering, Published, load_protocol

    zoo = load_protocol("fashion-mnist", get_registry())
    assert zoo.name == "fashion-mnist" and any(p.variant == "vamp-vae" and p.nll == 227.35 for p in zoo.published)
    mine = dataclasses_replace(TINY, published=(Published("iwae", "grey", 250.5, "a paper"),),
                               orderings=(Ordering("iwae", "conv-fashion", "IWAE is tighter"),))
    assert load_protocol(str(_write(tmp_path, mine)), get_registry()) == mine  # the JSON file round-trips
    bad = tmp_path / "bad-published.json"
    bad.write_text(json.dumps({**mine.to_dict(), "published": [{"variant": "iwae", "dataset": "grey", "nll": "x",
                                                                "source": "s"}]}))
    refused("bench", str(bad), "--out", str(tmp_path / "o"), words=("wrong types",))
    report = write_report(tmp_path / "empty", mine, tmp_path / "r.md")
    assert "- a paper" in report


def _write(folder: Path, protocol: Protocol) -> Path:
    path = folder / "protocol.json"
    path.write_text(json.dumps(protocol.to_dict()))
    return path


def test_report_lists_datasets_in_the_protocols_order(bench, tmp_path):
    import shutil

    out = Path(shutil.copytree(bench, tmp_path / "copy"))
    moved = out / "aaa" / "iwae" / "seed-0"
    shutil.copytree(out / "grey" / "iwae" / "seed-0", moved)
    record = json.loads((moved / CELL).read_text())
    (moved / CELL).write_text(json.dumps({**record, "dataset": "aaa", "run": "aaa/iwae/seed-0"}))
    headings = [line for line in write_report(out, TINY, tmp_path / "r.md").splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## grey (`synthetic`)", "## aaa (`aaa`)"]  # the protocol's datasets first


def test_a_cell_that_fails_is_a_row_saying_why_not_a_stopped_bench(tmp_path, monkeypatch):
    import vaezoo.api
    from vaezoo.errors import DataError

    def fail(*args, **kwargs):
        raise DataError("these images cannot hand labels to a conditional model")

    monkeypatch.setattr(vaezoo.api, "train", fail)
    records = run(dataclasses_replace(TINY, seeds=(0,)), tmp_path / "out", get_registry(), device="cpu")
    assert [r["variant"] for r in records] == ["conv-fashion", "iwae"]  # the second cell still ran
    assert all("cannot hand labels" in r["refused"] for r in records)
    assert "refused: these images cannot hand labels" in write_report(tmp_path / "out", TINY, tmp_path / "r.md")


def test_a_tampered_model_in_a_cell_is_a_row_saying_why(bench, tmp_path):
    import shutil

    out = Path(shutil.copytree(bench, tmp_path / "copy"))
    tampered = out / "grey" / "iwae" / "seed-0"
    (tampered / CELL).unlink()
    (tampered / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    records = run(TINY, out, get_registry(), resume=True, device="cpu")
    broken = next(r for r in records if r["run"] == "grey/iwae/seed-0")
    assert "model.safetensors" in broken["refused"] and "weights_hash" not in broken
    assert all("refused" not in r for r in records if r is not broken)


def test_a_second_stage_command_names_its_parent_inside_the_bench_folder(tmp_path):
    from vaezoo.bench.runner import _command

    out = tmp_path / "bench-fm"
    command = _command("two-stage-vae", "fashion-mnist", 1, {"epochs": 1}, out / "grey" / "conv-fashion" / "seed-1", out)
    assert command == "vaezoo train two-stage-vae --dataset fashion-mnist --seed 1 -o epochs=1 --parent grey/conv-fashion/seed-1"


def test_inception_weights_without_pytorch_fid_name_the_extra_before_the_bench_writes(tmp_path, monkeypatch, refused):
    import sys

    from vaezoo.bench import runner

    runner._inception_network.cache_clear()
    weights = tmp_path / "inception.safetensors"
    weights.write_bytes(b"not read: the missing package is named first")
    monkeypatch.setenv("VAEZOO_INCEPTION_WEIGHTS", str(weights))
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)  # as if not installed
    refused("bench", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "o"), "--device", "cpu",
            words=("the Inception FID needs the pytorch-fid package: pip install 'vaezoo[fid]'",))
    assert not (tmp_path / "o").exists()
