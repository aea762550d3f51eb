"""The training loop with and without the CUDA graph of its step: images/s, and the same numbers.

For each variant (default conv-fashion, and nvae where a plugin registers it), `vaezoo.training.loop.train`
runs twice per round, with the step captured in a CUDA graph (the default) and with
VAEZOO_CUDA_GRAPHS=0, on the same seed and data: the second epoch's images/s (the first holds the
warm-up and the capture) and their ratio (medians over interleaved rounds), whether the graph was
captured (the loop's note), and the relative difference of the train loss and the test negative ELBO
of each epoch, which must stay within --tolerance (exit code 1 otherwise). With deterministic
algorithms (--deterministic) a graph replays exactly the eager kernels and the runs must agree
bit for bit (tolerance 0).

    python benchmarks/step_speed.py --device cuda                 # batch 64, 200 steps per epoch, 3 rounds
    python benchmarks/step_speed.py --device cuda --deterministic --rounds 1
    python benchmarks/step_speed.py --device cpu --steps 10 --rounds 1   # checks the script (no graph on a CPU)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console

from vaezoo.data import ImageData
from vaezoo.devices import resolve_device

DATA = Path("/usr/share/datasets/fashion-mnist")
TOLERANCE = 1e-3  # relative: eager runs with cuDNN's default (non-deterministic) kernels differ by about this


def load_data(args) -> ImageData:
    if args.data.exists():
        from vaezoo_plugins.datasets.idx import load_fashion_mnist

        full = load_fashion_mnist(args.data)
    else:
        from vaezoo_plugins.datasets.synthetic import load_synthetic

        full = load_synthetic()
    return ImageData(full.name, full.train[:args.batch_size * args.steps], full.test[:args.test_images])


def run(variant: str, graphs_on: bool, data: ImageData, args) -> tuple[list[dict], bool]:
    """Two epochs of `variant`; (records, whether the step was replayed from a graph)."""
    from vaezoo.registry import get_registry
    from vaezoo.storage.runs import RunDir
    from vaezoo.training.graphs import SWITCH
    from vaezoo.training.loop import TrainSetup, train

    registry = get_registry()
    spec = registry.variant(variant)
    hp = spec.schema.resolve({"batch_size": args.batch_size, "epochs": 2})
    os.environ[SWITCH] = "1" if graphs_on else "0"
    console = Console(record=True, quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        records = train(TrainSetup(spec, hp, data, args.device, seed=args.seed), RunDir.create(Path(tmp) / "run"),
                        registry, console)
    return records, "training step is captured" in console.export_text()


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def measure(variant: str, data: ImageData, args) -> bool:
    rates: dict[bool, list[float]] = {True: [], False: []}
    first: dict[bool, list[dict]] = {}
    captured = False
    for rnd in range(args.rounds):
        for graphs_on in (True, False) if rnd % 2 == 0 else (False, True):
            records, replayed = run(variant, graphs_on, data, args)
            captured |= replayed and graphs_on
            rates[graphs_on].append(records[-1]["images_per_s"])
            first.setdefault(graphs_on, records)
            print(f"  round {rnd + 1} {variant} graphs {'on ' if graphs_on else 'off'} "
                  f"{records[-1]['images_per_s']:10,.0f} images/s (second epoch)", flush=True)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"{variant}: median images/s with the graph {on:,.0f}, eager {off:,.0f}, ratio {on / off:.2f}x; "
          f"graph {'captured' if captured else 'NOT captured (eager both times)'}")
    worst = 0.0
    for epoch, (graphed, eager) in enumerate(zip(first[True], first[False], strict=True), 1):
        pairs = [("train loss", graphed["train"]["loss"], eager["train"]["loss"])]
        if "neg_elbo" in eager["test"]:
            pairs.append(("test -ELBO", graphed["test"]["neg_elbo"], eager["test"]["neg_elbo"]))
        for name, a, b in pairs:
            worst = max(worst, relative(a, b))
            print(f"  epoch {epoch} {name}: graph {a:.6f}, eager {b:.6f}, relative difference {relative(a, b):.2e}")
    tolerance = 0.0 if args.deterministic else args.tolerance
    ok = worst <= tolerance
    print(f"{variant}: same-seed metrics {'within' if ok else 'OUTSIDE'} the tolerance {tolerance:g} "
          f"(largest relative difference {worst:.2e})")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=None, help="default: conv-fashion, and nvae if registered")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", type=Path, default=DATA, help="FashionMNIST IDX files (synthetic data if absent)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (the training subset's size)")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms: the graph and eager runs must agree bit for bit")
    args = parser.parse_args()
    args.device = resolve_device(args.device)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    from vaezoo.registry import get_registry

    variants = args.variants or ["conv-fashion"] + [v for v in ("nvae",) if v in get_registry().names("variant")]
    data = load_data(args)
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, batch {args.batch_size}, {args.steps} steps per epoch, "
          f"{args.rounds} rounds, variants {', '.join(variants)}", flush=True)
    ok = all([measure(variant, data, args) for variant in variants])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
