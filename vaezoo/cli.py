"""The `vaezoo` command line. Listing commands never import torch; training imports it on demand."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vaezoo import __version__
from vaezoo.api import (
    DEFAULT_EVAL_BATCH_SIZE,
    DEFAULT_IMPORTANCE_SAMPLES,
    DEFAULT_SAMPLER,
)
from vaezoo.errors import UsageError, VaezooError
from vaezoo.explore.server import DEFAULT_HOST, DEFAULT_PORT
from vaezoo.registry import KINDS, get_registry

app = typer.Typer(
    name="vaezoo", help="A plugin-based zoo of variational autoencoders.", no_args_is_help=True,
    add_completion=False, pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
DEBUG_ENV = "VAEZOO_DEBUG"
_debug = {"on": False}  # --debug for this invocation only (the environment variable is the user's)


def _debugging() -> bool:
    return _debug["on"] or os.environ.get(DEBUG_ENV) == "1"


def _version(value: bool) -> None:
    if value:
        out.print(f"vaezoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help=f"Show tracebacks for errors (or set {DEBUG_ENV}=1)."),
) -> None:
    _debug["on"] = debug


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _warn_failures() -> None:
    failures = get_registry().failures()
    for info in failures:
        err.print(f"[yellow]warning:[/] plugin '{escape(info.name)}' was skipped: {escape(info.error or '')}",
                  highlight=False, soft_wrap=True)


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    parts: bool = typer.Option(False, "--parts", help="List every registered part by kind instead of variants."),
) -> None:
    """List the registered variants (or parts)."""
    registry = get_registry()
    if parts:
        rows = [{"kind": e.kind, "name": e.name, "plugin": e.plugin, "description": e.description}
                for kind in KINDS if kind != "variant" for e in registry.entries(kind)]
        if as_json:
            _print_json(rows)
        else:
            table = Table("kind", "name", "plugin", "description", title="Registered parts")
            for r in rows:
                table.add_row(*(escape(r[key]) for key in ("kind", "name", "plugin", "description")))
            out.print(table)
    else:
        specs = [(e.plugin, registry.variant(e.name)) for e in registry.entries("variant")]
        if as_json:
            _print_json([{"name": s.name, "description": s.description, "parts": dict(s.parts),
                          "structure": s.structure, "objective": s.objective, "parent_needs": list(s.parent_needs),
                          "dataset": s.dataset, "paper": s.paper, "plugin": p}
                         for p, s in specs])
        else:
            table = Table("variant", "parts", "dataset", "description", title="Variants")
            for _, s in specs:
                parts = "\n".join(f"{k} {v}" for k, v in s.default_parts().items())
                stage = f"\n(second stage: --parent RUN with {', '.join(s.parent_needs)})" if s.parent_needs else ""
                table.add_row(*map(escape, (s.name, parts, s.dataset, s.description + stage)))
            out.print(table)
    _warn_failures()


@app.command("plugins")
def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    check: bool = typer.Option(False, "--check", help="Also import every registered target and build every variant "
                               "(parts fit together, a forward pass and the loss run); show plugin tracebacks."),
) -> None:
    """Show each plugin, where it comes from, what it registers, and failures."""
    registry = get_registry()
    infos = sorted([*registry.plugins.values(), *registry.skipped], key=lambda p: (not p.builtin, p.name))
    rows = [{"name": p.name, "distribution": p.distribution, "version": p.version, "builtin": p.builtin,
             "registers": [f"{k} {n}" for k, n in p.registered], "error": p.error,
             "unknown_hooks": p.unknown_hooks} for p in infos]
    problems = []
    if check:
        from vaezoo.checks import check_plugins

        problems = check_plugins(registry)
    if as_json:
        _print_json({"plugins": rows, "problems": [vars(p) for p in problems]} if check else rows)
    else:
        table = Table("plugin", "from", "registers", "status", title="Plugins")
        for r in rows:
            origin = f"{r['distribution'] or '?'} {r['version'] or ''}".strip() + (" (built-in)" if r["builtin"] else "")
            status = f"[red]skipped: {escape(r['error'])}[/]" if r["error"] else "[green]ok[/]"
            if r["unknown_hooks"]:
                status += f"\n[yellow]functions named like no hook: {', '.join(r['unknown_hooks'])}[/]"
            table.add_row(escape(r["name"]), escape(origin), escape("\n".join(r["registers"])), status)
        out.print(table)
        for problem in problems:
            err.print(f"[red]problem:[/] {escape(problem.what)}: {escape(problem.message)}", highlight=False,
                      soft_wrap=True)
            if problem.traceback:
                err.print(escape(problem.traceback.rstrip()), highlight=False, soft_wrap=True)
        if check and not problems:
            out.print("[green]every plugin imports, and every variant builds and runs a forward pass[/]")
    if problems:
        raise typer.Exit(1)


@app.command("info")
def info_command(
    variant: str = typer.Argument(..., help="A registered variant name (see `vaezoo list`)."),
    part: List[str] = typer.Option([], "--part", help="Show the recipe with a part swapped, as kind=name."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Show the options of this dataset "
                                          "(default: the variant's)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a variant's parts and hyperparameters (its parts' and dataset's own included) with types, defaults, ranges and help."""
    from vaezoo.variant import Recipe

    registry = get_registry()
    spec = registry.variant(variant)
    if dataset is not None:
        registry.get("dataset", dataset)
    recipe = Recipe.of(spec, registry, _part_swaps(part), dataset)
    params = [{"name": p.name, "type": p.type, "default": p.default, "range": p.range_text, "help": p.help}
              for p in recipe.schema]
    if as_json:
        _print_json({"name": spec.name, "description": spec.description, "paper": spec.paper,
                     "parts": {k: v for k, v in recipe.parts.items() if k not in ("structure", "objective")},
                     "structure": recipe.parts["structure"], "objective": recipe.parts["objective"],
                     "parent_needs": list(spec.parent_needs), "dataset": dataset or spec.dataset, "params": params})
        return
    out.print(f"[bold]{escape(spec.name)}[/]: {escape(spec.description)}", highlight=False)
    if spec.paper:
        out.print(f"paper: {escape(spec.paper)}", highlight=False)
    out.print(escape("parts: " + ", ".join(f"{k}={v}" for k, v in recipe.parts.items())
                     + f"; dataset: {dataset or spec.dataset}"), highlight=False)
    if spec.parent_needs:
        out.print(f"second stage: train it with --parent RUN, a finished run whose model has "
                  f"{', '.join(spec.parent_needs)}", highlight=False)
    table = Table("option", "type", "default", "valid range", "help", title="Hyperparameters (-o name=value)")
    for p in params:
        table.add_row(*(escape(str(p[key])) for key in ("name", "type", "default", "range", "help")))
    out.print(table)


@app.command("train")
def train_command(
    variant: Optional[str] = typer.Argument(None, help="A registered variant name (see `vaezoo list`); not with --resume."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML, YAML or JSON file of settings (a run's config.json too); options given here win."),
    beta: Optional[str] = typer.Option(None, "--beta", help="Weight of the divergence term, for variants that have one."),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="Passes over the training set (with --resume: extend the run)."),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="Images per step and process: under torchrun the global batch is this times the number of processes."),
    lr: Optional[str] = typer.Option(None, "--lr", help="Adam learning rate."),
    option: List[str] = typer.Option([], "-o", "--option", help="Any hyperparameter as key=value (see `vaezoo info`)."),
    part: List[str] = typer.Option([], "--part", help="Swap a registered part, as kind=name (e.g. likelihood=gaussian); "
                                   "`vaezoo list --parts` lists them."),
    parent: Optional[Path] = typer.Option(None, "--parent", help="For a second-stage variant: the finished run "
                                          "(or weights file) it trains on."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for initialisation, noise and data order (default 0)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/VARIANT/TIMESTAMP)."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite/--no-overwrite", show_default=False, help="Replace the run already in --out (once the new one's inputs check out)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A registered dataset (default: the variant's)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after N steps (smoke runs)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (the default), cpu, cuda or cuda:N."),
    precision: Optional[str] = typer.Option(None, "--precision", help="32 (default), bf16 or 16 (CUDA): the networks under autocast, the objective in float32."),
    track: List[str] = typer.Option([], "--track", help="Log to an experiment tracker: tensorboard, mlflow, wandb or a plugin's; repeat for several, 'none' for none."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its newest checkpoint, with its own settings."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Also checkpoint every N steps (default: at epoch ends only)."),
    keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", min=1, help="Keep only the N newest epoch checkpoints (default: all; the newest is always kept)."),
    skip_nonfinite: Optional[bool] = typer.Option(None, "--skip-nonfinite/--no-skip-nonfinite", show_default=False, help="Skip a batch whose loss is NaN or infinite instead of stopping (a host sync per step on GPUs)."),
    dist_timeout: Optional[float] = typer.Option(None, "--dist-timeout", min=1, help="Under torchrun: seconds a process waits for the others before the job stops (default 300)."),
) -> None:
    """Train a variant, or continue a run with --resume; writes a self-describing run folder."""
    from vaezoo.storage.runs import RunDir

    registry = get_registry()
    if resume is not None:
        given = {"VARIANT": variant, "--config": config, "--beta": beta, "--batch-size": batch_size, "--lr": lr,
                 "-o": option or None, "--part": part or None, "--parent": parent, "--seed": seed, "--out": out_dir,
                 "--overwrite": overwrite, "--dataset": dataset, "--max-steps": max_steps, "--precision": precision,
                 "--track": track or None}
        refused = [name for name, value in given.items() if value is not None]
        if refused:
            raise UsageError(f"--resume continues a run with the settings in its config.json; {', '.join(refused)} "
                             "cannot be given with it (allowed: --epochs to extend, --device, --data-dir, "
                             "--checkpoint-every, --keep-checkpoints, --skip-nonfinite, --dist-timeout)")
        from vaezoo.api import resume_training

        path = resume_training(resume, epochs=epochs, data_dir=data_dir, device=device or "auto",
                               checkpoint_every=checkpoint_every, skip_nonfinite=bool(skip_nonfinite),
                               dist_timeout=dist_timeout, keep_checkpoints=keep_checkpoints, console=err)
    else:
        shortcuts = {"beta": beta, "epochs": epochs, "batch_size": batch_size, "lr": lr}
        texts = [f"{name}={value}" for name, value in shortcuts.items() if value is not None]
        settings = {"parts": _part_swaps(part) or None, "parent": parent,
                    "dataset": dataset, "data_dir": data_dir, "out": out_dir, "overwrite": overwrite, "seed": seed,
                    "max_steps": max_steps, "device": device, "precision": precision, "trackers": track or None,
                    "checkpoint_every": checkpoint_every, "skip_nonfinite": skip_nonfinite,
                    "dist_timeout": dist_timeout, "keep_checkpoints": keep_checkpoints}
        given = {key: value for key, value in settings.items() if value is not None}
        if config is not None:
            from vaezoo.api import train_from_config

            path = train_from_config(config, options=[*texts, *option], console=err,
                                     **({"variant": variant} if variant is not None else {}), **given)
        else:
            if variant is None:
                raise UsageError("name a VARIANT to train (see `vaezoo list`), give a --config file, "
                                 "or continue a run with --resume RUN")
            spec = registry.variant(variant)
            for name in shortcuts:
                if shortcuts[name] is not None and name not in spec.schema:
                    raise UsageError(f"variant {spec.name} has no hyperparameter '{name}'")
            from vaezoo.api import train

            path = train(spec.name, options=[*texts, *option], console=err, **given)
    if path is None:  # under torchrun only rank 0 reports
        return
    test = RunDir(path).read_metrics()[-1]["test"]
    measure = ("test negative ELBO", test["neg_elbo"]) if "neg_elbo" in test else ("test reconstruction", test["recon"])
    out.print(f"done: {measure[0]} {measure[1]:.2f} nats per image; run folder {path}", highlight=False)


def _region(text: str) -> tuple[int, int, int, int]:
    """"2:30,2:30" -> (2, 30, 2, 30)."""
    try:
        rows, columns = text.split(",")
        (top, bottom), (left, right) = (tuple(int(v) for v in part.split(":")) for part in (rows, columns))
    except ValueError:
        raise UsageError(f"--region '{text}' must look like TOP:BOTTOM,LEFT:RIGHT (e.g. 2:30,2:30)") from None
    return top, bottom, left, right


def _part_swaps(texts: List[str]) -> dict[str, str]:
    """["likelihood=gaussian"] -> {"likelihood": "gaussian"}; kinds and names are checked by the recipe."""
    swaps = {}
    for text in texts:
        kind, sep, name = text.partition("=")
        if not sep or not kind.strip() or not name.strip():
            raise UsageError(f"--part '{text}' must look like kind=name (e.g. likelihood=gaussian)")
        swaps[kind.strip()] = name.strip()
    return swaps


SOURCE_HELP = ("A run folder, an exported .safetensors file or folder, a training checkpoint, or a Hugging Face "
               "Hub model hf://OWNER/NAME[@REVISION] (pip install 'vaezoo[hub]').")


@app.command("evaluate")
def evaluate_command(
    source: str = typer.Argument(..., metavar="MODEL", help=SOURCE_HELP),
    split: str = typer.Option("test", "--split", help="train or test."),
    importance_samples: int = typer.Option(DEFAULT_IMPORTANCE_SAMPLES, "--importance-samples", "-k",
                                           help="Importance samples per image for -log p(x)."),
    batch_size: int = typer.Option(DEFAULT_EVAL_BATCH_SIZE, "--batch-size", help="Images per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed for the sampled estimates."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Where to write the JSON (default eval.json beside SOURCE)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing eval.json."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    region: Optional[str] = typer.Option(None, "--region", help="Also count log p(x|z) on rows and columns "
                                         "TOP:BOTTOM,LEFT:RIGHT only, e.g. 2:30,2:30 for FashionMNIST's 784 "
                                         "original pixels."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Disentanglement metrics on a dataset with "
                                          "factors: 'disentanglement' for all, or a comma list of names."),
    metric_option: List[str] = typer.Option([], "--metric-option", help="A metric's setting as "
                                            "METRIC.SETTING=VALUE, e.g. dci.num_train=2000."),
) -> None:
    """Measure a trained model on held-out images: -ELBO, its terms, -log p(x), active units, MSE;
    with --metrics also disentanglement metrics."""
    from vaezoo.api import evaluate

    r = evaluate(source, split=split, importance_samples=importance_samples, batch_size=batch_size, seed=seed,
                 data_dir=data_dir, device=device, out=out_file, overwrite=overwrite,
                 region=None if region is None else _region(region), metrics=metrics, metric_options=metric_option)
    out.print(f"{r['variant']} on {r['dataset']} {r['split']}: {r['images']:,} images in {r['seconds']:.1f} s",
              highlight=False)
    out.print(_measures_table(r))
    if "kl_per_dim" in r or "posterior_mean_variance" in r:
        per_dim = Table("dim", "KL", "Var[E q(z|x)]", title="Per latent dimension")
        kl, variance = r.get("kl_per_dim", []), r.get("posterior_mean_variance", [])
        for d in range(max(len(kl), len(variance))):
            per_dim.add_row(str(d), f"{kl[d]:.3f}" if d < len(kl) else "-",
                            f"{variance[d]:.3f}" if d < len(variance) else "-")
        out.print(per_dim)
    if "kl_per_group" in r:
        groups = Table("group", "KL", title="Per latent group")
        for g, value in enumerate(r["kl_per_group"]):
            groups.add_row(str(g), f"{value:.3f}")
        out.print(groups)
    if "region" in r:
        counted = r["region"]
        line = (f"on rows {counted['region'][0]}:{counted['region'][1]}, columns {counted['region'][2]}:"
                f"{counted['region'][3]} ({counted['values']} values): negative ELBO {counted['neg_elbo']:.2f}")
        if "nll" in counted:
            line += f", -log p(x) {counted['nll']:.2f}"
        out.print(line, highlight=False)
    for measure, reason in r.get("not_applicable", {}).items():
        out.print(f"{measure}: not applicable, {reason}", highlight=False)
    out.print(f"bits per dimension: -log p(x) as {r['bits_per_dim_basis']}", highlight=False)
    if "disentanglement" in r:
        out.print(_metrics_table(r["disentanglement"]))
    out.print(f"wrote {r['saved_to']}", highlight=False)


#: Per-image measures evaluate may return, in display order, with their labels.
MEASURE_LABELS = {
    "neg_elbo": "negative ELBO (beta = 1), nats",
    "recon": "  reconstruction -log p(x|z)",
    "kl": "  KL(q(z|x) || p(z))",
    "divergence": "training divergence (not the KL)",
    "neg_elbo_bits_per_dim": "negative ELBO, bits per dimension",
    "nll": "-log p(x), {importance_samples} importance samples",
    "nll_bits_per_dim": "-log p(x), bits per dimension",
    "mse": "reconstruction MSE per pixel",
}


def _measures_table(r: dict) -> Table:
    """The measures evaluate returned, those that apply to the model, then the structure's own."""
    from vaezoo.evaluation.measures import ACTIVE_UNIT_THRESHOLD

    table = Table("measure (per image)", "value")
    for key, label in MEASURE_LABELS.items():
        if key in r:
            text = label.format(**r)
            if key == "kl" and r.get("kl_estimated"):
                text += " (Monte Carlo estimate)"
            table.add_row(text, f"{r[key]:.5f}" if key == "mse" else f"{r[key]:.2f}")
    if "active_units" in r:
        table.add_row(f"active units (Var[E q(z|x)] > {ACTIVE_UNIT_THRESHOLD:g})",
                      f"{r['active_units']} / {len(r['posterior_mean_variance'])}")
    for key, value in r.get("structure_measures", {}).items():
        table.add_row(key.replace("_", " "), f"{value:.4g}")
    return table


def _metrics_table(result: dict) -> Table:
    """One row per score, each metric's headline score first; the settings are in eval.json."""
    seed = next(iter(result["metrics"].values()))["seed"]
    table = Table("metric", "score", "value", "seconds", title=f"Disentanglement of the {result['representation']}",
                  caption=f"{result['images_encoded']:,} images encoded; seed {seed}; settings in eval.json")
    for name, m in result["metrics"].items():
        scores = sorted(m["scores"].items(), key=lambda item: item[0] != m["headline"])
        for i, (score, value) in enumerate(scores):
            table.add_row(name if i == 0 else "", score, f"{value:.3f}" if isinstance(value, float) else str(value),
                          f"{m['seconds']:.1f}" if i == 0 else "")
    return table


@app.command("export")
def export_command(
    source: str = typer.Argument(..., metavar="MODEL", help=SOURCE_HELP),
    out_path: Optional[Path] = typer.Option(None, "--out", help="A .safetensors file, or a folder for the "
                                            "Hugging Face layout (default VARIANT-RUN.safetensors here)."),
    fmt: str = typer.Option("safetensors", "--format", help="safetensors, or hf: a folder with a model card (README.md) for the Hugging Face Hub."),
    part: str = typer.Option("model", "--part", help="model, encoder or decoder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
) -> None:
    """Write one self-describing safetensors file (or config.json + model.safetensors [+ README.md]) for shipping."""
    from vaezoo.api import export

    written = export(source, out_path, part=part, fmt=fmt, overwrite=overwrite)
    out.print(f"wrote {written}", highlight=False)


@app.command("sample")
def sample_command(
    source: str = typer.Argument(..., metavar="MODEL", help=SOURCE_HELP),
    n: int = typer.Option(64, "--n", help="Images to draw (or test images to reconstruct)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="PNG to write (default samples.png, "
                                            "reconstructions.png or traversals.png)."),
    reconstruct: bool = typer.Option(False, "--reconstruct", help="Test images and their reconstructions."),
    traverse: bool = typer.Option(False, "--traverse", help="Each latent dimension swept around a test image's code."),
    seed: int = typer.Option(0, "--seed", help="Seed for the samples."),
    sampler: str = typer.Option(DEFAULT_SAMPLER, "--sampler", help="Where samples come from: the model's prior, "
                                "or a post-hoc sampler fitted with `vaezoo fit-sampler` (`vaezoo list --parts` lists them)."),
    label: Optional[int] = typer.Option(None, "--label", help="For a conditional model (cvae): every sample of this "
                                        "class (default: one row per class)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing picture."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Draw a PNG grid: samples (prior or a fitted sampler), reconstructions or latent traversals."""
    if reconstruct and traverse:
        raise UsageError("choose one of --reconstruct and --traverse")
    from vaezoo.api import sample

    mode = "reconstruct" if reconstruct else "traverse" if traverse else "prior"
    written = sample(source, out_file, mode=mode, n=n, seed=seed, data_dir=data_dir, device=device, overwrite=overwrite,
                     sampler=sampler, label=label)
    out.print(f"wrote {written}", highlight=False)


@app.command("bench")
def bench_command(
    protocol: str = typer.Argument("fashion-mnist", help="A registered protocol (`vaezoo list --parts`; "
                                   "fashion-mnist) or a JSON protocol file."),
    out_dir: Path = typer.Option(Path("bench"), "--out", help="Where the bench's run folders go."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted bench in --out."),
    only: List[str] = typer.Option([], "--only", help="Run only these variants (repeatable)."),
    report: Path = typer.Option(Path("docs/results.md"), "--report", help="The markdown table to write."),
    report_only: bool = typer.Option(False, "--report-only", help="Rewrite the table from --out without running."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="How the cells ran, for the table (default: "
                                           "this machine's CPU model, cores and GPUs)."),
) -> None:
    """Train and measure the whole zoo on one protocol; write the results table (see docs/results.md)."""
    from vaezoo.bench.protocol import load_protocol
    from vaezoo.bench.report import write_report

    chosen = load_protocol(protocol, get_registry())
    if not report_only:
        from vaezoo.bench.runner import run

        run(chosen, out_dir, get_registry(), resume=resume, only=only, device=device, console=err)
    write_report(out_dir, chosen, report, hardware=hardware)
    out.print(f"wrote {report}", highlight=False)


@app.command("explore")
def explore_command(
    sources: List[Path] = typer.Argument(..., metavar="RUN_OR_FILE", help="One or more models to show side by side: "
                                         "run folders, exported files or folders, or training checkpoints."),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on (the default: this machine only)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Serve a local page to explore models: latent sliders, interpolations, samples, reconstructions, loss curves."""
    from vaezoo.explore.server import serve

    serve(sources, host=host, port=port, device=device, data_dir=data_dir, console=err)


@app.command("push")
def push_command(
    source: str = typer.Argument(..., metavar="MODEL", help=SOURCE_HELP),
    repo_id: str = typer.Argument(..., metavar="OWNER/NAME", help="The Hugging Face Hub model to create or update."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    message: Optional[str] = typer.Option(None, "--message", help="The commit message."),
) -> None:
    """Upload a model with its model card to the Hugging Face Hub (needs `hf auth login` or HF_TOKEN)."""
    from vaezoo.api import push

    url = push(source, repo_id, private=private, message=message)
    out.print(f"pushed to {url}; load it with vaezoo.load(\"hf://{repo_id}\")", highlight=False)


@app.command("fit-sampler")
def fit_sampler_command(
    source: Path = typer.Argument(..., metavar="RUN_OR_FILE", help=SOURCE_HELP),
    sampler: str = typer.Option(..., "--sampler", help="A registered sampler (`vaezoo list --parts` lists them, e.g. gmm)."),
    option: List[str] = typer.Option([], "-o", "--option", help="A hyperparameter of the sampler as key=value "
                                     "(see docs/zoo.md, 'Post-hoc samplers')."),
    seed: int = typer.Option(0, "--seed", help="Seed for the sampler's initialisation and fitting."),
    batch_size: int = typer.Option(DEFAULT_EVAL_BATCH_SIZE, "--batch-size", help="Images per batch when encoding."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a sampler fitted before."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Fit a post-hoc sampler to the training set's codes and save it beside the model (for `sample --sampler`)."""
    from vaezoo.api import fit_sampler

    r = fit_sampler(source, sampler, options=option, seed=seed, batch_size=batch_size, data_dir=data_dir,
                    device=device, overwrite=overwrite)
    out.print(f"fitted {r['sampler']} to {r['codes']:,} training codes in {r['seconds']:.1f} s: mean log-density "
              f"{r['train_log_prob']:.3f} (train), {r['test_log_prob']:.3f} (test codes) nats; wrote {r['saved_to']}",
              highlight=False)


def _reports(exc: BaseException) -> bool:
    """Under torchrun an error is printed once: by rank 0, or for an error that depends on a machine
    (its files, its memory) by each machine's first process; see VaezooError.scope."""
    if os.environ.get("RANK", "0") in ("", "0"):
        return True
    return getattr(exc, "scope", "job") == "node" and os.environ.get("LOCAL_RANK", "0") in ("", "0")


SILENT_EXIT_GRACE_S = 5.0


def _exit_after_error(code: int, reported: bool) -> None:
    """A process that leaves the printing to another waits before it exits: torchrun stops every
    process as soon as one exits, and the one that prints meets the same error a moment later."""
    if not reported:
        time.sleep(SILENT_EXIT_GRACE_S)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    _debug["on"] = False
    try:
        code = app(args=argv, prog_name="vaezoo", standalone_mode=False)
    except VaezooError as exc:
        if _debugging():
            raise
        reported = _reports(exc)
        if reported:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        _exit_after_error(exc.exit_code, reported)
    except KeyboardInterrupt as exc:
        if _debugging():
            raise
        if _reports(exc):
            err.print("[red]interrupted[/]", highlight=False)
        sys.exit(130)
    except Exception as exc:
        # Typer's own usage errors (a bad --seed, a missing argument...) as one line too; checked by
        # their click interface rather than by class, since typer may vendor click.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        message = exc.format_message()
        reported = _reports(exc)
        if message.strip() and reported:  # empty when the help was shown instead (vaezoo with no arguments)
            err.print(f"[red]error:[/] {escape(message)} (see vaezoo --help)", highlight=False, soft_wrap=True)
        _exit_after_error(exc.exit_code, reported)
    if isinstance(code, int) and code:
        sys.exit(code)
