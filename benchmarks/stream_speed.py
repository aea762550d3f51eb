"""Training speed on a dataset streamed from its file against the same dataset in memory.

The same uint8 array (FashionMNIST's training images, or generated ones when they are not
installed) is saved as train.npy / test.npy and loaded as `tensor-file` twice: once in memory, once
streamed (VAEZOO_DATA_MEMORY=1, so it stays in its file and every batch is read from it). Each
contender trains conv-fashion for --steps steps with vaezoo.training.loop.train, interleaved over
--rounds rounds; medians are reported, and the ratio streamed / in memory (issue 19's target: at
least 0.8). The two must train bit for bit alike: the final losses are compared. --loader-only
times the batches alone, without the model, which is what a fast GPU step leaves exposed.

    python benchmarks/stream_speed.py                          # CPU, 300 steps, batch 64, 3 rounds
    python benchmarks/stream_speed.py --device cuda --batch-size 256 --steps 1000
    python benchmarks/stream_speed.py --loader-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path("/usr/share/datasets/fashion-mnist")


def write_arrays(folder: Path) -> str:
    """train.npy and test.npy in `folder`; returns where the images came from."""
    if (DATA / "train-images-idx3-ubyte.gz").exists():
        from vaezoo_plugins.datasets.idx import load_fashion_mnist

        data, source = load_fashion_mnist(DATA), "FashionMNIST"
        train, test = data.train.numpy(), data.test.numpy()
    else:
        from vaezoo_plugins.datasets.synthetic import make_images

        generator = torch.Generator().manual_seed(0)
        train, test = make_images(60_000, generator).numpy(), make_images(10_000, generator).numpy()
        source = "generated discs and bars (FashionMNIST is not installed)"
    np.save(folder / "train.npy", train)
    np.save(folder / "test.npy", test)
    return source


def load(folder: Path, streamed: bool):
    from vaezoo_plugins.datasets.tensor_file import load_tensor_file

    saved = os.environ.get("VAEZOO_DATA_MEMORY")
    os.environ["VAEZOO_DATA_MEMORY"] = "1" if streamed else "64G"
    try:
        return load_tensor_file(folder)
    finally:
        os.environ.pop("VAEZOO_DATA_MEMORY") if saved is None else os.environ.__setitem__("VAEZOO_DATA_MEMORY", saved)


def train_rate(data, args, out: Path) -> tuple[float, float]:
    """(images/s, final train loss) of `args.steps` steps of conv-fashion on `data`."""
    from rich.console import Console

    from vaezoo.registry import get_registry
    from vaezoo.storage.runs import RunDir
    from vaezoo.training.loop import TrainSetup, train

    registry = get_registry()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve({"batch_size": args.batch_size, "epochs": 1000})
    setup = TrainSetup(spec, hp, data, args.device, seed=args.seed, max_steps=args.steps)
    records = train(setup, RunDir.create(out, overwrite=True), registry, Console(quiet=True))
    return records[-1]["images_per_s"], records[-1]["train"]["loss"]


def loader_rate(data, args) -> tuple[float, float]:
    """(images/s, checksum) of the training batches alone, moved to the device."""
    from vaezoo.data import shuffled_batches
    from vaezoo.devices import synchronize

    images = data.to(args.device).train
    started, total, count = time.perf_counter(), 0.0, 0
    for step, x in enumerate(shuffled_batches(images, args.batch_size, torch.Generator().manual_seed(args.seed))):
        if step == args.steps:
            break
        total += float(x[0, 0, 16, 16]) if step % 50 == 0 else 0.0
        count += x.shape[0]
    synchronize(args.device)
    return count / (time.perf_counter() - started), total


def main(argv: list[str] | None = None) -> None:
    from vaezoo.devices import resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loader-only", action="store_true", help="time the batches without the model")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = write_arrays(folder)
        contenders = {"in memory": load(folder, False), "streamed": load(folder, True)}
        print(f"torch {torch.__version__}, {args.device}, {os.cpu_count()} CPUs, {source}, batch {args.batch_size}, "
              f"{args.steps} steps, {type(contenders['streamed'].train).__name__} vs "
              f"{type(contenders['in memory'].train).__name__}, load average {os.getloadavg()[0]:.1f}", flush=True)
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        results: dict[str, float] = {}
        for round_number in range(args.rounds):
            names = list(contenders) if round_number % 2 == 0 else list(contenders)[::-1]
            for name in names:
                rate, result = loader_rate(contenders[name], args) if args.loader_only else \
                    train_rate(contenders[name], args, folder / "run")
                rates[name].append(rate)
                results[name] = result
                print(f"round {round_number + 1}  {name:10s} {rate:10,.0f} images/s", flush=True)
        median = {name: statistics.median(values) for name, values in rates.items()}
        print(f"median images/s: in memory {median['in memory']:,.0f}, streamed {median['streamed']:,.0f}; "
              f"streamed / in memory = {median['streamed'] / median['in memory']:.2f}")
        same = results["in memory"] == results["streamed"]
        print(f"{'final loss' if not args.loader_only else 'batch checksum'}: "
              f"{'identical' if same else 'DIFFERENT'} ({results['in memory']!r} / {results['streamed']!r})")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
