"""Training speed with each experiment tracker on and off, as ratios measured in one run.

Trains conv-fashion with `vaezoo.training.loop.train` (what `vaezoo train` runs) for a fixed number
of steps, without a tracker and with each of TensorBoard, MLflow and W&B (those installed) and all
of them together, interleaved over several rounds (the order reversed every other round); medians
are reported. Three figures per contender, each also as a ratio to "off":
  images/s     the training loop's own rate (metrics.jsonl's images_per_s): the hot path, where the
               trackers' background thread competes for the same cores;
  seconds      wall clock of the whole call, from building the model to the last picture: it includes
               starting and finishing each tracked run and the epoch pictures;
  CPU seconds  the CPU time of the whole call in this process, every thread (the tracking thread
               included), plus W&B's service process when psutil is installed: the work the trackers
               add, and the figure that stays meaningful on a machine shared with other jobs, where
               the wall-clock figures swing by 2x between runs.
MLflow logs to a file store and W&B runs offline, both in a temporary folder: no network is used.

    python benchmarks/tracker_speed.py                          # FashionMNIST if installed, else synthetic
    python benchmarks/tracker_speed.py --steps 400 --rounds 5 --batch-size 64
    python benchmarks/tracker_speed.py --dataset synthetic      # 16 steps per epoch: epoch ends dominate
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from vaezoo.devices import resolve_device
from vaezoo.registry import get_registry
from vaezoo.storage.runs import RunDir
from vaezoo.training.loop import TrainSetup, train
from vaezoo.training.tracking import open_trackers

FASHION = Path("/usr/share/datasets/fashion-mnist")


def contenders() -> dict[str, tuple[str, ...]]:
    found = {"off": (), "tensorboard": ("tensorboard",)}
    for name in ("mlflow", "wandb"):
        if importlib.util.find_spec(name) is not None:
            found[name] = (name,)
    found["all"] = tuple(name for names in found.values() for name in names)
    return found


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its child processes still running (psutil)."""
    total = time.process_time()
    try:
        import psutil
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def run_once(names: tuple[str, ...], data, args, folder: Path) -> tuple[float, float, float]:
    """(images/s of the training loop, wall-clock seconds, CPU seconds of the whole call)."""
    registry = get_registry()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve({"batch_size": args.batch_size, "epochs": args.epochs})
    setup = TrainSetup(spec, hp, data, args.device, seed=0, max_steps=args.steps, trackers=names)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    records = train(setup, RunDir.create(folder), registry, Console(quiet=True),
                    trackers=open_trackers(names, registry))
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    images = sum(r["images_per_s"] * r["seconds"] for r in records)
    return images / sum(r["seconds"] for r in records), seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("auto", "fashion-mnist", "synthetic"), default="auto")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=1, help="epochs cap (synthetic: raise it to reach --steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.device = resolve_device(args.device)
    dataset = args.dataset if args.dataset != "auto" else ("fashion-mnist" if FASHION.is_dir() else "synthetic")
    data = get_registry().load("dataset", dataset)(FASHION if dataset == "fashion-mnist" else None)
    if dataset == "synthetic":
        args.epochs = max(args.epochs, -(-args.steps * args.batch_size // data.train.shape[0]))
    tmp = Path(tempfile.mkdtemp(prefix="vaezoo-tracker-speed-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", (tmp / "mlruns").as_uri())
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    who = contenders()
    print(f"conv-fashion on {dataset}, batch {args.batch_size}, {args.steps} steps per run, {args.rounds} rounds, "
          f"{args.device}, {torch.get_num_threads()} threads; contenders: {', '.join(who)}", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in who}
    walls: dict[str, list[float]] = {name: [] for name in who}
    cpus: dict[str, list[float]] = {name: [] for name in who}
    run_once(who["all"], data, args, tmp / "warm-up")  # untimed: first-call costs (kernels, imports, W&B service)
    for round_number in range(args.rounds):
        order = list(who) if round_number % 2 == 0 else list(reversed(who))
        for name in order:
            rate, wall, cpu = run_once(who[name], data, args, tmp / f"{name}-{round_number}")
            rates[name].append(rate)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"  round {round_number + 1} {name:12s} {rate:8,.0f} images/s  {wall:6.1f} s  {cpu:6.1f} CPU s",
                  flush=True)
    base = {key: statistics.median(values["off"]) for key, values in (("rate", rates), ("wall", walls), ("cpu", cpus))}
    print(f"\n{'trackers':12s} {'images/s':>9s} {'ratio':>6s} {'seconds':>8s} {'ratio':>6s} {'CPU s':>7s} {'ratio':>6s}")
    for name in who:
        rate, wall, cpu = (statistics.median(values[name]) for values in (rates, walls, cpus))
        print(f"{name:12s} {rate:9,.0f} {rate / base['rate']:6.3f} {wall:8.1f} {wall / base['wall']:6.3f} "
              f"{cpu:7.1f} {cpu / base['cpu']:6.3f}")


if __name__ == "__main__":
    main()
