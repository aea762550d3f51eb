"""The CUDA-graph training step, on the CPU: which runs are captured and why not, and that the loop
gives the same numbers when its update is replayed from static buffers as a graph replays it.

A CUDA graph cannot be recorded without a GPU; `StubGraph` stands in for `CapturedStep` with a
graph's semantics (the step number and the input buffer are fixed at capture, every replay writes
its terms into the same tensors), so the loop's use of a replayed step is tested here and the
recording itself by benchmarks/gpu_check.sh on a GPU.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from rich.console import Console
from vaezoo_plugins.datasets.synthetic import load_synthetic
from vaezoo_plugins.standard.objectives import BetaELBO

from vaezoo.data import ImageData
from vaezoo.registry import get_registry
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import RunDir
from vaezoo.testing import build_variant
from vaezoo.training import graphs
from vaezoo.training.loop import TrainSetup, build_optimizers, train

CUDA = torch.device("cuda")  # refusal only compares device types: no GPU is touched


def refusal_of(variant: str, device=CUDA, **overrides):
    model, objective = build_variant(variant)
    kwargs = dict(device=device, model=model, objective=objective,
                  optimizers=build_optimizers(model, objective, model.hp), precision="32", processes=1,
                  skip_nonfinite=False)
    kwargs.update(overrides)
    return graphs.refusal(**kwargs)


def test_conv_fashion_on_cuda_is_captured():
    assert refusal_of("conv-fashion") is None
    assert refusal_of("iaf-vae") is None  # the same structure and objective; a flow posterior's ops are tensors too


@pytest.mark.parametrize("overrides, reason", [
    ({"device": torch.device("cpu")}, "the device is cpu"),
    ({"processes": 2}, "several processes"),
    ({"precision": "bf16"}, "--precision bf16"),
    ({"precision": "16"}, "--precision 16"),
    ({"skip_nonfinite": True}, "--skip-nonfinite"),
])
def test_run_settings_a_graph_cannot_hold_fall_back(overrides, reason):
    assert reason in refusal_of("conv-fashion", **overrides)


def test_the_switch_turns_capturing_off(monkeypatch):
    monkeypatch.setenv(graphs.SWITCH, "0")
    assert graphs.SWITCH in refusal_of("conv-fashion")


@pytest.mark.parametrize("variant, reason", [
    ("beta-vae-capacity", "does not declare graph_safe"),  # C(step): a graph would freeze the step
    ("factor-vae", "another optimizer"),                    # the discriminator's own optimizer
    ("joint-vae", "does not declare graph_safe"),
])
def test_variants_a_graph_cannot_hold_fall_back(variant, reason):
    assert reason in refusal_of(variant)


def test_a_subclass_inherits_no_declaration():
    """A subclass may read the step in a method it overrides: it must declare graph_safe itself."""
    model, objective = build_variant("conv-fashion")

    class Annealed(BetaELBO):
        def terms(self, model, out, step):
            return super().terms(model, out, step)

    annealed = Annealed.__new__(Annealed)
    annealed.__dict__.update(objective.__dict__)
    assert graphs.declares_graph_safe(objective) and not graphs.declares_graph_safe(annealed)
    assert "Annealed does not declare graph_safe" in refusal_of("conv-fashion", objective=annealed)


def test_a_part_that_declares_itself_unsafe_falls_back():
    model, objective = build_variant("conv-fashion")
    model.decoder.graph_safe = False
    assert "ConvDecoder declares graph_safe = False" in refusal_of("conv-fashion", model=model)


def test_a_model_conditioned_on_labels_falls_back():
    """Labels reach a conditional structure as Python state per batch: a graph would keep the first ones."""
    model, objective = build_variant("conv-fashion")
    model.capabilities = model.capabilities | {"conditional"}
    assert "labels" in refusal_of("conv-fashion", model=model)


def test_an_optimizer_without_a_fused_step_falls_back():
    model, objective = build_variant("conv-fashion")
    plain = {"model": torch.optim.Adam(model.parameters(), lr=1e-3)}
    assert "not one fused kernel" in refusal_of("conv-fashion", optimizers=plain)


class StubGraph:
    """CapturedStep's semantics without a GPU: nothing runs at capture; a replay runs the update on
    the input buffer with the step number of the capture and writes into the first replay's tensors."""

    captures: list[int] = []

    def __init__(self, update, x, step, optimizers):
        self.update, self.step, self.x, self.terms = update, step, x.clone(), None
        StubGraph.captures.append(step)

    def fits(self, x):
        return x.shape == self.x.shape

    def __call__(self, x):
        self.x.copy_(x)
        fresh = self.update(self.x, self.step)
        if self.terms is None:
            self.terms = fresh
        else:
            for key, value in fresh.items():
                self.terms[key].detach().copy_(value)
        return self.terms


@pytest.fixture
def stub_cuda(monkeypatch):
    """Capture on the CPU: no refusal, the stub for the graph, no streams or sync debug mode."""
    StubGraph.captures = []
    monkeypatch.setattr(graphs, "refusal", lambda **kwargs: None)
    monkeypatch.setattr(graphs, "CapturedStep", StubGraph)
    monkeypatch.setattr(graphs, "_side_stream", lambda device: nullcontext())
    monkeypatch.setattr(graphs, "_synchronising", lambda step: (step(), False))


def run_training(tmp_path: Path, name: str, variant: str = "conv-fashion", **hparams) -> tuple[list, dict]:
    registry = get_registry()
    spec = registry.variant(variant)
    hp = spec.schema.resolve({"batch_size": 32, "epochs": 2, **hparams})
    full = load_synthetic()
    data = ImageData("synthetic", full.train[:128], full.test[:32])
    records = train(TrainSetup(spec, hp, data, torch.device("cpu"), seed=3), RunDir.create(tmp_path / name),
                    registry, Console(quiet=True))
    return records, checkpoint.read(tmp_path / name / "model.safetensors")[0]


def test_a_replayed_step_trains_exactly_as_the_eager_one(tmp_path, stub_cuda, monkeypatch, one_thread):
    """Two epochs of 4 steps: 3 eager warm-up steps, the capture at step 3, then replays (across the
    epoch end's evaluation and checkpoint): the same metrics and weights bit for bit as eager training."""
    graph_records, graph_weights = run_training(tmp_path, "graph")
    assert StubGraph.captures == [graphs.WARM_UP_STEPS]
    monkeypatch.setattr(graphs, "refusal", lambda **kwargs: "eager")
    eager_records, eager_weights = run_training(tmp_path, "eager")
    assert StubGraph.captures == [graphs.WARM_UP_STEPS]  # no capture in the eager run
    for eager, graph in zip(eager_records, graph_records, strict=True):
        assert eager["train"] == graph["train"] and eager["test"] == graph["test"]
    assert eager_weights.keys() == graph_weights.keys()
    assert all(torch.equal(eager_weights[key], graph_weights[key]) for key in eager_weights)


def test_a_graph_freezes_the_step_which_is_why_step_dependent_objectives_stay_eager(tmp_path, stub_cuda, monkeypatch,
                                                                                     one_thread):
    """beta-VAE with a capacity C(step), forced into a graph: every replay uses the C of the capture step,
    and training differs from eager training; real runs of this variant are refused (test above)."""
    capacity = {"capacity_steps": 4, "capacity_max": 25.0}
    graph_records = run_training(tmp_path, "graph", "beta-vae-capacity", **capacity)[0]
    assert StubGraph.captures == [graphs.WARM_UP_STEPS]
    monkeypatch.setattr(graphs, "refusal", lambda **kwargs: "eager")
    eager_records = run_training(tmp_path, "eager", "beta-vae-capacity", **capacity)[0]
    assert eager_records[-1]["train"]["loss"] != graph_records[-1]["train"]["loss"]


def step_graph(refused=None):
    calls = []

    def update(x, step):
        calls.append(step)
        return {"loss": x.sum() * 0 + step}

    return graphs.StepGraph(update, {}, refused), calls


def test_the_step_graph_warms_up_captures_replays_and_runs_other_shapes_eagerly(stub_cuda):
    graph, calls = step_graph()
    x = torch.ones(4, 1, 2, 2)
    for step in range(6):
        assert float(graph(x, step)["loss"]) == (step if step < graphs.WARM_UP_STEPS else graphs.WARM_UP_STEPS)
    assert StubGraph.captures == [graphs.WARM_UP_STEPS] and graph.note.startswith("CUDA graph: the training step")
    assert float(graph(torch.ones(3, 1, 2, 2), 6)["loss"]) == 6  # another shape: eager, with its own step
    assert calls == [0, 1, 2, 3, 3, 3, 6]


def test_the_step_graph_falls_back_when_the_warm_up_syncs_or_the_capture_fails(stub_cuda, monkeypatch):
    monkeypatch.setattr(graphs, "_synchronising", lambda step: (step(), True))
    graph, calls = step_graph()
    for step in range(6):
        graph(torch.ones(2, 3), step)
    assert calls == list(range(6)) and StubGraph.captures == []
    assert "host sync" in graph.note

    def broken(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs, "_synchronising", lambda step: (step(), False))
    monkeypatch.setattr(graphs, "CapturedStep", broken)
    graph, calls = step_graph()
    for step in range(6):
        graph(torch.ones(2, 3), step)
    assert calls == list(range(6)) and "the capture failed (RuntimeError" in graph.note


def test_a_refused_step_graph_is_the_eager_update(stub_cuda):
    graph, calls = step_graph(refused="the device is cpu")
    for step in range(5):
        graph(torch.ones(2), step)
    assert calls == list(range(5)) and StubGraph.captures == [] and graph.note is None
