"""Running a protocol cell by cell (dataset x variant x seed): train, evaluate, score samples, record.

Every cell is an ordinary run folder plus cell.json, written last and atomically, so an interrupted
bench resumes where it stopped: a cell with cell.json is done, a run folder without a model is
resumed from its checkpoint (bit for bit, as `vaezoo train --resume`), anything else starts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from vaezoo import __version__
from vaezoo.bench.protocol import Protocol
from vaezoo.errors import NotApplicable, UsageError, VaezooError
from vaezoo.evaluation import inception_fid
from vaezoo.registry import Registry
from vaezoo.storage.runs import CONFIG, MODEL, atomic_write_json

CELL = "cell.json"
PROTOCOL = "protocol.json"
CLASSIFIERS = "classifiers"


@dataclass(frozen=True)
class Cell:
    dataset: str  # the protocol's label
    variant: str
    seed: int

    def folder(self, out: Path) -> Path:
        return out / self.dataset / self.variant / f"seed-{self.seed}"


def plan(protocol: Protocol, registry: Registry) -> tuple[list[Cell], dict[str, str]]:
    """The cells to run, first stages before their second stages, and the variants left out with why."""
    for label, dataset in protocol.datasets.items():
        registry.get("dataset", dataset)  # unknown: one error line with suggestions
    for name in (*protocol.variants, *protocol.exclude, *protocol.parents, *protocol.parents.values(),
                 *protocol.overrides):
        registry.variant(name)
    for name in protocol.samplers:
        registry.get("sampler", name)
    names = list(protocol.variants) or registry.names("variant")
    left_out = {name: "excluded by the protocol" for name in names if name in protocol.exclude}
    chosen = []
    for name in names:
        if name in left_out:
            continue
        if registry.variant(name).parent_needs and name not in protocol.parents:
            left_out[name] = "a second stage the protocol names no first stage for"
            continue
        chosen.append(name)
    chosen.sort(key=lambda name: name in protocol.parents)  # first stages first
    cells = [Cell(label, name, seed) for label in protocol.datasets for name in chosen for seed in protocol.seeds]
    return cells, left_out


def run(protocol: Protocol, out: Path, registry: Registry, *, resume: bool = False, only: Iterable[str] = (),
        device: str = "auto", console: Console | None = None) -> list[dict[str, Any]]:
    """Run every cell of `protocol` into `out` (or those of the variants in `only`); return their records."""
    console = console or Console(stderr=True)
    out = Path(out)
    cells, left_out = plan(protocol, registry)
    wanted = set(only)
    unknown = wanted - {cell.variant for cell in cells}
    if unknown:
        raise UsageError(f"--only {', '.join(sorted(unknown))}: not among the protocol's variants")
    if os.environ.get(inception_fid.WEIGHTS_ENV):  # a user who configured them hears of bad weights before any run
        _inception_network(str(inception_fid.weights_path()), device)
    _claim(out, protocol, resume)
    records = []
    for number, cell in enumerate(cells, 1):
        if wanted and cell.variant not in wanted:
            continue
        console.print(f"[bold]{number}/{len(cells)}[/] {cell.variant} on {cell.dataset}, seed {cell.seed}",
                      highlight=False)
        records.append(run_cell(cell, protocol, out, registry, device, console))
    for name, why in left_out.items():
        console.print(f"left out {name}: {why}", highlight=False)
    return records


def _claim(out: Path, protocol: Protocol, resume: bool) -> None:
    """A new bench folder, or with --resume one holding the same protocol."""
    stored = out / PROTOCOL
    if stored.exists():
        if not resume:
            raise UsageError(f"{out} already holds a bench; continue it with --resume or choose another --out")
        try:
            same = json.loads(stored.read_text()) == json.loads(json.dumps(protocol.to_dict()))
        except (OSError, ValueError):
            same = False
        if not same:
            raise UsageError(f"{stored} records a different protocol; a bench resumes only with the protocol it began")
        return
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} exists and is not a bench folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stored, protocol.to_dict())


def run_cell(cell: Cell, protocol: Protocol, out: Path, registry: Registry, device: str,
             console: Console) -> dict[str, Any]:
    """Train (or resume), evaluate and score one cell, unless cell.json says it is done."""
    from vaezoo import api

    folder = cell.folder(out)
    if (folder / CELL).is_file():
        return json.loads((folder / CELL).read_text())
    hparams = {"epochs": protocol.epochs, **protocol.overrides.get(cell.variant, {})}
    dataset = protocol.datasets[cell.dataset]
    parent = Cell(cell.dataset, protocol.parents[cell.variant], cell.seed).folder(out) \
        if cell.variant in protocol.parents else None
    record: dict[str, Any] = {"dataset": cell.dataset, "dataset_name": dataset, "variant": cell.variant,
                              "seed": cell.seed, "run": str(folder.relative_to(out)), "hparams": hparams,
                              "command": _command(cell.variant, dataset, cell.seed, hparams, parent, out)}
    try:
        if (folder / MODEL).is_file():
            pass
        elif (folder / CONFIG).is_file():
            api.resume_training(folder, device=device, console=console)
        else:
            api.train(cell.variant, hparams=hparams, dataset=dataset, seed=cell.seed, out=folder, parent=parent,
                      device=device, console=console)
        record["weights_hash"] = _weights_hash(folder)
        record["train_seconds"] = sum(r["seconds"] for r in _metrics(folder))
        measured = time.perf_counter()
        record["evaluation"] = api.evaluate(folder, importance_samples=protocol.importance_samples, seed=cell.seed,
                                            device=device, region=protocol.region, overwrite=True)
        record["evaluation_seconds"] = time.perf_counter() - measured
        if cell.dataset == protocol.quality_dataset:
            record["quality"] = sample_quality(folder, protocol, out, registry, cell.seed, device)
    except VaezooError as exc:  # parts that do not take the data, or a cell that fails: a row saying why, not a stop
        record["refused"] = str(exc)
        console.print(f"[yellow]{cell.variant}:[/] {exc}", highlight=False, soft_wrap=True)
    record["vaezoo_version"] = __version__
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / CELL, record)
    return record


def _metrics(folder: Path) -> list[dict[str, Any]]:
    from vaezoo.storage.runs import RunDir

    return RunDir(folder).read_metrics()


def _weights_hash(folder: Path) -> str:
    from vaezoo.storage import checkpoint

    tensors, _ = checkpoint.read(folder / MODEL)
    return checkpoint.content_hash(tensors)


def _command(variant: str, dataset: str, seed: int, hparams: dict[str, Any], parent: Path | None, out: Path) -> str:
    options = " ".join(f"-o {key}={value}" for key, value in hparams.items())
    parent_option = f" --parent {parent.relative_to(out)}" if parent is not None else ""  # as the run folders: inside out
    return f"vaezoo train {variant} --dataset {dataset} --seed {seed} {options}{parent_option}"


def sample_quality(folder: Path, protocol: Protocol, out: Path, registry: Registry, seed: int,
                   device: str = "auto") -> dict[str, Any]:
    """Per sampler of the protocol: Frechet distance, precision and recall of the model's samples against
    the test images, in the features of the protocol's classifier (trained once per bench, kept in
    classifiers/). A post-hoc sampler is fitted to the run's training codes first; one the model cannot
    use says why."""
    from vaezoo import api
    from vaezoo.data import as_float
    from vaezoo.evaluation import sample_quality as quality

    test = registry.load("dataset", protocol.datasets[protocol.quality_dataset])(None).test
    real = as_float(test[:protocol.sample_images])
    try:
        classifier = load_or_train_classifier(protocol, out, registry)
    except NotApplicable as exc:
        return {"not_applicable": str(exc)}
    inception, not_computed = _inception(real, device)
    scores: dict[str, Any] = {"inception_fid_not_computed": not_computed} if not_computed else {}
    for sampler in protocol.samplers:
        try:
            if getattr(registry.load("sampler", sampler), "fits", True):
                api.fit_sampler(folder, sampler, seed=seed, device=device, overwrite=True)
            with torch.random.fork_rng(devices=[]):
                samples = api.draw(folder, protocol.sample_images, sampler=sampler, seed=seed, device=device).cpu()
        except UsageError as exc:  # NotApplicable included: a sampler the model's structure cannot take
            scores[sampler] = {"not_applicable": str(exc)}
            continue
        scores[sampler] = quality.sample_quality(classifier, real, samples)
        if inception:
            network, real_features = inception
            scores[sampler]["inception_fid"] = inception_fid.frechet(
                real_features, inception_fid.inception_features(network, samples))
    return scores


def _inception(real: torch.Tensor, device: str) -> tuple[tuple[torch.nn.Module, torch.Tensor] | None, str | None]:
    """((FID Inception network, features of the real images), None), or (None, why not) where this
    machine has no FID Inception weights or no pytorch-fid. Both are kept for the next cell."""
    from vaezoo.errors import MissingExtraError

    try:
        path = inception_fid.weights_path()
        network = _inception_network(str(path), device)
    except (NotApplicable, MissingExtraError) as exc:
        return None, str(exc)
    key = (str(path), device, hashlib.sha256(real.numpy().tobytes()).hexdigest())
    if key not in _REAL_INCEPTION_FEATURES:
        _REAL_INCEPTION_FEATURES.clear()
        _REAL_INCEPTION_FEATURES[key] = inception_fid.inception_features(network, real)
    return (network, _REAL_INCEPTION_FEATURES[key]), None


_REAL_INCEPTION_FEATURES: dict[tuple[str, str, str], torch.Tensor] = {}


@functools.lru_cache(maxsize=1)
def _inception_network(path: str, device: str) -> torch.nn.Module:
    from vaezoo.devices import resolve_device

    return inception_fid.inception(Path(path)).to(resolve_device(device))


def load_or_train_classifier(protocol: Protocol, out: Path, registry: Registry):
    """The feature classifier of the protocol's quality dataset, trained on its training labels once."""
    from vaezoo.data import as_float
    from vaezoo.evaluation import sample_quality as quality
    from vaezoo.storage import checkpoint

    dataset = protocol.datasets[protocol.quality_dataset]
    path = out / CLASSIFIERS / f"{protocol.quality_dataset}.safetensors"
    data = registry.load("dataset", dataset)(None)
    if getattr(data, "train_labels", None) is None:
        raise NotApplicable(f"dataset {dataset} has no labels to train the sample-quality classifier on")
    classes = int(data.train_labels.max()) + 1
    model = quality.FeatureClassifier(data.input_shape, classes)
    if path.is_file():
        tensors, _ = checkpoint.read(path)
        checkpoint.load_module_state(model, tensors, "", path)
        return model.eval()
    with torch.random.fork_rng(devices=[]):
        model = quality.train_classifier(as_float(data.train), data.train_labels, classes,
                                         epochs=protocol.classifier_epochs)
    test_accuracy = quality.accuracy(model, as_float(data.test), data.test_labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write(path, checkpoint.model_tensors(model), {"dataset": dataset, "test_accuracy": test_accuracy})
    return model
