"""The measured disentanglement table of docs/disentanglement.md: five models, several seeds, dSprites.

Trains each model for a fixed number of steps (the same budget for all; every other setting is the
variant's default, as `vaezoo train VARIANT --dataset dsprites --max-steps N` would use), evaluates
every registered metric, and writes the table and one latent traversal per model (the run's own
traversals.png, drawn at the end of training from the first test image) into the docs.
A run folder that already holds its eval.json is reused, so an interrupted table picks up where it
stopped. The metric settings are disentanglement_lib's except where TABLE_OPTIONS says otherwise
(smaller samples for the three slowest, to fit the budget); both are printed beside the table.

    python benchmarks/disentanglement_table.py [--steps 3000] [--seeds 0 1] [--out runs/disentanglement]
    python benchmarks/disentanglement_table.py --steps 30 --seeds 0 --quick --docs /tmp/docs  # a check
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import time
from pathlib import Path

import torch

import vaezoo

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # variant -> what the table calls it
    "conv-fashion": "VAE (conv-fashion, beta = 1)",
    "beta-vae": "beta-VAE (beta = 4)",
    "beta-vae-capacity": "beta-VAE, controlled capacity (C to 25 nats, gamma = 1000)",
    "beta-tcvae": "beta-TCVAE (beta = 6)",
    "factor-vae": "FactorVAE (gamma = 6)",
}
#: Smaller samples than disentanglement_lib's for the metrics that dominate the time.
TABLE_OPTIONS = ("beta-vae-score.num_train=2000", "beta-vae-score.num_eval=1000",
                 "factor-vae-score.num_train=2000", "factor-vae-score.num_eval=1000",
                 "dci.num_train=2000", "dci.num_test=1000")
#: For --quick: every metric on a few hundred images, only to check that the table is produced.
QUICK_OPTIONS = ("beta-vae-score.num_train=100", "beta-vae-score.num_eval=50", "factor-vae-score.num_train=100",
                 "factor-vae-score.num_eval=50", "factor-vae-score.num_variance_estimate=500", "mig.num_train=500",
                 "sap.num_train=300", "sap.num_test=100", "dci.num_train=100", "dci.num_test=50",
                 "modularity-explicitness.num_train=300", "modularity-explicitness.num_test=100")
COLUMNS = (  # (metric, score, column title)
    ("beta-vae-score", "eval_accuracy", "BetaVAE"),
    ("factor-vae-score", "eval_accuracy", "FactorVAE"),
    ("mig", "discrete_mig", "MIG"),
    ("sap", "SAP_score", "SAP"),
    ("dci", "disentanglement", "DCI D"),
    ("dci", "completeness", "DCI C"),
    ("dci", "informativeness_test", "DCI I"),
    ("modularity-explicitness", "modularity_score", "modularity"),
    ("modularity-explicitness", "explicitness_score_test", "explicitness"),
)
START, END = "<!-- measured-table:start -->", "<!-- measured-table:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps per model (batch 64)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("runs/disentanglement"))
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where disentanglement.md and images/ are")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny metric samples: checks the script, not the models")
    args = parser.parse_args()
    options = QUICK_OPTIONS if args.quick else TABLE_OPTIONS
    results: dict[str, list[dict]] = {}
    clock = {"train": 0.0, "evaluate": 0.0, "train_cpu": 0.0, "evaluate_cpu": 0.0}  # seconds
    for model in args.models:
        for seed in args.seeds:
            run = args.out / f"{model}-seed{seed}"
            results.setdefault(model, []).append(measure(model, seed, run, args, options, clock))
        picture = args.docs / "images" / f"dsprites-traversals-{model}.png"
        picture.parent.mkdir(parents=True, exist_ok=True)  # training drew it: the first test image's traversal
        shutil.copyfile(args.out / f"{model}-seed{args.seeds[0]}" / "traversals.png", picture)
    table = render(results, args, options)
    write_table(args.docs / "disentanglement.md", table)
    (args.out / "table.json").write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "options": options,
                                                     "clock_s": clock, "results": results}, indent=2) + "\n")
    print(table)
    print(f"train {clock['train'] / 60:.1f} min ({clock['train_cpu'] / 60:.1f} CPU), evaluate "
          f"{clock['evaluate'] / 60:.1f} min ({clock['evaluate_cpu'] / 60:.1f} CPU), "
          f"{torch.get_num_threads()} threads; wrote {args.docs / 'disentanglement.md'} and {args.out / 'table.json'}")


def measure(model: str, seed: int, run: Path, args: argparse.Namespace, options: tuple[str, ...],
            clock: dict[str, float]) -> dict:
    """Train (unless the run is there) and evaluate (unless eval.json is there) one model and seed."""
    saved = run / "eval.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    started, cpu = time.perf_counter(), time.process_time()
    if not (run / "model.safetensors").is_file():
        vaezoo.train(model, dataset="dsprites", seed=seed, max_steps=args.steps, out=run, overwrite=True,
                     data_dir=args.data_dir, device=args.device)
    clock["train"] += time.perf_counter() - started
    clock["train_cpu"] += time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    result = vaezoo.evaluate(run, importance_samples=1, seed=0, data_dir=args.data_dir, device=args.device,
                             metrics="disentanglement", metric_options=options)
    clock["evaluate"] += time.perf_counter() - started
    clock["evaluate_cpu"] += time.process_time() - cpu
    return result


def render(results: dict[str, list[dict]], args: argparse.Namespace, options: tuple[str, ...]) -> str:
    """The markdown table: per model the mean over seeds, and the range when there are several."""
    head = "| model | " + " | ".join(title for _, _, title in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for model, runs in results.items():
        cells = []
        for metric, score, _ in COLUMNS:
            values = [r["disentanglement"]["metrics"][metric]["scores"][score] for r in runs]
            spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.2f}{spread}")
        lines.append(f"| {MODELS[model]} | " + " | ".join(cells) + " |")
    first = next(iter(results.values()))[0]
    neg_elbo = {m: statistics.mean(r["neg_elbo"] for r in runs) for m, runs in results.items()}
    budget = (f"{args.steps:,} steps of 64 images ({args.steps * 64 / 737_280:.2f} epochs of dSprites), seeds "
              f"{', '.join(map(str, args.seeds))}; each cell the mean over seeds (min-max); "
              f"vaezoo {first['vaezoo_version']}, `python benchmarks/disentanglement_table.py --steps {args.steps} "
              f"--seeds {' '.join(map(str, args.seeds))}{' --quick' if args.quick else ''}`.")
    settings = ", ".join(f"`{o}`" for o in options)
    elbo = ", ".join(f"{m} {v:.1f}" for m, v in neg_elbo.items())
    pictures = ["| model | latent traversal (seed " + str(args.seeds[0]) + ", first test image, -3 to +3) |",
                "|---|---|", *(f"| {MODELS[m]} | ![](images/dsprites-traversals-{m}.png) |" for m in results)]
    return "\n".join([*lines, "", f"Budget: {budget}", "",
                      f"Metric settings: disentanglement_lib's, except {settings}.", "",
                      f"Test -ELBO (nats, beta = 1, mean over seeds): {elbo}.", "", *pictures])


def write_table(path: Path, table: str) -> None:
    """Replace what stands between the table markers in `path` (or append them)."""
    text = path.read_text() if path.is_file() else ""
    block = f"{START}\n{table}\n{END}"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
