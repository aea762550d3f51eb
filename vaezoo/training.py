"""One generic training loop for every variant: the objective decides the loss, the loop does the rest."""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__, checkpoint
from .data import ImageData, shuffled_batches
from .evaluation import elbo_terms
from .hparams import HParams
from .model import VAE, build_model, build_objective
from .parts import Objective
from .registry import Registry
from .runs import MODEL, RunDir
from .threads import ThreadTuner
from .variant import VariantSpec

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
    extra_config: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "variant": self.spec.name,
            "hparams": self.hp.to_dict(),
            "dataset": self.data.name,
            "input_shape": list(self.data.input_shape),
            "seed": self.seed,
            "max_steps": self.max_steps,
            "device": str(self.device),
            "vaezoo_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            **self.extra_config,
        }


def weights_metadata(config: Mapping[str, Any]) -> dict[str, Any]:
    """What model.safetensors carries so the model can be rebuilt from the registry alone."""
    keys = ("variant", "hparams", "dataset", "input_shape", "vaezoo_version", "torch_version")
    return {k: config[k] for k in keys}


def _backward(terms: Mapping[str, torch.Tensor], model: VAE, objective: Objective) -> None:
    """Gradients of "loss" reach the model only; "aux_loss" reaches the objective's own modules only."""
    aux = terms.get("aux_loss")
    if aux is None:
        terms["loss"].backward()
        return
    terms["loss"].backward(inputs=list(model.parameters()), retain_graph=True)
    aux.backward(inputs=list(objective.parameters()))


def build_optimizer(model: VAE, objective: Objective, lr: float) -> torch.optim.Optimizer:
    """Adam over the model; the objective's L2 penalty becomes its (gradient-identical) weight decay.

    d/dtheta lambda * sum(theta^2) = 2 * lambda * theta, which torch.optim.Adam adds to the gradient
    when weight_decay = 2 * lambda. The fused kernel does the same update in one pass on CPU and CUDA.
    """
    params = list(model.parameters())
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=2.0 * objective.l2_weight, fused=fused or None)


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


def train(setup: TrainSetup, run: RunDir, registry: Registry, console: Console | None = None) -> list[dict[str, Any]]:
    """Train `setup` into `run`: metrics and a checkpoint per epoch, then the model and pictures."""
    console = console or Console(stderr=True)
    hp, device = setup.hp, setup.device
    torch.manual_seed(setup.seed)
    model = build_model(setup.spec, hp, setup.data.input_shape, registry)
    objective = build_objective(setup.spec, hp, model, registry, dataset_size=setup.data.train.shape[0])
    model.to(device)
    objective.to(device)
    optimizers: dict[str, torch.optim.Optimizer] = {"model": build_optimizer(model, objective, hp["lr"])}
    aux_optimizer = objective.aux_optimizer()
    if aux_optimizer is not None:
        optimizers["aux"] = aux_optimizer
    data = setup.data.to(device)
    order = torch.Generator().manual_seed(setup.seed)
    config = setup.config()
    run.write_config(config)

    step, records = 0, []
    threads = ThreadTuner.for_device(device)
    steps_per_epoch = data.train.shape[0] // hp["batch_size"]
    with _progress(console) as progress:
        for epoch in range(1, hp["epochs"] + 1):
            total = steps_per_epoch if setup.max_steps is None else min(steps_per_epoch, setup.max_steps - step)
            task = progress.add_task("train", total=total, epoch=f"{epoch}/{hp['epochs']}", stats="")
            sums: dict[str, torch.Tensor] = {}
            started, seen = time.perf_counter(), 0
            model.train()
            for x in shuffled_batches(data.train, hp["batch_size"], order):
                terms = objective(model, x, step)
                for optimizer in optimizers.values():
                    optimizer.zero_grad(set_to_none=True)
                _backward(terms, model, objective)
                for optimizer in optimizers.values():
                    optimizer.step()
                for key, value in terms.items():
                    sums[key] = sums[key] + value.detach() if key in sums else value.detach().clone()
                threads.step_done()
                step += 1
                seen += x.shape[0]
                if step % PROGRESS_EVERY == 0 and progress.live.is_started:
                    rate = seen / (time.perf_counter() - started)
                    progress.update(task, completed=seen // hp["batch_size"], stats=(
                        f"loss {terms['loss'].item():.1f}  recon {terms['recon'].item():.1f}  "
                        f"kl {terms['kl'].item():.2f}  {rate:,.0f} img/s"))
                if setup.max_steps is not None and step >= setup.max_steps:
                    break
            seconds = time.perf_counter() - started
            progress.update(task, completed=total)
            model.eval()
            record = {
                "epoch": epoch, "step": step,
                "train": _summary(sums, seen // hp["batch_size"]),
                "test": elbo_terms(model, data.test),
                "images_per_s": seen / seconds, "seconds": seconds,
            }
            records.append(record)
            run.append_metrics(record)
            tensors, meta = checkpoint.checkpoint_tensors(model, objective, optimizers)
            tensors["rng/torch"] = torch.get_rng_state()
            tensors["rng/data_order"] = order.get_state()
            checkpoint.write(run.checkpoints / f"epoch-{epoch:04d}.safetensors", tensors,
                             {**meta, "epoch": epoch, "step": step, "config": config})
            console.print(
                f"epoch {epoch}/{hp['epochs']}  step {step}  train loss {record['train']['loss']:.2f}  "
                f"test -ELBO {record['test']['neg_elbo']:.2f} (recon {record['test']['recon']:.2f}, "
                f"KL {record['test']['kl']:.2f})  {record['images_per_s']:,.0f} img/s", highlight=False, soft_wrap=True,
            )
            if setup.max_steps is not None and step >= setup.max_steps:
                break

    threads.restore()
    checkpoint.write(run.path / MODEL, checkpoint.model_tensors(model), weights_metadata(config))
    from .pictures import write_pictures

    write_pictures(model, data.test, records, run.path)
    return records
