"""The public Python API, mirroring the CLI: train (and resume_training), evaluate, export, sample,
fit_sampler and load; draw gives sampled images as a tensor.

Importing this module is cheap: torch is imported only when a function runs, so the CLI can
read the defaults below without it, and `vaezoo.load` & co. resolve lazily.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaezoo import __version__
from vaezoo.errors import DataError, NotApplicable, UsageError, WeightsError
from vaezoo.registry import Registry, get_registry
from vaezoo.storage.files import refuse_overwrite
from vaezoo.storage.runs import CONFIG, EVAL, PARENT, RunDir, refuse_run_files

if TYPE_CHECKING:
    from rich.console import Console
    from torch import Tensor, nn

    from vaezoo.data import ImageData
    from vaezoo.hparams import HParams
    from vaezoo.model.samplers import Sampler
    from vaezoo.storage.loading import Artifact
    from vaezoo.variant import VariantSpec

#: Importance samples per image: the FashionMNIST test set (10,000 images) takes about a minute on 2 CPU cores.
DEFAULT_IMPORTANCE_SAMPLES = 40
DEFAULT_EVAL_BATCH_SIZE = 500
EVAL_FILE = EVAL
SAMPLE_MODES = ("prior", "reconstruct", "traverse")
DEFAULT_SAMPLER = "prior"  # the model's own prior: what `vaezoo sample` drew before post-hoc samplers
DEFAULT_PICTURES = {"prior": "samples.png", "reconstruct": "reconstructions.png", "traverse": "traversals.png"}


def load(path: str | Path, *, device: str = "cpu") -> nn.Module:
    """The model in a run folder or exported file (or the encoder/decoder of a part file), in eval mode.

    The caller's random state (torch's, numpy's and Python's) is left as it was, even by the first
    call, whose imports move Python's generator.
    """
    from vaezoo.training.rng import preserved

    with preserved():
        return _open(path, device, get_registry()).module


def train(variant: str, *, hparams: Mapping[str, Any] | None = None, options: Iterable[str] = (),
          parts: Mapping[str, str] | None = None, parent: str | Path | None = None,
          dataset: str | None = None, data_dir: str | Path | None = None, out: str | Path | None = None,
          overwrite: bool = False, seed: int = 0, max_steps: int | None = None, device: str = "auto",
          checkpoint_every: int | None = None, skip_nonfinite: bool = False, dist_timeout: float | None = None,
          precision: str = "32", trackers: Iterable[str] = (), keep_checkpoints: int | None = None,
          console: Console | None = None) -> Path | None:
    """Train `variant` into a new run folder and return its path (None on processes other than rank 0
    under torchrun).

    `hparams` are typed values, `options` "key=value" texts (as `-o` on the command line), `parts`
    swaps registered parts by kind (as `--part kind=name`), `parent` is the finished run (or weights
    file) a second-stage variant trains on (its dataset is the default then); `precision` is "32",
    "bf16" or "16"; `trackers` names experiment trackers ("tensorboard", "mlflow", "wandb");
    `keep_checkpoints` keeps only that many epoch checkpoints (None: all).
    """
    from vaezoo.training.rng import check_seed
    from vaezoo.variant import Recipe

    check_seed(seed)
    _check_keep(keep_checkpoints)
    registry = get_registry()
    spec = registry.variant(variant)
    stage = _open(parent, "cpu", registry) if parent is not None else None
    if dataset is None:
        dataset_name = stage.metadata["dataset"] if stage is not None else spec.dataset
    else:
        dataset_name = dataset
    registry.get("dataset", dataset_name)  # an unknown name is an error with suggestions, before anything else
    recipe = Recipe.of(spec, registry, parts, dataset_name)
    hp = recipe.schema.resolve(hparams, texts=options)
    out_path = Path(out) if out is not None else default_run_folder(spec.name)
    return _train(spec, hp, dataset_name, seed, max_steps, recipe.swaps(), stage,
                  lambda main: RunDir.create(out_path, overwrite=overwrite, keep_checkpoints=keep_checkpoints)
                  if main else RunDir(out_path),
                  data_dir=data_dir, device=device, checkpoint_every=checkpoint_every,
                  skip_nonfinite=skip_nonfinite, dist_timeout=dist_timeout, precision=precision,
                  trackers=tuple(trackers), console=console, out_named=out is not None)


def train_from_config(path: str | Path, *, options: Iterable[str] = (), **overrides: Any) -> Path | None:
    """Train with the settings of a TOML, YAML or JSON file (a run's config.json too); `overrides`
    (any keyword of `train`, e.g. seed=3 or hparams={"beta": 4.0}) and `options` win over the file."""
    from vaezoo.config_files import merged_settings, read_train_config

    settings = merged_settings(read_train_config(Path(path), get_registry()), overrides)
    if settings.get("variant") is None:
        raise UsageError(f"{path} names no variant; add variant = \"NAME\" or give one")
    return train(settings.pop("variant"), options=options, **settings)


def resume_training(run: str | Path, *, epochs: int | str | None = None, data_dir: str | Path | None = None,
                    device: str = "auto", checkpoint_every: int | None = None, skip_nonfinite: bool = False,
                    dist_timeout: float | None = None, keep_checkpoints: int | None = None,
                    console: Console | None = None) -> Path | None:
    """Continue a run from its newest checkpoint with the settings in its config.json; `epochs` may extend it."""
    from vaezoo.training.resume import stored_run

    _check_keep(keep_checkpoints)
    folder = RunDir.existing(Path(run), keep_checkpoints=keep_checkpoints)
    stored = stored_run(folder, get_registry(), None if epochs is None else str(epochs))
    stage = _open(folder.path / PARENT, "cpu", get_registry()) if stored.parent else None
    if stage is not None and stage.describe() != stored.parent:
        raise WeightsError(f"{folder.path / PARENT} is not the parent stage that {folder.path / CONFIG} records")
    return _train(stored.spec, stored.hp, stored.dataset, stored.seed, stored.max_steps, stored.parts, stage,
                  lambda main: folder, data_dir=data_dir, device=device, checkpoint_every=checkpoint_every,
                  skip_nonfinite=skip_nonfinite, dist_timeout=dist_timeout, precision=stored.precision,
                  trackers=stored.trackers, console=console, resumed=True)


def evaluate(path: str | Path, *, split: str = "test", importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
             batch_size: int = DEFAULT_EVAL_BATCH_SIZE, seed: int = 0, data_dir: str | Path | None = None,
             device: str = "auto", out: str | Path | None = None, overwrite: bool = False,
             save: bool = True, region: tuple[int, int, int, int] | None = None,
             metrics: str | Iterable[str] | None = None, metric_options: Iterable[str] = ()) -> dict[str, Any]:
    """Measure a model on a held-out split; write the result to eval.json beside it unless `save` is False.

    Values are per image: neg_elbo, recon, kl, kl_per_dim, nll (importance-sampled -log p(x)),
    posterior_mean_variance, active_units and mse (per pixel); `saved_to` is the file written.
    `region` = (top, bottom, left, right) also measures the ELBO and -log p(x) counting log p(x|z)
    on those rows and columns only (result["region"]).
    `metrics` (registered metric names, or "disentanglement" for all) adds "disentanglement": each
    metric's scores, settings ("metric.setting=value" in `metric_options` change them) and seed,
    computed on the whole dataset's factors (docs/disentanglement.md).
    """
    import torch

    from vaezoo import footprint
    from vaezoo.evaluation import measures as evaluation
    from vaezoo.evaluation import metrics as disentanglement
    from vaezoo.storage.files import atomic_write_json
    from vaezoo.training.rng import check_seed

    for name, value in (("importance samples", importance_samples), ("batch size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    check_seed(seed)
    registry = get_registry()
    planned = disentanglement.plan(metrics, metric_options, registry) if metrics else []
    artifact = _open(path, device, registry)
    model = artifact.vae()
    if region is not None:  # before anything is measured
        evaluation.check_region(region, model.input_shape)
    destination = Path(out) if out is not None else artifact.beside(EVAL_FILE)
    if save:
        refuse_run_files(destination)
        refuse_overwrite(destination, overwrite)
    data = _dataset(artifact, data_dir, registry)
    grid = disentanglement.EncodedGrid(model, data, batch_size) if planned else None  # checks the factors first
    images, labels = _labelled(artifact, data, split)
    images = images.to(next(model.parameters()).device)
    # the log-weights of a batch's images for one importance draw, and their running log-mean-exp
    footprint.check_fits(f"{importance_samples:,} importance samples per image",
                         2 * 4 * importance_samples * min(batch_size, images.shape[0]), images.device)
    torch.manual_seed(seed)
    started = time.perf_counter()
    measures = evaluation.evaluate(model, images, importance_samples, batch_size, labels)
    _check_finite(measures, artifact.weights)
    if region is not None:  # a region outside the image is an error; a model that cannot count one says why
        try:
            measures["region"] = evaluation.region_measures(model, images, importance_samples, batch_size, region,
                                                            labels)
        except NotApplicable as exc:
            measures.setdefault("not_applicable", {})["region"] = str(exc)
    result = {
        "source": str(artifact.path), "variant": artifact.spec.name, "dataset": artifact.metadata["dataset"],
        "split": split, "seed": seed, "batch_size": batch_size, **measures,
        "seconds": time.perf_counter() - started, "device": str(images.device), "vaezoo_version": __version__,
    }
    if grid is not None:
        result["disentanglement"] = disentanglement.run(planned, grid, seed)
    if save:
        RunDir(destination.parent).record_beside(destination)
        atomic_write_json(destination, result)
    return {**result, "saved_to": str(destination) if save else None}


def export(path: str | Path, out: str | Path | None = None, *, part: str = "model", fmt: str = "safetensors",
           overwrite: bool = False) -> Path:
    """Write a model (or its encoder or decoder) as one safetensors file, or a folder when `out` is not
    *.safetensors; `fmt="hf"` writes the folder with a model card (README.md) for the Hugging Face Hub."""
    from vaezoo.storage.exporting import export as write_export

    registry = get_registry()
    return write_export(_open(path, "cpu", registry), registry, None if out is None else Path(out),
                        part=part, fmt=fmt, overwrite=overwrite)


def push(path: str | Path, repo_id: str, *, private: bool = False, message: str | None = None) -> str:
    """Export a model with its model card and upload it to the Hugging Face Hub as `repo_id` (OWNER/NAME),
    creating the repository if needed; needs a token (`hf auth login` or HF_TOKEN). Returns its address."""
    import tempfile

    from vaezoo.storage import hub
    from vaezoo.storage.exporting import export as write_export

    target = hub.push_target(repo_id)
    registry = get_registry()
    artifact = _open(path, "cpu", registry)
    with tempfile.TemporaryDirectory(prefix="vaezoo-push-") as tmp:
        folder = write_export(artifact, registry, Path(tmp) / target.model.name, fmt="hf", load_as=str(target.model))
        return hub.push(folder, target, private=private, message=message)


def sample(path: str | Path, out: str | Path | None = None, *, mode: str = "prior", n: int = 64, seed: int = 0,
           split: str = "test", data_dir: str | Path | None = None, device: str = "auto",
           overwrite: bool = False, sampler: str = DEFAULT_SAMPLER, label: int | None = None) -> Path:
    """A PNG grid: samples (from the model's prior, or from a fitted post-hoc `sampler`), test images
    with their reconstructions, or latent traversals. `label`: a conditional model's samples all of
    that class (without it, one row per class)."""
    import torch

    from vaezoo import footprint
    from vaezoo.evaluation import pictures
    from vaezoo.training.rng import check_seed

    if mode not in SAMPLE_MODES:
        raise UsageError(f"sample mode '{mode}' is not one of {', '.join(SAMPLE_MODES)}")
    if n < 1:
        raise UsageError(f"the number of images must be at least 1, got {n}")
    if sampler != DEFAULT_SAMPLER and mode != "prior":
        raise UsageError("--sampler chooses where samples come from; it does not apply to --reconstruct or --traverse")
    check_seed(seed)
    destination = Path(out) if out is not None else Path(DEFAULT_PICTURES[mode])
    if destination.suffix.lower() != ".png":
        raise UsageError(f"--out {destination} must end in .png")
    refuse_run_files(destination)
    refuse_overwrite(destination, overwrite)
    registry = get_registry()
    artifact = _open(path, device, registry)
    model = artifact.vae()
    if label is not None and mode != "prior":
        raise UsageError(f"--label chooses the class of a conditional model's samples; {artifact.spec.name} "
                         "takes it only for samples")
    if mode == "prior":
        draw_images = _draw_function(artifact, sampler, label, n, registry)
        with torch.random.fork_rng(devices=[]):  # a few images drawn to measure, away from the seeded draw
            drawing = footprint.scaled_bytes(draw_images, n)
        footprint.check_fits(f"drawing {n:,} images", drawing + n * pictures.grid_bytes(artifact.input_shape),
                             next(model.parameters()).device)
        torch.manual_seed(seed)
        pictures.samples(model, destination, n, draw_images)
        return destination
    images, labels = _labelled(artifact, _dataset(artifact, data_dir, registry), split)
    images = images[:n].to(next(model.parameters()).device)
    torch.manual_seed(seed)
    if mode == "reconstruct":
        pictures.reconstructions(model, images, destination, n=n, labels=labels)
    else:
        pictures.traversals(model, images[0], destination, None if labels is None else labels[0])
    return destination


def fit_sampler(path: str | Path, sampler: str, *, hparams: Mapping[str, Any] | None = None,
                options: Iterable[str] = (), seed: int = 0, batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
                data_dir: str | Path | None = None, device: str = "auto", overwrite: bool = False) -> dict[str, Any]:
    """Fit the post-hoc `sampler` to the codes of the model's training set and save it beside the model.

    `hparams` / `options` ("key=value") set the sampler's own hyperparameters. Returns the mean
    log-density of the training and test codes under the fitted sampler, and where it was saved.
    """
    import torch

    from vaezoo.model.samplers import (
        build_sampler,
        check_sampler,
        flat_codes,
        sampler_schema,
    )
    from vaezoo.storage.samplers import sampler_file, save_sampler

    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    registry = get_registry()
    hp = sampler_schema(registry, sampler).resolve(hparams, texts=options)
    kind = registry.load("sampler", sampler)
    if not getattr(kind, "fits", True):
        raise UsageError(f"sampler '{sampler}' draws from the model itself: there is nothing to fit")
    artifact = _open(path, device, registry)
    model = artifact.vae()
    check_sampler(sampler, kind, model)
    destination = sampler_file(artifact, sampler)
    refuse_overwrite(destination, overwrite)
    device_of_model = next(model.parameters()).device
    train_images = _images(artifact, "train", data_dir, registry).to(device_of_model)
    test_images = _images(artifact, "test", data_dir, registry).to(device_of_model)
    started = time.perf_counter()
    codes = flat_codes(model, train_images, batch_size)
    with torch.random.fork_rng(devices=[device_of_model] if device_of_model.type == "cuda" else []):
        torch.manual_seed(seed)
        fitted = build_sampler(registry, sampler, hp, artifact.input_shape, codes.shape[1]).to(device_of_model)
        fitted.fit(codes)
    fitted.eval()
    with torch.no_grad():
        fit = {"codes": codes.shape[0], "seed": seed, "seconds": time.perf_counter() - started,
               "train_log_prob": float(fitted.log_prob(codes).mean()),
               "test_log_prob": float(fitted.log_prob(flat_codes(model, test_images, batch_size)).mean())}
    RunDir(destination.parent).record_beside(destination)
    save_sampler(destination, sampler, fitted, hp.to_dict(), codes.shape[1], artifact, fit)
    return {"sampler": sampler, "hparams": hp.to_dict(), **fit, "saved_to": str(destination)}


def draw(path: str | Path, n: int = 64, *, sampler: str = DEFAULT_SAMPLER, seed: int = 0, device: str = "auto",
         label: int | None = None) -> Tensor:
    """n images [n, C, H, W] in [0, 1] drawn from the model: from its prior, or from a post-hoc `sampler`
    fitted beforehand with `fit_sampler`; the same seed draws the same images. `label`: a conditional
    model's samples all of that class (without it, the classes in turn). For scoring samples in code;
    `sample` draws a picture."""
    import torch

    from vaezoo.training.rng import check_seed

    if n < 1:
        raise UsageError(f"the number of images must be at least 1, got {n}")
    check_seed(seed)
    registry = get_registry()
    artifact = _open(path, device, registry)
    draw_images = _draw_function(artifact, sampler, label, n, registry)
    torch.manual_seed(seed)
    with torch.no_grad():
        return torch.cat([draw_images(min(DEFAULT_EVAL_BATCH_SIZE, n - done))
                          for done in range(0, n, DEFAULT_EVAL_BATCH_SIZE)])


def _draw_function(artifact: Artifact, sampler: str, label: int | None, n: int,
                   registry: Registry) -> Callable[[int], Tensor]:
    """draw(count) -> images from `sampler` for the artifact's model, conditioned on `label` when given."""
    import torch

    model = artifact.vae()
    if label is not None and "conditional" not in model.capabilities:
        raise UsageError(f"--label chooses the class of a conditional model's samples (e.g. cvae); "
                         f"{artifact.spec.name} is not conditional")
    if label is not None and not 0 <= label < model.classes:
        raise UsageError(f"--label {label}: {artifact.spec.name} knows classes 0 to {model.classes - 1}")
    drawer = _sampler(artifact, sampler, registry)
    wanted = None if label is None else torch.full((n,), label, device=next(model.parameters()).device)

    def draw_images(count: int) -> Tensor:
        with model.conditioned_on(None if wanted is None else wanted[:count]):
            return drawer.images(model, count)

    return draw_images


def _sampler(artifact: Artifact, name: str, registry: Registry) -> Sampler:
    """The sampler `name` ready to draw for the artifact's model: fitted ones are read from their file."""
    from vaezoo.model.samplers import build_sampler, check_sampler
    from vaezoo.storage.samplers import load_sampler

    kind = registry.load("sampler", name)
    check_sampler(name, kind, artifact.vae())
    if getattr(kind, "fits", True):
        return load_sampler(artifact, name, registry)[0]
    return build_sampler(registry, name, {}, artifact.input_shape)


def _train(spec: VariantSpec, hp: HParams, dataset_name: str, seed: int, max_steps: int | None,
           parts: Mapping[str, str], stage: Artifact | None, run_folder: Callable[[bool], RunDir], *,
           data_dir: str | Path | None, device: str, checkpoint_every: int | None, skip_nonfinite: bool,
           dist_timeout: float | None, precision: str, trackers: tuple[str, ...], console: Console | None,
           resumed: bool = False, out_named: bool = True) -> Path | None:
    """Check the precision and trackers and load the data, then take the run folder (created only once
    the inputs check out, and only by rank 0 under torchrun: `run_folder(is_main)`) and train into it."""
    from rich.console import Console

    from vaezoo import footprint
    from vaezoo.devices import resolve_device
    from vaezoo.training.distributed import DEFAULT_TIMEOUT_S, launch
    from vaezoo.training.loop import TrainSetup
    from vaezoo.training.loop import train as train_run
    from vaezoo.training.precision import check_precision, emulation_note
    from vaezoo.training.tracking import open_trackers, tracker_names

    registry = get_registry()
    world, torch_device = launch(resolve_device(device), dist_timeout or DEFAULT_TIMEOUT_S)
    check_precision(precision, torch_device)
    trackers = tracker_names(trackers)
    opened = open_trackers(trackers, registry) if world.is_main else {}
    if world.launched and not out_named:
        raise UsageError("under torchrun name the run folder with --out: every process must agree on it")
    # The run records the registered name, which is what --resume and evaluate look up again.
    data = dataclasses.replace(_load_dataset(registry, dataset_name, data_dir, hp), name=dataset_name)
    if hp["batch_size"] * world.size > data.train.shape[0]:
        each = f" x {world.size} processes" if world.launched else ""
        raise UsageError(f"batch size {hp['batch_size']}{each} is larger than the training set "
                         f"({data.train.shape[0]} images)")
    footprint.check_build(f"training {spec.name} with these hyperparameters (batch {hp['batch_size']})", spec, hp,
                          data.input_shape, registry, torch_device, batch=hp["batch_size"],
                          dataset_size=data.train.shape[0], parts=parts,
                          parent=stage.vae() if stage is not None else None, dataset=dataset_name)
    run = run_folder(world.is_main)
    console = (console or Console(stderr=True)) if world.is_main else Console(stderr=True, quiet=True)
    processes = f" x {world.size} processes ({world.backend})" if world.launched else ""
    console.print(f"training [bold]{spec.name}[/] on {data.name} ({data.train.shape[0]} images) on {torch_device}"
                  f"{processes}; run folder {run.path}", highlight=False)
    if stage is not None and stage.input_shape != data.input_shape:
        raise DataError(f"the parent model takes images of shape {stage.input_shape}; dataset {data.name} "
                        f"gives {data.input_shape}")
    if note := emulation_note(precision, torch_device):
        console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    setup = TrainSetup(spec, hp, data, torch_device, seed=seed, max_steps=max_steps, world=world, parts=parts,
                       parent=stage.vae() if stage is not None else None,
                       parent_metadata=stage.describe() if stage is not None else None,
                       provenance=registry.provenance("variant", spec.name), precision=precision, trackers=trackers)
    with world.joined():
        train_run(setup, run, registry, console, resume_run=resumed, checkpoint_every=checkpoint_every,
                  skip_nonfinite=skip_nonfinite, trackers=opened)
    return run.path if world.is_main else None


def default_run_folder(variant: str) -> Path:
    """runs/VARIANT/YYYYmmdd-HHMMSS under the current folder."""
    return Path("runs") / variant / datetime.now().strftime("%Y%m%d-%H%M%S")


def _check_keep(keep: int | None) -> None:
    if keep is not None and (type(keep) is not int or keep < 1):
        raise UsageError(f"--keep-checkpoints {keep!r}: keep at least 1 (the newest is what --resume needs)")


def _check_finite(measures: Mapping[str, Any], source: Path) -> None:
    """NaN or infinite measures mean NaN or infinite weights (or a diverged model): no eval.json of them."""
    def finite(value: Any) -> bool:
        return all(math.isfinite(v) for v in (value if isinstance(value, list) else [value]) if isinstance(v, float))

    bad = [key for key, value in measures.items() if not finite(value)]
    if bad:
        raise WeightsError(f"{source} gives non-finite measures ({', '.join(bad)}): its weights hold NaN or "
                           "infinite values, or the model has diverged; nothing was written")


def _open(path: str | Path, device: str, registry: Registry) -> Artifact:
    """A local path, or hf://OWNER/NAME[@REVISION] fetched into huggingface_hub's cache first."""
    from vaezoo.devices import resolve_device
    from vaezoo.storage import hub
    from vaezoo.storage.loading import open_artifact

    if hub.is_hub(path):
        artifact = open_artifact(hub.download(str(path)), device=resolve_device(device), registry=registry)
        artifact.origin = str(hub.parse(str(path)))
        return artifact
    return open_artifact(Path(path), device=resolve_device(device), registry=registry)


def _load_dataset(registry: Registry, name: str, data_dir: str | Path | None, hp: Mapping[str, Any]) -> ImageData:
    """The registered dataset `name`, read from `data_dir`, with the parameters it declares taken from
    `hp` (an image folder's size and colour mode: recorded with the run, so evaluation reads the same)."""
    entry = registry.get("dataset", name)
    return entry.load()(data_dir, **{p.name: hp.get(p.name, p.default) for p in entry.params})


def _dataset(artifact: Artifact, data_dir: str | Path | None, registry: Registry) -> ImageData:
    """The dataset the model was trained on, checked against its input shape."""
    data = _load_dataset(registry, artifact.metadata["dataset"], data_dir, artifact.hp)
    if data.input_shape != artifact.input_shape:
        raise DataError(f"dataset {data.name} gives images of shape {data.input_shape}, "
                        f"but the model expects {artifact.input_shape}")
    return data


def _images(artifact: Artifact, split: str, data_dir: str | Path | None, registry: Registry) -> Tensor:
    """The `split` images of the dataset the model was trained on."""
    return _dataset(artifact, data_dir, registry).split(split)


def _labelled(artifact: Artifact, data: ImageData, split: str) -> tuple[Tensor, Tensor | None]:
    """The `split` images and, for a conditional model, their labels (else None)."""
    if "conditional" not in getattr(artifact.module, "capabilities", ()):
        return data.split(split), None
    labels = getattr(data, f"{split}_labels")
    if labels is None:
        raise DataError(f"{artifact.spec.name} is conditioned on labels, and dataset {data.name} has none")
    return data.split(split), labels
