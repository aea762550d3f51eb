"""One generic training loop for every variant: the objective decides the loss, the loop does the rest.

The loop can stop anywhere (a kill, Ctrl-C, a non-finite loss) and be resumed from the newest
checkpoint with the same result: see resume.TrainState and docs/runs.md.
"""

from __future__ import annotations

import platform
import signal
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vaezoo import __version__
from vaezoo.data import ImageData, independent_batch, shuffled_batches
from vaezoo.devices import synchronize
from vaezoo.errors import DataError, NonFiniteLossError, TrainingInterrupted, UsageError
from vaezoo.evaluation.measures import elbo_sums, per_image
from vaezoo.hparams import HParams
from vaezoo.model.building import (
    build_model,
    build_objective,
    penalised_parameters,
    trainable_parameters,
)
from vaezoo.model.parts import Objective, Terms
from vaezoo.model.structure import Structure
from vaezoo.registry import Registry
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import MODEL, PARENT, RunDir
from vaezoo.training import graphs, resume, rng
from vaezoo.training.distributed import World
from vaezoo.training.nonfinite import MAX_SKIPS_IN_A_ROW, Watch, describe, nonfinite_now
from vaezoo.training.precision import Precision
from vaezoo.training.stopping import StopRequests
from vaezoo.training.tracker import Tracker
from vaezoo.training.tracking import Tracking
from vaezoo.variant import VariantSpec

PROGRESS_EVERY = 20  # steps between progress-bar refreshes (each one syncs with the device)


@dataclass
class TrainSetup:
    """Everything that decides a run's result; written to config.json."""

    spec: VariantSpec
    hp: HParams
    data: ImageData
    device: torch.device
    seed: int = 0
    max_steps: int | None = None
    world: World = field(default_factory=World)  # torchrun processes; hp["batch_size"] is per process
    parts: Mapping[str, str] = field(default_factory=dict)  # parts swapped from the variant's own (--part)
    parent: Structure | None = None  # the finished first stage a second-stage variant trains on
    parent_metadata: Mapping[str, Any] | None = None  # what rebuilds `parent` (its weights metadata)
    provenance: Mapping[str, str] = field(default_factory=dict)  # plugin, plugin_distribution, plugin_version
    precision: str = "32"  # --precision: 32, bf16 or 16 (precision.py)
    trackers: tuple[str, ...] = ()  # --track: recorded so resume continues them; they do not change the result

    @property
    def planned_steps(self) -> int:
        """The optimiser steps the run takes: every epoch's full global batches, or max_steps if fewer."""
        total = self.hp["epochs"] * (self.data.train.shape[0] // (self.hp["batch_size"] * self.world.size))
        return total if self.max_steps is None else min(total, self.max_steps)

    def config(self) -> dict[str, Any]:
        optional = {"parts": dict(self.parts), "parent": self.parent_metadata}
        return {
            "variant": self.spec.name,
            **{key: value for key, value in optional.items() if value},
            **self.provenance,
            "hparams": self.hp.to_dict(),
            "dataset": self.data.name,
            "input_shape": list(self.data.input_shape),
            "seed": self.seed,
            "max_steps": self.max_steps,
            "precision": self.precision,
            "trackers": list(self.trackers),
            "device": str(self.device),
            "vaezoo_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            **self.world.config(self.hp["batch_size"]),
        }


#: Metadata a weights file carries when it applies: swapped parts, the parent stage, the plugin.
OPTIONAL_METADATA = ("parts", "parent", "plugin", "plugin_distribution", "plugin_version")


def weights_metadata(config: Mapping[str, Any]) -> dict[str, Any]:
    """What model.safetensors carries so the model can be rebuilt from the registry alone."""
    keys = ("variant", "hparams", "dataset", "input_shape", "vaezoo_version", "torch_version")
    return {**{k: config[k] for k in keys}, **{k: config[k] for k in OPTIONAL_METADATA if k in config}}


def _backward(terms: Mapping[str, torch.Tensor], model: Structure, objective: Objective) -> None:
    """Gradients of "loss" reach the model only; "aux_loss" reaches the objective's own modules only."""
    aux = terms.get("aux_loss")
    if aux is None:
        terms["loss"].backward()
        return
    terms["loss"].backward(inputs=trainable_parameters(model), retain_graph=True)
    aux.backward(inputs=list(objective.parameters()))


def build_optimizers(model: Structure, objective: Objective, hp: HParams) -> dict[str, torch.optim.Optimizer]:
    """Every optimizer the loop steps, by name: "model", and "aux" when the objective owns parameters.

    The objective's L2 penalty becomes the model optimizer's gradient-identical weight decay:
    d/dtheta lambda * sum(theta^2) = 2 * lambda * theta, which torch.optim.Adam (L2, not AdamW) adds
    to the gradient when weight_decay = 2 * lambda. The fused kernel does the update in one pass.
    Parameters a part exempts from the penalty (`no_weight_decay`) get a group of their own without
    it. Checkpoints save and restore each optimizer under its name.
    """
    params = trainable_parameters(model)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    decayed = penalised_parameters(model)
    exempt = [p for p in params if all(p is not q for q in decayed)]
    groups = [{"params": decayed, "weight_decay": 2.0 * objective.l2_weight}]
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    optimizers: dict[str, torch.optim.Optimizer] = {"model": torch.optim.Adam(groups, lr=hp["lr"], fused=fused or None)}
    aux_optimizer = objective.aux_optimizer()
    if aux_optimizer is not None:
        optimizers["aux"] = aux_optimizer
    return optimizers


def _brief(terms: Mapping[str, torch.Tensor]) -> str:
    """'loss 250.1  recon 240.3  kl 9.80' for the progress bar: the scalar terms it has of these."""
    shown = [(key, terms[key]) for key in ("loss", "recon", "kl") if key in terms and terms[key].dim() == 0]
    return "  ".join(f"{key} {value.item():.{2 if key == 'kl' else 1}f}" for key, value in shown)


def _summary(sums: Mapping[str, torch.Tensor], steps: int) -> dict[str, float | list[float]]:
    out: dict[str, float | list[float]] = {}
    for key, total in sums.items():
        mean = (total / steps).cpu()
        out[key] = mean.tolist() if mean.dim() else float(mean)
    return out


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=not console.is_terminal,
    )


def train(setup: TrainSetup, run: RunDir, registry: Registry, console: Console | None = None, *,
          resume_run: bool = False, checkpoint_every: int | None = None,
          skip_nonfinite: bool = False, trackers: Mapping[str, Tracker] | None = None) -> list[dict[str, Any]]:
    """Train `setup` into `run`, or continue it from its newest checkpoint (`resume_run`).

    Writes metrics and a checkpoint per epoch (and every `checkpoint_every` steps), then the model
    and pictures. Returns every epoch's metrics record. A fresh run clears what an earlier run left
    in the folder only after the model and optimizers are built. Ctrl-C or SIGTERM, from here on,
    stops at the next step boundary after a checkpoint. Another process training into `run` is refused.
    `trackers` (open_trackers(setup.trackers)) receive the run on a background thread (rank 0 only).
    """
    with run.lock() if setup.world.is_main else nullcontext(), StopRequests() as stop:  # rank 0 writes
        try:
            return _train(setup, run, registry, console or Console(stderr=True), stop,
                          resume_run, checkpoint_every, skip_nonfinite, trackers or {})
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"stopped at once by a second interrupt; every checkpoint written is complete. "
                f"Continue with: vaezoo train --resume {run.path}", signal.SIGINT) from None


def _train(setup: TrainSetup, run: RunDir, registry: Registry, console: Console, stop: StopRequests,
           resume_run: bool, checkpoint_every: int | None, skip_nonfinite: bool,
           trackers: Mapping[str, Tracker]) -> list[dict[str, Any]]:
    hp, device = setup.hp, setup.device
    rng.seed_all(setup.seed)
    model = build_model(setup.spec, hp, setup.data.input_shape, registry, parts=setup.parts, parent=setup.parent,
                        dataset=setup.data.name)
    if model.likelihood_support == "8-bit" and setup.data.dtype != torch.uint8:
        raise DataError(f"likelihood '{model.recipe.parts['likelihood']}' models 8-bit values, but dataset "
                        f"{setup.data.name} holds real values ({setup.data.dtype})")
    objective = build_objective(model, registry, dataset_size=setup.data.train.shape[0],
                                total_steps=setup.planned_steps)
    if "conditional" in model.capabilities:
        if setup.data.train_labels is None or setup.data.test_labels is None:
            raise DataError(f"variant {setup.spec.name} is conditioned on labels, and dataset {setup.data.name} has none")
        if objective.extra_batches:
            raise UsageError(f"objective '{model.recipe.parts['objective']}' draws extra batches, which carry no labels "
                             "for a conditional model")
    model.to(device)
    objective.to(device)
    optimizers = build_optimizers(model, objective, hp)
    config = setup.config()
    last: Path | None = None
    writes = setup.world.is_main  # distributed: only rank 0 writes the run folder
    tracking = Tracking(trackers if writes else {}, console)  # distributed: rank 0 tracks
    tracked = tracking.stored(run) if resume_run else {}
    if resume_run:
        per_epoch = setup.data.train.shape[0] // (hp["batch_size"] * setup.world.size)
        state, config, records, last = resume.restore(run, config, model, objective, optimizers, device,
                                                      batches_per_epoch=per_epoch, tidy=writes)
        console.print(f"resuming {run.path} from {last or 'the start (no checkpoint yet)'}: "
                      f"{state.epoch} epochs and {state.step} steps done", highlight=False, soft_wrap=True)
    else:
        if writes:
            run.clear()
            if setup.parent is not None:
                run.record([PARENT])
                checkpoint.write(run.path / PARENT, checkpoint.model_tensors(setup.parent), setup.parent_metadata)
        state, records = resume.TrainState.start(setup.seed), []
    if writes:
        run.write_config(config)
        run.checkpoints.mkdir(exist_ok=True)
    precision = Precision(setup.precision, device)
    precision.load(state.grad_scaler, str(last))
    tracking.start(run, config, state.step, tracked)
    with tracking:
        loop = _Loop(setup, run, model, objective, optimizers, config, state, records, console, last,
                     checkpoint_every, skip_nonfinite, precision, tracking)
        with precision.applied(model):
            loop.run(stop)
        if not writes:
            return records
        checkpoint.write(run.path / MODEL, checkpoint.model_tensors(model), weights_metadata(config))
        tracking.files([run.path / MODEL], "model")
        from vaezoo.evaluation.pictures import write_pictures

        for note in write_pictures(model, loop.data.test, records, run.path, loop.test_labels):
            console.print(note, highlight=False, soft_wrap=True)
        tracking.files(sorted(run.path.glob("*.png")), "picture")  # the run folder's pictures are all vaezoo's
    return records


class _Loop:
    """One invocation's epochs, from wherever `state` stands: steps, checks, records and checkpoints."""

    def __init__(self, setup: TrainSetup, run: RunDir, model: Structure, objective: Objective,
                 optimizers: dict[str, torch.optim.Optimizer], config: dict[str, Any], state: resume.TrainState,
                 records: list[dict[str, Any]], console: Console, last: Path | None,
                 checkpoint_every: int | None, skip_nonfinite: bool, precision: Precision, tracking: Tracking):
        self.setup, self.run_dir, self.model, self.objective = setup, run, model, objective
        self.optimizers, self.config, self.state, self.records = optimizers, config, state, records
        self.console, self.last = console, last
        self.checkpoint_every, self.skip_nonfinite = checkpoint_every, skip_nonfinite
        self.precision, self.tracking = precision, tracking
        self.data = setup.data.to(setup.device)
        self.world = setup.world
        self.conditional = "conditional" in model.capabilities  # the batches carry their labels
        self.test_labels = self.world.shard(self.data.test_labels) if self.conditional else None
        self.forward = self.world.wrap(model, objective)  # objective(model, x, step), under DDP with torchrun
        self.batch_size = setup.hp["batch_size"] * self.world.size  # global: all processes' images per step
        self.watch = Watch()
        self.skips_in_a_row = 0
        self.graph = graphs.StepGraph(self.update, optimizers, graphs.refusal(
            device=setup.device, model=model, objective=objective, optimizers=optimizers, precision=precision.name,
            processes=self.world.size, skip_nonfinite=skip_nonfinite))

    def done(self) -> bool:
        max_steps = self.setup.max_steps
        return self.state.epoch >= self.setup.hp["epochs"] or (max_steps is not None and self.state.step >= max_steps)

    def run(self, stop: StopRequests) -> None:
        with _progress(self.console) as progress:
            while not self.done():
                self.epoch(progress, stop)

    def epoch(self, progress: Progress, stop: StopRequests) -> None:
        state, setup, epochs = self.state, self.setup, self.setup.hp["epochs"]
        per_epoch = self.data.train.shape[0] // self.batch_size
        total = per_epoch if setup.max_steps is None else min(per_epoch, state.batch + setup.max_steps - state.step)
        task = progress.add_task("train", total=total, completed=state.batch,
                                 epoch=f"{state.epoch + 1}/{epochs}", stats="")
        order, first_batch, started = state.order(), state.batch, time.perf_counter()
        self.model.train()
        labels = self.data.train_labels if self.conditional else None
        for batch in shuffled_batches(self.data.train, self.batch_size, order, skip=state.batch, part=self.world.part,
                                      labels=labels):
            if state.batch >= total:
                break
            x, y = batch if self.conditional else (batch, None)
            for _ in range(self.objective.extra_batches):
                x = torch.cat([x, independent_batch(self.data.train, self.batch_size, setup.seed, state.step,
                                                    self.world.part)])
            with self.model.conditioned_on(y):
                terms = self.step(x)
            if state.step % PROGRESS_EVERY == 0:
                self.check_finite()
                self.tracking.steps(state.step, terms)
                if progress.live.is_started and terms is not None:
                    rate = (state.batch - first_batch) * self.batch_size / (time.perf_counter() - started)
                    progress.update(task, completed=state.batch, stats=f"{_brief(terms)}  {rate:,.0f} img/s")
            if self.stop_now(stop, state.step):
                self.interrupt(stop, self.save())
            if self.checkpoint_every and state.step % self.checkpoint_every == 0 and state.batch < total:
                self.save()
        self.check_finite()
        synchronize(setup.device)  # a GPU may still run the last steps; check_finite syncs only if it watched them
        seconds = time.perf_counter() - started
        progress.update(task, completed=total)
        self.end_epoch(order, (state.batch - first_batch) * self.batch_size, seconds)
        if self.world.any(stop.requested):
            self.interrupt(stop, self.last)

    def step(self, x: torch.Tensor) -> Terms | None:
        """One batch: forward, checks, backward, optimizer steps, running sums. None if skipped."""
        state = self.state
        self.world.seed_step(self.setup.seed, state.step)
        if self.skip_nonfinite:
            terms = self.forward(x, state.step)
            state.step += 1
            state.batch += 1
            bad = nonfinite_now(terms)
            if self.world.any(bad is not None):  # distributed: every process skips the same batches
                self.skip(bad)
                return None
            self.skips_in_a_row = 0
            self.apply_gradients(terms)
        else:
            terms = self.graph(x, state.step)  # the update, eager or replayed from a CUDA graph
            state.step += 1
            state.batch += 1
            self.watch.observe(terms, state.step)
            if self.graph.note is not None:
                self.console.print(f"[dim]{self.graph.note}[/]", highlight=False, soft_wrap=True)
                self.graph.note = None
        for key, value in terms.items():
            state.sums[key] = state.sums[key] + value.detach() if key in state.sums else value.detach().clone()
        return terms

    def update(self, x: torch.Tensor, step: int) -> Terms:
        """Forward, backward and optimizer steps of one batch (what a CUDA graph records)."""
        terms = self.forward(x, step)
        self.apply_gradients(terms)
        return terms

    def apply_gradients(self, terms: Terms) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        _backward(self.precision.scaled(terms), self.model, self.objective)
        self.precision.step(self.optimizers)

    def where(self, step: int) -> str:
        """'step 37 (epoch 2, batch 5)' for a step of the epoch in progress."""
        state = self.state
        return f"step {step} (epoch {state.epoch + 1}, batch {state.batch - (state.step - step)})"

    def stop_now(self, stop: StopRequests, step: int) -> bool:
        """Distributed, every process must stop at the same step: they agree every PROGRESS_EVERY steps."""
        due = not self.world.launched or step % PROGRESS_EVERY == 0
        return due and self.world.any(stop.requested)

    def skip(self, values: dict[str, float] | None) -> None:
        self.state.skipped += 1
        self.skips_in_a_row += 1
        what = describe(values) if values else "loss on another process"
        self.console.print(f"warning: non-finite {what} at {self.where(self.state.step)}; batch skipped",
                           highlight=False, soft_wrap=True)
        if self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            raise NonFiniteLossError(
                f"{MAX_SKIPS_IN_A_ROW} batches in a row had a non-finite loss (last at {self.where(self.state.step)}): "
                f"the model has diverged; {self.kept()}")

    def check_finite(self) -> None:
        """Stop if any observed step had a non-finite term (one sync; called where the loop syncs anyway)."""
        first = self.watch.first()
        if self.world.any(first is not None):  # distributed: every process stops at the same check
            where = f"at {self.where(first[0])}: {describe(first[1])}" if first else "on another process"
            raise NonFiniteLossError(
                f"non-finite loss {where}; training stopped, {self.kept()}. "
                f"Lower --lr, or pass --skip-nonfinite to skip such batches, then continue with "
                f"vaezoo train --resume {self.run_dir.path}")

    def kept(self) -> str:
        return (f"the last good checkpoint is {self.last}" if self.last is not None
                else "no checkpoint had been written yet")

    def save(self) -> Path:
        """Checkpoint the current state; never one that saw a non-finite loss."""
        self.check_finite()
        # Distributed: the processes' running sums, averaged, so every resumed process starts from them.
        sums = {key: total / self.world.size for key, total in self.world.total(self.state.sums).items()}
        if self.world.is_main:
            self.last = resume.save(self.run_dir, replace(self.state, sums=sums, grad_scaler=self.precision.state()),
                                    self.model, self.objective, self.optimizers, self.config, self.setup.device)
        else:
            self.last = resume.checkpoint_path(self.run_dir, self.state)  # the one rank 0 writes
        return self.last

    def end_epoch(self, order: torch.Generator, images: int, seconds: float) -> None:
        """Evaluate, record, checkpoint and report the epoch just finished."""
        state, epochs, world = self.state, self.setup.hp["epochs"], self.world
        steps = state.batch - state.skipped
        if steps == 0:
            raise NonFiniteLossError(f"every batch of epoch {state.epoch + 1} had a non-finite loss; {self.kept()}")
        self.model.eval()
        record: dict[str, Any] = {
            "epoch": state.epoch + 1, "step": state.step,
            "train": _summary(world.total(state.sums), steps * world.size),  # mean over every process
            "test": per_image(world.total(elbo_sums(self.model, world.shard(self.data.test),
                                                    labels=self.test_labels)), len(self.data.test)),
            "images_per_s": images / seconds, "seconds": seconds,
        }
        if state.skipped:
            record["skipped"] = state.skipped
        state.finish_epoch(order)
        if world.is_main:
            self.run_dir.append_metrics(record)
            self.tracking.epoch(record, self.model, self.data.test, self.test_labels)
        self.records.append(record)
        self.save()
        test = record["test"]
        measured = (f"test -ELBO {test['neg_elbo']:.2f} (recon {test['recon']:.2f}, KL {test['kl']:.2f}"
                    f"{' estimated' if test.get('kl_estimated') else ''})" if "neg_elbo" in test
                    else f"test reconstruction -log p(x|z) {test['recon']:.2f}")
        self.console.print(
            f"epoch {record['epoch']}/{epochs}  step {state.step}  train loss {record['train']['loss']:.2f}  "
            f"{measured}  {record['images_per_s']:,.0f} img/s", highlight=False, soft_wrap=True)

    def interrupt(self, stop: StopRequests, path: Path | None) -> None:
        by = stop.name if stop.requested else "a signal to another process"
        raise TrainingInterrupted(
            f"interrupted by {by} at step {self.state.step}; checkpoint {path} holds everything so far. "
            f"Continue with: vaezoo train --resume {self.run_dir.path}", stop.signal_number or signal.SIGINT)
