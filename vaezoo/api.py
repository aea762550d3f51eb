"""The public Python API, mirroring the CLI: train (and resume_training), evaluate, export, sample and load.

Importing this module is cheap: torch is imported only when a function runs, so the CLI can
read the defaults below without it, and `vaezoo.load` & co. resolve lazily.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaezoo import __version__
from vaezoo.errors import DataError, UsageError
from vaezoo.registry import Registry, get_registry
from vaezoo.storage.runs import RunDir, refuse_overwrite

if TYPE_CHECKING:
    from rich.console import Console
    from torch import Tensor, nn

    from vaezoo.data import ImageData
    from vaezoo.hparams import HParams
    from vaezoo.storage.loading import Artifact
    from vaezoo.variant import VariantSpec

#: Importance samples per image: the FashionMNIST test set (10,000 images) takes about a minute on 2 CPU cores.
DEFAULT_IMPORTANCE_SAMPLES = 40
DEFAULT_EVAL_BATCH_SIZE = 500
EVAL_FILE = "eval.json"
SAMPLE_MODES = ("prior", "reconstruct", "traverse")
DEFAULT_PICTURES = {"prior": "samples.png", "reconstruct": "reconstructions.png", "traverse": "traversals.png"}


def load(path: str | Path, *, device: str = "cpu") -> nn.Module:
    """The model in a run folder or exported file (or the encoder/decoder of a part file), in eval mode."""
    return _open(path, device, get_registry()).module


def train(variant: str, *, hparams: Mapping[str, Any] | None = None, options: Iterable[str] = (),
          dataset: str | None = None, data_dir: str | Path | None = None, out: str | Path | None = None,
          overwrite: bool = False, seed: int = 0, max_steps: int | None = None, device: str = "auto",
          checkpoint_every: int | None = None, skip_nonfinite: bool = False, dist_timeout: float | None = None,
          console: Console | None = None) -> Path | None:
    """Train `variant` into a new run folder and return its path (None on processes other than rank 0
    under torchrun).

    `hparams` are typed values, `options` "key=value" texts (as `-o` on the command line).
    """
    spec = get_registry().variant(variant)
    hp = spec.schema.resolve(hparams, texts=options)
    dataset_name = dataset or spec.dataset
    out_path = Path(out) if out is not None else Path("runs") / spec.name / datetime.now().strftime("%Y%m%d-%H%M%S")
    return _train(spec, hp, dataset_name, seed, max_steps,
                  lambda main: RunDir.create(out_path, overwrite=overwrite) if main else RunDir(out_path),
                  data_dir=data_dir, device=device, checkpoint_every=checkpoint_every,
                  skip_nonfinite=skip_nonfinite, dist_timeout=dist_timeout, console=console, out_named=out is not None)


def resume_training(run: str | Path, *, epochs: int | str | None = None, data_dir: str | Path | None = None,
                    device: str = "auto", checkpoint_every: int | None = None, skip_nonfinite: bool = False,
                    dist_timeout: float | None = None, console: Console | None = None) -> Path | None:
    """Continue a run from its newest checkpoint with the settings in its config.json; `epochs` may extend it."""
    from vaezoo.training.resume import stored_run

    folder = RunDir.existing(Path(run))
    spec, hp, dataset_name, seed, max_steps = stored_run(folder, get_registry(), None if epochs is None else str(epochs))
    return _train(spec, hp, dataset_name, seed, max_steps, lambda main: folder, data_dir=data_dir, device=device,
                  checkpoint_every=checkpoint_every, skip_nonfinite=skip_nonfinite, dist_timeout=dist_timeout,
                  console=console, resumed=True)


def evaluate(path: str | Path, *, split: str = "test", importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
             batch_size: int = DEFAULT_EVAL_BATCH_SIZE, seed: int = 0, data_dir: str | Path | None = None,
             device: str = "auto", out: str | Path | None = None, overwrite: bool = False,
             save: bool = True, metrics: str | Iterable[str] | None = None,
             metric_options: Iterable[str] = ()) -> dict[str, Any]:
    """Measure a model on a held-out split; write the result to eval.json beside it unless `save` is False.

    Values are per image: neg_elbo, recon, kl, kl_per_dim, nll (importance-sampled -log p(x)),
    posterior_mean_variance, active_units and mse (per pixel); `saved_to` is the file written.
    `metrics` (registered metric names, or "disentanglement" for all) adds "disentanglement": each
    metric's scores, settings ("metric.setting=value" in `metric_options` change them) and seed,
    computed on the whole dataset's factors (docs/disentanglement.md).
    """
    import torch

    from vaezoo.evaluation import measures as evaluation
    from vaezoo.evaluation import metrics as disentanglement
    from vaezoo.storage.runs import atomic_write_json

    for name, value in (("importance samples", importance_samples), ("batch size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    registry = get_registry()
    planned = disentanglement.plan(metrics, metric_options, registry) if metrics else []
    artifact = _open(path, device, registry)
    model = artifact.vae()
    destination = Path(out) if out is not None else artifact.beside(EVAL_FILE)
    if save:
        refuse_overwrite(destination, overwrite)
    data = _dataset(artifact, data_dir, registry)
    grid = disentanglement.EncodedGrid(model, data, batch_size) if planned else None  # checks the factors first
    images = data.split(split).to(next(model.parameters()).device)
    torch.manual_seed(seed)
    started = time.perf_counter()
    measures = evaluation.evaluate(model, images, importance_samples, batch_size)
    result = {
        "source": str(artifact.path), "variant": artifact.spec.name, "dataset": artifact.metadata["dataset"],
        "split": split, "seed": seed, "batch_size": batch_size, **measures,
        "seconds": time.perf_counter() - started, "device": str(images.device), "vaezoo_version": __version__,
    }
    if grid is not None:
        result["disentanglement"] = disentanglement.run(planned, grid, seed)
    if save:
        destination.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(destination, result)
    return {**result, "saved_to": str(destination) if save else None}


def export(path: str | Path, out: str | Path | None = None, *, part: str = "model", fmt: str = "safetensors",
           overwrite: bool = False) -> Path:
    """Write a model (or its encoder or decoder) as one safetensors file, or a folder when `out` is not *.safetensors."""
    from vaezoo.storage.exporting import export as write_export

    registry = get_registry()
    return write_export(_open(path, "cpu", registry), registry, None if out is None else Path(out),
                        part=part, fmt=fmt, overwrite=overwrite)


def sample(path: str | Path, out: str | Path | None = None, *, mode: str = "prior", n: int = 64, seed: int = 0,
           split: str = "test", data_dir: str | Path | None = None, device: str = "auto",
           overwrite: bool = False) -> Path:
    """A PNG grid: prior samples, test images with their reconstructions, or latent traversals."""
    import torch

    from vaezoo.evaluation import pictures

    if mode not in SAMPLE_MODES:
        raise UsageError(f"sample mode '{mode}' is not one of {', '.join(SAMPLE_MODES)}")
    if n < 1:
        raise UsageError(f"the number of images must be at least 1, got {n}")
    destination = Path(out) if out is not None else Path(DEFAULT_PICTURES[mode])
    if destination.suffix.lower() != ".png":
        raise UsageError(f"--out {destination} must end in .png")
    refuse_overwrite(destination, overwrite)
    registry = get_registry()
    artifact = _open(path, device, registry)
    model = artifact.vae()
    torch.manual_seed(seed)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if mode == "prior":
        pictures.samples(model, destination, n)
        return destination
    images = _images(artifact, split, data_dir, registry)[:n].to(next(model.parameters()).device)
    if mode == "reconstruct":
        pictures.reconstructions(model, images, destination, n=n)
    else:
        pictures.traversals(model, images[0], destination)
    return destination


def _train(spec: VariantSpec, hp: HParams, dataset_name: str, seed: int, max_steps: int | None,
           run_folder: Callable[[bool], RunDir], *, data_dir: str | Path | None, device: str,
           checkpoint_every: int | None, skip_nonfinite: bool, dist_timeout: float | None,
           console: Console | None, resumed: bool = False, out_named: bool = True) -> Path | None:
    """Load the data, then take the run folder (created only once the inputs check out, and only by
    rank 0 under torchrun: `run_folder(is_main)`) and train into it."""
    from rich.console import Console

    from vaezoo.devices import resolve_device
    from vaezoo.training.distributed import DEFAULT_TIMEOUT_S, launch
    from vaezoo.training.loop import TrainSetup
    from vaezoo.training.loop import train as train_run

    registry = get_registry()
    world, torch_device = launch(resolve_device(device), dist_timeout or DEFAULT_TIMEOUT_S)
    if world.launched and not out_named:
        raise UsageError("under torchrun name the run folder with --out: every process must agree on it")
    # The run records the registered name, which is what --resume and evaluate look up again.
    data = dataclasses.replace(registry.load("dataset", dataset_name)(data_dir), name=dataset_name)
    if hp["batch_size"] * world.size > data.train.shape[0]:
        each = f" x {world.size} processes" if world.launched else ""
        raise UsageError(f"batch size {hp['batch_size']}{each} is larger than the training set "
                         f"({data.train.shape[0]} images)")
    run = run_folder(world.is_main)
    console = (console or Console(stderr=True)) if world.is_main else Console(stderr=True, quiet=True)
    processes = f" x {world.size} processes ({world.backend})" if world.launched else ""
    console.print(f"training [bold]{spec.name}[/] on {data.name} ({data.train.shape[0]} images) on {torch_device}"
                  f"{processes}; run folder {run.path}", highlight=False)
    setup = TrainSetup(spec, hp, data, torch_device, seed=seed, max_steps=max_steps, world=world)
    with world.joined():
        train_run(setup, run, registry, console, resume_run=resumed, checkpoint_every=checkpoint_every,
                  skip_nonfinite=skip_nonfinite)
    return run.path if world.is_main else None


def _open(path: str | Path, device: str, registry: Registry) -> Artifact:
    from vaezoo.devices import resolve_device
    from vaezoo.storage.loading import open_artifact

    return open_artifact(Path(path), device=resolve_device(device), registry=registry)


def _dataset(artifact: Artifact, data_dir: str | Path | None, registry: Registry) -> ImageData:
    """The dataset the model was trained on, checked against its input shape."""
    data = registry.load("dataset", artifact.metadata["dataset"])(data_dir)
    if data.input_shape != artifact.input_shape:
        raise DataError(f"dataset {data.name} gives images of shape {data.input_shape}, "
                        f"but the model expects {artifact.input_shape}")
    return data


def _images(artifact: Artifact, split: str, data_dir: str | Path | None, registry: Registry) -> Tensor:
    """The `split` images of the dataset the model was trained on."""
    return _dataset(artifact, data_dir, registry).split(split)
