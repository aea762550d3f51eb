"""The `vaezoo` command line. Listing commands never import torch; training imports it on demand."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vaezoo import __version__
from vaezoo.api import DEFAULT_EVAL_BATCH_SIZE, DEFAULT_IMPORTANCE_SAMPLES
from vaezoo.errors import UsageError, VaezooError
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
        err.print(f"[yellow]warning:[/] plugin '{info.name}' failed to load and was skipped: {info.error}", highlight=False)


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
                table.add_row(r["kind"], r["name"], r["plugin"], r["description"])
            out.print(table)
    else:
        specs = [(e.plugin, registry.variant(e.name)) for e in registry.entries("variant")]
        if as_json:
            _print_json([{"name": s.name, "description": s.description, "parts": dict(s.parts),
                          "objective": s.objective, "dataset": s.dataset, "paper": s.paper, "plugin": p}
                         for p, s in specs])
        else:
            table = Table("variant", "parts", "dataset", "description", title="Variants")
            for _, s in specs:
                parts = "\n".join(f"{k} {v}" for k, v in {**s.parts, "objective": s.objective}.items())
                table.add_row(s.name, parts, s.dataset, s.description)
            out.print(table)
    _warn_failures()


@app.command("plugins")
def plugins_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show each plugin, where it comes from, what it registers, and failures."""
    infos = sorted(get_registry().plugins.values(), key=lambda p: (not p.builtin, p.name))
    rows = [{"name": p.name, "distribution": p.distribution, "version": p.version, "builtin": p.builtin,
             "registers": [f"{k} {n}" for k, n in p.registered], "error": p.error} for p in infos]
    if as_json:
        _print_json(rows)
        return
    table = Table("plugin", "from", "registers", "status", title="Plugins")
    for r in rows:
        origin = f"{r['distribution'] or '?'} {r['version'] or ''}".strip() + (" (built-in)" if r["builtin"] else "")
        status = f"[red]failed: {r['error']}[/]" if r["error"] else "[green]ok[/]"
        table.add_row(r["name"], origin, "\n".join(r["registers"]), status)
    out.print(table)


@app.command("info")
def info_command(
    variant: str = typer.Argument(..., help="A registered variant name (see `vaezoo list`)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a variant's parts and hyperparameters with types, defaults, valid ranges and help."""
    spec = get_registry().variant(variant)
    params = [{"name": p.name, "type": p.type, "default": p.default, "range": p.range_text, "help": p.help}
              for p in spec.schema]
    if as_json:
        _print_json({"name": spec.name, "description": spec.description, "paper": spec.paper,
                     "parts": dict(spec.parts), "objective": spec.objective, "dataset": spec.dataset,
                     "params": params})
        return
    out.print(f"[bold]{spec.name}[/]: {spec.description}", highlight=False)
    if spec.paper:
        out.print(f"paper: {spec.paper}", highlight=False)
    out.print("parts: " + ", ".join(f"{k}={v}" for k, v in spec.parts.items())
              + f", objective={spec.objective}; dataset: {spec.dataset}", highlight=False)
    table = Table("option", "type", "default", "valid range", "help", title="Hyperparameters (-o name=value)")
    for p in params:
        table.add_row(p["name"], p["type"], str(p["default"]), p["range"], p["help"])
    out.print(table)


@app.command("train")
def train_command(
    variant: Optional[str] = typer.Argument(None, help="A registered variant name (see `vaezoo list`); not with --resume."),
    beta: Optional[str] = typer.Option(None, "--beta", help="Weight of the divergence term, for variants that have one."),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="Passes over the training set (with --resume: extend the run)."),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="Images per step and process: under torchrun the global batch is this times the number of processes."),
    lr: Optional[str] = typer.Option(None, "--lr", help="Adam learning rate."),
    option: List[str] = typer.Option([], "-o", "--option", help="Any hyperparameter as key=value (see `vaezoo info`)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for initialisation, noise and data order (default 0)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/VARIANT/TIMESTAMP)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out (once the new one's inputs check out)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A registered dataset (default: the variant's)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after N steps (smoke runs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its newest checkpoint, with its own settings."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Also checkpoint every N steps (default: at epoch ends only)."),
    skip_nonfinite: bool = typer.Option(False, "--skip-nonfinite", help="Skip a batch whose loss is NaN or infinite instead of stopping (a host sync per step on GPUs)."),
    dist_timeout: float = typer.Option(300, "--dist-timeout", min=1, help="Under torchrun: seconds a process waits for the others before the job stops."),
) -> None:
    """Train a variant, or continue a run with --resume; writes a self-describing run folder."""
    from vaezoo.storage.runs import RunDir

    registry = get_registry()
    if resume is not None:
        given = {"VARIANT": variant, "--beta": beta, "--batch-size": batch_size, "--lr": lr, "-o": option or None,
                 "--seed": seed, "--out": out_dir, "--overwrite": overwrite or None, "--dataset": dataset,
                 "--max-steps": max_steps}
        refused = [name for name, value in given.items() if value is not None]
        if refused:
            raise UsageError(f"--resume continues a run with the settings in its config.json; {', '.join(refused)} "
                             "cannot be given with it (allowed: --epochs to extend, --device, --data-dir, "
                             "--checkpoint-every, --skip-nonfinite, --dist-timeout)")
        from vaezoo.api import resume_training

        path = resume_training(resume, epochs=epochs, data_dir=data_dir, device=device,
                               checkpoint_every=checkpoint_every, skip_nonfinite=skip_nonfinite,
                               dist_timeout=dist_timeout, console=err)
    else:
        if variant is None:
            raise UsageError("name a VARIANT to train (see `vaezoo list`), or continue a run with --resume RUN")
        spec = registry.variant(variant)
        texts = []
        for name, value in (("beta", beta), ("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                if name not in spec.schema:
                    raise UsageError(f"variant {spec.name} has no hyperparameter '{name}'")
                texts.append(f"{name}={value}")
        from vaezoo.api import train

        path = train(spec.name, options=[*texts, *option], dataset=dataset, data_dir=data_dir, out=out_dir,
                     overwrite=overwrite, seed=0 if seed is None else seed, max_steps=max_steps, device=device,
                     checkpoint_every=checkpoint_every, skip_nonfinite=skip_nonfinite,
                     dist_timeout=dist_timeout, console=err)
    if path is None:  # under torchrun only rank 0 reports
        return
    last = RunDir(path).read_metrics()[-1]
    out.print(f"done: test negative ELBO {last['test']['neg_elbo']:.2f} nats per image; run folder {path}",
              highlight=False)


SOURCE_HELP = "A run folder, an exported .safetensors file or folder, or a training checkpoint."


@app.command("evaluate")
def evaluate_command(
    source: Path = typer.Argument(..., metavar="RUN_OR_FILE", help=SOURCE_HELP),
    split: str = typer.Option("test", "--split", help="train or test."),
    importance_samples: int = typer.Option(DEFAULT_IMPORTANCE_SAMPLES, "--importance-samples", "-k",
                                           help="Importance samples per image for -log p(x)."),
    batch_size: int = typer.Option(DEFAULT_EVAL_BATCH_SIZE, "--batch-size", help="Images per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed for the sampled estimates."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Where to write the JSON (default eval.json beside SOURCE)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing eval.json."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Disentanglement metrics on a dataset with "
                                          "factors: 'disentanglement' for all, or a comma list of names."),
    metric_option: List[str] = typer.Option([], "--metric-option", help="A metric's setting as "
                                            "METRIC.SETTING=VALUE, e.g. dci.num_train=2000."),
) -> None:
    """Measure a trained model on held-out images: -ELBO, its terms, -log p(x), active units, MSE;
    with --metrics also disentanglement metrics."""
    from vaezoo.api import evaluate
    from vaezoo.evaluation.measures import ACTIVE_UNIT_THRESHOLD

    r = evaluate(source, split=split, importance_samples=importance_samples, batch_size=batch_size, seed=seed,
                 data_dir=data_dir, device=device, out=out_file, overwrite=overwrite, metrics=metrics,
                 metric_options=metric_option)
    out.print(f"{r['variant']} on {r['dataset']} {r['split']}: {r['images']:,} images in {r['seconds']:.1f} s",
              highlight=False)
    table = Table("measure (per image)", "value")
    table.add_row("negative ELBO (beta = 1), nats", f"{r['neg_elbo']:.2f}")
    table.add_row("  reconstruction -log p(x|z)", f"{r['recon']:.2f}")
    table.add_row("  KL(q(z|x) || p(z))", f"{r['kl']:.2f}")
    table.add_row(f"-log p(x), {r['importance_samples']} importance samples", f"{r['nll']:.2f}")
    table.add_row("reconstruction MSE per pixel", f"{r['mse']:.5f}")
    dims = len(r["posterior_mean_variance"])
    table.add_row(f"active units (Var[E q(z|x)] > {ACTIVE_UNIT_THRESHOLD:g})", f"{r['active_units']} / {dims}")
    out.print(table)
    per_dim = Table("dim", "KL", "Var[E q(z|x)]", title="Per latent dimension")
    for d, variance in enumerate(r["posterior_mean_variance"]):
        per_dim.add_row(str(d), f"{r['kl_per_dim'][d]:.3f}" if "kl_per_dim" in r else "-", f"{variance:.3f}")
    out.print(per_dim)
    if "disentanglement" in r:
        out.print(_metrics_table(r["disentanglement"]))
    out.print(f"wrote {r['saved_to']}", highlight=False)


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
    source: Path = typer.Argument(..., metavar="RUN_OR_FILE", help=SOURCE_HELP),
    out_path: Optional[Path] = typer.Option(None, "--out", help="A .safetensors file, or a folder for the "
                                            "Hugging Face layout (default VARIANT-RUN.safetensors here)."),
    fmt: str = typer.Option("safetensors", "--format", help="Only safetensors."),
    part: str = typer.Option("model", "--part", help="model, encoder or decoder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
) -> None:
    """Write one self-describing safetensors file (or config.json + model.safetensors) for shipping."""
    from vaezoo.api import export

    written = export(source, out_path, part=part, fmt=fmt, overwrite=overwrite)
    out.print(f"wrote {written}", highlight=False)


@app.command("sample")
def sample_command(
    source: Path = typer.Argument(..., metavar="RUN_OR_FILE", help=SOURCE_HELP),
    n: int = typer.Option(64, "--n", help="Images to draw (or test images to reconstruct)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="PNG to write (default samples.png, "
                                            "reconstructions.png or traversals.png)."),
    reconstruct: bool = typer.Option(False, "--reconstruct", help="Test images and their reconstructions."),
    traverse: bool = typer.Option(False, "--traverse", help="Each latent dimension swept around a test image's code."),
    seed: int = typer.Option(0, "--seed", help="Seed for the prior samples."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing picture."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the dataset files are ($VAEZOO_DATA)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Draw a PNG grid: prior samples, reconstructions or latent traversals."""
    if reconstruct and traverse:
        raise UsageError("choose one of --reconstruct and --traverse")
    from vaezoo.api import sample

    mode = "reconstruct" if reconstruct else "traverse" if traverse else "prior"
    written = sample(source, out_file, mode=mode, n=n, seed=seed, data_dir=data_dir, device=device, overwrite=overwrite)
    out.print(f"wrote {written}", highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    _debug["on"] = False
    try:
        code = app(args=argv, prog_name="vaezoo", standalone_mode=False)
    except VaezooError as exc:
        if _debugging():
            raise
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if _debugging():
            raise
        err.print("[red]interrupted[/]", highlight=False)
        sys.exit(130)
    except Exception as exc:
        # Typer's own usage errors (a bad --seed, a missing argument...) as one line too; checked by
        # their click interface rather than by class, since typer may vendor click.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        message = exc.format_message()
        if message.strip():  # empty when the help was shown instead (vaezoo with no arguments)
            err.print(f"[red]error:[/] {escape(message)} (see vaezoo --help)", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
